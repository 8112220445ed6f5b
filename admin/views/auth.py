"""Log in and out.  Every attempt is in the access log; repeated failures lock the account."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from admin.services import record_access, services
from admin.users import LoginRefused

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login():  # noqa: ANN201
    if request.method == "GET":
        return render_template("login.html")
    username = request.form.get("username", "").strip()[:64]
    password = request.form.get("password", "")
    try:
        user = services().users.authenticate(username, password)
    except LoginRefused as refused:
        record_access("login", outcome="failure", actor_id=username or "-", actor_role="none",
                      detail=str(refused))
        flash(str(refused), "error")
        return render_template("login.html", username=username), 401
    login_user(user)
    record_access("login", actor_id=user.username, actor_role=user.role.value)
    target = request.args.get("next", "")
    # Only a path on this site: never an open redirect.
    if not target.startswith("/") or target.startswith("//"):
        target = url_for("dashboard.index")
    return redirect(target)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():  # noqa: ANN201
    record_access("logout")
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.app_context_processor
def _user_context():  # noqa: ANN202
    return {"user": current_user}
