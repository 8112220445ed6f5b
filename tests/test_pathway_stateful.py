"""Random command sequences against one episode, checked against a small model of the pathway.

The model knows only the transition table (``episodes.pathway.PATHWAY``): which facts still
count, in which order, and so which status the episode is in.  It never calls
``episodes.rules``.  Every command the application accepts must be one the table allows and
must grow the stream by exactly one event; every command it refuses must leave the stream
exactly as it was.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from episodes import (
    Episodes,
    EpisodesError,
    EpisodeStatus,
    FixedClock,
    InvalidCommand,
    Receipt,
    TransitionNotAllowed,
)
from episodes.pathway import PATHWAY
from tests.pathway_model import (
    ACTOR,
    FHIR_STATUS_CODES,
    LATEST,
    NOW,
    TERMINAL,
    TODAY,
    Fact,
    PathwayModel,
    intake_fields,
    keep_the_last_saved_episode,
)
from tests.pathways import DEPRESSION, define_standard_program

LEVELS = ["2.1", "2.5", "1.5", "3.1", "asam-3:1", "asam-3:2.5", "asam-4:2.7", "4.0"]
SESSION_KINDS = ["group", "individual", "family", "medication-management"]
REASONS = [None, "", "   ", "patient request", "clinical judgement", "wrong date"]


class PathwayMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="pathway-stateful-"))
        url = f"sqlite:///{self.directory / 'care-episodes.db'}"
        self.app = Episodes(url, clock=FixedClock(NOW))
        self.saved = keep_the_last_saved_episode(self.app)
        self.reader = Episodes(url, clock=FixedClock(NOW))  # a second, fresh application
        define_standard_program(self.app, ACTOR)  # iop-adult at the north and south clinics
        self.model = PathwayModel()
        self.episode_id: Any = None
        self.accepted: list[tuple[str, dict[str, Any], Receipt]] = []
        self.last_outcome: tuple[str, EpisodeStatus, bool] | None = None

    def teardown(self) -> None:
        self.app.close()
        self.reader.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------ drawing inputs

    def _date(self, data: st.DataObject) -> date:
        """A clinical date near the episode's own: before admission, inside holds, in the future."""
        anchors = [*self.model.dates(), TODAY, LATEST]
        anchor = data.draw(st.sampled_from(anchors))
        after_latest_fact = max(self.model.dates(), default=TODAY)
        return data.draw(st.one_of(
            st.integers(-7, 7).map(lambda days: anchor + timedelta(days=days)),
            st.integers(0, 5).map(lambda days: after_latest_fact + timedelta(days=days)),
            st.integers(0, 5).map(lambda days: after_latest_fact + timedelta(days=days)),
            st.integers(1, 30).map(lambda days: LATEST + timedelta(days=days)),
        ), label="effective_date")

    def _run(self, command: str, data: st.DataObject, fields: dict[str, Any],
             dated: bool = True) -> Receipt | None:
        """Submit a command with a random reason and date (or none: a correction is dated
        today), and check what came of it."""
        reason = data.draw(st.sampled_from(REASONS), label="reason")
        on = self._date(data) if dated or data.draw(st.booleans(), label="dated") else None
        return self._submit(command, fields, on, reason)

    def _submit(self, command: str, fields: dict[str, Any], on: date | None,
                reason: str | None) -> Receipt | None:
        step = PATHWAY[command]
        payload = {"episode_id": self.episode_id, "command_id": uuid4().hex, **fields}
        if on is not None:
            payload["effective_date"] = on
        if reason is not None:
            payload["reason"] = reason
        status_before = self.model.status()
        before = self._snapshot()
        # Check the model and the application agree before the command.
        assert before[2].status is status_before

        try:
            receipt = self.app.execute(command, payload, ACTOR)
        except EpisodesError as refused:
            # Check every refused command leaves the stream unchanged.
            assert self._snapshot() == before, f"{command} was refused ({refused}) but wrote"
            if status_before not in step.allowed_in:
                # Check a command out of its status is refused as such (or as bad input).
                assert isinstance(refused, (TransitionNotAllowed, InvalidCommand)), repr(refused)
            if step.reason_required and not (reason or "").strip():
                # Check a missing reason is a schema-level refusal.
                assert isinstance(refused, InvalidCommand) and "reason" in refused.errors
            self.last_outcome = (command, status_before, False)
            return None

        clinical_date = on or TODAY  # corrections are dated today unless told otherwise
        # Check an accepted command was allowed where the episode stood, with its reason ...
        assert not receipt.duplicate
        assert status_before in step.allowed_in, f"{command} accepted while {status_before}"
        if step.reason_required:
            assert (reason or "").strip(), f"{command} accepted without a reason"
        # ... dated no later than the latest clinical date the clock allows ...
        assert clinical_date <= LATEST, f"{command} accepted for {clinical_date}"
        # ... and grew the stream by exactly one event of the right type.
        version, length, state, _ = self._snapshot()
        assert (version, length) == (before[0] + 1, before[1] + 1)
        assert receipt.version == version
        assert receipt.event == step.event
        last = list(self.app.history(self.episode_id))[-1]
        assert type(last).__name__ == step.event
        if step.reason_required:
            assert (last.envelope.reason or "").strip()

        self.model.version += 1
        if command in ("void_event", "amend_event"):
            self._correct_model(command, fields)
        else:
            self.model.facts[self.model.version] = Fact(command, clinical_date)
        # Check the new status is where the table leads (or, for corrections, where the
        # facts that still count lead), and that those facts still make a legal history.
        if step.leads_to is not None:
            assert state.status is step.leads_to
        elif command not in ("void_event", "amend_event"):
            assert state.status is status_before
        assert state.status is self.model.status()
        assert self.model.history_is_legal()

        self.accepted.append((command, payload, receipt))
        self.last_outcome = (command, status_before, True)
        return receipt

    def _correct_model(self, command: str, fields: dict[str, Any]) -> None:
        target = fields["target_version"]
        # Check only a fact that still counts can be corrected.
        assert target in self.model.facts, f"{command} of version {target} accepted"
        if command == "void_event":
            # Check the referral and the entered-in-error mark are never voided.
            assert self.model.facts[target].command not in ("refer", "mark_entered_in_error")
            del self.model.facts[target]
        elif "effective_date" in fields["changes"]:
            self.model.facts[target].on = date.fromisoformat(fields["changes"]["effective_date"])

    def _snapshot(self) -> tuple[int, int, Any, tuple[int, ...]]:
        episode = self.app.get(self.episode_id)
        length = len(list(self.app.history(self.episode_id)))
        return episode.version, length, episode.state, tuple(sorted(episode.facts))

    # ------------------------------------------------------------ the referral

    @initialize(data=st.data())
    def refer(self, data: st.DataObject) -> None:
        referred_on = date(2026, 1, 5) + timedelta(days=data.draw(st.integers(0, 100)))
        payload = {
            "command_id": uuid4().hex, "patient_ref": "Patient/1001", "source": "primary care",
            "direction": data.draw(st.sampled_from(["new", "step-up", "step-down"])),
            "requested_level": data.draw(st.sampled_from(LEVELS)), "effective_date": referred_on,
        }
        receipt = self.app.execute("refer", payload, ACTOR)
        self.episode_id = receipt.episode_id
        self.model.version = 1
        self.model.facts[1] = Fact("refer", referred_on)
        # Check the referral opens the episode as planned, at version 1.
        assert (receipt.version, receipt.event) == (1, "ReferralReceived")
        assert self.app.get(self.episode_id).state.status is EpisodeStatus.PLANNED
        self.accepted.append(("refer", payload, receipt))
        self.last_outcome = ("refer", None, True)  # type: ignore[assignment]
        # Most runs start further along the pathway, so that care itself gets exercised.
        start = data.draw(st.sampled_from(["referred", "assessed", "admitted", "admitted", "held"]))
        if start != "referred":
            intake = intake_fields("2.1")
            assert self._submit("complete_intake", intake, referred_on + timedelta(days=1), None)
        if start in ("admitted", "held"):
            admission = {"program_code": "iop-adult", "clinic": "north"}
            assert self._submit("admit", admission, referred_on + timedelta(days=3), None)
        if start == "held":
            assert self._submit("place_on_hold", {}, referred_on + timedelta(days=10), "flu")

    # ------------------------------------------------------------ referral and intake

    @rule(data=st.data())
    def complete_intake(self, data: st.DataObject) -> None:
        self._run("complete_intake", data, intake_fields(data.draw(st.sampled_from(LEVELS))))

    @rule(data=st.data(), program=st.sampled_from([None, "iop-adult"]))
    def waitlist(self, data: st.DataObject, program: str | None) -> None:
        self._run("waitlist", data, {"program_code": program} if program else {})

    @rule(data=st.data(), declined=st.booleans())
    def cancel_or_decline_referral(self, data: st.DataObject, declined: bool) -> None:
        # One rule for both ways a referral ends, so that referrals do not end too soon.
        if declined:
            self._run("decline_referral", data, {"referred_elsewhere": "PHP across town"})
        else:
            self._run("cancel_referral", data, {})

    @rule(data=st.data(), clinic=st.sampled_from(["north", "south", "east"]),
          level=st.sampled_from([None, "2.1", "2.5"]))
    def admit(self, data: st.DataObject, clinic: str, level: str | None) -> None:
        fields = {"program_code": "iop-adult", "clinic": clinic, "payer": "Medicaid"}
        self._run("admit", data, {**fields, "level_of_care": level} if level else fields)

    # ------------------------------------------------------------ sessions and measures

    @rule(data=st.data(), kind=st.sampled_from(SESSION_KINDS),
          minutes=st.sampled_from([0, 45, 90, 180]))
    def record_attendance(self, data: st.DataObject, kind: str, minutes: int) -> None:
        self._run("record_attendance", data,
                  {"kind": kind, "minutes": minutes, "format": "in-person"})

    @rule(data=st.data(), kind=st.sampled_from(SESSION_KINDS), excused=st.booleans())
    def record_absence(self, data: st.DataObject, kind: str, excused: bool) -> None:
        self._run("record_absence", data, {"kind": kind, "minutes": 180, "excused": excused})

    @rule(data=st.data(), kind=st.sampled_from(SESSION_KINDS))
    def record_program_cancellation(self, data: st.DataObject, kind: str) -> None:
        self._run("record_program_cancellation", data, {"kind": kind, "minutes": 180})

    @rule(data=st.data(), instrument=st.sampled_from(["PHQ-9", "GAD-7"]),
          score=st.integers(0, 30))
    def record_outcome(self, data: st.DataObject, instrument: str, score: int) -> None:
        self._run("record_outcome", data, {"instrument": instrument, "score": score})

    @rule(data=st.data(), unit=st.sampled_from(["days", "units", "sessions"]),
          length=st.integers(-3, 60))
    def record_authorization(self, data: st.DataObject, unit: str, length: int) -> None:
        start = self._date(data)
        self._run("record_authorization", data, {
            "payer": "Medicaid", "unit": unit, "authorized": 20,
            "start": start, "end": start + timedelta(days=length),
        })

    # ------------------------------------------------------------ in care

    @rule(data=st.data(), kind=st.sampled_from(["step-down", "step-up", "taper"]),
          to_level=st.sampled_from([None, *LEVELS]))
    def change_level_of_care(self, data: st.DataObject, kind: str, to_level: str | None) -> None:
        self._run("change_level_of_care", data,
                  {"kind": kind, "to_level": to_level} if to_level else {"kind": kind})

    @rule(data=st.data(), back_in=st.sampled_from([None, 7, 14]))
    def place_on_hold(self, data: st.DataObject, back_in: int | None) -> None:
        fields = {"expected_return": LATEST + timedelta(days=back_in)} if back_in else {}
        self._run("place_on_hold", data, fields)

    @rule(data=st.data())
    def resume(self, data: st.DataObject) -> None:
        self._run("resume", data, {})

    @rule(data=st.data(), discharge_type=st.sampled_from(["completed", "left-against-advice"]),
          follow_up_in=st.sampled_from([None, -3, 14]))
    def discharge(self, data: st.DataObject, discharge_type: str, follow_up_in: int | None) -> None:
        fields: dict[str, Any] = {"discharge_type": discharge_type, "aftercare_plan": "weekly OP"}
        if follow_up_in is not None:
            fields["follow_up_date"] = TODAY + timedelta(days=follow_up_in)
        self._run("discharge", data, fields)

    # ------------------------------------------------------------ corrections

    def _target(self, data: st.DataObject) -> int:
        """Any version (0 and beyond the last are invalid), often a fact that still counts."""
        return data.draw(st.one_of(
            st.integers(0, self.model.version + 2),
            st.sampled_from(sorted(self.model.facts)),
            st.just(max(self.model.facts)),
        ), label="target_version")

    @rule(data=st.data())
    def void_event(self, data: st.DataObject) -> None:
        self._run("void_event", data, {"target_version": self._target(data)}, dated=False)

    @rule(data=st.data())
    def amend_event(self, data: st.DataObject) -> None:
        target = self._target(data)
        changes = data.draw(st.sampled_from([
            {"minutes": 60}, {"minutes": 0}, {"score": 5}, {"kind": "individual"},
            {"discharge_type": "transferred"}, {"to_level": "2.5"}, {"payer": "Medicare"},
            {"diagnoses": [DEPRESSION]}, {"care_team": [{"id": "clin-ana", "role": "therapist"}]},
            {"reason": "typo"}, {"patient_ref": "Patient/2002"}, {"bogus": 1}, {},
        ]), label="changes")
        if data.draw(st.booleans(), label="amend the date"):
            changes = {"effective_date": self._date(data).isoformat()}
        self._run("amend_event", data, {"target_version": target, "changes": changes}, dated=False)

    @rule(data=st.data(), die=st.integers(1, 4))
    def mark_entered_in_error(self, data: st.DataObject, die: int) -> None:
        # Three times in four this is an attempt on an episode already entered in error (or
        # never one at all); otherwise it would end most runs early.
        if die == 1 or self.model.status() is EpisodeStatus.ENTERED_IN_ERROR:
            self._run("mark_entered_in_error", data, {}, dated=False)

    # ------------------------------------------------------------ idempotence

    @precondition(lambda self: self.accepted)
    @rule(data=st.data())
    def resubmit_the_last_accepted_command(self, data: st.DataObject) -> None:
        # Mostly the last one; now and then an older one.
        index = data.draw(st.sampled_from([-1, -1, -1, 0, len(self.accepted) // 2]))
        command, payload, original = self.accepted[index]
        before = self._snapshot()
        receipt = self.app.execute(command, payload, ACTOR)
        # Check the same command id is recorded once: a duplicate receipt, nothing written.
        assert receipt.duplicate
        assert (receipt.version, receipt.event) == (original.version, original.event)
        assert self._snapshot() == before

    # ------------------------------------------------------------ invariants

    @invariant()
    def version_counts_the_stored_events(self) -> None:
        if self.episode_id is None:
            return
        episode = self.app.get(self.episode_id)
        assert episode.version == len(list(self.app.history(self.episode_id))) == self.model.version

    @invariant()
    def status_is_a_fhir_code(self) -> None:
        if self.episode_id is None:
            return
        status = self.app.get(self.episode_id).state.status
        assert isinstance(status, EpisodeStatus) and status.value in FHIR_STATUS_CODES
        assert status is self.model.status()

    @invariant()
    def the_state_dates_are_those_of_the_facts(self) -> None:
        if self.episode_id is None:
            return
        episode = self.app.get(self.episode_id)
        state = episode.state
        # Check the status began on the date of the last status change that counts, and the
        # admission and discharge dates are those of the facts that count.
        assert state.status_since == self.model.status_since()
        assert state.admitted_on == self.model.date_of("admit")
        assert state.discharged_on == self.model.date_of("discharge")
        # Check no fact that counts is dated after the latest date the clock allows.
        assert all(fact.effective_date <= LATEST for fact in episode.facts.values())

    @invariant()
    def sessions_that_count_fall_on_active_days(self) -> None:
        if self.episode_id is None:
            return
        episode = self.app.get(self.episode_id)
        for version, fact in episode.facts.items():
            if type(fact).__name__ in ("SessionAttended", "SessionMissed", "SessionCancelledByProgram"):
                # Check by the state's reckoning and by the model's (admission, discharge
                # and holds taken from the facts that count).
                day = fact.effective_date
                assert episode.state.active_on(day) and self.model.active_on(day), (
                    f"{type(fact).__name__} at version {version} on {day} counts, "
                    f"but the episode was not active that day: {episode.state}"
                )

    @invariant()
    def terminal_statuses_stay_terminal(self) -> None:
        if self.last_outcome is None:
            return
        command, status_before, accepted = self.last_outcome
        if not accepted or status_before not in TERMINAL:
            return
        # Check nothing at all is accepted once entered-in-error ...
        assert status_before is not EpisodeStatus.ENTERED_IN_ERROR, f"{command} accepted"
        # ... and from finished or cancelled only corrections and the entered-in-error mark.
        leads_to = PATHWAY[command].leads_to
        assert leads_to is None or command == "mark_entered_in_error", (
            f"{command} accepted while {status_before.value}"
        )

    @invariant()
    def a_fresh_application_reloads_an_equal_episode(self) -> None:
        saved = self.saved.get("episode")
        if saved is None:
            return
        reloaded = self.reader.get(self.episode_id)
        # Check the stored stream gives back the state and facts the command left in memory.
        assert reloaded.version == saved.version
        assert reloaded.state == saved.state
        assert reloaded.facts == saved.facts
        assert reloaded.command_ids == saved.command_ids


TestPathwayStateful = PathwayMachine.TestCase
TestPathwayStateful.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
