"""Episodes: the list and one episode's page."""

from __future__ import annotations

from flask import Blueprint, render_template

from admin.security import EVERYONE, roles

bp = Blueprint("episodes", __name__, url_prefix="/episodes")


@bp.route("/")
@roles(*EVERYONE)
def index():  # noqa: ANN201
    return render_template("episodes/list.html")
