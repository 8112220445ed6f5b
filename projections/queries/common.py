"""Conventions every query shares: clinical "as of" dates and what the record held then."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, RowMapping, and_, bindparam, or_, select

from episodes.errors import EpisodeNotFound
from projections import tables

# Medicare's IOP benefit asks a physician to recertify the need at least every other month.
RECERTIFICATION_INTERVAL = timedelta(days=60)


def end_of_day(day: date) -> datetime:
    """The recorded-time cut-off for "as the record stood on ``day``": midnight UTC after it."""
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=timezone.utc)


def held_on(day: date) -> Any:
    """Period rows the record held at the end of ``day`` (recorded then, not yet superseded)."""
    p = tables.periods
    cut = end_of_day(day)
    return and_(p.c.recorded_from < cut, or_(p.c.recorded_to.is_(None), p.c.recorded_to >= cut))


def held_now() -> Any:
    """Period rows the record holds today (corrections included)."""
    return tables.periods.c.recorded_to.is_(None)


def valid_at_end_of(day: date) -> Any:
    """Periods in force at the end of clinical ``day`` (the census rule: present at end of day)."""
    p = tables.periods
    return and_(p.c.valid_from <= day, or_(p.c.valid_to.is_(None), p.c.valid_to > day))

def recertification_due(admitted_on: date | None, discharged_on: date | None, on: date) -> date | None:
    """The first of admission + 60, + 120, ... on or after ``on``, while in care on ``on``."""
    if admitted_on is None or on < admitted_on or (discharged_on is not None and discharged_on <= on):
        return None
    days = RECERTIFICATION_INTERVAL.days
    periods = max(-(-(on - admitted_on).days // days), 1)  # ceiling, and never the admission day
    return admitted_on + RECERTIFICATION_INTERVAL * periods


# Built once: an episode page reads this row on every view, and building a select costs about
# as much as running it.
_EPISODE_ROW = (
    select(tables.episodes, tables.programs.c.name.label("program_name"),
           tables.programs.c.target_weeks, tables.programs.c.minimum_weekly_hours)
    .select_from(tables.episodes.outerjoin(
        tables.programs, tables.programs.c.code == tables.episodes.c.program_code))
    .where(tables.episodes.c.episode_id == bindparam("episode_id"))
)


def episode_row(connection: Connection, episode_id: UUID) -> RowMapping:
    """The episode's ``rm_episodes`` row with its program's name, target weeks and weekly
    minimum (``None`` without a program): what every per-episode figure starts from.
    :class:`EpisodeNotFound` when the read models do not hold the episode."""
    row = connection.execute(_EPISODE_ROW, {"episode_id": episode_id}).mappings().first()
    if row is None:
        raise EpisodeNotFound(episode_id)
    return row
