"""Programs and users (admins only).

Programs are event-sourced like episodes: defining or revising one is on the audit record.
User changes are put in the access log as ``user-admin`` with what changed (never a password).
An admin may neither disable themself nor change their own role, so the panel always keeps
at least one active admin: the one making the change.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timezone
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from admin.security import ADMINS, roles
from admin.services import record_access, services
from admin.users import MIN_PASSWORD_LENGTH, UserError
from episodes import ActorRole
from episodes.errors import InvalidCommand, ProgramNotFound
from episodes.program import ProgramDefinition
from episodes.vocabulary import (
    ASAM_LEVEL_CODES,
    LEVEL_NAMES,
    AgeBand,
    CriteriaEdition,
    ServiceFormat,
)

bp = Blueprint("manage", __name__)

PROGRAM_FIELDS = ("code", "name", "target_weeks", "days_per_week", "age_band",
                  "minimum_weekly_hours", "level_of_care", "format", "clinics", "reason")
PEOPLE_ROLES = tuple(role.value for role in ActorRole if role is not ActorRole.SYSTEM)


# ---------------------------------------------------------------------------- programs


def level_choices() -> list[tuple[str, str]]:
    """Form values for every ASAM level: ``2.1`` (4th edition) or ``asam-3:2.1``."""
    choices = []
    for edition in (CriteriaEdition.ASAM_4, CriteriaEdition.ASAM_3):
        prefix = "" if edition is CriteriaEdition.ASAM_4 else f"{edition.value}:"
        for code in ASAM_LEVEL_CODES[edition]:
            choices.append((f"{prefix}{code}", f"{code} {LEVEL_NAMES[code]} ({edition.value})"))
    return choices


def program_form(definition: ProgramDefinition) -> dict[str, str]:
    """A definition as the form shows it."""
    level = definition.level_of_care
    return {
        "code": definition.code, "name": definition.name,
        "target_weeks": str(definition.target_weeks),
        "days_per_week": str(definition.days_per_week),
        "age_band": definition.age_band.value,
        "minimum_weekly_hours": str(definition.minimum_weekly_hours),
        "level_of_care": level.code if level.edition is CriteriaEdition.ASAM_4
        else f"{level.edition.value}:{level.code}",
        "format": definition.format.value, "clinics": ", ".join(definition.clinics),
    }


def program_fields(form: Mapping[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
    """The form as typed, and as the library's fields (a blank field takes the default)."""
    typed = {name: form.get(name, "").strip() for name in PROGRAM_FIELDS}
    fields: dict[str, Any] = {name: value for name, value in typed.items() if value}
    if "clinics" in fields:
        fields["clinics"] = [c.strip() for c in fields["clinics"].split(",") if c.strip()]
    return typed, fields


def field_errors(error: InvalidCommand) -> dict[str, str]:
    """One line per field; a list field's messages say which item (``clinics 2: ...``)."""

    def lines(messages: Any, prefix: str = "") -> list[str]:
        if isinstance(messages, Mapping):
            return [line for key, value in messages.items()
                    for line in lines(value, f"{prefix}item {_ordinal(key)}: ")]
        if isinstance(messages, (list, tuple)):
            return [line for message in messages for line in lines(message, prefix)]
        return [f"{prefix}{messages}"]

    return {name: " ".join(lines(messages)) for name, messages in error.errors.items()}


def _ordinal(key: Any) -> str:
    return str(int(key) + 1) if str(key).isdigit() else str(key)  # list indexes count from 0


def _programs_page(form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                   status: int = 200):  # noqa: ANN202 - a Flask response tuple
    return render_template(
        "manage/programs.html", programs=services().reads.programs(), form=form or {},
        errors=errors or {}, **_choices(),
    ), status


def _choices() -> dict[str, Any]:
    return {"age_bands": [band.value for band in AgeBand],
            "formats": [f.value for f in ServiceFormat], "levels": level_choices()}


@bp.route("/programs")
@roles(*ADMINS)
def programs():  # noqa: ANN201
    return _programs_page()


@bp.route("/programs", methods=["POST"])
@roles(*ADMINS)
def define_program():  # noqa: ANN201
    typed, fields = program_fields(request.form)
    fields.pop("reason", None)  # a new program needs no reason
    episodes = services().episodes
    known = {program.code for program in services().reads.programs()}
    try:
        definition = episodes.define_program(current_user.actor, **fields)
    except InvalidCommand as invalid:
        return _programs_page(typed, field_errors(invalid), 422)
    if definition.code in known:  # the very same definition again: the library records nothing
        flash(f"Program {definition.code} already has this definition: nothing was recorded.",
              "info")
    else:
        flash(f"Program {definition.code} ({definition.name}) is defined.", "success")
    return redirect(url_for("manage.programs"))


@bp.route("/programs/<code>", methods=["GET", "POST"])
@roles(*ADMINS)
def revise_program(code: str):  # noqa: ANN201
    episodes = services().episodes
    try:
        current = episodes.program(code)
    except ProgramNotFound:
        abort(404)
    if request.method == "GET":
        return _revise_page(current, program_form(current), {})
    typed, fields = program_fields(request.form)
    typed["code"] = fields["code"] = current.code  # the code names the program: it never changes
    try:
        definition = episodes.revise_program(current_user.actor, **fields)
    except InvalidCommand as invalid:
        return _revise_page(current, typed, field_errors(invalid), 422)
    if definition == current:
        flash(f"Program {code} is unchanged: nothing was recorded.", "info")
    else:
        flash(f"Program {code} is revised; the earlier definition stays on the record.", "success")
    return redirect(url_for("manage.programs"))


def _revise_page(current: ProgramDefinition, form: dict[str, str], errors: dict[str, str],
                 status: int = 200):  # noqa: ANN202
    return render_template("manage/program.html", program=current, form=form, errors=errors,
                           **_choices()), status


# ---------------------------------------------------------------------------- users


def _users_page(errors: dict[str, dict[str, str]] | None = None, form: dict[str, str] | None = None,
                status: int = 200):  # noqa: ANN202
    store = services().users
    now = store.clock.now()
    rows = []
    for row in store.all():
        locked = row["locked_until"]
        if locked is not None and locked.tzinfo is None:
            locked = locked.replace(tzinfo=timezone.utc)  # SQLite keeps UTC without its offset
        rows.append({**row, "locked_until": locked, "locked": bool(locked and locked > now)})
    return render_template(
        "manage/users.html", users=rows, roles=PEOPLE_ROLES, errors=errors or {}, form=form or {},
        min_password=MIN_PASSWORD_LENGTH, me=current_user.username,
    ), status


def _user_error_field(message: str) -> str:
    """Which field of the add form a ``UserError`` is about."""
    for name in ("password", "role"):
        if name in message:
            return name
    return "username"


def _choose_role() -> str:
    return f"Choose one of {', '.join(PEOPLE_ROLES)}."


def _user_or_404(username: str):  # noqa: ANN202 - a User
    user = services().users.get(username)
    if user is None:
        abort(404)
    return user


def _changed(message: str, detail: str):  # noqa: ANN202 - a redirect
    record_access("user-admin", detail=detail)
    flash(message, "success")
    return redirect(url_for("manage.users"))


@bp.route("/users")
@roles(*ADMINS)
def users():  # noqa: ANN201
    return _users_page()


@bp.route("/users", methods=["POST"])
@roles(*ADMINS)
def add_user():  # noqa: ANN201
    username = request.form.get("username", "").strip()
    role = request.form.get("role", "")
    form = {"username": username, "role": role}
    if role not in PEOPLE_ROLES:
        return _users_page({"add": {"role": _choose_role()}}, form, 422)
    try:
        user = services().users.add(username, role, request.form.get("password", ""))
    except UserError as refused:
        return _users_page({"add": {_user_error_field(str(refused)): str(refused)}}, form, 422)
    return _changed(f"User {user.username} is added as {user.role.value}.",
                    f"added user {user.username} with role {user.role.value}")


@bp.route("/users/<username>/role", methods=["POST"])
@roles(*ADMINS)
def change_role(username: str):  # noqa: ANN201
    user = _user_or_404(username)
    role = request.form.get("role", "")
    if user.username == current_user.username:
        refusal = "You cannot change your own role: ask another admin."
        return _users_page({user.username: {"role": refusal}}, status=422)
    if role not in PEOPLE_ROLES:
        return _users_page({user.username: {"role": _choose_role()}}, status=422)
    if role == user.role.value:
        flash(f"{user.username} is already {role}: nothing changed.", "info")
        return redirect(url_for("manage.users"))
    services().users.set_role(user.username, role)
    return _changed(f"{user.username} is now {role}.",
                    f"changed the role of {user.username} from {user.role.value} to {role}")


@bp.route("/users/<username>/active", methods=["POST"])
@roles(*ADMINS)
def set_active(username: str):  # noqa: ANN201
    user = _user_or_404(username)
    active = request.form.get("active") == "1"
    if not active and user.username == current_user.username:
        return _users_page({user.username: {"active": "You cannot disable your own account."}},
                           status=422)
    if active == user.active:
        flash(f"{user.username} is already {'enabled' if active else 'disabled'}.", "info")
        return redirect(url_for("manage.users"))
    services().users.set_active(user.username, active)
    word = "enabled" if active else "disabled"
    return _changed(f"{user.username} is {word}.", f"{word} user {user.username}")


@bp.route("/users/<username>/password", methods=["POST"])
@roles(*ADMINS)
def reset_password(username: str):  # noqa: ANN201
    user = _user_or_404(username)
    try:
        services().users.set_password(user.username, request.form.get("password", ""))
    except UserError as refused:
        return _users_page({user.username: {"password": str(refused)}}, status=422)
    return _changed(f"The password of {user.username} is reset; failed attempts and any lock "
                    "are cleared.", f"reset the password of {user.username}")
