"""The dashboard: census, alerts and length of stay against target."""

from __future__ import annotations

from flask import Blueprint, render_template

from admin.security import EVERYONE, roles

bp = Blueprint("dashboard", __name__)


@bp.route("/")
@roles(*EVERYONE)
def index():  # noqa: ANN201
    return render_template("dashboard.html")
