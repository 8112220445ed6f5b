"""Length of stay: per episode and summarised per program and per discharge type.

Definitions (``docs/projections.md (Length of stay)``; domain.md "Measures and their conventions"):

* calendar days = discharge (or the as-of date, for an open episode) - admission + 1;
* held days = days whose end-of-day status is ``onhold`` (a hold from H to a resume on R
  holds R - H days); active days = calendar days - held days;
* treatment days = distinct dates with an attended session;
* an episode still open on the as-of date is *censored*: shown, but kept out of every average.

Everything is read from ``rm_periods`` as the record held it at the end of a day
(:func:`held_on`), so a summary "as of D" does not change when the record is corrected later;
``corrected_since`` counts the episodes whose figures today's record tells differently.

The common question, "as of today, as the record holds it now", has a cheaper path: when
nothing was recorded after the end of ``known_on`` (:func:`unchanged_since`) and no period of
today's record begins after ``as_of`` (:func:`begins_after`), every figure but the program
is in the episode's ``rm_episodes`` row (:func:`_current_stays` says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Connection,
    and_,
    case,
    except_,
    func,
    or_,
    select,
    union,
)
from sqlalchemy.sql.expression import ColumnElement

from episodes.errors import EpisodeNotFound
from projections import tables
from projections.queries.common import end_of_day, held_now, held_on
from projections.queries.sqldates import a_date, days_between, unindexed

ACTIVE, ONHOLD, FINISHED, IN_ERROR = "active", "onhold", "finished", "entered-in-error"
WAITLIST = "waitlist"

# Distribution bins in weeks of calendar days, lower edge included, upper edge excluded:
# "0-2" is 1-13 days, "2-4" 14-27, ..., "10-12" 70-83 and "12+" 84 days and more.
BINS: tuple[tuple[str, int, int | None], ...] = (
    ("0-2", 0, 14), ("2-4", 14, 28), ("4-6", 28, 42), ("6-8", 42, 56),
    ("8-10", 56, 70), ("10-12", 70, 84), ("12+", 84, None),
)


# ---------------------------------------------------------------- portable date arithmetic




# ---------------------------------------------------------------- one row per episode


def stays(as_of: date, view: ColumnElement[bool], *only: ColumnElement[bool]) -> Any:
    """A subquery: one row per episode admitted by ``as_of`` in the record ``view``
    (``held_on(day)`` or ``held_now()``), episodes entered in error left out; ``only``
    narrows the periods read (one episode, say)."""
    p = tables.periods
    dated = p.c.valid_from <= as_of
    # A period's last day on or before as_of, exclusive: valid_to, or the day after as_of.
    after = a_date(as_of + timedelta(days=1))
    to = case((or_(p.c.valid_to.is_(None), p.c.valid_to > as_of), after), else_=p.c.valid_to)
    per_episode = (
        select(
            p.c.episode_id,
            func.max(p.c.program_code).label("program_code"),
            func.max(p.c.clinic).label("clinic"),
            func.min(p.c.valid_from).label("referred_on"),
            _first(and_(p.c.status == ACTIVE, dated)).label("admitted_on"),
            _first(and_(p.c.status == FINISHED, dated)).label("discharged_on"),
            func.sum(case((and_(p.c.status == ONHOLD, dated), days_between(to, p.c.valid_from)),
                          else_=0)).label("held_days"),
            func.max(case((p.c.status == IN_ERROR, 1), else_=0)).label("in_error"),
        )
        .where(view, *only)
        .group_by(p.c.episode_id)
        .subquery()
    )
    s = per_episode
    last_day = func.coalesce(s.c.discharged_on, a_date(as_of))
    return (
        select(
            s.c.episode_id, s.c.program_code, s.c.clinic, s.c.referred_on, s.c.admitted_on,
            s.c.discharged_on, s.c.held_days,
            (days_between(last_day, s.c.admitted_on) + 1).label("days"),
            s.c.discharged_on.is_(None).label("censored"),
        )
        .where(s.c.admitted_on.is_not(None), s.c.in_error == 0)
        .subquery()
    )


def _first(condition: ColumnElement[bool]) -> Any:
    """The earliest valid_from among the periods that meet ``condition``."""
    return func.min(case((condition, tables.periods.c.valid_from)))


# ---------------------------------------------------------------- as the record holds it now


def unchanged_since(connection: Connection, day: date) -> bool:
    """Whether nothing was recorded after the end of ``day``: then the record held at the end
    of ``day`` is today's, and :func:`held_on` (day) selects the rows :func:`held_now` does.

    Every period row is stamped (``recorded_from``, ``recorded_to``) with the recorded time of
    one of its episode's events, and every event has its ``rm_audit`` row at that time (the
    projector and the rebuild alike): one probe of ``rm_audit_recorded`` answers for them all.
    """
    a = tables.audit
    later = select(a.c.position).where(a.c.recorded_at >= end_of_day(day)).limit(1)
    return connection.execute(later).first() is None


def begins_after(connection: Connection, day: date) -> bool:
    """Whether a period of today's record begins after ``day`` (a clinic ahead of UTC may
    date today's work tomorrow).  A probe of ``rm_periods_valid``."""
    p = tables.periods
    later = select(p.c.id).where(p.c.valid_from > day, held_now()).limit(1)
    return connection.execute(later).first() is not None


def _current_stays(as_of: date) -> Any:
    """A subquery: the (program_code, discharge_type, censored, days) rows of the stays of
    today's record (``stays(as_of, held_now())`` joined to the episode), read from
    ``rm_episodes`` instead of grouping every period; only when no period of today's record
    begins after ``as_of`` (:func:`begins_after`).

    Today's periods are the episode's status, level, program and clinic over its facts
    (``derive.periods``); its row is where they end (``derive.episode_row``), and the pathway
    makes the rest line up:

    * admission is the only way into ``active`` from outside care, and no later status or
      level change is dated before it, so the earliest active period begins on ``admitted_on``;
    * ``finished`` is left only for ``entered-in-error``, and that is never left, so the one
      finished period begins on ``discharged_on``, and an episode has an ``entered-in-error``
      period exactly when that is its status;
    * no period begins after ``as_of``, so all of them are dated by then;
    * every period from the admission on carries the admitted program (nothing changes it in
      care), but the waitlist period may carry the one the patient waited for; ``stays`` takes
      the greater of the two: so does this, from the waitlist periods alone.

    tests/test_read_stay_current.py checks it against :func:`stays` over random pathways.
    """
    e, p = tables.episodes, tables.periods
    # Both tables read through once (unindexed): SQLite, without statistics, would walk
    # rm_periods_episode for the GROUP BY and an rm_episodes index for the conditions, looking
    # each row up by its key (2-3 times slower at 100,000 episodes).
    waited = (
        select(p.c.episode_id, func.max(p.c.program_code).label("program_code"))
        .where(held_now(), p.c.status == WAITLIST)
        .group_by(unindexed(p.c.episode_id))
        .subquery()
    )
    program = case((waited.c.program_code > e.c.program_code, waited.c.program_code),
                   else_=e.c.program_code)
    days = days_between(func.coalesce(e.c.discharged_on, a_date(as_of)), e.c.admitted_on) + 1
    return (
        select(program.label("program_code"), e.c.discharge_type,
               e.c.discharged_on.is_(None).label("censored"), days.label("days"))
        .select_from(e.outerjoin(waited, waited.c.episode_id == e.c.episode_id))
        .where(unindexed(e.c.admitted_on).is_not(None), unindexed(e.c.status) != IN_ERROR)
        .subquery()
    )


# ---------------------------------------------------------------- one episode


@dataclass(frozen=True)
class EpisodeStay:
    episode_id: UUID
    as_of: date
    program_code: str | None
    referred_on: date | None
    admitted_on: date | None  # None: not admitted by the as-of date (figures below are None)
    discharged_on: date | None  # None while open on the as-of date
    discharge_type: str | None
    censored: bool  # open on the as-of date: kept out of averages
    calendar_days: int | None  # last day - admission + 1 (a same-day stay is 1 day)
    held_days: int | None  # days whose end-of-day status was onhold
    active_days: int | None  # calendar days - held days
    treatment_days: int | None  # distinct dates with an attended session
    weeks: float | None  # calendar days / 7, one decimal
    target_days: int | None  # the program's target_weeks * 7
    percent_of_target: float | None  # calendar days / target days * 100, one decimal
    wait_days: int | None  # referral to admission
    corrected_since: bool  # today's record tells these figures differently


def length_of_stay(
    connection: Connection, episode_id: UUID, as_of: date, known_on: date | None = None
) -> EpisodeStay:
    """One episode's stay on ``as_of``, as the record held it at the end of ``known_on``
    (by default ``as_of`` itself)."""
    e, prog = tables.episodes, tables.programs
    row = connection.execute(
        select(e.c.discharge_type, prog.c.target_weeks)
        .select_from(e.outerjoin(prog, prog.c.code == e.c.program_code))
        .where(e.c.episode_id == episode_id)
    ).first()
    if row is None:
        raise EpisodeNotFound(episode_id)
    known_on = known_on or as_of
    one = tables.periods.c.episode_id == episode_id
    then_s, now_s = stays(as_of, held_on(known_on), one), stays(as_of, held_now(), one)
    then = connection.execute(select(then_s)).mappings().first()
    now = connection.execute(select(now_s)).mappings().first()
    figures = ("program_code", "admitted_on", "discharged_on", "held_days", "days")
    corrected = (then and [then[f] for f in figures]) != (now and [now[f] for f in figures])
    target_days = row.target_weeks * 7 if row.target_weeks else None
    if then is None:
        return EpisodeStay(
            episode_id=episode_id, as_of=as_of, program_code=None, referred_on=None,
            admitted_on=None, discharged_on=None, discharge_type=None, censored=False,
            calendar_days=None, held_days=None, active_days=None, treatment_days=None,
            weeks=None, target_days=target_days, percent_of_target=None, wait_days=None,
            corrected_since=corrected,
        )
    days, held = int(then["days"]), int(then["held_days"] or 0)
    return EpisodeStay(
        episode_id=episode_id, as_of=as_of, program_code=then["program_code"],
        referred_on=then["referred_on"], admitted_on=then["admitted_on"],
        discharged_on=then["discharged_on"],
        discharge_type=row.discharge_type if then["discharged_on"] else None,
        censored=bool(then["censored"]), calendar_days=days, held_days=held,
        active_days=days - held,
        treatment_days=_treatment_days(connection, episode_id, as_of, known_on),
        weeks=round(days / 7, 1), target_days=target_days,
        percent_of_target=round(days / target_days * 100, 1) if target_days else None,
        wait_days=(then["admitted_on"] - then["referred_on"]).days,
        corrected_since=corrected,
    )


def _treatment_days(connection: Connection, episode_id: UUID, as_of: date, known_on: date) -> int:
    """Distinct attended dates up to ``as_of``, among the sessions recorded by ``known_on``
    (rm_audit tells when each session event was recorded)."""
    s, a = tables.sessions, tables.audit
    return int(connection.execute(
        select(func.count(func.distinct(s.c.session_date)))
        .select_from(s.join(a, and_(a.c.aggregate_id == s.c.episode_id,
                                    a.c.version == s.c.version)))
        .where(s.c.episode_id == episode_id, s.c.outcome == "attended", s.c.session_date <= as_of,
               a.c.recorded_at < end_of_day(known_on))
    ).scalar_one())


# ---------------------------------------------------------------- summaries


@dataclass(frozen=True)
class StayFigures:
    """Figures over the discharged (non-censored) episodes of a group."""

    key: str | None  # program code, discharge type, or None for all episodes
    count: int  # discharged episodes in the figures
    censored: int  # episodes still open on the as-of date (not in the figures)
    median_days: float | None
    mean_days: float | None  # one decimal
    median_weeks: float | None  # median days / 7, one decimal
    mean_weeks: float | None
    distribution: tuple[tuple[str, int], ...]  # (bin label, episodes), every bin in order
    target_days: int | None = None  # per program: target_weeks * 7
    median_percent_of_target: float | None = None  # median days / target days * 100

    def bins(self) -> dict[str, int]:
        return dict(self.distribution)


@dataclass(frozen=True)
class LengthOfStaySummary:
    as_of: date
    known_on: date  # the record as it stood at the end of this day
    overall: StayFigures
    by_program: tuple[StayFigures, ...]
    by_discharge_type: tuple[StayFigures, ...]
    corrected_since: int  # episodes whose figures for as_of today's record tells differently


def length_of_stay_summary(
    connection: Connection, as_of: date, known_on: date | None = None
) -> LengthOfStaySummary:
    known_on = known_on or as_of
    e, prog = tables.episodes, tables.programs
    unchanged = unchanged_since(connection, known_on)
    if unchanged and not begins_after(connection, as_of):
        s = _current_stays(as_of)  # the same rows from rm_episodes: no GROUP BY of every period
    else:
        held = stays(as_of, held_on(known_on))
        s = (select(held.c.program_code, e.c.discharge_type, held.c.censored, held.c.days)
             .select_from(held.join(e, e.c.episode_id == held.c.episode_id)).subquery())
    # One GROUP BY in SQL: how many stays of each length, per program, discharge type and
    # censoring.  Counts, means, medians and bins of any grouping follow from these few rows.
    histogram = connection.execute(
        select(s.c.program_code, s.c.discharge_type, s.c.censored, s.c.days, func.count())
        .group_by(s.c.program_code, s.c.discharge_type, s.c.censored, s.c.days)
    ).all()
    targets = dict(connection.execute(select(prog.c.code, prog.c.target_weeks * 7)).all())

    def group(index: int | None, discharged_only: bool = False) -> list[StayFigures]:
        rows: dict[Any, list[tuple[int, bool, int]]] = {} if index is not None else {None: []}
        for row in histogram:
            if not (discharged_only and row.censored):
                rows.setdefault(row[index] if index is not None else None, []).append(
                    (int(row.days), bool(row.censored), int(row[-1])))
        return [_figures(k, v, targets.get(k) if index == 0 else None)
                for k, v in sorted(rows.items(), key=lambda kv: kv[0] or "")]

    return LengthOfStaySummary(
        as_of=as_of, known_on=known_on, overall=group(None)[0], by_program=tuple(group(0)),
        by_discharge_type=tuple(group(1, discharged_only=True)),
        corrected_since=0 if unchanged else _count_corrected(connection, as_of, known_on),
    )


def _figures(
    key: Any, histogram: list[tuple[int, bool, int]], target_days: int | None
) -> StayFigures:
    """The figures of one group from its (days, censored, episodes) counts."""
    counts = sorted((days, n) for days, censored, n in histogram if not censored)
    total = sum(n for _, n in counts)
    median = mean = None
    if total:
        mean = sum(days * n for days, n in counts) / total
        # The median: the middle stay, or the mean of the two middle ones (1-based positions).
        lower, upper = (total + 1) // 2, total // 2 + 1
        seen, middle = 0, []
        for days, n in counts:
            seen += n
            middle += [days for position in (lower, upper) if seen - n < position <= seen]
        median = (middle[0] + middle[-1]) / 2
    bins = {name: 0 for name, _, _ in BINS}
    for days, n in counts:
        bins[next(name for name, _, high in BINS if high is None or days < high)] += n
    return StayFigures(
        key=key, count=total, censored=sum(n for _, censored, n in histogram if censored),
        median_days=median, mean_days=round(mean, 1) if mean is not None else None,
        median_weeks=round(median / 7, 1) if median is not None else None,
        mean_weeks=round(mean / 7, 1) if mean is not None else None,
        distribution=tuple(bins.items()), target_days=target_days,
        median_percent_of_target=(round(median / target_days * 100, 1)
                                  if median is not None and target_days else None),
    )


def corrected_since(connection: Connection, as_of: date, known_on: date) -> int:
    """Episodes whose stay figures on ``as_of`` differ between the record at the end of
    ``known_on`` and today's record (appeared, disappeared, or changed)."""
    if unchanged_since(connection, known_on):
        return 0  # the two records are the same rows
    return _count_corrected(connection, as_of, known_on)


def _count_corrected(connection: Connection, as_of: date, known_on: date) -> int:
    """:func:`corrected_since`, for a caller that knows something was recorded since."""
    # Only an episode with a period recorded or closed after ``known_on`` can differ.
    cut, q = end_of_day(known_on), tables.periods.alias("touched")
    touched = tables.periods.c.episode_id.in_(
        select(q.c.episode_id).where(or_(q.c.recorded_from >= cut, q.c.recorded_to >= cut)))

    def figures(view: ColumnElement[bool]) -> Any:
        s = stays(as_of, view, touched)
        return select(s.c.episode_id, s.c.program_code, s.c.admitted_on, s.c.discharged_on,
                      s.c.held_days)

    then, now = figures(held_on(known_on)), figures(held_now())
    # (then EXCEPT now) UNION (now EXCEPT then), each side in a subquery: SQLite refuses
    # a parenthesised compound select.  EXCEPT compares NULLs as equal, as wanted here.
    only_then, only_now = except_(then, now).subquery(), except_(now, then).subquery()
    changed = union(select(only_then.c.episode_id), select(only_now.c.episode_id)).subquery()
    return int(connection.execute(
        select(func.count(func.distinct(changed.c.episode_id)))
    ).scalar_one())


# ---------------------------------------------------------------- referral to admission


@dataclass(frozen=True)
class ReferralWait:
    program_code: str | None
    count: int  # episodes admitted by the as-of date
    median_days: float | None
    mean_days: float | None  # one decimal


def referral_to_admission_wait(
    connection: Connection, as_of: date, known_on: date | None = None
) -> tuple[ReferralWait, ...]:
    """Admission date - referral date, in days, per program, over episodes admitted by
    ``as_of`` (open ones too: the wait is complete at admission)."""
    s = stays(as_of, held_on(known_on or as_of))
    wait = days_between(s.c.admitted_on, s.c.referred_on)
    rows: dict[Any, list[tuple[int, bool, int]]] = {}
    for program_code, days, n in connection.execute(
        select(s.c.program_code, wait, func.count()).group_by(s.c.program_code, wait)
    ):
        rows.setdefault(program_code, []).append((int(days), False, int(n)))
    result = []
    for code, histogram in sorted(rows.items(), key=lambda kv: kv[0] or ""):
        f = _figures(code, histogram, None)
        result.append(ReferralWait(code, f.count, f.median_days, f.mean_days))
    return tuple(result)


class StayQueries:
    """Mixed into :class:`projections.ReadModels`."""

    def length_of_stay(
        self, episode_id: UUID, as_of: date | None = None, known_on: date | None = None
    ) -> EpisodeStay:
        """One episode's length of stay on ``as_of`` (default today), as the record held it
        at the end of ``known_on`` (default: ``as_of``)."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            day = as_of or self.today()  # type: ignore[attr-defined]
            return length_of_stay(connection, episode_id, day, known_on)

    def length_of_stay_summary(
        self, as_of: date | None = None, known_on: date | None = None
    ) -> LengthOfStaySummary:
        """Median, mean and distribution of stays per program and per discharge type."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            day = as_of or self.today()  # type: ignore[attr-defined]
            return length_of_stay_summary(connection, day, known_on)

    def referral_to_admission_wait(
        self, as_of: date | None = None, known_on: date | None = None
    ) -> tuple[ReferralWait, ...]:
        """Days from referral to admission, median and mean per program."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            day = as_of or self.today()  # type: ignore[attr-defined]
            return referral_to_admission_wait(connection, day, known_on)
