"""Pure functions from an episode (its state and the facts that count) to read-model rows.

They reuse the write side's own fold, so a correction is reflected exactly as the
domain understands it; nothing here re-implements a pathway rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from episodes.episode import Episode
from episodes.events import (
    CORRECTION_EVENTS,
    AuthorizationRecorded,
    EpisodeEvent,
    IntakeCompleted,
    OutcomeMeasured,
    ReferralReceived,
    SessionAttended,
    SessionCancelledByProgram,
    SessionMissed,
)
from episodes.program import Program
from episodes.vocabulary import Instrument

SESSION_EVENTS = (SessionAttended, SessionMissed, SessionCancelledByProgram)


@dataclass(frozen=True)
class Tally:
    """The figures of an episode's row that count its sessions and authorizations.

    Counted in clinical order (a late entry lands where it happened: consecutive misses are
    the misses since the last attended session by date).  :meth:`then` adds one more fact
    without a recount when it lands after everything counted, as new sessions almost always
    do, so recording a session costs the same in a long episode as in a short one.
    """

    attended: int = 0
    missed: int = 0  # unexcused and excused together
    excused: int = 0
    cancelled_by_program: int = 0
    consecutive_misses: int = 0
    attended_minutes: int = 0
    last_attended_on: date | None = None
    last_session: tuple[date, int] | None = None  # (date, version) of the session counted last
    authorization: AuthorizationRecorded | None = None  # the one ending last

    @classmethod
    def of(cls, facts: Iterable[EpisodeEvent]) -> Tally:
        """The tally of all an episode's facts (in any order)."""
        facts = list(facts)
        # Counted into one new tally's fields before anyone sees it, instead of a new tally a
        # session as ``then`` makes: a rebuild recounts every episode once (the 1,000 demo
        # episodes: 37 ms that way, 22 this way; docs/performance.md).
        tally = cls()
        counts = tally.__dict__
        for fact in sorted((f for f in facts if isinstance(f, SESSION_EVENTS)),
                           key=lambda f: (f.effective_date, f.originator_version)):
            _count_session(counts, fact)
        for fact in facts:
            if isinstance(fact, AuthorizationRecorded):
                _count_authorization(counts, fact)
        return tally

    def then(self, fact: EpisodeEvent) -> Tally | None:
        """The tally with one more fact (the newest version); None when it would need a
        recount (a session dated before one already counted)."""
        if isinstance(fact, SESSION_EVENTS):
            if self.last_session is not None and (fact.effective_date, fact.originator_version) < self.last_session:
                return None
            count = _count_session
        elif isinstance(fact, AuthorizationRecorded):
            count = _count_authorization
        else:
            return self
        # A copy, counted into before it is returned (the tally is a value: this one is kept).
        # Not dataclasses.replace, which re-runs __init__ with every field (~7 us).
        changed = object.__new__(Tally)
        changed.__dict__.update(self.__dict__)
        count(changed.__dict__, fact)
        return changed


# The counting rules, each applied to the fields of a tally not yet handed out (Tally.of,
# Tally.then): one place for each rule.
def _count_session(counts: dict[str, Any], fact: EpisodeEvent) -> None:
    counts["last_session"] = (fact.effective_date, fact.originator_version)
    if isinstance(fact, SessionAttended):
        counts["attended"] += 1
        counts["attended_minutes"] += fact.minutes
        counts["consecutive_misses"] = 0
        last = counts["last_attended_on"]
        counts["last_attended_on"] = fact.effective_date if last is None else max(last, fact.effective_date)
    elif isinstance(fact, SessionMissed):
        counts["missed"] += 1
        counts["excused"] += int(fact.excused)
        counts["consecutive_misses"] += 0 if fact.excused else 1
    else:
        counts["cancelled_by_program"] += 1


def _count_authorization(counts: dict[str, Any], fact: AuthorizationRecorded) -> None:
    latest = counts["authorization"]
    if latest is None or (fact.end, fact.originator_version) > (latest.end, latest.originator_version):
        counts["authorization"] = fact


def episode_row(episode: Episode, recorded_at: datetime, tally: Tally | None = None) -> dict[str, Any]:
    """The episode's row in ``rm_episodes``; ``tally``: its sessions and authorizations
    counted already (else counted here from all its facts)."""
    state = episode.state
    referral = episode.facts[min(episode.facts)]
    assert isinstance(referral, ReferralReceived)
    if tally is None:
        tally = Tally.of(episode.facts.values())
    latest_authorization = tally.authorization
    level = state.level_of_care
    return {
        "episode_id": episode.id,
        "patient_ref": state.patient_ref,
        "status": state.status.value,
        "status_since": state.status_since,
        "referred_on": state.referred_on,
        "referral_direction": referral.direction.value,
        "program_code": state.program_code,
        "clinic": state.clinic,
        "level_code": level.code if level else None,
        "level_edition": level.edition.value if level else None,
        "tapering": state.tapering,
        "admitted_on": state.admitted_on,
        "discharged_on": state.discharged_on,
        "discharge_type": state.discharge_type.value if state.discharge_type else None,
        "last_attended_on": tally.last_attended_on,
        "attended": tally.attended,
        "missed": tally.missed,
        "excused": tally.excused,
        "cancelled_by_program": tally.cancelled_by_program,
        "consecutive_misses": tally.consecutive_misses,
        "attended_minutes": tally.attended_minutes,
        "next_review_on": latest_authorization.next_review if latest_authorization else None,
        "authorized_until": latest_authorization.end if latest_authorization else None,
        "version": episode.version,
        "recorded_at": recorded_at,
    }


def fact_rows(episode_id: UUID, facts: Iterable[EpisodeEvent]) -> dict[str, list[dict[str, Any]]]:
    """Rows of the per-fact tables (sessions, outcomes, authorizations) for the given facts."""
    rows: dict[str, list[dict[str, Any]]] = {"sessions": [], "outcomes": [], "authorizations": []}
    for fact in facts:
        if isinstance(fact, SESSION_EVENTS):
            rows["sessions"].append(_session_row(episode_id, fact))
        elif isinstance(fact, OutcomeMeasured):
            rows["outcomes"].append(_outcome(episode_id, fact, fact.instrument, fact.score))
        elif isinstance(fact, IntakeCompleted):
            # The intake's baseline scores are outcome measurements too.
            for instrument, score in ((Instrument.PHQ9, fact.phq9), (Instrument.GAD7, fact.gad7)):
                if score is not None:
                    rows["outcomes"].append(_outcome(episode_id, fact, instrument, score))
        elif isinstance(fact, AuthorizationRecorded):
            rows["authorizations"].append({
                "episode_id": episode_id, "version": fact.originator_version, "payer": fact.payer,
                "unit": fact.unit.value, "authorized": fact.authorized, "start_on": fact.start,
                "end_on": fact.end, "next_review_on": fact.next_review, "reference": fact.reference,
            })
    return rows


def _session_row(episode_id: UUID, fact: EpisodeEvent) -> dict[str, Any]:
    day = fact.effective_date
    iso_year, iso_week, _ = day.isocalendar()
    if isinstance(fact, SessionAttended):
        outcome, service_format = "attended", fact.format._value_  # (.value without its descriptor call)
    elif isinstance(fact, SessionMissed):
        outcome, service_format = "excused" if fact.excused else "missed", None
    else:
        outcome, service_format = "cancelled", None
    return {
        "episode_id": episode_id, "version": fact.originator_version,
        "session_date": day, "iso_year": iso_year, "iso_week": iso_week,
        "kind": fact.kind._value_, "outcome": outcome, "minutes": fact.minutes,  # type: ignore[attr-defined]
        "format": service_format,
        "topic": getattr(fact, "topic", None), "facilitator": getattr(fact, "facilitator", None),
    }


def _outcome(episode_id: UUID, fact: EpisodeEvent, instrument: Instrument, score: int) -> dict[str, Any]:
    return {
        "episode_id": episode_id, "version": fact.originator_version,
        "instrument": instrument.value, "measured_on": fact.effective_date, "score": score,
    }


def periods(episode: Episode) -> list[tuple[Any, ...]]:
    """Status and level periods over clinical time: (status, level, tapering, program, clinic,
    valid_from, valid_to).  A period ends (exclusive) on the date the next one begins."""
    result: list[list[Any]] = []
    state = None
    for version in sorted(episode.facts):
        fact = episode.facts[version]
        state = fact.evolve(state)  # the domain's own fold, one fact at a time
        key = (
            state.status.value, state.level_of_care.code if state.level_of_care else None,
            state.tapering, state.program_code, state.clinic,
        )
        if result and tuple(result[-1][:5]) == key:
            continue
        if result:
            result[-1][6] = fact.effective_date
        result.append([*key, fact.effective_date, None])
    return [tuple(p) for p in result]


def may_change_periods(event: EpisodeEvent) -> bool:
    """Only changes of status or level of care (or a correction) can change the periods.

    The projector writes periods at these events alone, and a rebuild's timeline follows them
    alone (``projections.streams``): an event this leaves out must leave the periods as they
    were (``tests/test_rebuild.py`` checks the timeline after every event)."""
    return (
        event.step().leads_to is not None
        or type(event).__name__ in ("Admitted", "LevelOfCareChanged")
        or is_correction(event)
    )


def is_correction(event: object) -> bool:
    return isinstance(event, CORRECTION_EVENTS)


def program_row(program: Program) -> dict[str, Any]:
    d = program.definition
    return {
        "code": d.code, "name": d.name, "target_weeks": d.target_weeks,
        "days_per_week": d.days_per_week, "minimum_weekly_hours": d.minimum_weekly_hours,
        "age_band": d.age_band.value, "level_code": d.level_of_care.code,
        "level_edition": d.level_of_care.edition.value, "format": d.format.value,
        "clinics": ",".join(d.clinics),
    }


# What kind of health information each event touches (ASTM E2147 "data category").
DATA_CATEGORIES = {
    "ReferralReceived": "referral",
    "IntakeCompleted": "assessment",
    "Waitlisted": "episode-status",
    "ReferralCancelled": "episode-status",
    "ReferralDeclined": "episode-status",
    "Admitted": "enrollment",
    "SessionAttended": "encounter",
    "SessionMissed": "encounter",
    "SessionCancelledByProgram": "encounter",
    "OutcomeMeasured": "observation",
    "AuthorizationRecorded": "coverage",
    "LevelOfCareChanged": "level-of-care",
    "PlacedOnHold": "episode-status",
    "Resumed": "episode-status",
    "Discharged": "discharge",
    "MarkedEnteredInError": "episode-status",
    "Defined": "program",
    "Revised": "program",
}
ACTIONS = {
    "ReferralReceived": "create",
    "EventAmended": "correct",
    "EventVoided": "void",
    "MarkedEnteredInError": "void",
    "Defined": "create",
    "Revised": "update",
}


def audit_row(position: int, event: Any, patient_ref: str | None, target_type: str | None) -> dict[str, Any]:
    """One audit row: who did what, when, to which record, why.

    ``target_type`` is the event type a correction targets (its data category is the target's).
    """
    cls = type(event)
    try:
        event_type, action, aggregate, category = _CLASS_COLUMNS[cls]
    except KeyError:
        event_type, action, aggregate, category = _CLASS_COLUMNS.setdefault(cls, _class_columns(cls))
    if target_type:
        category = DATA_CATEGORIES.get(target_type, "episode-status")
    envelope = event.envelope
    version = event.originator_version
    return {
        "position": position,
        "recorded_at": event.timestamp,
        "effective_date": getattr(event, "effective_date", None),
        "actor_id": envelope.actor_id,
        "actor_role": envelope.actor_role._value_,
        "action": action,
        "event_type": event_type,
        "aggregate": aggregate,
        "aggregate_id": event.originator_id,
        "version": version,
        "patient_ref": patient_ref,
        "data_category": category,
        "reason": envelope.reason,
        "correlation_id": envelope.correlation_id,
        "command_id": envelope.command_id,
        "prior_version": getattr(event, "target_version", None) or (version - 1 or None),
    }


# The audit columns an event's class decides (a rebuild writes one row per event: looked up
# once a class): event type, action, aggregate, data category.
_CLASS_COLUMNS: dict[type, tuple[str, str, str, str]] = {}


def _class_columns(cls: type) -> tuple[str, str, str, str]:
    event_type = cls.__name__
    is_program = issubclass(cls, (Program.Defined, Program.Revised))
    return (event_type,
            ACTIONS.get(event_type, "create"),  # every new fact creates information
            "program" if is_program else "episode",
            DATA_CATEGORIES.get(event_type, "episode-status"))


class PeriodTimeline:
    """``periods(episode)`` kept up to date one event at a time, for a whole-stream replay.

    ``periods`` folds every fact again; here the episode's own state after a new fact is that
    fold (the facts are kept in version order and a new fact has the highest version), so a
    fact adds at most one period.  A correction can change any earlier fact: it derives them
    all again with ``periods`` itself.
    """

    def __init__(self) -> None:
        self._periods: list[list[Any]] = []

    def follow(self, event: EpisodeEvent, episode: Episode) -> None:
        """Take in ``event``, just applied to ``episode``."""
        if is_correction(event):
            self._periods = [list(p) for p in periods(episode)]
            return
        state = episode.state
        status = state.status._value_  # .value, without the enum's descriptor call
        level = state.level_of_care
        result = self._periods
        if result:
            last = result[-1]
            if (last[0] == status and last[1] == (level.code if level else None)
                    and last[2] == state.tapering and last[3] == state.program_code
                    and last[4] == state.clinic):
                return  # the same period goes on
            last[6] = event.effective_date
        result.append([status, level.code if level else None, state.tapering,
                       state.program_code, state.clinic, event.effective_date, None])

    def current(self) -> list[tuple[Any, ...]]:
        return [tuple(p) for p in self._periods]


class RecordedPeriods:
    """The ``rm_periods`` rows of one episode, versioned over recorded time exactly as the
    projector writes them event by event (``Projector._write_periods``): at each event that may
    change the periods, the open rows the periods no longer hold are closed (``recorded_to``)
    and the periods not yet open are added (``recorded_from``), both stamped with the event's
    recorded time."""

    def __init__(self, episode_id: UUID) -> None:
        self.episode_id = episode_id
        self.rows: list[dict[str, Any]] = []
        self._open: list[tuple[tuple[Any, ...], dict[str, Any]]] = []  # in the order written

    def record(self, wanted: list[tuple[Any, ...]], recorded_at: datetime) -> None:
        # As the projector's dict of the open rows: of two equal open rows the later one is held.
        held = {key: row for key, row in self._open}
        stale = {id(row) for key, row in held.items() if key not in wanted}
        for _key, row in self._open:
            if id(row) in stale:
                row["recorded_to"] = recorded_at
        self._open = [(key, row) for key, row in self._open if id(row) not in stale]
        for key in wanted:
            if key in held:
                continue
            row = dict(zip(PERIOD_FIELDS, key), episode_id=self.episode_id, recorded_from=recorded_at,
                       recorded_to=None)
            self.rows.append(row)
            self._open.append((key, row))


PERIOD_FIELDS = ("status", "level_code", "tapering", "program_code", "clinic", "valid_from", "valid_to")
