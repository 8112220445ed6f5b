"""The episode list: filters, search, sorting and paging over ``rm_episodes``.

Pages are read by key (keyset paging): the order is the sort column, then the episode id, both
in the chosen direction, episodes without a value for the column last; a page after (or before)
a given episode starts right after (before) that episode's place in the order.  Each sortable
column has an index on (column, episode id) (``projections.tables``), so a page costs the same
on page 2 as on page 2,000: the database walks the index from the boundary instead of counting
off every earlier row as OFFSET does.  A page number (``page=N``) is still accepted, by OFFSET,
for shared links to early pages.

The total and the page's position (to say "page 40 of 1,247") are counted over the same
filters, by index where the filters allow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, and_, func, literal, or_, select, tuple_

from projections import tables
from projections.queries.sqldates import days_between

SORTABLE = ("referred_on", "admitted_on", "discharged_on", "status", "program_code", "clinic",
            "patient_ref", "recorded_at")


class UnknownEpisode(LookupError):
    """A page was asked for after or before an episode the read models do not hold."""


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
    page: int  # the page this one is (by its first row's place in the order), from 1
    page_size: int
    position: int = 0  # matching episodes ordered before the first row
    has_next: bool = False

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))

    @property
    def has_previous(self) -> bool:
        return self.position > 0

    @property
    def first_id(self) -> UUID | None:
        return self.rows[0].episode_id if self.rows else None

    @property
    def last_id(self) -> UUID | None:
        return self.rows[-1].episode_id if self.rows else None


COLUMNS = ("episode_id", "patient_ref", "status", "program_code", "clinic", "level_code",
           "referred_on", "admitted_on", "discharged_on", "discharge_type", "attended",
           "consecutive_misses")


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
    after: UUID | None = None,
    before: UUID | None = None,
    last: bool = False,
) -> Page:
    """A page of episodes: the ``page``-th (by offset), or the one right ``after`` or right
    ``before`` an episode (by key), or the ``last`` one.  Raises :class:`UnknownEpisode` when
    ``after`` / ``before`` names an episode not in ``rm_episodes``."""
    if sort not in SORTABLE:
        raise ValueError(f"cannot sort by {sort!r}; choose one of {', '.join(SORTABLE)}")
    if not 1 <= page_size <= 500:
        raise ValueError(f"page_size must be 1-500, got {page_size}")
    if sum((after is not None, before is not None, last)) > 1:
        raise ValueError("ask for one of after, before or last")
    # A search or the past-target filter is tested row by row (no index can answer it) and
    # keeps few rows: sort those rather than walk the sort index until a page is found.
    selective = bool(search) or over_target is not None
    order = _Order(connection, _conditions(connection, as_of, status, program_code, clinic,
                                           level_code, over_target, search),
                   sort, descending, selective)
    if selective and page == 1 and after is None and before is None and not last:
        # One pass instead of two: the rows with the count of all matching rows beside them.
        found = order.forward_counting(page_size + 1)
        total = found[0][-1] if found else 0
        return Page(tuple(EpisodeSummary(*row[:-1]) for row in found[:page_size]), total, 1,
                    page_size, 0, len(found) > page_size)
    if after is not None or before is not None:
        boundary = order.boundary(after if after is not None else before)
        # Two counts: the rows before the boundary are counted over the index range, which a
        # single pass computing both (a CASE per row) made slower at 100,000 episodes.
        total = order.count()
        before_boundary = order.count_before(boundary, inclusive=after is not None)
        if after is not None:
            rows = order.forward(page_size + 1, boundary)
            position = before_boundary
        else:
            rows = order.backward(page_size, boundary)
            position = max(0, before_boundary - len(rows))
    elif last:
        total = order.count()
        rows = order.backward(total - (max(1, -(-total // page_size)) - 1) * page_size or page_size)
        position = max(0, total - len(rows))
    else:
        total = order.count()
        position = (page - 1) * page_size
        rows = order.forward(page_size + 1, offset=position)
    has_next = len(rows) > page_size
    return Page(tuple(EpisodeSummary(*row) for row in rows[:page_size]), total,
                position // page_size + 1, page_size, position, has_next)


def _conditions(connection: Connection, as_of: date, status: str | None,
                program_code: str | None, clinic: str | None, level_code: str | None,
                over_target: bool | None, search: str | None) -> list:
    e = tables.episodes
    conditions = [
        column == value
        for column, value in ((e.c.status, status), (e.c.program_code, program_code),
                              (e.c.clinic, clinic), (e.c.level_code, level_code))
        if value is not None
    ]
    if search:
        conditions.append(e.c.patient_ref.ilike(f"%{search.strip()}%"))
    if over_target is not None:
        conditions.append(_past_target(connection, as_of, over_target))
    return conditions


def _past_target(connection: Connection, as_of: date, past: bool) -> Any:
    """Stays past their program's target (``past``) or within it: day N of the stay (the
    admission day is day 1, the last day is the discharge or ``as_of``) > target days.

    A stay still open is past its target when admitted on or before ``as_of`` - target days:
    a date per program (a handful of rows), compared with ``admitted_on`` as it is stored, so
    no date arithmetic runs per row.  Finished stays compare their own length."""
    e, p = tables.episodes, tables.programs
    targets = dict(connection.execute(select(p.c.code, p.c.target_weeks * 7)).all())
    if not targets:
        return e.c.admitted_on.is_(None) if not past else literal(False)
    open_past = or_(*(and_(e.c.program_code == code, e.c.admitted_on <= as_of - timedelta(days=days))
                      for code, days in sorted(targets.items())))
    target = select(p.c.target_weeks * 7).where(p.c.code == e.c.program_code).scalar_subquery()
    closed_past = and_(e.c.discharged_on.is_not(None),
                       days_between(e.c.discharged_on, e.c.admitted_on) + 1 > target)
    over = and_(e.c.admitted_on.is_not(None),
                or_(and_(e.c.discharged_on.is_(None), open_past), closed_past))
    if past:
        return over
    # Within the target: not admitted, or admitted to a known program and not past it (an
    # admission to a program the read models do not hold is neither, as before).
    return or_(e.c.admitted_on.is_(None), and_(e.c.program_code.in_(sorted(targets)), ~over))


class _Order:
    """The list's order over the filtered episodes: (key, episode id), both ascending or both
    descending, rows without a key last (in episode id order).  Each part is read with a plain
    ORDER BY that an index on (key, episode_id) serves in either direction on both backends;
    a NULLS LAST clause would not (SQLite puts NULL first in an ascending index, PostgreSQL
    last), so the rows with a key and those without are read as two ranges."""

    def __init__(self, connection: Connection, conditions: list, sort: str, descending: bool,
                 sort_rows: bool = False):
        e = tables.episodes
        self.connection, self.descending = connection, descending
        self.key, self.id = e.c[sort], e.c.episode_id
        # The same order by an expression no index matches: the matching rows are sorted.
        self.sort_key = func.coalesce(self.key, self.key) if sort_rows else self.key
        self.where = and_(*conditions) if conditions else literal(True)
        self.nullable = self.key.nullable

    def _select(self, *conditions: Any) -> Any:
        e = tables.episodes
        return select(*(e.c[name] for name in COLUMNS)).where(self.where, *conditions)

    def _sorted(self, statement: Any, keyed: bool, reverse: bool) -> Any:
        down = self.descending != reverse
        columns = (self.sort_key, self.id) if keyed else (self.id,)
        return statement.order_by(*(c.desc() if down else c.asc() for c in columns))

    def _beyond(self, boundary: tuple, keyed: bool, reverse: bool, inclusive: bool = False) -> Any:
        """Rows after ``boundary`` in the order (before it when ``reverse``), within its part;
        the boundary row too when ``inclusive``."""
        down = self.descending != reverse
        if keyed:  # a row value: both backends seek it in the (key, episode_id) index
            left, right = tuple_(self.key, self.id), tuple_(*boundary)
        else:
            left, right = self.id, boundary[1]
        if down:
            return left <= right if inclusive else left < right
        return left >= right if inclusive else left > right

    def count(self) -> int:
        return self.connection.execute(
            select(func.count()).select_from(tables.episodes).where(self.where)).scalar_one()

    def count_before(self, boundary: tuple, inclusive: bool = False) -> int:
        """Matching rows ordered before ``boundary`` (and the boundary row, if it matches,
        when ``inclusive``): a range of the (key, episode_id) index."""
        return self.connection.execute(
            select(func.count()).select_from(tables.episodes)
            .where(self.where, self._before(boundary, inclusive))).scalar_one()

    def boundary(self, episode_id: UUID) -> tuple:
        found = self.connection.execute(
            select(self.key, self.id).where(self.id == episode_id)).first()
        if found is None:
            raise UnknownEpisode(episode_id)
        return tuple(found)

    def _before(self, boundary: tuple, inclusive: bool) -> Any:
        """Rows ordered before ``boundary`` (and the boundary row when ``inclusive``)."""
        keyed = boundary[0] is not None
        condition = self._beyond(boundary, keyed, reverse=True, inclusive=inclusive)
        if keyed:
            return and_(self.key.is_not(None), condition)
        if self.nullable:  # every row with a key comes first, then the keyless ones before it
            return or_(self.key.is_not(None), and_(self.key.is_(None), condition))
        return condition

    def _parts(self, boundary: tuple | None, reverse: bool) -> list[tuple[bool, Any]]:
        """The ranges to read, in reading order: (keyed, extra condition)."""
        keyed_part = (True, self.key.is_not(None) if self.nullable else None)
        null_part = (False, self.key.is_(None))
        parts = [keyed_part] + ([null_part] if self.nullable else [])
        if reverse:
            parts.reverse()
        if boundary is None:
            return parts
        keyed = boundary[0] is not None
        index = next(i for i, (k, _) in enumerate(parts) if k == keyed)
        first_keyed, first_condition = parts[index]
        beyond = self._beyond(boundary, keyed, reverse)
        first = (first_keyed, beyond if first_condition is None else and_(first_condition, beyond))
        return [first] + parts[index + 1:]

    def _read(self, limit: int, boundary: tuple | None, reverse: bool, offset: int = 0) -> list:
        rows: list = []
        parts = self._parts(boundary, reverse)
        for n, (keyed, condition) in enumerate(parts):
            if len(rows) >= limit:
                break
            statement = self._sorted(
                self._select(*[c for c in (condition,) if c is not None]), keyed, reverse)
            if offset and n < len(parts) - 1:  # page=N: skip the parts the offset covers
                size = self.connection.execute(select(func.count()).select_from(
                    statement.order_by(None).subquery())).scalar_one()
                if offset >= size:
                    offset -= size
                    continue
            rows += self.connection.execute(statement.limit(limit - len(rows)).offset(offset)).all()
            offset = 0
        return rows

    def forward_counting(self, limit: int) -> list:
        """The first ``limit`` rows, each followed by the number of all matching rows: for
        filters that are tested row by row anyway, so sorting in one pass (rows without a key
        last) costs no index walk."""
        down = self.descending
        keys = (self.sort_key.desc() if down else self.sort_key.asc(),
                self.id.desc() if down else self.id.asc())
        statement = (self._select().add_columns(func.count().over())
                     .order_by(self.key.is_(None), *keys).limit(limit))
        return self.connection.execute(statement).all()

    def forward(self, limit: int, boundary: tuple | None = None, offset: int = 0) -> list:
        return self._read(limit, boundary, reverse=False, offset=offset)

    def backward(self, limit: int, boundary: tuple | None = None) -> list:
        return list(reversed(self._read(limit, boundary, reverse=True)))


class ListingQueries:
    """Mixed into :class:`projections.ReadModels`."""

    def episodes(self, **filters) -> Page:
        """A page of episodes; filters: status, program_code, clinic, level_code, over_target,
        search (part of the patient reference), sort, descending, page_size, as_of; which
        page: page (a number), after / before (an episode id), or last."""
        as_of = filters.pop("as_of", None) or self.today()  # type: ignore[attr-defined]
        with self.connect() as connection:  # type: ignore[attr-defined]
            return list_episodes(connection, as_of=as_of, **filters)


