"""Audit: the global, filterable log, exports and integrity status."""

from __future__ import annotations

from flask import Blueprint, render_template

from admin.security import REVIEWERS, roles

bp = Blueprint("audit", __name__, url_prefix="/audit")


@bp.route("/")
@roles(*REVIEWERS)
def index():  # noqa: ANN201
    return render_template("audit/index.html")
