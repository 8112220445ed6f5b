"""Programs and users (admins only)."""

from __future__ import annotations

from flask import Blueprint, render_template

from admin.security import ADMINS, roles

bp = Blueprint("manage", __name__)


@bp.route("/programs")
@roles(*ADMINS)
def programs():  # noqa: ANN201
    return render_template("manage/programs.html")


@bp.route("/users")
@roles(*ADMINS)
def users():  # noqa: ANN201
    return render_template("manage/users.html")
