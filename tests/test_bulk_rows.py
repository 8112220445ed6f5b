"""Many rows at once (episodes/bulk_rows.py: binary ``COPY`` on PostgreSQL, ``executemany``
elsewhere): stored exactly as SQLAlchemy's own ``insert`` stores the same rows, on both
backends, whatever Python values a column type accepts (a numeric from an int, a float or a
Decimal; a stream id from a type that sends text).
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Enum,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    Uuid,
    create_engine,
    insert,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy_utils import UUIDType

from episodes.bulk_rows import (
    BulkInserter,
    _binary_copy_types,
    _default_sqlite_datetime,
    _sqlite_datetime,
)

metadata = MetaData()


def columns() -> list[Column]:
    return [
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("stream", Uuid), Column("stream_text", UUIDType(binary=False)),
        Column("at", DateTime(timezone=True)), Column("day", Date), Column("label", String(20)),
        Column("note", Text), Column("flag", Boolean), Column("hours", Numeric(4, 1)),
        Column("payload", LargeBinary),
    ]


bulk = Table("bulk_rows_bulk", metadata, *columns())
plain = Table("bulk_rows_plain", metadata, *columns())


@pytest.fixture
def engine(database_url):
    engine = create_engine(database_url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    yield engine
    metadata.drop_all(engine)
    engine.dispose()


def rows() -> list[dict]:
    at = datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=timezone.utc)
    values = [(9, 1), (9.5, 2), (Decimal("12.5"), 3), (None, 4)]  # numeric from int, float, Decimal
    return [
        {"id": n, "stream": uuid4(), "stream_text": uuid4(), "at": at, "day": date(2026, 3, n),
         "label": "é\tq\\n" if n == 1 else None, "note": "line\nbreak, \"quoted\"",
         "flag": n % 2 == 0, "hours": hours, "payload": bytes(range(256)) * n}
        for hours, n in values
    ]


def test_rows_are_stored_as_sqlalchemys_insert_stores_them(engine):
    given = rows()
    with engine.begin() as connection:
        BulkInserter(bulk).insert(connection, given)
        connection.execute(insert(plain), given)
    with engine.connect() as connection:
        stored = [connection.exec_driver_sql(f"SELECT * FROM {t.name} ORDER BY id").all()
                  for t in (bulk, plain)]
    # Check the driver's own view of the rows (no SQLAlchemy result processing) is the same.
    assert stored[0] == stored[1] and len(stored[0]) == 4
    assert [row.hours for row in stored[0]][:3] in (
        [Decimal("9.0"), Decimal("9.5"), Decimal("12.5")],  # PostgreSQL
        [9, 9.5, 12.5],  # SQLite (numeric affinity)
    )


def test_postgresql_copies_in_binary_where_every_type_is_known():
    dialect = postgresql.psycopg.dialect()
    keys = [c.name for c in bulk.columns]
    assert _binary_copy_types(bulk, keys, dialect) == [
        "int4", "uuid", "uuid", "timestamptz", "date", "varchar", "text", "bool", "numeric", "bytea"]
    odd = MetaData()
    for name, column_type in (("json", postgresql.JSONB), ("array", postgresql.ARRAY(String(8))),
                              ("enum", Enum("date", "text", name="text"))):
        table = Table(f"bulk_rows_{name}", odd, Column("id", Integer), Column("x", column_type))
        assert _binary_copy_types(table, ["id", "x"], dialect) is None, name  # copied as text


def test_an_integer_too_large_for_its_column_is_refused_not_wrapped(postgres_url):
    # psycopg's binary form of an int4 wraps 2**31 + 7 to -2147483641; the text form was refused.
    engine = create_engine(postgres_url)
    metadata.create_all(engine)
    try:
        row = {**rows()[0], "id": 2**31 + 7}
        with pytest.raises(OverflowError, match="out of range for a 32-bit"), engine.begin() as connection:
            BulkInserter(bulk).insert(connection, [row])
        with engine.connect() as connection:
            assert connection.exec_driver_sql(f"SELECT count(*) FROM {bulk.name}").scalar_one() == 0
    finally:
        metadata.drop_all(engine)
        engine.dispose()


@given(st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.datetimes(timezones=st.timezones()), st.dates(), st.none()))
@settings(max_examples=300, deadline=None)
def test_sqlites_datetimes_are_written_as_sqlalchemys_processor_writes_them(value):
    # The rebuild's faster form of SQLite's DATETIME processor (each day's text kept, the time
    # put together) against the processor itself: any year, with or without microseconds or a
    # zone; a fresh one and one that has seen every earlier example (its days kept).
    assert _default_sqlite_datetime(SQLITE_DATETIME, SQLITE)
    assert _sqlite_datetime(SQLITE_PROCESSOR)(value) == SQLITE_PROCESSOR(value)
    assert SEEN_BEFORE(value) == SQLITE_PROCESSOR(value)
    if isinstance(value, datetime):  # the same day, another time: from the day's kept text
        later = value.replace(hour=23 - value.hour, microsecond=999_999 - value.microsecond)
        assert SEEN_BEFORE(later) == SQLITE_PROCESSOR(later)


SQLITE = sqlite_dialect.dialect()
SQLITE_DATETIME = DateTime(timezone=True)
SQLITE_PROCESSOR = SQLITE_DATETIME.dialect_impl(SQLITE).bind_processor(SQLITE)
SEEN_BEFORE = _sqlite_datetime(SQLITE_PROCESSOR)


def test_a_datetime_subclass_or_another_storage_format_goes_to_sqlalchemys_processor():
    class Stamp(datetime):
        def isoformat(self, *args):  # what the fast form would write for it
            return "not this"

    dialect = sqlite_dialect.dialect()
    processor = DateTime().dialect_impl(dialect).bind_processor(dialect)
    stamp = Stamp(2026, 3, 2, 9, 30)
    assert _sqlite_datetime(processor)(stamp) == processor(stamp) == "2026-03-02 09:30:00.000000"
    custom = sqlite_dialect.DATETIME(storage_format="%(year)04d/%(month)02d/%(day)02d")
    assert not _default_sqlite_datetime(custom, dialect)
    assert not _default_sqlite_datetime(DateTime(), postgresql.dialect())
