"""Census: who is in treatment on a day, the day's admissions and discharges, average daily
census over a period, and the waitlist.

The census rule (domain.md, the usual hospital census convention): an episode counts on a day
when its status at the *end* of that day is ``active``.  ``onhold`` does not count, and an
episode admitted and discharged on the same day counts on no day at all (0 patient-days),
though it is one admission and one discharge of that day.

Every figure reads ``rm_periods`` either as the record held it at the end of a day
(``known_on``: :func:`held_on`) or as today's record holds it (:func:`held_now`, corrections
included).  Episodes entered in error in that record are left out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, case, func, or_, select

from projections import tables
from projections.queries.common import held_now, held_on, valid_at_end_of
from projections.queries.sqldates import a_date, days_between
from projections.queries.stay import (
    ACTIVE,
    FINISHED,
    IN_ERROR,
    WAITLIST,
    begins_after,
    unchanged_since,
)


def _record(known_on: date | None) -> Any:
    """The periods of the record at the end of ``known_on``; today's record when None."""
    return held_on(known_on) if known_on is not None else held_now()


def _not_in_error(view: Any) -> Any:
    """Leave out episodes that ``view`` marks entered-in-error (they never existed)."""
    p = tables.periods
    in_error = select(p.c.episode_id).where(p.c.status == IN_ERROR, view).correlate(None)
    return p.c.episode_id.not_in(in_error)


# ---------------------------------------------------------------- census on a day


@dataclass(frozen=True)
class CensusCount:
    key: str | None  # a program code, a clinic or a level-of-care code
    then: int  # active at the end of the day, as the record held it at the end of that day
    now: int  # the same, by today's record (corrections and late entries included)

    @property
    def corrected_since(self) -> bool:
        return self.then != self.now


@dataclass(frozen=True)
class Census:
    on: date
    then: int  # all active episodes, as the record held it then
    now: int  # by today's record
    by_program: tuple[CensusCount, ...]
    by_clinic: tuple[CensusCount, ...]
    by_level: tuple[CensusCount, ...]  # level-of-care code (e.g. "2.1", "2.5")


def census(connection: Connection, on: date) -> Census:
    if unchanged_since(connection, on):  # the record then is today's: one count for both
        now = _active_now(connection, on)
        counts = {"then": now, "now": now}
    else:
        counts = {name: _active_on(connection, on, view) for name, view in
                  (("then", held_on(on)), ("now", held_now()))}

    def dimension(index: int) -> tuple[CensusCount, ...]:
        totals = {name: Counter() for name in counts}
        for name, rows in counts.items():
            for row in rows:
                totals[name][row[index]] += row[3]
        keys = sorted(set(totals["then"]) | set(totals["now"]), key=lambda k: k or "")
        return tuple(CensusCount(k, totals["then"][k], totals["now"][k]) for k in keys)

    return Census(
        on=on, then=sum(r[3] for r in counts["then"]), now=sum(r[3] for r in counts["now"]),
        by_program=dimension(0), by_clinic=dimension(1), by_level=dimension(2),
    )


def _active_now(connection: Connection, on: date) -> list[Any]:
    """``_active_on(on, held_now())``; from ``rm_episodes`` when no period of today's record
    begins after ``on`` (the day's census is then today's).

    Then each episode's period in force at the end of ``on`` is its last one (every other
    ends where the next begins, by ``on``), and its status, program, clinic and level are the
    episode's row (``derive.periods`` and ``derive.episode_row`` end on the same state).  An
    active episode has no ``entered-in-error`` period: that status is never left.  The active
    rows of ``rm_episodes_status_program`` instead of every period (170 ms at 100,000 episodes
    on PostgreSQL); tests/test_read_stay_current.py checks it against the general count.
    """
    if begins_after(connection, on):
        return _active_on(connection, on, held_now())
    e = tables.episodes
    return list(connection.execute(
        select(e.c.program_code, e.c.clinic, e.c.level_code, func.count())
        .where(e.c.status == ACTIVE)
        .group_by(e.c.program_code, e.c.clinic, e.c.level_code)
    ))


def _active_on(connection: Connection, on: date, view: Any) -> list[Any]:
    p = tables.periods
    return list(connection.execute(
        select(p.c.program_code, p.c.clinic, p.c.level_code,
               func.count(func.distinct(p.c.episode_id)))
        .where(p.c.status == ACTIVE, valid_at_end_of(on), view, _not_in_error(view))
        .group_by(p.c.program_code, p.c.clinic, p.c.level_code)
    ))


# ---------------------------------------------------------------- admissions and discharges


@dataclass(frozen=True)
class DayFlow:
    day: date
    admissions: int
    discharges: int
    census: int  # active at the end of the day


def admissions_and_discharges(
    connection: Connection, start: date, end: date, program_code: str | None = None,
    known_on: date | None = None,
) -> tuple[DayFlow, ...]:
    """Per day from ``start`` to ``end`` (both included): admissions, discharges and the
    end-of-day census.  By today's record, or as the record stood at the end of ``known_on``."""
    p = tables.periods
    view = _record(known_on)
    only = [view, _not_in_error(view)]
    if program_code is not None:
        only.append(p.c.program_code == program_code)
    # Only an episode with an active or finished period beginning in the range can have been
    # admitted or discharged in it; its admission is its earliest active period, wherever.
    q = tables.periods.alias("starting")
    starting = select(q.c.episode_id).where(
        q.c.status.in_((ACTIVE, FINISHED)), q.c.valid_from >= start, q.c.valid_from <= end)
    per_episode = (
        select(func.min(case((p.c.status == ACTIVE, p.c.valid_from))).label("admitted_on"),
               func.min(case((p.c.status == FINISHED, p.c.valid_from))).label("discharged_on"))
        .where(p.c.episode_id.in_(starting), *only).group_by(p.c.episode_id).subquery()
    )
    admissions = _per_day(connection, per_episode.c.admitted_on, start, end)
    discharges = _per_day(connection, per_episode.c.discharged_on, start, end)
    # The census moves by +1 on the day an active period begins and -1 on the day it ends.
    active = p.c.status == ACTIVE
    begins = _per_day(connection, p.c.valid_from, start, end, active, *only)
    ends = _per_day(connection, p.c.valid_to, start, end, active, *only)
    before = start - timedelta(days=1)
    running = int(connection.execute(
        select(func.count()).where(active, valid_at_end_of(before), *only)
    ).scalar_one())
    flows = []
    for offset in range((end - start).days + 1):
        day = start + timedelta(days=offset)
        running += begins.get(day, 0) - ends.get(day, 0)
        flows.append(DayFlow(day, admissions.get(day, 0), discharges.get(day, 0), running))
    return tuple(flows)


def _per_day(
    connection: Connection, column: Any, start: date, end: date, *where: Any
) -> dict[date, int]:
    rows = connection.execute(
        select(column, func.count()).where(column >= start, column <= end, *where).group_by(column)
    )
    return {day: n for day, n in rows}


# ---------------------------------------------------------------- average daily census


@dataclass(frozen=True)
class AverageDailyCensus:
    start: date
    end: date  # included
    program_code: str | None  # None: all programs
    days: int  # days in the period
    patient_days: int  # sum over the days of the episodes active at the end of each day
    average: float  # patient_days / days, two decimals


def average_daily_census(
    connection: Connection, start: date, end: date, program_code: str | None = None,
    known_on: date | None = None,
) -> AverageDailyCensus:
    rows = _patient_days(connection, start, end, known_on, program_code)
    return _adc(start, end, program_code, sum(rows.values()))


def average_daily_census_by_program(
    connection: Connection, start: date, end: date, known_on: date | None = None
) -> tuple[AverageDailyCensus, ...]:
    rows = _patient_days(connection, start, end, known_on, None, by_program=True)
    codes = set(connection.execute(select(tables.programs.c.code)).scalars()) | set(rows)
    return tuple(_adc(start, end, code, rows.get(code, 0))
                 for code in sorted(codes, key=lambda c: c or ""))


def _adc(start: date, end: date, program_code: str | None, patient_days: int) -> AverageDailyCensus:
    days = (end - start).days + 1
    average = round(patient_days / days, 2)
    return AverageDailyCensus(start, end, program_code, days, patient_days, average)


def _patient_days(
    connection: Connection, start: date, end: date, known_on: date | None,
    program_code: str | None, by_program: bool = False,
) -> dict[str | None, int]:
    """An active period [valid_from, valid_to) is active at the end of each of its days but the
    last: its patient-days in the period are the overlap of [valid_from, valid_to) with
    [start, end + 1)."""
    p = tables.periods
    view = _record(known_on)
    after = a_date(end + timedelta(days=1))
    upto = case((or_(p.c.valid_to.is_(None), p.c.valid_to > end), after), else_=p.c.valid_to)
    since = case((p.c.valid_from < start, a_date(start)), else_=p.c.valid_from)
    keys = [p.c.program_code] if by_program else []
    query = (
        select(*keys, func.coalesce(func.sum(days_between(upto, since)), 0))
        .where(p.c.status == ACTIVE, p.c.valid_from <= end,
               or_(p.c.valid_to.is_(None), p.c.valid_to > start), view, _not_in_error(view))
        .group_by(*keys)
    )
    if program_code is not None:
        query = query.where(p.c.program_code == program_code)
    return {(row[0] if by_program else None): int(row[-1]) for row in connection.execute(query)}


# ---------------------------------------------------------------- waitlist


@dataclass(frozen=True)
class WaitingEpisode:
    episode_id: UUID
    patient_ref: str
    referred_on: date
    waitlisted_on: date  # the day the waitlist period began
    days_waiting: int  # as-of date - waitlisted_on
    days_since_referral: int  # as-of date - referred_on


def waitlist(
    connection: Connection, on: date, known_on: date | None = None
) -> tuple[WaitingEpisode, ...]:
    """Episodes whose status at the end of ``on`` was ``waitlist``, longest wait first, as the
    record held it at the end of ``known_on`` (default ``on``)."""
    p, e = tables.periods, tables.episodes
    view = held_on(known_on or on)
    rows = connection.execute(
        select(p.c.episode_id, e.c.patient_ref, e.c.referred_on, p.c.valid_from)
        .select_from(p.join(e, e.c.episode_id == p.c.episode_id))
        .where(p.c.status == WAITLIST, valid_at_end_of(on), view, _not_in_error(view))
        .order_by(p.c.valid_from, e.c.referred_on, p.c.episode_id)
    )
    return tuple(
        WaitingEpisode(episode_id, patient_ref, referred_on, since, (on - since).days,
                       (on - referred_on).days)
        for episode_id, patient_ref, referred_on, since in rows
    )


class CensusQueries:
    """Mixed into :class:`projections.ReadModels`."""

    def census(self, on: date | None = None) -> Census:
        """Active episodes at the end of ``on`` (default today) by program, clinic and level:
        as the record held it then, and by today's record."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            return census(connection, on or self.today())  # type: ignore[attr-defined]

    def admissions_and_discharges(
        self, start: date, end: date, program_code: str | None = None, known_on: date | None = None
    ) -> tuple[DayFlow, ...]:
        """Admissions, discharges and end-of-day census per day (by today's record by default)."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            return admissions_and_discharges(connection, start, end, program_code, known_on)

    def average_daily_census(
        self, start: date, end: date, program_code: str | None = None, known_on: date | None = None
    ) -> AverageDailyCensus:
        """Patient-days / days in the period (by today's record by default)."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            return average_daily_census(connection, start, end, program_code, known_on)

    def average_daily_census_by_program(
        self, start: date, end: date, known_on: date | None = None
    ) -> tuple[AverageDailyCensus, ...]:
        """The average daily census of every program (0 for a program with nobody active)."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            return average_daily_census_by_program(connection, start, end, known_on)

    def waitlist(
        self, on: date | None = None, known_on: date | None = None
    ) -> tuple[WaitingEpisode, ...]:
        """The waitlist at the end of ``on`` (default today), longest wait first."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            return waitlist(connection, on or self.today(), known_on)  # type: ignore[attr-defined]
