"""Date arithmetic in SQL that reads the same on SQLite (dates as ISO text) and PostgreSQL."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Date, Integer, literal, literal_column
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement


class days_between(FunctionElement):  # noqa: N801 - reads as an SQL function
    """``later - earlier`` in whole days, on SQLite and PostgreSQL alike."""

    type = Integer()
    name = "days_between"
    inherit_cache = True


@compiles(days_between)
def _days_between_postgresql(element: days_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)  # PostgreSQL: date - date is an integer of days
    return f"({compiler.process(later, **kw)} - {compiler.process(earlier, **kw)})"


@compiles(days_between, "sqlite")
def _days_between_sqlite(element: days_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)  # SQLite stores dates as ISO text
    return (f"CAST(julianday({compiler.process(later, **kw)}) - "
            f"julianday({compiler.process(earlier, **kw)}) AS INTEGER)")


def a_date(day: date) -> ColumnElement[Any]:
    return literal(day, Date)

class days_after(FunctionElement[date]):  # noqa: N801 - reads as the SQL function it renders
    """``day + n`` days as a date, on SQLite (``date(day, '+n days')``) and PostgreSQL
    (``day + n``).  ``n`` is a Python int, rendered into the SQL (so it is part of the cache key)."""

    type = Date()
    inherit_cache = True
    name = "days_after"

    def __init__(self, day: Any, n: int):
        super().__init__(day, literal_column(str(int(n))))


@compiles(days_after)
def _days_after_postgresql(element: days_after, compiler: Any, **kw: Any) -> str:
    day, n = element.clauses
    return f"({compiler.process(day, **kw)} + {compiler.process(n, **kw)})"


@compiles(days_after, "sqlite")
def _days_after_sqlite(element: days_after, compiler: Any, **kw: Any) -> str:
    day, n = element.clauses
    return f"date({compiler.process(day, **kw)}, '+' || {compiler.process(n, **kw)} || ' days')"


class unindexed(FunctionElement[Any]):  # noqa: N801 - reads as the SQL it renders
    """A column's value, never a way into one of its indexes: ``+column`` on SQLite, whose
    planner (without statistics) prefers walking an index and looking each row up by its key
    to reading a table once; the column itself elsewhere."""

    inherit_cache = True
    name = "unindexed"

    def __init__(self, column: Any):
        super().__init__(column)
        self.type = column.type


@compiles(unindexed)
def _unindexed(element: unindexed, compiler: Any, **kw: Any) -> str:
    return compiler.process(list(element.clauses)[0], **kw)


@compiles(unindexed, "sqlite")
def _unindexed_sqlite(element: unindexed, compiler: Any, **kw: Any) -> str:
    return "+" + compiler.process(list(element.clauses)[0], **kw)
