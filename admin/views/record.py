"""Record: a form for every command of the library."""

from __future__ import annotations

from flask import Blueprint, render_template

from admin.security import RECORDERS, roles

bp = Blueprint("record", __name__, url_prefix="/record")


@bp.route("/refer", methods=["GET", "POST"])
@roles(*RECORDERS)
def refer():  # noqa: ANN201
    return render_template("record/form.html")
