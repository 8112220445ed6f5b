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
    Row,
    RowMapping,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    union_all,
)

from projections import tables
from projections.queries.common import episode_row
from projections.queries.sqldates import unindexed

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


def _merged(ranges: Iterable[tuple[date, date]]) -> list[tuple[date, date]]:
    """Inclusive day ranges, sorted, with the overlapping or adjacent ones joined."""
    runs: list[tuple[date, date]] = []
    for first, last in sorted(ranges):
        if first > last:
            continue  # no day (a period that ended the day it began)
        if runs and (first - runs[-1][1]).days <= 1:  # no date arithmetic past date.max
            runs[-1] = (runs[-1][0], max(runs[-1][1], last))
        else:
            runs.append((first, last))
    return runs


class _Care:
    """What the periods say about an episode's days: holds and taper runs, clipped to its stay."""

    def __init__(self, admitted: date, through: date, periods: Iterable[_Period]):
        self.admitted, self.through = admitted, through
        holds: list[tuple[date, date]] = []  # inclusive day ranges; date.max: open
        tapers: list[tuple[date, date]] = []  # inclusive day ranges
        for status, tapering, valid_from, valid_to in periods:
            if status == "onhold":
                holds.append((valid_from, valid_to - timedelta(days=1) if valid_to else date.max))
            if tapering:
                first = max(valid_from, admitted)
                last = min(valid_to - timedelta(days=1) if valid_to else through, through)
                if first <= last:
                    tapers.append((first, last))
        # Overlapping holds count a day once: merged, the days on hold are a sum of overlaps.
        self.holds = _merged(holds)
        # Adjacent or overlapping tapering periods (a hold or a discharge splits them) form one run.
        self.taper_runs = _merged(tapers)

    def days(self, monday: date) -> tuple[int, int]:
        """The days of the week from ``monday`` in care (between admission and ``through``, both
        included), and how many of those fell in an on-hold period."""
        first, last = max(monday, self.admitted), min(monday + timedelta(days=6), self.through)
        if first > last:
            return 0, 0
        on_hold = 0
        for start, end in self.holds:  # most episodes: none
            if start <= last and end >= first:
                on_hold += (min(end, last) - max(start, first)).days + 1
        return (last - first).days + 1, on_hold

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
        in_care, on_hold = care.days(monday)
        taper_week = care.taper_week(monday)
        weeks.append(IntensityWeek(
            iso_year=iso.year, iso_week=iso.week, week_start=monday, minutes=minutes,
            hours=hours_of(minutes), minimum_weekly_hours=minimum, days_in_care=in_care,
            days_on_hold=on_hold, taper_week=taper_week,
            classification=classify(
                minutes, minimum, in_care, on_hold, taper_week, taper_allowance),
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

    SQL does the heavy part in one statement: the episodes in care all seven days of some
    week of the window (so partial weeks never appear), their attended minutes in each week,
    the weeks under the program's minimum, and today's holds and tapers of those weeks'
    episodes.  The weeks with a hold or a taper are then checked in Python against the periods,
    with the same rules as :func:`episode_intensity`; the others are below.
    """
    if weeks < 1:
        return []
    e, p, s = tables.episodes, tables.programs, tables.sessions
    mondays = completed_weeks(as_of, weeks)
    first_sunday, last_sunday = mondays[0] + timedelta(days=6), mondays[-1] + timedelta(days=6)
    window = union_all(*[
        select(
            literal(n, Integer).label("n"),
            literal(m.isocalendar().year, Integer).label("iso_year"),
            literal(m.isocalendar().week, Integer).label("iso_week"),
            # Typed literals, no CAST: SQLite stores dates as ISO text and CAST(... AS DATE)
            # would turn them into numbers there.
            literal(m, Date).label("monday"),
            literal(m + timedelta(days=6), Date).label("sunday"),
        )
        for n, m in enumerate(mondays)
    ]).cte("intensity_window")
    # The episodes in care all seven days of at least one week of the window (admitted by its
    # last Monday, not discharged before its first Sunday), one row each, with the attended
    # minutes of every week of the window, a column a week (sessions by their ISO week, as an
    # episode's own weeks count them).  Not every episode crossed with every week.
    #
    # A quarter of the episodes at 100,000: one scan of rm_episodes reads each page once
    # (28 ms on SQLite), where SQLite, without statistics, would look most of the table up row
    # by row from the admission date index (490 ms) or the open ones from the discharge date
    # index (90 ms); unindexed keeps it off them.  SQLite then reads each episode's sessions by
    # their key (episode_id, version), in key order, and sums them as it goes: only these
    # episodes' sessions (rm_sessions has no date index), no sort.  PostgreSQL, whose rows are
    # not stored in key order, hashes the window's sessions (one scan) and the sums (24,000).
    admitted_on, discharged_on = unindexed(e.c.admitted_on), unindexed(e.c.discharged_on)
    attended_in_window = and_(
        s.c.episode_id == e.c.episode_id, s.c.outcome == "attended",
        s.c.session_date >= mondays[0], s.c.session_date <= last_sunday,
    )
    week_minutes = [
        func.sum(case((and_(s.c.iso_year == m.isocalendar().year,
                            s.c.iso_week == m.isocalendar().week), s.c.minutes)))
        .label(f"minutes_{n}")
        for n, m in enumerate(mondays)
    ]
    candidates = (
        select(e.c.episode_id, e.c.program_code, e.c.admitted_on, e.c.discharged_on,
               *week_minutes)
        .select_from(e.outerjoin(s, attended_in_window))
        .where(e.c.status.notin_(EXCLUDED_STATUSES), admitted_on <= mondays[-1],
               or_(discharged_on.is_(None), discharged_on >= first_sunday))
        .group_by(e.c.episode_id)  # the key: the other columns follow from it
        .cte("intensity_candidates")
    )
    c, per = candidates.c, tables.periods
    # The week's column of minutes; none: no attended session that week.
    minutes = func.coalesce(case({n: c[f"minutes_{n}"] for n in range(len(mondays))},
                                 value=window.c.n), 0)
    # Today's holds and tapers (corrections included) of the episode, one row each: looked up
    # only for the weeks under the minimum, where the rules need them.
    held = and_(per.c.episode_id == c.episode_id, per.c.recorded_to.is_(None),
                or_(per.c.status == "onhold", per.c.tapering.is_(True)))
    query = (
        select(c.episode_id, c.program_code, c.admitted_on, c.discharged_on, window.c.iso_year,
               window.c.iso_week, window.c.monday, minutes, p.c.minimum_weekly_hours,
               per.c.status, per.c.tapering, per.c.valid_from, per.c.valid_to)
        .select_from(
            candidates
            .join(p, p.c.code == c.program_code)
            .join(window, and_(c.admitted_on <= window.c.monday,
                               or_(c.discharged_on.is_(None), c.discharged_on >= window.c.sunday)))
            .outerjoin(per, held)
        )
        .where(minutes < p.c.minimum_weekly_hours * 60)
        .order_by(window.c.monday, c.episode_id)
    )
    result: list[BelowMinimumWeek] = []
    hours: dict[int, Decimal] = {}  # minutes -> hours: the same few values again and again

    # Rows by position, not by name: a Row's attribute costs ten times its index.
    def below(row: Row) -> None:
        episode_id, program_code, _, _, iso_year, iso_week, monday, spent, minimum = row[:9]
        spent = int(spent)
        shown = hours.get(spent)
        if shown is None:
            shown = hours[spent] = hours_of(spent)
        result.append(BelowMinimumWeek(
            episode_id=episode_id, program_code=program_code, iso_year=iso_year,
            iso_week=iso_week, week_start=monday, minutes=spent, hours=shown,
            minimum_weekly_hours=Decimal(minimum),
        ))

    def check(week: list[Row]) -> None:
        """The rows of one week of an episode with holds or tapers, one per period: the rules
        of an episode's own weeks decide."""
        _, _, admitted, discharged, _, _, monday, spent, minimum = week[0][:9]
        through = min(discharged, as_of) if discharged else as_of
        care = _Care(admitted, through, [(r[9], bool(r[10]), r[11], r[12]) for r in week])
        in_care, on_hold = care.days(monday)
        verdict = classify(int(spent), Decimal(minimum), in_care, on_hold,
                           care.taper_week(monday), taper_allowance)
        if verdict == BELOW:
            below(week[0])

    # A full week in care under the minimum is below, unless a hold or a taper says otherwise.
    week: list[Row] = []
    for row in connection.execute(query).all():  # all(): one fetch, not one a row
        if week and (row[6] != week[0][6] or row[0] != week[0][0]):  # another week or episode
            check(week)
            week = []
        if row[9] is None:  # no hold or taper
            below(row)
        else:
            week.append(row)
    if week:
        check(week)
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
