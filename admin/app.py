"""The Flask application factory: ``create_app(config)``.

Configuration comes from, in order: defaults, ``CARE_EPISODES_*`` environment variables
(``CARE_EPISODES_SECRET_KEY``, ``CARE_EPISODES_DATABASE_URL``), then the mapping given.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from flask import Flask, render_template
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from admin import security
from admin.services import Services
from admin.users import UserStore
from episodes import storage
from episodes.access import AccessLog
from episodes.clock import SystemClock
from projections import ProjectedEpisodes, ReadModels
from projections.decoding import fast_mapper

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": True,  # `care-episodes serve` on a loopback address turns it off
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SECURE": True,
    "PERMANENT_SESSION_LIFETIME": 8 * 3600,  # one working day
    "WTF_CSRF_TIME_LIMIT": 8 * 3600,
    "PAGE_SIZE": 50,
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("CARE_EPISODES")
    app.config.update(config or {})
    if not app.config.get("SECRET_KEY"):
        log.warning("no CARE_EPISODES_SECRET_KEY set: sessions end when the server restarts")
        app.config["SECRET_KEY"] = secrets.token_hex(32)

    clock = app.config.get("CLOCK") or SystemClock()
    episodes = ProjectedEpisodes(storage.database_url(app.config.get("DATABASE_URL")), clock=clock)
    engine = episodes.recorder.datastore.engine  # type: ignore[attr-defined]
    episodes.projector.catch_up()  # events written without the panel (imports, the demo)
    app.extensions["care_episodes"] = Services(
        episodes=episodes, reads=ReadModels(episodes), users=UserStore(engine, clock),
        access=AccessLog(engine, clock), history_mapper=fast_mapper(episodes.mapper),
    )

    CSRFProtect(app)
    security.install_headers(app)
    _install_login(app)
    _register_blueprints(app)
    _install_error_pages(app)
    return app


def _install_login(app: Flask) -> None:
    manager = LoginManager(app)
    manager.login_view = "auth.login"
    manager.login_message = "Please log in."
    manager.session_protection = "strong"

    @manager.user_loader
    def load_user(username: str):  # noqa: ANN202 - a User or None
        user = app.extensions["care_episodes"].users.get(username)
        return user if user and user.active else None


def _register_blueprints(app: Flask) -> None:
    from admin.views import BLUEPRINTS, install_navigation

    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    install_navigation(app)


def _install_error_pages(app: Flask) -> None:
    for code, title in ((403, "Not allowed"), (404, "Not found"), (400, "Bad request")):
        app.register_error_handler(
            code, lambda error, code=code, title=title: (
                render_template("error.html", code=code, title=title, error=error), code)
        )
