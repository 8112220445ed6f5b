"""One rebuild of a database at a time.

A second rebuild started while one runs would drop the read models under the first (which
then fails on a missing table), and, worse, if the first finished its pass while the second
was passing, the first's last transaction would move the position to its snapshot and remove
the marker over the second's half-written rows: read models claiming to be current while
incomplete.  So a rebuild holds a lock for as long as it runs, one that is released when its
process ends however it ends (a crashed rebuild never blocks the next one, which starts over
as after any interruption):

* PostgreSQL: a session advisory lock, on a connection of its own (two 32-bit keys: a key
  space apart from the streams' 64-bit keys, :func:`episodes.storage.advisory_key`);
* an SQLite file: an exclusive ``flock`` on a file beside the database (``<db>-rebuild.lock``,
  left in place like the ``-wal`` file; never the database file itself, since closing any
  descriptor of that file would drop SQLite's own locks in this process).  Where ``fcntl`` is
  missing (Windows) the file is not locked;
* an in-memory SQLite database: nothing (no other process can open it).

Taking the lock never waits: a second rebuild fails at once with :class:`RebuildAlreadyRunning`,
before it has changed anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from episodes.errors import EpisodesError
from episodes.workers import is_in_memory

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

# pg_try_advisory_lock(int, int): "CEPI" and 1, the rebuild.
ADVISORY_KEYS = {"namespace": 0x43455049, "lock": 1}
TRY_LOCK = text("SELECT pg_try_advisory_lock(:namespace, :lock)")
UNLOCK = text("SELECT pg_advisory_unlock(:namespace, :lock)")
LOCK_FILE_SUFFIX = "-rebuild.lock"


class RebuildAlreadyRunning(EpisodesError):
    """Another rebuild of the same database is running; this one changed nothing."""

    def __init__(self, where: str):
        super().__init__(
            f"another rebuild of the read models is running ({where}); this one changed "
            "nothing: wait for it to finish (or stop it), then run the rebuild again if needed"
        )


@contextmanager
def exclusive_rebuild(engine: Engine) -> Iterator[None]:
    """Hold the database's rebuild lock for the block; raise :class:`RebuildAlreadyRunning`
    at once if another process (or another rebuild in this one) holds it."""
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine):
            yield
        return
    database = _database_file(engine)
    if not database or fcntl is None:
        yield
        return
    with _file_lock(database + LOCK_FILE_SUFFIX):
        yield


def rebuild_running(engine: Engine) -> bool:
    """Does another process (or another rebuild in this one) hold the rebuild lock now?"""
    try:
        with exclusive_rebuild(engine):
            return False
    except RebuildAlreadyRunning:
        return True


def _database_file(engine: Engine) -> str | None:
    """The SQLite database's file as SQLite itself names it (absolute, whatever the URL's form:
    a relative path, a ``file:`` URI), or None for an in-memory or temporary database."""
    if is_in_memory(str(engine.url)):
        return None
    with engine.connect() as connection:
        for _, name, path in connection.exec_driver_sql("PRAGMA database_list"):
            if name == "main":
                return path or None
    return None


@contextmanager
def _advisory_lock(engine: Engine) -> Iterator[None]:
    # AUTOCOMMIT: the lock belongs to the session, and no transaction stays open for hours.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if not connection.execute(TRY_LOCK, ADVISORY_KEYS).scalar_one():
            raise RebuildAlreadyRunning("a PostgreSQL session holds its advisory lock")
        try:
            yield
        finally:
            _unlock(connection)


def _unlock(connection: Any) -> None:
    """Release the advisory lock; if that fails (the connection dropped, which released it),
    the connection is discarded rather than pooled, so no pooled session can hold the lock."""
    if connection.closed or connection.invalidated:
        return
    try:
        connection.execute(UNLOCK, ADVISORY_KEYS)
    except Exception:  # noqa: BLE001 - whatever failed, the rebuild's own outcome stands
        if not connection.invalidated:  # a disconnect invalidates it already
            connection.invalidate()


@contextmanager
def _file_lock(path: str) -> Iterator[None]:
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RebuildAlreadyRunning(f"{path} is locked") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

