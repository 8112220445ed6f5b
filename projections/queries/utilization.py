"""Utilization review: what the payers authorized, what was used, and what is due.

Conventions (docs/projections.md (Utilization) has the sources):

* an authorization covers ``start_on``..``end_on``, both days included;
* used: for unit ``days``, distinct days with an attended session in that range; for
  ``sessions`` and ``units``, attended sessions in that range (one billing unit per attended
  session: the events carry no unit counts);
* ``remaining`` never goes below zero: use beyond the authorized amount shows as ``over_by``;
* "in care" on a date means active or on hold at the end of that day, by today's record;
* recertification (Medicare IOP): admission + 60 days, then every 60 days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, RowMapping, Select, and_, bindparam, case, func, select

from projections import tables
from projections.queries.common import (
    episode_row,
    held_now,
    recertification_due,
    valid_at_end_of,
)
from projections.queries.sqldates import unindexed
from projections.queries.stay import begins_after

IN_CARE = ("active", "onhold")


@dataclass(frozen=True)
class AuthorizationUse:
    episode_id: UUID
    version: int  # the AuthorizationRecorded event's version: its identity within the episode
    payer: str
    unit: str  # days | sessions | units
    authorized: int
    start_on: date
    end_on: date
    next_review_on: date | None
    reference: str | None
    used: int
    remaining: int  # authorized - used, never below 0
    over_by: int  # used - authorized when more was used than authorized, else 0

    def covers(self, day: date) -> bool:
        return self.start_on <= day <= self.end_on


@dataclass(frozen=True)
class EpisodeUtilization:
    episode_id: UUID
    on: date
    authorizations: tuple[AuthorizationUse, ...]  # by start date
    authorized_on: bool  # some authorization's range contains ``on``
    next_review_on: date | None  # earliest next review on or after ``on``
    recertification_due: date | None  # None unless in care (admitted, not discharged) on ``on``


@dataclass(frozen=True)
class ExpiringAuthorization:
    authorization: AuthorizationUse
    patient_ref: str
    status: str  # on the date asked about: active | onhold
    program_code: str | None
    clinic: str | None
    days_left: int  # end_on - the date asked about (0: ends that day)
    renewed: bool  # another authorization of the episode ends later


@dataclass(frozen=True)
class UnauthorizedEpisode:
    episode_id: UUID
    patient_ref: str
    status: str  # on the date asked about: active | onhold
    program_code: str | None
    clinic: str | None
    last_authorized_until: date | None  # latest end before the date: lapsed since the day after
    next_authorized_from: date | None  # earliest start after the date: a gap, not a lapse


def _used() -> Any:
    """What was used of an authorization, over its rm_sessions rows: distinct days with an
    attended session for unit ``days``, else attended sessions (one unit each)."""
    s = tables.sessions
    return case((tables.authorizations.c.unit == "days", func.count(s.c.session_date.distinct())),
                else_=func.count(s.c.version))


def _counted_sessions() -> tuple[Any, ...]:
    """The rm_sessions rows an authorization's use counts: its episode's attended sessions
    dated within it."""
    a, s = tables.authorizations, tables.sessions
    return (s.c.episode_id == a.c.episode_id, s.c.outcome == "attended",
            s.c.session_date >= a.c.start_on, s.c.session_date <= a.c.end_on)


def _uses_select(*where: Any) -> Select:
    """Authorizations with what was used of them, counted in SQL (one row per authorization)."""
    a, s = tables.authorizations, tables.sessions
    return (
        select(a, _used().label("used"))
        .select_from(a.outerjoin(s, and_(*_counted_sessions())))
        .where(*where)
        .group_by(*a.c)
        .order_by(a.c.episode_id, a.c.start_on, a.c.version)
    )


def _uses(connection: Connection, *where: Any) -> list[AuthorizationUse]:
    return [_use(row) for row in connection.execute(_uses_select(*where))]


# Built once: the episode page asks on every view.
_EPISODE_USES = _uses_select(tables.authorizations.c.episode_id == bindparam("episode_id"))


def _episode_uses(connection: Connection, episode_id: UUID) -> tuple[AuthorizationUse, ...]:
    rows = connection.execute(_EPISODE_USES, {"episode_id": episode_id})
    return tuple(_use(row) for row in rows)


def _use(row: Any) -> AuthorizationUse:
    used, authorized = row.used, row.authorized
    return AuthorizationUse(
        episode_id=row.episode_id, version=row.version, payer=row.payer, unit=row.unit,
        authorized=authorized, start_on=row.start_on, end_on=row.end_on,
        next_review_on=row.next_review_on, reference=row.reference, used=used,
        remaining=max(authorized - used, 0), over_by=max(used - authorized, 0),
    )




def authorization_use(connection: Connection, episode_id: UUID) -> tuple[AuthorizationUse, ...]:
    episode_row(connection, episode_id)  # EpisodeNotFound when the read models do not hold it
    return _episode_uses(connection, episode_id)


def episode_utilization(connection: Connection, episode_id: UUID, on: date) -> EpisodeUtilization:
    return utilization_of(connection, episode_row(connection, episode_id), on)


def utilization_of(connection: Connection, row: RowMapping, on: date) -> EpisodeUtilization:
    """The utilization of the episode of ``row`` (:func:`projections.queries.common.episode_row`)."""
    episode_id = row["episode_id"]
    admitted_on = None if row["status"] == "entered-in-error" else row["admitted_on"]
    uses = _episode_uses(connection, episode_id)
    reviews = [u.next_review_on for u in uses if u.next_review_on and u.next_review_on >= on]
    return EpisodeUtilization(
        episode_id=episode_id, on=on, authorizations=uses,
        authorized_on=any(u.covers(on) for u in uses),
        next_review_on=min(reviews, default=None),
        recertification_due=recertification_due(admitted_on, row["discharged_on"], on),
    )


def _in_care_on(on: date, program_code: str | None) -> Any:
    """rm_periods rows of episodes in care at the end of ``on``, by today's record."""
    p = tables.periods
    where = [held_now(), valid_at_end_of(on), p.c.status.in_(IN_CARE)]
    if program_code is not None:
        where.append(p.c.program_code == program_code)
    return (
        select(p.c.episode_id, p.c.status, p.c.program_code, p.c.clinic)
        .where(*where)
        .subquery("in_care")
    )


def authorizations_expiring(
    connection: Connection, on: date, within_days: int, program_code: str | None = None
) -> tuple[ExpiringAuthorization, ...]:
    """Authorizations ending ``on``..``on + within_days`` of episodes in care on ``on``."""
    a, e = tables.authorizations, tables.episodes
    ending = (a.c.end_on >= on, a.c.end_on <= on + timedelta(days=within_days))
    if not begins_after(connection, on):  # the day's statuses are today's: see _expiring_now
        rows = connection.execute(_expiring_now(ending, program_code)).all()
        uses = [_use(row) for row in rows]
        episodes = {row.episode_id: row for row in rows}
    else:
        in_care = _in_care_on(on, program_code)
        uses = _uses(connection, *ending, a.c.episode_id.in_(select(in_care.c.episode_id)))
        if not uses:
            return ()
        episodes = {row.episode_id: row for row in connection.execute(
            select(in_care, e.c.patient_ref,
                   select(func.max(a.c.end_on)).where(a.c.episode_id == in_care.c.episode_id)
                   .scalar_subquery().label("last_end"))
            .select_from(in_care.join(e, e.c.episode_id == in_care.c.episode_id))
            .where(in_care.c.episode_id.in_({u.episode_id for u in uses}))
        )}
    expiring = [
        ExpiringAuthorization(
            authorization=u, patient_ref=r.patient_ref, status=r.status, program_code=r.program_code,
            clinic=r.clinic, days_left=(u.end_on - on).days, renewed=r.last_end > u.end_on,
        )
        for u in uses
        for r in (episodes[u.episode_id],)
    ]
    expiring.sort(key=lambda x: (x.authorization.end_on, x.patient_ref, x.authorization.version))
    return tuple(expiring)


def _expiring_now(ending: tuple[Any, ...], program_code: str | None) -> Select:
    """The authorizations ``ending`` of episodes in care, with their use, the episode's status,
    program, clinic and patient, and the end of its latest authorization: in one statement,
    when no period of today's record begins after the day asked about.

    Then an episode's period in force at the end of that day is its last one, whose status,
    program and clinic are in its ``rm_episodes`` row (``derive.periods`` and
    ``derive.episode_row`` end on the same state), and "in care" is a condition on that row.
    The few authorizations ending in the window have their sessions counted by correlated
    subqueries (the sessions' key) instead of a join of every session (0.4 s at 100,000
    episodes); tests/test_read_stay_current.py checks it against the general path.
    """
    a, e = tables.authorizations, tables.episodes
    later = tables.authorizations.alias("later")
    # SQLite reads rm_authorizations through and looks the episodes up, rather than every
    # episode in care by rm_episodes_status_program and then its authorizations.
    where = [*ending, unindexed(e.c.status).in_(IN_CARE)]
    if program_code is not None:
        where.append(e.c.program_code == program_code)
    return (
        # One subquery counts what the unit asks for: with a count of days and one of sessions
        # PostgreSQL's estimate passed jit_above_cost, and JIT compiling took 0.15-0.6 s.
        select(a, select(_used()).where(*_counted_sessions()).scalar_subquery().label("used"),
               e.c.status, e.c.program_code, e.c.clinic, e.c.patient_ref,
               select(func.max(later.c.end_on)).where(later.c.episode_id == a.c.episode_id)
               .scalar_subquery().label("last_end"))
        .select_from(a.join(e, e.c.episode_id == a.c.episode_id))
        .where(*where)
        .order_by(a.c.episode_id, a.c.start_on, a.c.version)
    )


def in_care_without_authorization(
    connection: Connection, on: date, program_code: str | None = None
) -> tuple[UnauthorizedEpisode, ...]:
    """Episodes in care on ``on`` with no authorization whose range contains ``on``."""
    a, e = tables.authorizations, tables.episodes
    in_care = _in_care_on(on, program_code)
    mine = a.c.episode_id == in_care.c.episode_id
    covering = select(a.c.version).where(mine, a.c.start_on <= on, a.c.end_on >= on).exists()
    rows = connection.execute(
        select(in_care, e.c.patient_ref,
               select(func.max(a.c.end_on)).where(mine, a.c.end_on < on).scalar_subquery()
               .label("last_until"),
               select(func.min(a.c.start_on)).where(mine, a.c.start_on > on).scalar_subquery()
               .label("next_from"))
        .select_from(in_care.join(e, e.c.episode_id == in_care.c.episode_id))
        .where(~covering)
        .order_by(e.c.patient_ref, in_care.c.episode_id)
    ).mappings().all()
    return tuple(
        UnauthorizedEpisode(
            episode_id=r["episode_id"], patient_ref=r["patient_ref"], status=r["status"],
            program_code=r["program_code"], clinic=r["clinic"],
            last_authorized_until=r["last_until"], next_authorized_from=r["next_from"],
        )
        for r in rows
    )


class UtilizationQueries:
    """Mixed into :class:`projections.ReadModels`."""

    def authorization_use(self, episode_id: UUID) -> tuple[AuthorizationUse, ...]:
        """Each authorization of the episode: authorized, used, remaining, over by."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            return authorization_use(connection, episode_id)

    def utilization(self, episode_id: UUID, on: date | None = None) -> EpisodeUtilization:
        """Authorizations with their use, whether ``on`` (today) is covered, next review and
        recertification dates."""
        on = on or self.today()  # type: ignore[attr-defined]
        with self.connect() as connection:  # type: ignore[attr-defined]
            return episode_utilization(connection, episode_id, on)

    def authorizations_expiring(
        self, within_days: int = 14, on: date | None = None, program_code: str | None = None
    ) -> tuple[ExpiringAuthorization, ...]:
        """Authorizations of in-care episodes that end within ``within_days`` of ``on`` (today)."""
        on = on or self.today()  # type: ignore[attr-defined]
        with self.connect() as connection:  # type: ignore[attr-defined]
            return authorizations_expiring(connection, on, within_days, program_code)

    def in_care_without_authorization(
        self, on: date | None = None, program_code: str | None = None
    ) -> tuple[UnauthorizedEpisode, ...]:
        """Episodes active or on hold on ``on`` (today) that no authorization covers that day."""
        on = on or self.today()  # type: ignore[attr-defined]
        with self.connect() as connection:  # type: ignore[attr-defined]
            return in_care_without_authorization(connection, on, program_code)
