"""Security settings every response gets: headers, cookies, and who may open what."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, abort
from flask_login import current_user, login_required

from episodes import ActorRole

# No inline script or style and nothing from elsewhere: the panel works with no internet.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def install_headers(app: Flask) -> None:
    @app.after_request
    def _headers(response):  # noqa: ANN001, ANN202 - Flask response
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if app.config.get("SESSION_COOKIE_SECURE"):
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if response.mimetype == "text/html" or response.mimetype.startswith("text/csv") \
                or response.mimetype.endswith("json"):
            # Pages and exports carry health information: never keep them in a shared cache.
            response.headers["Cache-Control"] = "no-store"
        return response


def roles(*allowed: ActorRole) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Only users in one of ``allowed`` roles may open the view (403 otherwise)."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        @login_required
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if current_user.role not in allowed:
                # A refused attempt is part of the trail too (ASTM E2147: outcome of the access).
                from admin.services import record_access

                record_access("read", outcome="denied")
                abort(403)
            return view(*args, **kwargs)

        guarded.allowed_roles = allowed  # type: ignore[attr-defined] - read by the route tests
        return guarded

    return decorate


EVERYONE = (ActorRole.ADMIN, ActorRole.CLINICIAN, ActorRole.REVIEWER)
RECORDERS = (ActorRole.ADMIN, ActorRole.CLINICIAN)
REVIEWERS = (ActorRole.ADMIN, ActorRole.REVIEWER)
ADMINS = (ActorRole.ADMIN,)
