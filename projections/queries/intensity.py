"""Intensity: attended hours per ISO week against the program's weekly minimum.

ASAM level 2.1 (IOP) asks for at least 9 hours a week for adults and 6 for adolescents
(``rm_programs.minimum_weekly_hours``).  Every ISO 8601 week (Monday to Sunday) from the
admission week to the discharge week, or to the as-of week of an open episode, gets a row,
weeks without any session included, and one classification:

* ``partial`` - the episode was in care fewer than the 7 days of the week (the admission
  week, the discharge week, or the unfinished as-of week): not judged;
* ``on-hold`` - every day of the week fell in an on-hold period, or some did and the hours are
  under the minimum (a hold takes days out of the week): not judged;
* ``meets`` - attended minutes >= minimum hours x 60;
* ``taper`` - below the minimum in one of the first ``taper_allowance`` (default 2) calendar
  weeks of a taper (payer guidance: one or two step-down taper weeks still count as IOP);
* ``below`` - below the minimum otherwise: a violation.

Holds and tapers come from ``rm_periods`` as the record holds them today (corrections
included); hours come from ``rm_sessions`` (voided sessions are gone, amended minutes count).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from uuid import UUID

from sqlalchemy import (
    Connection,
    Date,
    Integer,
    RowMapping,
    and_,
    bindparam,
    exists,
    func,
    literal,
    or_,
    select,
    union_all,
)

from projections import tables
from projections.queries.common import episode_row

MEETS, BELOW, TAPER, PARTIAL, ON_HOLD = "meets", "below", "taper", "partial", "on-hold"
CLASSIFICATIONS = (MEETS, BELOW, TAPER, PARTIAL, ON_HOLD)
# Payer guidance: one or two weeks below the minimum during a step-down taper still count as IOP.
TAPER_ALLOWANCE_WEEKS = 2
EXCLUDED_STATUSES = ("entered-in-error",)  # episodes that should never have existed
_CHUNK = 500  # ids per IN (...) list: below every backend's bound-parameter limit


@dataclass(frozen=True)
class IntensityWeek:
    iso_year: int
    iso_week: int
    week_start: date  # the Monday
    minutes: int  # attended minutes dated in the week
    hours: Decimal  # minutes / 60, to two places (for display; the classification uses minutes)
    minimum_weekly_hours: Decimal
    days_in_care: int  # days of the week between admission and discharge (or as-of), both included
    days_on_hold: int  # of those, days in an on-hold period
    taper_week: int | None  # 1, 2, ...: calendar week of a taper in force during the week
    classification: str  # meets | below | taper | partial | on-hold

    @property
    def key(self) -> tuple[int, int]:
        return (self.iso_year, self.iso_week)


@dataclass(frozen=True)
class EpisodeIntensity:
    episode_id: UUID
    program_code: str | None
    minimum_weekly_hours: Decimal | None
    admitted_on: date | None
    through: date | None  # the last day counted: the discharge date, or as-of for an open episode
    weeks: tuple[IntensityWeek, ...]

    def week(self, iso_year: int, iso_week: int) -> IntensityWeek:
        return next(w for w in self.weeks if w.key == (iso_year, iso_week))

    @property
    def below_weeks(self) -> tuple[IntensityWeek, ...]:
        return tuple(w for w in self.weeks if w.classification == BELOW)


@dataclass(frozen=True)
class BelowMinimumWeek:
    """One violation for the dashboard: a judged week below the program's minimum."""

    episode_id: UUID
    program_code: str
    iso_year: int
    iso_week: int
    week_start: date
    minutes: int
    hours: Decimal
    minimum_weekly_hours: Decimal


# ---------------------------------------------------------------- shared rules


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def hours_of(minutes: int) -> Decimal:
    return (Decimal(minutes) / 60).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


_Period = tuple[str, bool, date, date | None]  # status, tapering, valid_from, valid_to


class _Care:
    """What the periods say about an episode's days: holds and taper runs, clipped to its stay."""

    def __init__(self, admitted: date, through: date, periods: Iterable[_Period]):
        self.admitted, self.through = admitted, through
        self.holds: list[tuple[date, date | None]] = []
        tapers: list[tuple[date, date]] = []  # inclusive day ranges
        for status, tapering, valid_from, valid_to in periods:
            if status == "onhold":
                self.holds.append((valid_from, valid_to))
            if tapering:
                first = max(valid_from, admitted)
                last = min(valid_to - timedelta(days=1) if valid_to else through, through)
                if first <= last:
                    tapers.append((first, last))
        # Adjacent or overlapping tapering periods (a hold or a discharge splits them) form one run.
        self.taper_runs: list[tuple[date, date]] = []
        for first, last in sorted(tapers):
            if self.taper_runs and first <= self.taper_runs[-1][1] + timedelta(days=1):
                start, end = self.taper_runs[-1]
                self.taper_runs[-1] = (start, max(end, last))
            else:
                self.taper_runs.append((first, last))

    def days_in_care(self, monday: date) -> list[date]:
        """The days of the week from ``monday`` between admission and ``through``, in order."""
        first, last = max(monday, self.admitted), min(monday + timedelta(days=6), self.through)
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def days_on_hold(self, days: Sequence[date]) -> int:
        if not self.holds:  # most episodes: no day to test
            return 0
        return sum(1 for d in days if any(f <= d and (t is None or d < t) for f, t in self.holds))

    def taper_week(self, monday: date) -> int | None:
        sunday = monday + timedelta(days=6)
        for first, last in self.taper_runs:
            if first <= sunday and last >= monday:
                return (monday - monday_of(first)).days // 7 + 1
        return None


def classify(
    minutes: int, minimum: Decimal, days_in_care: int, days_on_hold: int, taper_week: int | None,
    taper_allowance: int | None = TAPER_ALLOWANCE_WEEKS,
) -> str:
    """The rules, in order: partial, on-hold, meets, taper, below."""
    if days_in_care < 7:
        return PARTIAL
    if days_on_hold == 7:
        return ON_HOLD
    if minutes >= minimum * 60:
        return MEETS
    if days_on_hold:
        return ON_HOLD  # a hold took days out of the week: under the minimum is no violation
    if taper_week is not None and (taper_allowance is None or taper_week <= taper_allowance):
        return TAPER
    return BELOW


# Built once (an episode page asks on every view; building a select costs about as much as
# running it): attended minutes per ISO week of an episode, and today's holds and tapers.
_s, _p = tables.sessions.c, tables.periods.c  # the columns
_WEEK_TOTALS = (
    select(_s.iso_year, _s.iso_week, func.sum(_s.minutes))
    .where(_s.episode_id == bindparam("episode_id"), _s.outcome == "attended",
           _s.session_date >= bindparam("first"), _s.session_date <= bindparam("last"))
    .group_by(_s.iso_year, _s.iso_week)
)
_HOLDS_AND_TAPERS = (
    select(_p.episode_id, _p.status, _p.tapering, _p.valid_from, _p.valid_to)
    .where(_p.episode_id.in_(bindparam("episode_ids", expanding=True)), _p.recorded_to.is_(None),
           or_(_p.status == "onhold", _p.tapering.is_(True)))
)


def _periods(connection: Connection, episode_ids: Sequence[UUID]) -> dict[UUID, list[_Period]]:
    """Today's holds and tapers (corrections included) for the given episodes."""
    found: dict[UUID, list[_Period]] = {i: [] for i in episode_ids}
    for start in range(0, len(episode_ids), _CHUNK):
        rows = connection.execute(
            _HOLDS_AND_TAPERS, {"episode_ids": list(episode_ids[start:start + _CHUNK])}
        ).all()
        for row in rows:
            period = (row.status, bool(row.tapering), row.valid_from, row.valid_to)
            found[row.episode_id].append(period)
    return found


# ---------------------------------------------------------------- one episode


def episode_intensity(
    connection: Connection, episode_id: UUID, as_of: date,
    taper_allowance: int | None = TAPER_ALLOWANCE_WEEKS,
) -> EpisodeIntensity:
    return intensity_of(connection, episode_row(connection, episode_id), as_of, taper_allowance)


def intensity_of(
    connection: Connection, row: RowMapping, as_of: date,
    taper_allowance: int | None = TAPER_ALLOWANCE_WEEKS,
) -> EpisodeIntensity:
    """The weeks of the episode of ``row`` (:func:`projections.queries.common.episode_row`)."""
    episode_id, program_code = row["episode_id"], row["program_code"]
    minimum_hours = row["minimum_weekly_hours"]
    minimum = Decimal(minimum_hours) if minimum_hours is not None else None
    admitted, discharged = row["admitted_on"], row["discharged_on"]
    if admitted is None or admitted > as_of or minimum is None:
        return EpisodeIntensity(episode_id, program_code, minimum, admitted, None, ())
    through = min(discharged, as_of) if discharged else as_of

    totals = {
        (y, w): int(m) for y, w, m in connection.execute(
            _WEEK_TOTALS, {"episode_id": episode_id, "first": admitted, "last": through})
    }
    care = _Care(admitted, through, _periods(connection, [episode_id])[episode_id])
    weeks = []
    monday = monday_of(admitted)
    while monday <= through:
        iso = monday.isocalendar()
        minutes = totals.get((iso.year, iso.week), 0)
        days = care.days_in_care(monday)
        on_hold = care.days_on_hold(days)
        taper_week = care.taper_week(monday)
        weeks.append(IntensityWeek(
            iso_year=iso.year, iso_week=iso.week, week_start=monday, minutes=minutes,
            hours=hours_of(minutes), minimum_weekly_hours=minimum, days_in_care=len(days),
            days_on_hold=on_hold, taper_week=taper_week,
            classification=classify(
                minutes, minimum, len(days), on_hold, taper_week, taper_allowance),
        ))
        monday += timedelta(days=7)
    return EpisodeIntensity(episode_id, program_code, minimum, admitted, through, tuple(weeks))


# ---------------------------------------------------------------- the dashboard


def completed_weeks(as_of: date, weeks: int) -> list[date]:
    """The Mondays of the last ``weeks`` ISO weeks that ended (Sunday) on or before ``as_of``."""
    last_sunday = as_of if as_of.weekday() == 6 else monday_of(as_of) - timedelta(days=1)
    last_monday = last_sunday - timedelta(days=6)
    return [last_monday - timedelta(weeks=n) for n in reversed(range(weeks))]


def below_minimum(
    connection: Connection, as_of: date, weeks: int = 4,
    taper_allowance: int | None = TAPER_ALLOWANCE_WEEKS,
) -> list[BelowMinimumWeek]:
    """Every ``below`` week of every episode in the last ``weeks`` completed ISO weeks.

    SQL does the heavy part: one GROUP BY over the window's attended sessions, joined to the
    episodes in care all seven days of each week (so partial weeks never appear) and their
    program's minimum, keeping the weeks under it and dropping weeks one hold covers.  Only
    candidates of episodes with a hold or a taper are then checked in Python against their
    periods, with the same rules as :func:`episode_intensity`.
    """
    if weeks < 1:
        return []
    e, p, s = tables.episodes, tables.programs, tables.sessions
    mondays = completed_weeks(as_of, weeks)
    window = union_all(*[
        select(
            literal(m.isocalendar().year, Integer).label("iso_year"),
            literal(m.isocalendar().week, Integer).label("iso_week"),
            # Typed literals, no CAST: SQLite stores dates as ISO text and CAST(... AS DATE)
            # would turn them into numbers there.
            literal(m, Date).label("monday"),
            literal(m + timedelta(days=6), Date).label("sunday"),
        )
        for m in mondays
    ]).cte("intensity_window")
    totals = (
        select(s.c.episode_id, s.c.iso_year, s.c.iso_week, func.sum(s.c.minutes).label("minutes"))
        .where(s.c.outcome == "attended", s.c.session_date >= mondays[0],
               s.c.session_date <= mondays[-1] + timedelta(days=6))
        .group_by(s.c.episode_id, s.c.iso_year, s.c.iso_week)
        .subquery("intensity_totals")
    )
    minutes = func.coalesce(totals.c.minutes, 0)
    in_care_all_week = and_(
        e.c.admitted_on <= window.c.monday,
        or_(e.c.discharged_on.is_(None), e.c.discharged_on >= window.c.sunday),
    )
    per = tables.periods
    held = and_(per.c.episode_id == e.c.episode_id, per.c.recorded_to.is_(None))
    # One hold period covering the whole week: certainly on-hold, dropped in SQL already.
    whole_week_on_hold = exists().where(
        held, per.c.status == "onhold", per.c.valid_from <= window.c.monday,
        or_(per.c.valid_to.is_(None), per.c.valid_to > window.c.sunday),
    )
    # Any hold or taper at all: the rows of those episodes get the full check below.
    holds_or_tapers = exists().where(held, or_(per.c.status == "onhold", per.c.tapering.is_(True)))
    query = (
        select(e.c.episode_id, e.c.program_code, e.c.admitted_on, e.c.discharged_on,
               window.c.iso_year, window.c.iso_week, window.c.monday,
               minutes.label("minutes"), p.c.minimum_weekly_hours,
               holds_or_tapers.label("needs_check"))
        .select_from(
            e.join(p, p.c.code == e.c.program_code)
            .join(window, in_care_all_week)
            .outerjoin(totals, and_(totals.c.episode_id == e.c.episode_id,
                                    totals.c.iso_year == window.c.iso_year,
                                    totals.c.iso_week == window.c.iso_week))
        )
        .where(e.c.status.notin_(EXCLUDED_STATUSES), minutes < p.c.minimum_weekly_hours * 60,
               ~whole_week_on_hold)
        .order_by(window.c.monday, e.c.episode_id)
    )
    candidates = connection.execute(query).all()
    # A full week in care, under the minimum, without hold or taper is below: no more to check.
    # The others go through the same rules as an episode's own weeks.
    to_check = list(dict.fromkeys(r.episode_id for r in candidates if r.needs_check))
    periods = _periods(connection, to_check)
    cares: dict[UUID, _Care] = {}
    result = []
    for r in candidates:
        minimum = Decimal(r.minimum_weekly_hours)
        if r.needs_check:
            care = cares.get(r.episode_id)
            if care is None:
                through = min(r.discharged_on, as_of) if r.discharged_on else as_of
                care = cares[r.episode_id] = _Care(r.admitted_on, through, periods[r.episode_id])
            days = care.days_in_care(r.monday)
            verdict = classify(int(r.minutes), minimum, len(days), care.days_on_hold(days),
                               care.taper_week(r.monday), taper_allowance)
            if verdict != BELOW:
                continue
        result.append(BelowMinimumWeek(
            episode_id=r.episode_id, program_code=r.program_code, iso_year=r.iso_year,
            iso_week=r.iso_week, week_start=r.monday, minutes=int(r.minutes),
            hours=hours_of(int(r.minutes)), minimum_weekly_hours=minimum,
        ))
    return result


class IntensityQueries:
    """Mixed into :class:`projections.ReadModels`."""

    def intensity(
        self, episode_id: UUID, as_of: date | None = None,
        taper_allowance: int | None = TAPER_ALLOWANCE_WEEKS,
    ) -> EpisodeIntensity:
        """Attended hours per ISO week, each week classified against the program's minimum."""
        as_of = as_of or self.today()  # type: ignore[attr-defined]
        with self.connect() as connection:  # type: ignore[attr-defined]
            return episode_intensity(connection, episode_id, as_of, taper_allowance)

    def below_minimum(
        self, as_of: date | None = None, weeks: int = 4,
        taper_allowance: int | None = TAPER_ALLOWANCE_WEEKS,
    ) -> list[BelowMinimumWeek]:
        """Weeks below the minimum (violations) in the last ``weeks`` completed ISO weeks."""
        as_of = as_of or self.today()  # type: ignore[attr-defined]
        with self.connect() as connection:  # type: ignore[attr-defined]
            return below_minimum(connection, as_of, weeks, taper_allowance)
