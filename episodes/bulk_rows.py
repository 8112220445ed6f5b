"""Writing many rows into one table at once, as fast as the driver allows (the bulk import's
events, the rebuild's read models).

``connection.execute(insert(table), rows)`` spends most of its time in SQLAlchemy's per-row
bookkeeping (20 µs a row on SQLite, 39 on PostgreSQL, measured on ``rm_audit``).  Here every
value still goes through its column type's own bind processor, so what is stored is exactly
what that statement would store; then the rows go to the driver in one call:

* PostgreSQL: ``COPY table (columns) FROM STDIN (FORMAT BINARY)`` (psycopg), inside the
  caller's transaction (text ``COPY`` for a table with a type not in :data:`BINARY_COPY_TYPES`);
* SQLite (and anything else): one prepared ``INSERT`` run with ``executemany``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any, NamedTuple
from uuid import UUID

from sqlalchemy import Connection, Dialect, Table, insert
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import sqltypes


class BulkInserter:
    def __init__(self, table: Table):
        self.table = table
        self._plans: dict[tuple[Any, tuple[str, ...]], _Plan] = {}

    def insert(self, connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` (dicts with the same keys: the columns given) in ``connection``'s
        transaction."""
        self.write(connection, self.prepare(connection.dialect, rows))

    def prepare(self, dialect: Dialect, rows: Sequence[dict[str, Any]]) -> PreparedRows | None:
        """``rows`` as the driver will take them (every value through its column type's bind
        processor), for :meth:`write`: work that needs no transaction, done before one is
        started (a SQLite writer holds the database's one write lock for the transaction's
        length).  None for no rows."""
        if not rows:
            return None
        keys = tuple(rows[0])
        plan = self._plans.get((dialect.name, keys))
        if plan is None:
            plan = self._plans[(dialect.name, keys)] = _Plan(self.table, keys, dialect)
        return PreparedRows(plan, plan.values(rows))

    def write(self, connection: Connection, prepared: PreparedRows | None) -> None:
        """Insert rows :meth:`prepare` gave (for this connection's dialect) in ``connection``'s
        transaction."""
        if prepared is not None:
            prepared.plan.run(connection, prepared.values)


class PreparedRows(NamedTuple):
    plan: _Plan
    values: list[tuple[Any, ...]]


class _Plan:
    """How rows with a given set of keys are written on one dialect."""

    def __init__(self, table: Table, keys: tuple[str, ...], dialect: Dialect):
        self.copy = dialect.name == "postgresql" and dialect.driver == "psycopg"
        self.copy_types: list[str] | None = None  # binary COPY: each column's PostgreSQL type
        if self.copy:
            quote = dialect.identifier_preparer.quote
            order = list(keys)
            self.copy_types = _binary_copy_types(table, order, dialect)
            self.sql = (f"COPY {dialect.identifier_preparer.format_table(table)} "
                        f"({', '.join(quote(table.c[k].name) for k in order)}) FROM STDIN"
                        + (" (FORMAT BINARY)" if self.copy_types else ""))
        else:
            compiled = insert(table).compile(dialect=dialect, column_keys=list(keys))
            self.sql = compiled.string
            order = _bind_order(compiled, keys)
        self.get = itemgetter(*order) if len(order) > 1 else (lambda row: (row[order[0]],))
        self.processors: list[tuple[int, Callable[[Any], Any]]] = []
        for index, key in enumerate(order):
            column_type = table.c[key].type
            processor = column_type.dialect_impl(dialect).bind_processor(dialect)
            binary = self.copy_types[index] if self.copy_types else None
            if processor is not None and binary == "uuid":
                # The binary form takes UUIDs: a type that sends text (sqlalchemy_utils' UUIDType,
                # the event store's stream id) is not asked to turn them into strings.
                processor = _as_uuid
            if processor is None:
                processor = BINARY_FORM.get(binary)  # what the binary form needs of the value
            elif _default_sqlite_datetime(column_type, dialect):
                processor = _sqlite_datetime(processor)
            if processor is not None:
                if _python_type(column_type) in REPEATED_TYPES:
                    processor = _remembering(processor)
                self.processors.append((index, processor))

    def values(self, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
        get, processors = self.get, self.processors
        if not processors:
            return [get(row) for row in rows]
        # Column by column: each processor mapped over its column, the rows zipped back, all
        # loops in C (a row at a time cost a list and a tuple per row in Python).
        columns: list[Any] = list(zip(*map(get, rows)))
        for index, processor in processors:
            columns[index] = map(processor, columns[index])
        return list(zip(*columns))

    def run(self, connection: Connection, values: list[tuple[Any, ...]]) -> None:
        """Send rows :meth:`values` gave."""
        if self.copy:
            cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                with cursor.copy(self.sql) as copy:
                    if self.copy_types:
                        copy.set_types(self.copy_types)
                    for row in values:
                        copy.write_row(row)
            finally:
                cursor.close()
        else:
            connection.exec_driver_sql(self.sql, values)  # type: ignore[arg-type]


# PostgreSQL types whose binary COPY form psycopg writes from the Python values these tables
# hold (by the column type as PostgreSQL spells it, its length left out).  Binary COPY needs
# no text escaping (a payload's bytes above all) and less parsing on the server, which shares
# the machine's cores with the processes writing (docs/performance.md).  A table with any
# other type is copied as text.
BINARY_COPY_TYPES = {
    "SMALLINT": "int2", "INTEGER": "int4", "BIGINT": "int8", "BOOLEAN": "bool",
    "VARCHAR": "varchar", "TEXT": "text", "UUID": "uuid", "BYTEA": "bytea", "DATE": "date",
    "TIMESTAMP WITH TIME ZONE": "timestamptz", "NUMERIC": "numeric",
}


def _binary_copy_types(table: Table, keys: list[str], dialect: Any) -> list[str] | None:
    names = []
    for key in keys:
        column_type = table.c[key].type
        if isinstance(column_type, (sqltypes.Enum, sqltypes.ARRAY)):
            return None  # an enum's own name could read as a listed type; arrays are not listed
        spelled = column_type.compile(dialect=dialect)
        base = spelled.split("(")[0].strip()  # VARCHAR(64) -> VARCHAR
        if "[" in spelled or base not in BINARY_COPY_TYPES:
            return None
        names.append(BINARY_COPY_TYPES[base])
    return names


# psycopg's binary dumpers wrap an integer too large for the column (2**31 + 7 into an int4
# is stored as -2147483641) where the text form made the server refuse it: refused here too.
def _in_range(bits: int) -> Callable[[Any], Any]:
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def checked(value: Any) -> Any:
        if value is not None and not low <= value <= high:
            raise OverflowError(f"{value} is out of range for a {bits}-bit integer column")
        return value

    return checked


def _as_uuid(value: Any) -> Any:
    if value is None or type(value) is UUID:
        return value
    return UUID(bytes=value) if isinstance(value, bytes) else UUID(str(value))


def _as_decimal(value: Any) -> Any:
    if value is None or isinstance(value, Decimal):
        return value
    return Decimal(str(value))  # an int, or a float as it prints (what the text form sent)


# Per binary type without a bind processor of its own: what its binary form needs of a value.
BINARY_FORM: dict[str | None, Callable[[Any], Any]] = {
    "numeric": _as_decimal,  # Decimals only
    "int2": _in_range(16),
    "int4": _in_range(32),
}


def _default_sqlite_datetime(column_type: Any, dialect: Any) -> bool:
    impl = column_type.dialect_impl(dialect)
    return (dialect.name == "sqlite" and isinstance(impl, sqlite.DATETIME)
            and impl._storage_format == sqlite.DATETIME._storage_format)


def _sqlite_datetime(processor: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """SQLite's ``DATETIME`` bind processor (its default storage format) for a ``datetime``,
    without a ``%`` format of a dict of seven attributes: that was a third of the values'
    processing in a rebuild (``rm_audit.recorded_at``, the periods' recorded times).

    The storage format is what ``isoformat(" ", "microseconds")`` writes up to its offset (a
    four-digit year, then two digits each, six for the microseconds, whether or not they are
    zero; the processor ignores the zone too).  ``isoformat`` builds its text with
    ``PyUnicode_FromFormat``, ~13,000 machine instructions a call; here the date's text is
    kept for each day (days recur: many events a day) and the time's is put together from
    two-digit strings, ~8,000 (callgrind; docs/performance.md).  Anything but a plain
    ``datetime`` (a subclass, a date, None) goes to the processor."""
    days: dict[int, str] = {}

    def process(value: Any) -> Any:
        if type(value) is not datetime:
            return processor(value)
        day = value.toordinal()
        try:
            text = days[day]
        except KeyError:
            if len(days) >= REMEMBERED:
                days.clear()
            text = days[day] = value.date().isoformat() + " "
        return (f"{text}{_TWO_DIGITS[value.hour]}:{_TWO_DIGITS[value.minute]}:"
                f"{_TWO_DIGITS[value.second]}.{value.microsecond:06d}")

    return process


_TWO_DIGITS = [f"{n:02d}" for n in range(60)]  # an hour, a minute or a second as written


# Values that recur across rows (an episode's id in each of its rows, the clinical dates): their
# processed form is kept (a bounded number of them) instead of formatted again.
REPEATED_TYPES = (UUID, date)
REMEMBERED = 4_096


def _remembering(processor: Callable[[Any], Any]) -> Callable[[Any], Any]:
    known: dict[Any, Any] = {}

    def process(value: Any) -> Any:
        try:
            return known[value]
        except KeyError:
            if len(known) >= REMEMBERED:
                known.clear()
            result = known[value] = processor(value)
            return result

    return process


def _python_type(column_type: Any) -> Any:
    try:
        return column_type.python_type
    except NotImplementedError:
        return None


def _bind_order(compiled: Any, keys: tuple[str, ...]) -> list[str]:
    """The row keys in the order of the statement's parameters."""
    if compiled.positional:
        names = compiled.positiontup
        if sorted(names) != sorted(keys):
            raise ValueError(f"the statement's parameters {names} are not the row's keys {keys}")
        return list(names)
    raise ValueError(f"{compiled.dialect.name}: only positional parameters are supported here")
