"""The event catalogue of an episode of care.

Each event is a fact in the past tense.  Besides its own fields every event carries
``effective_date`` (the clinical date) and an ``envelope`` (actor, role, reason, command
and correlation ids); its ``timestamp`` is the recorded time (UTC).

Each event knows two things about the pathway:

* ``check(state)`` - the rules specific to it, beyond those every event shares
  (status allowed, reason present, date not in the future: see :mod:`episodes.rules`);
* ``evolve(state)`` - the state after it, as a new frozen value.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate

from episodes.errors import ClinicalDateError, IntakeRequired, LevelOfCareError, RuleViolation
from episodes.pathway import STEP_BY_EVENT, Step
from episodes.state import EpisodeState, Hold
from episodes.values import CareTeamMember, Diagnosis, Envelope
from episodes.vocabulary import (
    AuthorizationUnit,
    DischargeType,
    EpisodeStatus,
    Instrument,
    LevelChangeKind,
    LevelOfCare,
    ReferralDirection,
    ServiceFormat,
    SessionKind,
)

if TYPE_CHECKING:
    from episodes.episode import Episode


def _not_before(day: date, earliest: date | None, what: str, earlier: str) -> None:
    if earliest is not None and day < earliest:
        raise ClinicalDateError(f"{what} ({day}) cannot be before {earlier} ({earliest})")


class EpisodeEvent(Aggregate.Event):
    effective_date: date
    envelope: Envelope

    @classmethod
    def step(cls) -> Step:
        return STEP_BY_EVENT[cls.__name__]

    @property
    def recorded_at(self) -> Any:
        return self.timestamp

    def apply(self, episode: Episode) -> None:
        episode.facts[self.originator_version] = self
        episode.state = self.evolve(episode.state)
        episode.command_ids[self.envelope.command_id] = self.originator_version

    def check(self, state: EpisodeState) -> None:
        """Rules specific to this event (the shared ones live in episodes.rules)."""

    def evolve(self, state: EpisodeState) -> EpisodeState:
        leads_to = self.step().leads_to
        if leads_to is None or leads_to is state.status:
            return state
        return state.with_status(leads_to, self.effective_date)


class ReferralReceived(EpisodeEvent, Aggregate.Created):
    """Opens the episode.  ``patient_ref`` is stored in the payload, never in the stream id."""

    patient_ref: str
    source: str
    direction: ReferralDirection
    requested_level: LevelOfCare
    referring_provider: str | None = None

    def apply(self, episode: Episode) -> None:
        episode.facts = {}
        episode.command_ids = {}
        episode.state = None  # type: ignore[assignment]
        super().apply(episode)

    def evolve(self, state: EpisodeState | None) -> EpisodeState:  # type: ignore[override]
        return EpisodeState(
            patient_ref=self.patient_ref,
            status=EpisodeStatus.PLANNED,
            status_since=self.effective_date,
            referred_on=self.effective_date,
            requested_level=self.requested_level,
        )


class IntakeCompleted(EpisodeEvent):
    clinician: str
    diagnoses: tuple[Diagnosis, ...]
    asam_ratings: dict[str, int]  # dimension "1".."6" -> risk rating 0..4
    recommended_level: LevelOfCare
    phq9: int | None = None
    gad7: int | None = None

    def check(self, state: EpisodeState) -> None:
        if state.intake_on is not None:
            raise RuleViolation(
                f"the intake was already completed on {state.intake_on}; "
                "amend that event to correct it"
            )
        _not_before(self.effective_date, state.referred_on, "the intake", "the referral")

    def evolve(self, state: EpisodeState) -> EpisodeState:
        return replace(state, intake_on=self.effective_date, recommended_level=self.recommended_level)


class Waitlisted(EpisodeEvent):
    program_code: str | None = None  # the program the patient waits for, when known

    def evolve(self, state: EpisodeState) -> EpisodeState:
        waiting = super().evolve(state)
        return replace(waiting, program_code=self.program_code) if self.program_code else waiting


class ReferralCancelled(EpisodeEvent):
    pass


class ReferralDeclined(EpisodeEvent):
    referred_elsewhere: str | None = None


class Admitted(EpisodeEvent):
    program_code: str
    clinic: str
    level_of_care: LevelOfCare
    format: ServiceFormat
    planned_days_per_week: int
    care_team: tuple[CareTeamMember, ...] = ()
    payer: str | None = None

    def check(self, state: EpisodeState) -> None:
        if state.intake_on is None:
            raise IntakeRequired(
                "cannot admit: no intake assessment has been recorded; complete the intake first"
            )
        _not_before(self.effective_date, state.intake_on, "the admission", "the intake")

    def evolve(self, state: EpisodeState) -> EpisodeState:
        return replace(
            super().evolve(state),
            admitted_on=self.effective_date,
            program_code=self.program_code,
            clinic=self.clinic,
            level_of_care=self.level_of_care,
            level_since=self.effective_date,
        )


class _SessionEvent(EpisodeEvent):
    kind: SessionKind
    minutes: int

    def check(self, state: EpisodeState) -> None:
        if not state.active_on(self.effective_date):
            raise ClinicalDateError(_why_not_active(state, self.effective_date))

    def evolve(self, state: EpisodeState) -> EpisodeState:
        return state.with_session_on(self.effective_date)


def _why_not_active(state: EpisodeState, day: date) -> str:
    if state.admitted_on is None:
        return f"no session can be recorded on {day}: the patient has not been admitted"
    if day < state.admitted_on:
        return f"no session can be recorded on {day}: before the admission ({state.admitted_on})"
    if state.discharged_on is not None and day > state.discharged_on:
        return f"no session can be recorded on {day}: after the discharge ({state.discharged_on})"
    hold = next(h for h in state.holds if h.excludes(day))
    until = hold.end or "now"
    return f"no session can be recorded on {day}: the episode was on hold ({hold.start} to {until})"


class SessionAttended(_SessionEvent):
    format: ServiceFormat
    topic: str | None = None  # e.g. "DBT distress tolerance", "relapse prevention"
    facilitator: str | None = None


class SessionMissed(_SessionEvent):
    excused: bool = False


class SessionCancelledByProgram(_SessionEvent):
    pass


class OutcomeMeasured(EpisodeEvent):
    instrument: Instrument
    score: int

    def check(self, state: EpisodeState) -> None:
        _not_before(self.effective_date, state.referred_on, "the measurement", "the referral")
        if not 0 <= self.score <= self.instrument.max_score:
            raise RuleViolation(
                f"a {self.instrument.value} score must be 0-{self.instrument.max_score}, "
                f"got {self.score}"
            )


class AuthorizationRecorded(EpisodeEvent):
    payer: str
    unit: AuthorizationUnit
    authorized: int
    start: date
    end: date
    next_review: date | None = None
    reference: str | None = None

    def check(self, state: EpisodeState) -> None:
        if self.end < self.start:
            raise ClinicalDateError(
                f"the authorization ends ({self.end}) before it starts ({self.start})"
            )


class LevelOfCareChanged(EpisodeEvent):
    kind: LevelChangeKind
    from_level: LevelOfCare
    to_level: LevelOfCare

    def check(self, state: EpisodeState) -> None:
        _not_before(self.effective_date, state.level_since, "the level change", "the current level")
        if self.from_level != state.level_of_care:
            raise LevelOfCareError(
                f"the episode is at level {state.level_of_care}, not {self.from_level}"
            )
        up = self.to_level.intensity > self.from_level.intensity
        down = self.to_level.intensity < self.from_level.intensity
        wrong = {
            LevelChangeKind.STEP_DOWN: not down,
            LevelChangeKind.STEP_UP: not up,
            LevelChangeKind.TAPER: up or down,
        }[self.kind]
        if wrong:
            raise LevelOfCareError(
                f"a {self.kind.value} cannot go from {self.from_level} to {self.to_level}: "
                "a step-down lowers the level, a step-up raises it, a taper keeps it"
            )

    def evolve(self, state: EpisodeState) -> EpisodeState:
        return replace(
            state,
            level_of_care=self.to_level,
            level_since=self.effective_date,
            tapering=self.kind is LevelChangeKind.TAPER,
        )


class PlacedOnHold(EpisodeEvent):
    expected_return: date | None = None

    def check(self, state: EpisodeState) -> None:
        _not_before(self.effective_date, state.last_session_on, "the hold", "the last recorded session")
        if self.expected_return is not None:
            _not_before(self.expected_return, self.effective_date, "the expected return", "the hold")

    def evolve(self, state: EpisodeState) -> EpisodeState:
        held = super().evolve(state)
        return replace(held, holds=(*state.holds, Hold(self.effective_date)))


class Resumed(EpisodeEvent):
    def evolve(self, state: EpisodeState) -> EpisodeState:
        resumed = super().evolve(state)
        *earlier, current = state.holds
        return replace(resumed, holds=(*earlier, replace(current, end=self.effective_date)))


class Discharged(EpisodeEvent):
    discharge_type: DischargeType
    aftercare_plan: str | None = None
    follow_up_date: date | None = None
    referred_to: str | None = None

    def check(self, state: EpisodeState) -> None:
        _not_before(
            self.effective_date, state.last_session_on, "the discharge", "the last recorded session"
        )
        if self.follow_up_date is not None:
            _not_before(self.follow_up_date, self.effective_date, "the follow-up", "the discharge")

    def evolve(self, state: EpisodeState) -> EpisodeState:
        finished = super().evolve(state)
        holds = state.holds
        if holds and holds[-1].end is None:  # discharged while on hold: the hold ends here
            holds = (*holds[:-1], replace(holds[-1], end=self.effective_date))
        return replace(
            finished,
            discharged_on=self.effective_date,
            discharge_type=self.discharge_type,
            holds=holds,
        )


class MarkedEnteredInError(EpisodeEvent):
    pass


class _CorrectionEvent(EpisodeEvent):
    """Corrections change which facts count; the state is recomputed from the facts."""

    target_version: int

    def apply(self, episode: Episode) -> None:
        from episodes.rules import replay

        episode.facts = self.corrected(episode.facts)
        episode.state = replay(episode.facts.values())
        episode.command_ids[self.envelope.command_id] = self.originator_version

    def corrected(self, facts: dict[int, EpisodeEvent]) -> dict[int, EpisodeEvent]:
        raise NotImplementedError


class EventVoided(_CorrectionEvent):
    def corrected(self, facts: dict[int, EpisodeEvent]) -> dict[int, EpisodeEvent]:
        return {v: e for v, e in facts.items() if v != self.target_version}


class EventAmended(_CorrectionEvent):
    changes: dict[str, Any]

    def corrected(self, facts: dict[int, EpisodeEvent]) -> dict[int, EpisodeEvent]:
        amended = dict(facts)
        # JSON has no tuples: sequences in stored changes come back as lists.
        changes = {k: tuple(v) if isinstance(v, list) else v for k, v in self.changes.items()}
        amended[self.target_version] = replace(facts[self.target_version], **changes)
        return amended


FACT_EVENTS: tuple[type[EpisodeEvent], ...] = (
    ReferralReceived, IntakeCompleted, Waitlisted, ReferralCancelled, ReferralDeclined, Admitted,
    SessionAttended, SessionMissed, SessionCancelledByProgram, OutcomeMeasured,
    AuthorizationRecorded, LevelOfCareChanged, PlacedOnHold, Resumed, Discharged,
    MarkedEnteredInError,
)
CORRECTION_EVENTS: tuple[type[EpisodeEvent], ...] = (EventVoided, EventAmended)
ALL_EVENTS = FACT_EVENTS + CORRECTION_EVENTS
EVENT_CLASSES: dict[str, type[EpisodeEvent]] = {cls.__name__: cls for cls in ALL_EVENTS}
