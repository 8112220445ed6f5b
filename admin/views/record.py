"""Record: a form for every command of the library.

The forms are built from the library's own schemas (``admin.forms``) and every check is the
library's: the view posts what was typed to ``Episodes.execute`` and shows what comes back,
each field error beside its input.  A hidden ``command_id`` (new on every render) makes a
double submit record once.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from flask import Blueprint, abort, flash, redirect, render_template, request
from flask_login import current_user

from admin import forms
from admin.security import RECORDERS, roles
from admin.services import record_access, services
from episodes import (
    ConflictError,
    InvalidCommand,
    NotFound,
    NotPermitted,
    RuleViolation,
    TransitionNotAllowed,
    allowed_commands,
)
from episodes.episode import IMMUTABLE_FIELDS
from episodes.events import EpisodeEvent
from episodes.history import EpisodeView
from episodes.pathway import PATHWAY
from episodes.schemas import SCHEMAS

bp = Blueprint("record", __name__, url_prefix="/record")

TITLES = {
    "refer": "New referral", "complete_intake": "Complete the intake",
    "waitlist": "Put on the waitlist", "cancel_referral": "Cancel the referral",
    "decline_referral": "Decline the referral", "admit": "Admit",
    "record_attendance": "Record an attended session", "record_absence": "Record a missed session",
    "record_program_cancellation": "Record a session the program cancelled",
    "record_outcome": "Record an outcome score", "record_authorization": "Record an authorization",
    "change_level_of_care": "Change the level of care (step down, step up, taper)",
    "place_on_hold": "Place on hold", "resume": "Resume after a hold", "discharge": "Discharge",
    "void_event": "Void an event", "amend_event": "Amend an event",
    "mark_entered_in_error": "Mark the episode entered in error",
}
CHANGES = "changes."  # prefix of an amendment's fields: the target event's own fields


@bp.route("/refer", methods=["GET", "POST"])
@roles(*RECORDERS)
def refer():  # noqa: ANN201
    return _page("refer", None)


@bp.route("/<command>", methods=["GET", "POST"])
@roles(*RECORDERS)
def command(command: str):  # noqa: ANN201
    if command not in SCHEMAS or command == "refer":
        abort(404)
    try:
        episode = services().episodes.episode(UUID(request.args.get("episode_id", "")))
    except (ValueError, NotFound):
        abort(404)
    return _page(command, episode)


def _page(command: str, episode: EpisodeView | None):  # noqa: ANN202 - a Flask response
    page = _Form(command, episode)
    if request.method == "POST":
        return page.submit()
    return page.render()


class _Form:
    """One command's form: its fields, the values shown, the errors beside them."""

    def __init__(self, command: str, episode: EpisodeView | None):
        self.command, self.episode = command, episode
        self.step = PATHWAY[command]
        self.choices = self._choices()
        self.specs = forms.describe(command, choices=self.choices)
        self.values: dict[str, str] = {}
        self.errors: dict[str, list[str]] = {}
        self.problems: list[str] = []  # messages for the top of the page
        self.target: EpisodeEvent | None = None
        self.target_specs: list[forms.FieldSpec] = []
        if command == "amend_event":
            self._amend_target(request.values.get("target_version", ""))

    # ------------------------------------------------------------ building

    def _choices(self) -> dict[str, forms.Choices]:
        choices: dict[str, forms.Choices] = {}
        if self.command in ("admit", "waitlist", "amend_event"):
            programs = services().reads.programs()
            choices["program_code"] = [(None, [(p.code, f"{p.name} ({p.code})") for p in programs])]
            if programs and all(p.clinics for p in programs):  # otherwise any clinic: free text
                choices["clinic"] = [(f"{p.name} ({p.code})", [(c, f"{p.name} — {c}") for c in p.clinics])
                                     for p in programs]
        if self.episode is not None:
            choices["target_version"] = [(None, [
                (str(f.originator_version),
                 f"Version {f.originator_version} · {type(f).__name__} · {f.effective_date.isoformat()}")
                for f in self.episode.facts
            ])]
        return choices

    def _amend_target(self, version: str) -> None:
        facts = {f.originator_version: f for f in self.episode.facts} if self.episode else {}
        self.target = facts.get(int(version)) if version.isdigit() else None
        if self.target is None:
            return
        schema = SCHEMAS[self.target.step().command]()
        amendable = set(vars(self.target)) - IMMUTABLE_FIELDS
        self.target_specs = forms.describe_schema(
            schema, prefix=CHANGES, partial=True, choices=self.choices,
            skip=frozenset(set(schema.fields) - amendable),
        )
        self.specs = [s for s in self.specs if s.name != "target_version"]  # fixed: it is chosen

    def original(self) -> dict[str, str]:
        """The amended event's current values, as its form fields show them."""
        assert self.target is not None
        names = [s.name.removeprefix(CHANGES) for s in self.target_specs]
        return forms.form_values({n: getattr(self.target, n) for n in names}, prefix=CHANGES)

    def defaults(self) -> dict[str, str]:
        values: dict[str, str] = {}
        effective = next((s for s in self.specs if s.name == "effective_date"), None)
        if effective is not None and effective.required:
            values["effective_date"] = services().episodes.clock.now().date().isoformat()
        if self.command == "complete_intake":
            values["clinician"] = current_user.username
        if self.command == "void_event":
            values["target_version"] = request.args.get("target_version", "")
        if self.target is not None:
            values.update(self.original())
        return values

    # ------------------------------------------------------------ answering

    def render(self, status: int = 200):  # noqa: ANN201
        blocked = None
        if self.episode is not None:
            record_access("read", episode_id=self.episode.id, patient_ref=self.episode.state.patient_ref,
                          detail=f"record form {self.command}")
            if self.episode.status not in self.step.allowed_in and request.method == "GET":
                blocked = str(TransitionNotAllowed(self.command, self.episode.status, self.step.allowed_in))
        if request.method == "GET":
            self.values = self.defaults()
        shown = forms.placed(self.specs + self.target_specs, self.errors) | {"changes"}
        unplaced = [f"{forms.LABELS.get(k, k)}: {' '.join(m)}" for k, m in self.errors.items()
                    if k not in shown]
        return render_template(
            "record/form.html", command=self.command, title=TITLES[self.command], step=self.step,
            episode=self.episode, specs=self.specs, target=self.target, target_specs=self.target_specs,
            target_name=type(self.target).__name__ if self.target else "",
            values=self.values, errors=self.errors, problems=self.problems + unplaced,
            blocked=blocked, choose_target=self.command == "amend_event" and self.target is None,
            allowed=allowed_commands(self.episode.status) if self.episode else [],
            titles=TITLES, command_id=uuid4().hex, action=request.full_path.rstrip("?"),
        ), status

    def submit(self):  # noqa: ANN201
        if self.command == "amend_event" and self.target is None:
            self.problems.append("Choose the event to amend.")
            return self.render(422)
        self.values = forms.normalize(self.specs + self.target_specs, request.form)
        data: dict[str, Any] = forms.payload(self.specs, self.values)
        if self.target is not None:
            data["target_version"] = str(self.target.originator_version)
            data["changes"] = forms.changes(self.target_specs, self.values, self.original(), prefix=CHANGES,
                                            posted=request.form)
        if self.episode is not None:
            data["episode_id"] = str(self.episode.id)
        data["command_id"] = request.form.get("command_id", "")
        try:
            receipt = services().episodes.execute(self.command, data, current_user.actor)
        except InvalidCommand as invalid:
            self.errors = forms.flatten_errors(invalid.errors)
            return self.render(422)
        except RuleViolation as violation:
            return self._refused(violation, 422)
        except ConflictError as conflict:
            return self._refused(conflict, 409)
        except NotFound as missing:
            return self._refused(missing, 404)
        except NotPermitted:
            abort(403)
        if receipt.duplicate:
            flash(f"Already recorded {receipt.event} (version {receipt.version}); nothing new was written.",
                  "info")
        else:
            flash(f"Recorded {receipt.event} (version {receipt.version})", "success")
        return redirect(f"/episodes/{receipt.episode_id}", code=303)

    def _refused(self, error: Exception, status: int):  # noqa: ANN202
        self.problems.append(_sentence(str(error)))
        return self.render(status)


def _sentence(message: str) -> str:
    message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."
