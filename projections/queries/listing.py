"""The episode list: filters, search, sorting and paging over ``rm_episodes``.

Paging is by offset over an indexed, stable order (the sort key, then the episode id), and the
total is counted once per filter set, so the panel stays quick on large registers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from uuid import UUID

from sqlalchemy import Connection, and_, func, literal, or_, select

from projections import tables
from projections.queries.sqldates import a_date, days_between

SORTABLE = ("referred_on", "admitted_on", "discharged_on", "status", "program_code", "clinic",
            "patient_ref", "recorded_at")


@dataclass(frozen=True)
class EpisodeSummary:
    episode_id: UUID
    patient_ref: str
    status: str
    program_code: str | None
    clinic: str | None
    level_code: str | None
    referred_on: date
    admitted_on: date | None
    discharged_on: date | None
    discharge_type: str | None
    attended: int
    consecutive_misses: int


@dataclass(frozen=True)
class Page:
    rows: tuple[EpisodeSummary, ...]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def list_episodes(
    connection: Connection,
    *,
    as_of: date,
    status: str | None = None,
    program_code: str | None = None,
    clinic: str | None = None,
    level_code: str | None = None,
    over_target: bool | None = None,
    search: str | None = None,
    sort: str = "referred_on",
    descending: bool = True,
    page: int = 1,
    page_size: int = 50,
) -> Page:
    if sort not in SORTABLE:
        raise ValueError(f"cannot sort by {sort!r}; choose one of {', '.join(SORTABLE)}")
    if not 1 <= page_size <= 500:
        raise ValueError(f"page_size must be 1-500, got {page_size}")
    e, p = tables.episodes, tables.programs
    conditions = [
        column == value
        for column, value in ((e.c.status, status), (e.c.program_code, program_code),
                              (e.c.clinic, clinic), (e.c.level_code, level_code))
        if value is not None
    ]
    if search:
        conditions.append(e.c.patient_ref.ilike(f"%{search.strip()}%"))
    if over_target is not None:
        # In care past the program's target: admission + target days <= the as-of date.
        stay_end = func.coalesce(e.c.discharged_on, a_date(as_of))
        target = p.c.target_weeks * 7
        past = and_(e.c.admitted_on.is_not(None), days_between(stay_end, e.c.admitted_on) + 1 > target)
        conditions.append(past if over_target else or_(e.c.admitted_on.is_(None), ~past))
    joined = e.outerjoin(p, p.c.code == e.c.program_code)
    where = and_(*conditions) if conditions else literal(True)
    total = connection.execute(select(func.count()).select_from(joined).where(where)).scalar_one()
    key = e.c[sort]
    order = (key.desc().nulls_last(), e.c.episode_id) if descending else (key.asc().nulls_last(), e.c.episode_id)
    rows = connection.execute(
        select(e.c.episode_id, e.c.patient_ref, e.c.status, e.c.program_code, e.c.clinic,
               e.c.level_code, e.c.referred_on, e.c.admitted_on, e.c.discharged_on,
               e.c.discharge_type, e.c.attended, e.c.consecutive_misses)
        .select_from(joined).where(where).order_by(*order)
        .limit(page_size).offset((page - 1) * page_size)
    ).all()
    return Page(tuple(EpisodeSummary(*row) for row in rows), total, page, page_size)




class ListingQueries:
    """Mixed into :class:`projections.ReadModels`."""

    def episodes(self, **filters) -> Page:  # noqa: ANN003 - the keyword filters of list_episodes
        """A page of episodes; filters: status, program_code, clinic, level_code, over_target,
        search (part of the patient reference), sort, descending, page, page_size, as_of."""
        as_of = filters.pop("as_of", None) or self.today()  # type: ignore[attr-defined]
        with self.connect() as connection:  # type: ignore[attr-defined]
            return list_episodes(connection, as_of=as_of, **filters)


