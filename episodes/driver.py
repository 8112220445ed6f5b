"""The command path's hot statements, sent through the database driver itself.

Why (docs/performance.md, "Changes"): a command sends eight or nine small statements, and
SQLAlchemy's execution of a Core statement (cache lookup, parameter processing, result set-up)
costs several times what SQLite itself spends on one of them; on PostgreSQL each statement is
also a round trip.  So the few statements every command sends are:

* written with SQLAlchemy Core against the one schema (``projections.tables``, the store's
  tables), compiled **once** for the engine's dialect, their values passed through the column
  types' bind processors exactly as SQLAlchemy would, and executed on the DB-API cursor;
* on PostgreSQL, sent in psycopg's **pipeline mode**: statements whose results are not needed
  yet are queued and go with the next one whose result is, or with the COMMIT.  A command on
  an episode its process keeps then waits on two round trips (the append's, the COMMIT's)
  instead of eleven; three when its stream's head must be read first.

Everything else still goes through SQLAlchemy on the same connection: :func:`enable` makes
any SQLAlchemy statement leave the pipeline first (psycopg returns no result description for
a statement queued in a pipeline, which SQLAlchemy could not read).

Errors raised by the driver come out as SQLAlchemy's exceptions (``IntegrityError`` for a
duplicate), so callers handle one family whatever path a statement took.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from sqlalchemy import Connection, event, exc
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql import ClauseElement

# The open psycopg pipeline (its context manager, and the pipeline), in the DB-API connection's info.
_PIPELINE = "care_episodes.pipeline"


_NONE: Mapping[str, Any] = MappingProxyType({})


class Prepared:
    """A Core statement compiled once for a dialect, run on the driver's cursor."""

    def __init__(self, statement: ClauseElement, dialect: Dialect, keys: Sequence[str] | None = None):
        compiled = statement.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None)
        self.sql = str(compiled)
        # Values the statement carries itself (a WHERE clause's literal), by bind name, and the
        # columns' own defaults for values not given (SQLAlchemy applies these at execution).
        self._defaults = compiled.construct_params(_check=False)
        prefetch = [(c, c.default) for c in compiled.insert_prefetch]
        prefetch += [(c, c.onupdate) for c in compiled.update_prefetch]
        for column, default in prefetch:
            if not default.is_scalar:
                raise ValueError(f"{column}: only constant column defaults can be prepared")
            self._defaults[column.key] = default.arg
        processors = compiled._bind_processors  # bind name -> the type's converter
        # Each bind's name, converter (or None) and value when none is given, in the
        # statement's order for positional drivers (sqlite3), else the compiled binds' order.
        names = compiled.positiontup if dialect.positional else list(self._defaults)
        self._binds = tuple((name, processors.get(name), self._defaults.get(name)) for name in names or ())
        self._names = None if dialect.positional else tuple(name for name, _, _ in self._binds)
        # A SELECT's converter of each result column, as SQLAlchemy would apply it (SQLite
        # returns dates as text and booleans as 0/1); None where the driver's value is final.
        converters = tuple(
            column[3].dialect_impl(dialect).result_processor(dialect, None)
            for column in getattr(compiled, "_result_columns", ())
        )
        self._results = converters if any(converters) else None
        # PostgreSQL: prepared on the server at its first execution.  psycopg prepares a query
        # by itself only at its fifth, and forgets every prepared statement at each rollback on
        # the connection (a read returned to the pool ends with one: DEALLOCATE ALL), so after
        # each read the next five commands ran their statements unprepared (a fifth of the
        # commands in the benchmark's loop).  psycopg still prepares nothing on a connection
        # whose ``prepare_threshold`` is None (preparation turned off, as behind PgBouncer's
        # transaction pooling).
        self.options: Mapping[str, Any] = {"prepare": True} if dialect.name == "postgresql" else _NONE

    def parameters(self, values: Mapping[str, Any]) -> Any:
        """The driver's parameters for ``values`` (by bind name; a name not given takes the
        statement's own value or the column's default, else NULL, as SQLAlchemy would)."""
        get = values.get
        converted = [get(name, default) if convert is None else convert(get(name, default))
                     for name, convert, default in self._binds]
        if self._names is None:
            return tuple(converted)
        return dict(zip(self._names, converted))

    def rows(self, fetched: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """A SELECT's rows as the driver fetched them, with SQLAlchemy's types applied."""
        converters = self._results
        if converters is None:
            return [tuple(row) for row in fetched]
        return [tuple(value if convert is None or value is None else convert(value)
                      for convert, value in zip(converters, row)) for row in fetched]


class Statements:
    """Prepared statements for one engine, built on first use (an UPDATE whose SET clause
    depends on the values given is compiled once per set of columns)."""

    def __init__(self, engine: Engine):
        self.dialect = engine.dialect
        self._prepared: dict[Any, Prepared] = {}

    def get(self, key: Any, build: Any, keys: Sequence[str] | None = None) -> Prepared:
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = Prepared(build(), self.dialect, keys)
        return prepared


@contextmanager
def transaction(engine: Engine, *, autocheckpoint: int | None = None) -> Iterator[Connection]:
    """A write transaction on a plain connection (no ORM session), for statements sent
    through this module and SQLAlchemy alike.  ``autocheckpoint`` (SQLite): the pages of
    write-ahead log past which its commit copies the log back into the database (SQLite's
    ``wal_autocheckpoint``: 1,000 by default), for this transaction only.

    SQLite: ``BEGIN IMMEDIATE`` takes the database's write lock before anything is read, so
    what the transaction reads is still current when it writes.  (The sqlite3 module, seeing a
    transaction open, issues no BEGIN of its own; the connection's commit ends it.)
    PostgreSQL: the driver's BEGIN goes with the first statement, and the COMMIT with the
    writes still queued in the pipeline.

    The connection is the one the engine's last transaction here committed on, when there is
    one (see :class:`_Kept`); a transaction that fails closes its connection instead.
    """
    enable(engine)
    connection = _kept.take(engine)
    committed = False
    restore: Any = None
    try:
        if engine.dialect.name == "sqlite":
            if autocheckpoint is not None:  # (a setting of the connection's: put back after)
                with _translated(connection, "PRAGMA wal_autocheckpoint"):
                    restore = cursor(connection).execute("PRAGMA wal_autocheckpoint").fetchone()[0]
                _run(connection, f"PRAGMA wal_autocheckpoint={int(autocheckpoint)}")
            # The driver's BEGIN and commit, without SQLAlchemy's record of the transaction
            # (~2 µs a command).  A SQLAlchemy statement run in it begins that record (the
            # sqlite3 dialect's own BEGIN is none: the driver's transaction is already open),
            # and SQLAlchemy's commit then commits the driver's transaction.
            _run(connection, "BEGIN IMMEDIATE")
            yield connection
            if connection.in_transaction():
                connection.commit()
            else:
                _commit(connection)
        else:
            connection.begin()  # SQLAlchemy's record of it: its commit() below commits
            try:
                yield connection
                if _PIPELINE in connection.connection.info:
                    _run(connection, "COMMIT")  # queued after the writes: one round trip for all
                    leave_pipeline(connection)
                connection.commit()
            except BaseException:
                leave_pipeline(connection, quietly=True)
                raise
        committed = True
    finally:
        if restore is not None and not connection.closed:
            try:
                _run(connection, f"PRAGMA wal_autocheckpoint={int(restore)}")
            except exc.DBAPIError:
                if committed:
                    raise  # (else the transaction's own failure is the one raised)
        if not committed or not _kept.keep(engine, connection):
            connection.close()  # back to the pool (a transaction still open is rolled back)


class _Kept:
    """One connection per engine kept checked out between write transactions.

    Why: checking a connection out of SQLAlchemy's pool and returning it (the pool's queue and
    lock, its events, the reset on return) cost ~15 µs, a twentieth of a whole command on
    SQLite (docs/performance.md, "Changes").  The connection kept is one whose transaction
    committed; one that failed is closed, so a broken connection is never kept.  At most one
    per engine: a second writer at the same moment (another thread) takes one from the pool as
    before, and only one connection is held out of the pool between transactions.

    Only engines with a queue pool (a SQLite file, PostgreSQL): an in-memory SQLite database
    lives in one connection that everything shares (a static pool), to be left as it is.  The
    connection is kept on the engine itself, so an engine dropped without being closed takes
    it along to the garbage collector, as it would its pool.  :func:`release` closes it, and so
    does ``Engine.dispose``; a forked process never uses its parent's (:meth:`forget`).
    """

    ATTRIBUTE = "_care_episodes_kept_connection"

    def __init__(self) -> None:
        self._engines: weakref.WeakSet[Engine] = weakref.WeakSet()
        self._inherited: list[Connection] = []

    def take(self, engine: Engine) -> Connection:
        connection = engine.__dict__.pop(self.ATTRIBUTE, None)  # one thread at a time gets it
        return connection if connection is not None else engine.connect()

    def keep(self, engine: Engine, connection: Connection) -> bool:
        """Keep ``connection`` for the engine's next transaction; False when it is not kept."""
        if connection.invalidated or not isinstance(engine.pool, QueuePool):
            return False
        if engine.__dict__.setdefault(self.ATTRIBUTE, connection) is not connection:
            return False  # another thread's transaction kept one first
        if engine not in self._engines:
            self._engines.add(engine)
            event.listen(engine, "engine_disposed", self._disposed)
        return True

    def release(self, engine: Engine) -> None:
        connection = engine.__dict__.pop(self.ATTRIBUTE, None)
        if connection is not None:
            connection.close()  # back to the pool

    def _disposed(self, engine: Engine) -> None:
        # Engine.dispose closed the pool's connections and left the pool: this one is closed
        # too (given back, it would wait in the old pool for the garbage collector).
        connection = engine.__dict__.pop(self.ATTRIBUTE, None)
        if connection is not None:
            connection.invalidate()
            connection.close()

    def forget(self) -> None:
        """In a forked child: the parent's connections are the parent's.  They are neither
        used nor closed here (closing, or dropping the last reference, would act on the
        parent's driver connection), only kept out of reach."""
        for engine in list(self._engines):
            connection = engine.__dict__.pop(self.ATTRIBUTE, None)
            if connection is not None:
                self._inherited.append(connection)


_kept = _Kept()
os.register_at_fork(after_in_child=_kept.forget)


def release(engine: Engine) -> None:
    """Close the connection kept for ``engine``'s next write transaction, if any (before the
    engine or its pool is disposed)."""
    _kept.release(engine)


def _commit(connection: Connection) -> None:
    try:
        connection.connection.driver_connection.commit()
    except connection.dialect.loaded_dbapi.Error as error:
        raise _translation(connection, "COMMIT", error) from error


def _run(connection: Connection, sql: str) -> None:
    cur = cursor(connection)
    try:
        cur.execute(sql)
    except connection.dialect.loaded_dbapi.Error as error:
        raise _translation(connection, sql, error) from error


def enable(engine: Engine) -> None:
    """Make every SQLAlchemy statement on ``engine`` leave an open pipeline first, and every
    commit or rollback end it: however a transaction ends (an ORM session's commit included),
    its connection goes back to the pool out of pipeline mode."""
    if engine.dialect.name != "postgresql" or event.contains(engine, "before_cursor_execute", _leave):
        return
    event.listen(engine, "before_cursor_execute", _leave)
    event.listen(engine, "commit", _leave)
    event.listen(engine, "rollback", _leave_quietly)


def _leave(connection: Connection, *_: Any) -> None:
    leave_pipeline(connection)


def _leave_quietly(connection: Connection) -> None:
    leave_pipeline(connection, quietly=True)


@contextmanager
def _translated(connection: Connection, statement: str | None = None) -> Iterator[None]:
    """The driver's errors as SQLAlchemy's (``sqlalchemy.exc.IntegrityError`` and the rest)."""
    try:
        yield
    except connection.dialect.loaded_dbapi.Error as error:
        raise _translation(connection, statement, error) from error


def _translation(connection: Connection, statement: str | None, error: Exception) -> exc.DBAPIError:
    return exc.DBAPIError.instance(statement, None, error, connection.dialect.loaded_dbapi.Error)


def cursor(connection: Connection) -> Any:
    """A cursor on the connection's driver connection; on PostgreSQL inside a pipeline, so the
    statements executed on it are queued until a result is fetched or the pipeline is left."""
    pooled = connection.connection
    if connection.dialect.name == "postgresql" and _PIPELINE not in pooled.info:
        context = pooled.driver_connection.pipeline()
        pooled.info[_PIPELINE] = (context, context.__enter__())
    return pooled.driver_connection.cursor()


# execute, execute_many and fetch_one run for every statement of every command: they catch the
# driver's errors with a plain try/except (a context manager costs more than SQLite's insert).

def execute(connection: Connection, prepared: Prepared, values: Mapping[str, Any] = _NONE) -> Any:
    """Execute (on PostgreSQL: queue) one statement; the cursor holds its result."""
    cur = cursor(connection)
    try:
        cur.execute(prepared.sql, prepared.parameters(values), **prepared.options)
    except connection.dialect.loaded_dbapi.Error as error:
        raise _translation(connection, prepared.sql, error) from error
    return cur


def execute_many(connection: Connection, prepared: Prepared, rows: Sequence[Mapping[str, Any]]) -> None:
    cur = cursor(connection)
    try:
        cur.executemany(prepared.sql, [prepared.parameters(row) for row in rows])
    except connection.dialect.loaded_dbapi.Error as error:
        raise _translation(connection, prepared.sql, error) from error


def fetch_one(connection: Connection, cur: Any) -> Any:
    """The first row of a cursor's result (on PostgreSQL: everything queued is sent first)."""
    try:
        return cur.fetchone()
    except connection.dialect.loaded_dbapi.Error as error:
        raise _translation(connection, None, error) from error


def fetch_all(connection: Connection, prepared: Prepared, cur: Any) -> list[tuple[Any, ...]]:
    """Every row of a SELECT's cursor, with the statement's result types applied."""
    try:
        fetched = cur.fetchall()
    except connection.dialect.loaded_dbapi.Error as error:
        raise _translation(connection, prepared.sql, error) from error
    return prepared.rows(fetched)


def fetch_raw(connection: Connection, prepared: Prepared, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Every row of a SELECT as the driver returns it, no result types applied, on a cursor of
    its own (never in a pipeline): for a caller reading many rows that converts what it needs
    itself.  SQLAlchemy's ``exec_driver_sql(...).all()`` returns the same values, at about
    half again the cost a row (a rebuild reads every event so: docs/performance.md)."""
    cur = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(prepared.sql, prepared.parameters(values), **prepared.options)
        return cur.fetchall()  # type: ignore[no-any-return]
    except connection.dialect.loaded_dbapi.Error as error:
        raise _translation(connection, prepared.sql, error) from error
    finally:
        cur.close()


def leave_pipeline(connection: Connection, *, quietly: bool = False) -> None:
    """Send what is queued, wait for it, and leave pipeline mode (a no-op outside one).
    ``quietly``: the transaction is being rolled back, so the queued statements' own errors
    are not raised over whatever failed first."""
    if connection.closed or connection.invalidated:
        return  # no connection to leave a pipeline on (asking for it would try to reconnect)
    entered = connection.connection.info.pop(_PIPELINE, None)
    if entered is None:
        return
    try:
        with _translated(connection):
            entered[0].__exit__(None, None, None)
    except exc.DBAPIError:
        if not quietly:
            raise
