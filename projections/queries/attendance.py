"""Attendance: sessions attended against sessions expected, and runs of unexcused misses.

Each recorded session has one outcome in ``rm_sessions``: ``attended``, ``missed`` (unexcused),
``excused`` (an excused absence) or ``cancelled`` (the program cancelled it).

* attendance rate = attended / (attended + missed + excused).  Sessions the program cancelled
  are not expected of the patient and stay out (domain.md); excused absences stay in: they
  were expected sessions the patient did not attend.
* the consecutive-miss run: unexcused misses since the last attended session, in clinical
  order (session date, then the order recorded); excused absences and program cancellations
  neither extend nor break it.  A run at or above the threshold (3 by default) flags a
  drop-out risk.

Voided sessions are gone from ``rm_sessions`` and amended ones carry their amended values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, bindparam, case, func, select, tuple_

from projections import tables
from projections.queries.common import episode_row

DEFAULT_MISS_THRESHOLD = 3
OUTCOMES = ("attended", "missed", "excused", "cancelled")
IN_CARE = ("active", "onhold")
EXCLUDED_STATUSES = ("entered-in-error",)  # episodes that should never have existed


@dataclass(frozen=True)
class AttendanceCounts:
    attended: int = 0
    missed: int = 0  # unexcused
    excused: int = 0
    cancelled: int = 0  # by the program: not expected of the patient

    @property
    def expected(self) -> int:
        return self.attended + self.missed + self.excused

    @property
    def rate(self) -> float | None:
        """attended / expected (0-1); None when no session was expected."""
        return self.attended / self.expected if self.expected else None

    @property
    def percent(self) -> float | None:
        return None if self.rate is None else round(self.rate * 100, 1)


@dataclass(frozen=True)
class EpisodeAttendance:
    episode_id: UUID
    as_of: date
    total: AttendanceCounts
    by_kind: Mapping[str, AttendanceCounts] = field(default_factory=dict)  # session kind -> counts
    consecutive_misses: int = 0  # the current run of unexcused misses, in clinical order
    threshold: int = DEFAULT_MISS_THRESHOLD
    last_attended_on: date | None = None

    @property
    def at_risk(self) -> bool:
        """The run has reached the threshold: a drop-out risk."""
        return self.consecutive_misses >= self.threshold


@dataclass(frozen=True)
class MissRunAlert:
    episode_id: UUID
    status: str
    program_code: str | None
    clinic: str | None
    consecutive_misses: int
    last_attended_on: date | None


@dataclass(frozen=True)
class ProgramAttendance:
    program_code: str
    program_name: str | None
    episodes: int  # episodes with at least one session in the range
    counts: AttendanceCounts


def _counts(rows: Mapping[str, int]) -> AttendanceCounts:
    return AttendanceCounts(**{o: int(rows.get(o, 0)) for o in OUTCOMES})


def miss_run(outcomes_latest_first: list[str]) -> int:
    """Unexcused misses since the last attended session (excused / cancelled are skipped)."""
    run = 0
    for outcome in outcomes_latest_first:
        if outcome == "attended":
            break
        run += outcome == "missed"
    return run


def episode_attendance(
    connection: Connection, episode_id: UUID, as_of: date, threshold: int = DEFAULT_MISS_THRESHOLD,
) -> EpisodeAttendance:
    """Sessions dated on or before ``as_of``, as the record holds them today."""
    episode_row(connection, episode_id)  # EpisodeNotFound when the read models do not hold it
    return attendance_of(connection, episode_id, as_of, threshold)


def _per_kind_and_outcome() -> Any:
    """Per session kind and outcome, of the sessions dated on or before ``as_of``: how many, the
    latest date, and how many are unexcused misses that no attended session follows in clinical
    order (session date, then the order recorded): those are the current run (miss_run's rule),
    counted in SQL rather than by reading every session back (500 rows for a long episode)."""
    s, later = tables.sessions, tables.sessions.alias("later_attended")
    dated = (s.c.episode_id == bindparam("episode_id"), s.c.session_date <= bindparam("as_of"))
    attended_after = select(later.c.version).where(
        later.c.episode_id == s.c.episode_id, later.c.session_date <= bindparam("as_of"),
        later.c.outcome == "attended",
        tuple_(later.c.session_date, later.c.version) > tuple_(s.c.session_date, s.c.version),
    ).exists()
    # CASE evaluates in order: the EXISTS runs for misses only.
    in_run = case((s.c.outcome != "missed", 0), (attended_after, 0), else_=1)
    return (select(s.c.kind, s.c.outcome, func.count().label("n"),
                   func.max(s.c.session_date).label("latest"), func.sum(in_run).label("in_run"))
            .where(*dated).group_by(s.c.kind, s.c.outcome))


_PER_KIND_AND_OUTCOME = _per_kind_and_outcome()  # built once: the episode page asks on every view


def attendance_of(
    connection: Connection, episode_id: UUID, as_of: date, threshold: int = DEFAULT_MISS_THRESHOLD,
) -> EpisodeAttendance:
    """:func:`episode_attendance` of an episode known to be in the read models: one statement."""
    per_kind: dict[str, dict[str, int]] = {}
    run, last_attended_on = 0, None
    parameters = {"episode_id": episode_id, "as_of": as_of}
    for row in connection.execute(_PER_KIND_AND_OUTCOME, parameters):
        per_kind.setdefault(row.kind, {})[row.outcome] = row.n
        run += int(row.in_run)
        if row.outcome == "attended":
            last_attended_on = max(row.latest, last_attended_on or row.latest)
    total = {o: sum(k.get(o, 0) for k in per_kind.values()) for o in OUTCOMES}
    return EpisodeAttendance(
        episode_id=episode_id, as_of=as_of, total=_counts(total),
        by_kind={k: _counts(v) for k, v in sorted(per_kind.items())},
        consecutive_misses=run, threshold=threshold, last_attended_on=last_attended_on,
    )


def miss_run_alerts(
    connection: Connection, threshold: int = DEFAULT_MISS_THRESHOLD,
) -> list[MissRunAlert]:
    """Episodes in care (active or on hold) whose current run of unexcused misses >= threshold.

    Reads ``rm_episodes.consecutive_misses``, kept by the projector with the same rule as
    :func:`miss_run` (clinical order), so the alert is one pass over one table.
    """
    e = tables.episodes
    rows = connection.execute(
        select(e.c.episode_id, e.c.status, e.c.program_code, e.c.clinic, e.c.consecutive_misses,
               e.c.last_attended_on)
        .where(e.c.status.in_(IN_CARE), e.c.consecutive_misses >= threshold)
        .order_by(e.c.consecutive_misses.desc(), e.c.episode_id)
    ).all()
    return [MissRunAlert(*row) for row in rows]


def program_attendance(connection: Connection, start: date, end: date) -> list[ProgramAttendance]:
    """Per program, sessions dated from ``start`` to ``end`` (both included), one GROUP BY.

    Every defined program is listed; one without sessions in the range has a rate of None.
    """
    e, s, p = tables.episodes, tables.sessions, tables.programs
    tallies = [func.sum(case((s.c.outcome == o, 1), else_=0)).label(o) for o in OUTCOMES]
    rows = connection.execute(
        select(e.c.program_code,
               func.count(func.distinct(s.c.episode_id)).label("episodes"), *tallies)
        .select_from(s.join(e, e.c.episode_id == s.c.episode_id))
        .where(s.c.session_date >= start, s.c.session_date <= end,
               e.c.status.notin_(EXCLUDED_STATUSES), e.c.program_code.is_not(None))
        .group_by(e.c.program_code)
    ).mappings().all()
    found = {r["program_code"]: r for r in rows}
    names = dict(connection.execute(select(p.c.code, p.c.name)).all())
    result = []
    for code in sorted(set(names) | set(found)):
        r = found.get(code)
        result.append(ProgramAttendance(
            program_code=code, program_name=names.get(code),
            episodes=int(r["episodes"]) if r else 0,
            counts=_counts(r) if r else AttendanceCounts(),
        ))
    return result


class AttendanceQueries:
    """Mixed into :class:`projections.ReadModels`."""

    def attendance(
        self, episode_id: UUID, as_of: date | None = None, threshold: int = DEFAULT_MISS_THRESHOLD,
    ) -> EpisodeAttendance:
        """Attended / missed / excused / cancelled, the rate, the miss run, and per session kind."""
        as_of = as_of or self.today()  # type: ignore[attr-defined]
        with self.connect() as connection:  # type: ignore[attr-defined]
            return episode_attendance(connection, episode_id, as_of, threshold)

    def miss_run_alerts(self, threshold: int = DEFAULT_MISS_THRESHOLD) -> list[MissRunAlert]:
        """Episodes in care whose current run of unexcused misses has reached ``threshold``."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            return miss_run_alerts(connection, threshold)

    def program_attendance(self, start: date, end: date) -> list[ProgramAttendance]:
        """Attendance rate per program over sessions dated ``start`` to ``end``."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            return program_attendance(connection, start, end)
