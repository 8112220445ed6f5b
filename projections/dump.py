"""A canonical dump of every read-model table: the same rows give the same dump.

Used to prove that a rebuild from the events gives exactly what incremental processing gave.
Surrogate keys (the periods' autoincrement id) are left out; rows are sorted by all columns.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from projections import tables

SURROGATE_COLUMNS = {"rm_periods": {"id"}}


def canonical_dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    dump = {}
    with engine.connect() as connection:
        for table in tables.READ_MODELS:
            skip = SURROGATE_COLUMNS.get(table.name, set())
            columns = [c for c in table.columns if c.name not in skip]
            rows = connection.execute(select(*columns)).all()
            dump[table.name] = sorted((tuple(_canonical(v) for v in row) for row in rows), key=repr)
    return dump


def _canonical(value: Any) -> Any:
    # SQLite gives back naive datetimes and floats where PostgreSQL gives aware ones and Decimals.
    if hasattr(value, "tzinfo") and getattr(value, "tzinfo", None) is not None:
        return value.replace(tzinfo=None)
    return value
