"""The panel's pages, one blueprint per area, and the menu each role sees."""

from __future__ import annotations

from flask import Flask

from admin.security import ADMINS, EVERYONE, RECORDERS, REVIEWERS
from admin.views.audit import bp as audit
from admin.views.auth import bp as auth
from admin.views.dashboard import bp as dashboard
from admin.views.episodes import bp as episodes
from admin.views.manage import bp as manage
from admin.views.record import bp as record
from admin.views.verification import bp as verification

BLUEPRINTS = [auth, dashboard, episodes, record, audit, manage, verification]

# Menu entries: endpoint, label, roles that see it (the views check the role again).
NAV = (
    ("episodes.index", "Episodes", EVERYONE),
    ("record.refer", "New referral", RECORDERS),
    ("audit.index", "Audit", REVIEWERS),
    ("manage.programs", "Programs", ADMINS),
    ("manage.users", "Users", ADMINS),
)


def install_navigation(app: Flask) -> None:
    @app.context_processor
    def _nav():  # noqa: ANN202
        items = [
            (endpoint, label, {role.value for role in allowed})
            for endpoint, label, allowed in NAV
            if endpoint in app.view_functions
        ]
        return {"nav_items": items}
