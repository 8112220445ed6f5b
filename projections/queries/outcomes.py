"""Outcomes: how episodes ended (discharge mix, completion, 30-day readmission) and how
patients changed on the standard scales (PHQ-9, GAD-7).

Conventions (docs/projections.md (Outcomes) has the sources):

* a discharge counts in a period by its clinical discharge date, both ends included; only
  episodes that are ``finished`` count (an episode marked entered-in-error does not);
* "transferred" for the positive-outcome figure means ``transferred`` or ``stepped-down``
  (SAMHSA TEDS counts a planned move to another level of care as a transfer);
* a readmission is another episode of the same patient admitted 1..30 days after the
  discharge date; discharges of type ``stepped-down`` are neither index discharges nor in
  the denominator (planned step-downs are excluded);
* a score's baseline is the earliest measurement (the intake's included), its latest the most
  recent; same-day measurements are ordered by the order they were recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, and_, bindparam, case, func, select

from episodes.vocabulary import DischargeType, Instrument
from projections import tables
from projections.queries.common import episode_row
from projections.queries.sqldates import days_after

COMPLETED = (DischargeType.COMPLETED.value,)
# SAMHSA TEDS "transferred to another program or facility": a planned step-down is one.
TRANSFERRED = (DischargeType.TRANSFERRED.value, DischargeType.STEPPED_DOWN.value)
PLANNED_STEP_DOWN = DischargeType.STEPPED_DOWN.value
READMISSION_WINDOW_DAYS = 30
RESPONSE_DROP_PERCENT = 50  # PHQ-9 (and, by the same rule, GAD-7): a 50%+ drop from baseline
REMISSION_BELOW = {Instrument.PHQ9: 5, Instrument.GAD7: 5}
FINISHED = "finished"
ENTERED_IN_ERROR = "entered-in-error"


def percent(part: int, whole: int) -> float | None:
    return round(part / whole * 100, 1) if whole else None




# ---------------------------------------------------------------- discharge mix


@dataclass(frozen=True)
class DischargeCount:
    discharge_type: str
    count: int
    percent: float | None  # share of all discharges in the period


@dataclass(frozen=True)
class DischargeMix:
    start: date
    end: date
    program_code: str | None  # None: every program
    discharges: int
    by_type: tuple[DischargeCount, ...]  # every discharge type, in vocabulary order, zeros too
    completed: int
    transferred: int  # transferred + stepped-down
    completion_percent: float | None  # completed / discharges * 100
    positive_outcome_percent: float | None  # (completed + transferred) / discharges * 100


def _discharged_between(e: Any, start: date, end: date, program_code: str | None) -> list[Any]:
    """Finished episodes (``e``: rm_episodes or an alias) discharged ``start``..``end``."""
    where = [e.c.status == FINISHED, e.c.discharged_on >= start, e.c.discharged_on <= end]
    if program_code is not None:
        where.append(e.c.program_code == program_code)
    return where


def discharge_mix(
    connection: Connection, start: date, end: date, program_code: str | None = None
) -> DischargeMix:
    e = tables.episodes
    counts = dict(connection.execute(
        select(e.c.discharge_type, func.count())
        .where(*_discharged_between(e, start, end, program_code))
        .group_by(e.c.discharge_type)
    ).all())
    total = sum(counts.values())
    completed = sum(counts.get(t, 0) for t in COMPLETED)
    transferred = sum(counts.get(t, 0) for t in TRANSFERRED)
    return DischargeMix(
        start=start, end=end, program_code=program_code, discharges=total,
        by_type=tuple(
            DischargeCount(t.value, counts.get(t.value, 0), percent(counts.get(t.value, 0), total))
            for t in DischargeType
        ),
        completed=completed, transferred=transferred,
        completion_percent=percent(completed, total),
        positive_outcome_percent=percent(completed + transferred, total),
    )


# ---------------------------------------------------------------- 30-day readmission


@dataclass(frozen=True)
class Readmission:
    episode_id: UUID  # the index episode (the discharge)
    patient_ref: str
    discharged_on: date
    discharge_type: str
    readmission_episode_id: UUID  # the first new admission in the window
    readmitted_on: date
    days_after: int  # 1..30


@dataclass(frozen=True)
class ReadmissionRate:
    start: date
    end: date
    program_code: str | None
    window_days: int
    eligible: int  # discharges in the period, planned step-downs excluded
    excluded_step_downs: int
    readmitted: int
    percent: float | None  # readmitted / eligible * 100
    final_on: date  # end + window: before this date a later admission may still count
    readmissions: tuple[Readmission, ...]


def readmission_rate(
    connection: Connection, start: date, end: date, program_code: str | None = None,
    window_days: int = READMISSION_WINDOW_DAYS,
) -> ReadmissionRate:
    e = tables.episodes
    discharged = _discharged_between(e, start, end, program_code)
    is_step_down = e.c.discharge_type == PLANNED_STEP_DOWN
    eligible, step_downs = connection.execute(
        select(func.count(), func.coalesce(func.sum(case((is_step_down, 1), else_=0)), 0))
        .where(*discharged)
    ).one()
    index, new = e.alias("index_episode"), e.alias("new_episode")
    rows = connection.execute(
        select(index.c.episode_id, index.c.patient_ref, index.c.discharged_on, index.c.discharge_type,
               new.c.episode_id, new.c.admitted_on)
        .select_from(index.join(new, and_(
            new.c.patient_ref == index.c.patient_ref,
            new.c.episode_id != index.c.episode_id,
            new.c.status != ENTERED_IN_ERROR,
            new.c.admitted_on > index.c.discharged_on,  # day 1 is the day after the discharge
            new.c.admitted_on <= days_after(index.c.discharged_on, window_days),
        )))
        .where(*_discharged_between(index, start, end, program_code),
               index.c.discharge_type != PLANNED_STEP_DOWN)
        .order_by(index.c.discharged_on, index.c.episode_id, new.c.admitted_on)
    ).all()
    first: dict[UUID, Readmission] = {}
    for episode_id, patient_ref, discharged_on, discharge_type, new_id, admitted_on in rows:
        first.setdefault(episode_id, Readmission(
            episode_id=episode_id, patient_ref=patient_ref, discharged_on=discharged_on,
            discharge_type=discharge_type, readmission_episode_id=new_id, readmitted_on=admitted_on,
            days_after=(admitted_on - discharged_on).days,
        ))
    eligible = int(eligible) - int(step_downs)
    return ReadmissionRate(
        start=start, end=end, program_code=program_code, window_days=window_days,
        eligible=eligible, excluded_step_downs=int(step_downs), readmitted=len(first),
        percent=percent(len(first), eligible), final_on=end + timedelta(days=window_days),
        readmissions=tuple(first.values()),
    )


# ---------------------------------------------------------------- PHQ-9 / GAD-7


@dataclass(frozen=True)
class ScoreChange:
    instrument: str  # "PHQ-9" | "GAD-7"
    measurements: int
    baseline_on: date
    baseline: int
    latest_on: date
    latest: int
    change: int | None  # latest - baseline (negative is better); None with one measurement
    response: bool | None  # a 50%+ drop from a baseline above 0; None with one measurement
    remission: bool | None  # latest below 5; None with one measurement


@dataclass(frozen=True)
class EpisodeScores:
    episode_id: UUID
    phq9: ScoreChange | None  # None: never measured
    gad7: ScoreChange | None


@dataclass(frozen=True)
class OutcomeSummary:
    program_code: str | None
    instrument: str
    episodes_measured: int  # at least one measurement
    with_follow_up: int  # at least two measurements: the figures below are over these
    mean_change: float | None
    response_percent: float | None
    remission_percent: float | None


def _score_changes(*where: Any) -> Any:
    """One row per (episode, instrument): the episode's program, n, baseline, latest, change
    and the two flags (1 or 0).  Window functions rank each series once, in SQL."""
    o, e = tables.outcomes, tables.episodes
    partition = (o.c.episode_id, o.c.instrument)
    ranked = (
        select(
            o.c.episode_id, o.c.instrument, e.c.program_code, o.c.measured_on, o.c.score,
            func.row_number().over(partition_by=partition, order_by=(o.c.measured_on, o.c.version))
            .label("first"),
            func.row_number().over(partition_by=partition,
                                   order_by=(o.c.measured_on.desc(), o.c.version.desc())).label("last"),
        )
        .select_from(o.join(e, e.c.episode_id == o.c.episode_id))
        .where(*where)
        .subquery("ranked")
    )
    r = ranked.c
    per_episode = (
        select(
            r.episode_id, r.instrument, r.program_code, func.count().label("n"),
            func.max(case((r.first == 1, r.measured_on))).label("baseline_on"),
            func.max(case((r.first == 1, r.score))).label("baseline"),
            func.max(case((r.last == 1, r.measured_on))).label("latest_on"),
            func.max(case((r.last == 1, r.score))).label("latest"),
        )
        .group_by(r.episode_id, r.instrument, r.program_code)
        .subquery("per_episode")
    )
    p = per_episode.c
    remission_below = case(
        *((p.instrument == i.value, cut) for i, cut in REMISSION_BELOW.items()), else_=None
    )
    return select(
        p.episode_id, p.instrument, p.program_code, p.n, p.baseline_on, p.baseline, p.latest_on, p.latest,
        (p.latest - p.baseline).label("change"),
        # latest <= baseline * (1 - 50%), in integers: 100 * latest <= (100 - 50) * baseline
        case((and_(p.baseline > 0, p.latest * 100 <= p.baseline * (100 - RESPONSE_DROP_PERCENT)), 1),
             else_=0).label("responded"),
        case((p.latest < remission_below, 1), else_=0).label("remitted"),
    )


@lru_cache(maxsize=1)
def _one_episode_scores() -> Any:
    """:func:`_score_changes` for one episode (parameter ``episode_id``), built once: building
    the statement took longer than running it (the episode page asks on every view)."""
    return _score_changes(tables.episodes.c.episode_id == bindparam("episode_id"))


def episode_scores(connection: Connection, episode_id: UUID) -> EpisodeScores:
    episode_row(connection, episode_id)  # EpisodeNotFound when the read models do not hold it
    return scores_of(connection, episode_id)


def scores_of(connection: Connection, episode_id: UUID) -> EpisodeScores:
    """:func:`episode_scores` of an episode known to be in the read models: one statement."""
    rows = connection.execute(_one_episode_scores(), {"episode_id": episode_id}).mappings().all()
    by_instrument = {row["instrument"]: _score_change(row) for row in rows}
    return EpisodeScores(
        episode_id=episode_id,
        phq9=by_instrument.get(Instrument.PHQ9.value), gad7=by_instrument.get(Instrument.GAD7.value),
    )


def _score_change(row: Any) -> ScoreChange:
    followed_up = row["n"] >= 2
    return ScoreChange(
        instrument=row["instrument"], measurements=row["n"],
        baseline_on=row["baseline_on"], baseline=row["baseline"],
        latest_on=row["latest_on"], latest=row["latest"],
        change=row["change"] if followed_up else None,
        response=bool(row["responded"]) if followed_up else None,
        remission=bool(row["remitted"]) if followed_up else None,
    )


def outcome_summary(
    connection: Connection, instrument: Instrument | str = Instrument.PHQ9,
    program_code: str | None = None, discharged_from: date | None = None,
    discharged_to: date | None = None,
) -> tuple[OutcomeSummary, ...]:
    """Per program: episodes measured, and over those with 2+ measurements the mean change,
    response and remission rates.  Admitted episodes only (entered-in-error left out); with a
    discharge date range, only episodes finished in it."""
    instrument = Instrument(instrument)
    e, o = tables.episodes, tables.outcomes
    where = [
        o.c.instrument == instrument.value, e.c.admitted_on.is_not(None),
        e.c.status != ENTERED_IN_ERROR,
    ]
    if program_code is not None:
        where.append(e.c.program_code == program_code)
    if discharged_from is not None or discharged_to is not None:
        where.append(e.c.status == FINISHED)
        if discharged_from is not None:
            where.append(e.c.discharged_on >= discharged_from)
        if discharged_to is not None:
            where.append(e.c.discharged_on <= discharged_to)
    changes = _score_changes(*where).subquery("changes")
    c = changes.c
    follow_up = c.n >= 2
    rows = connection.execute(
        select(
            c.program_code, func.count().label("measured"),
            func.sum(case((follow_up, 1), else_=0)).label("followed"),
            func.avg(case((follow_up, c.change))).label("mean_change"),
            func.sum(case((follow_up, c.responded), else_=0)).label("responded"),
            func.sum(case((follow_up, c.remitted), else_=0)).label("remitted"),
        )
        .group_by(c.program_code)
        .order_by(c.program_code)
    ).all()
    return tuple(
        OutcomeSummary(
            program_code=program, instrument=instrument.value, episodes_measured=measured,
            with_follow_up=int(followed),
            mean_change=None if mean is None else round(float(mean), 1),
            response_percent=percent(int(responded), int(followed)),
            remission_percent=percent(int(remitted), int(followed)),
        )
        for program, measured, followed, mean, responded, remitted in rows
    )


class OutcomeQueries:
    """Mixed into :class:`projections.ReadModels`."""

    def discharge_mix(self, start: date, end: date, program_code: str | None = None) -> DischargeMix:
        """Discharges dated ``start``..``end`` (both included) by type, with completion rates."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            return discharge_mix(connection, start, end, program_code)

    def readmission_rate(
        self, start: date, end: date, program_code: str | None = None
    ) -> ReadmissionRate:
        """30-day readmissions after discharges dated ``start``..``end``, step-downs excluded."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            return readmission_rate(connection, start, end, program_code)

    def outcome_scores(self, episode_id: UUID) -> EpisodeScores:
        """PHQ-9 and GAD-7 for one episode: baseline, latest, change, response, remission."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            return episode_scores(connection, episode_id)

    def outcome_summary(
        self, instrument: Instrument | str = Instrument.PHQ9, program_code: str | None = None,
        discharged_from: date | None = None, discharged_to: date | None = None,
    ) -> tuple[OutcomeSummary, ...]:
        """Per program: n with 2+ measurements, mean change, response and remission rates."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            return outcome_summary(connection, instrument, program_code, discharged_from, discharged_to)
