"""From a SQLAlchemy URL to a configured event store.

SQLite (a file, WAL journal) is the embedded default; PostgreSQL (``postgresql+psycopg://``)
is the path for more than one machine.  Table names are fixed here, not derived from class
names, so renaming a class can never start an empty table beside the real one.
"""

from __future__ import annotations

import os
from typing import Any
from uuid import UUID

from sqlalchemy import TextClause, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from episodes import encryption, sqlite_binding

DATABASE_URL_VARIABLE = "CARE_EPISODES_DATABASE_URL"
DEFAULT_DATABASE_URL = "sqlite:///care-episodes.db"

# The event store's tables are "<APPLICATION_NAME>_events" and "<APPLICATION_NAME>_snapshots".
APPLICATION_NAME = "care_episodes"
EVENTS_TABLE = f"{APPLICATION_NAME}_events"


def database_url(url: str | None = None) -> str:
    """The URL to use: the one given, else ``$CARE_EPISODES_DATABASE_URL``, else a local file."""
    chosen = url or os.environ.get(DATABASE_URL_VARIABLE) or DEFAULT_DATABASE_URL
    # Accept the URL PostgreSQL users write by habit; psycopg 3 is the driver we ship.
    for prefix in ("postgresql://", "postgres://"):
        if chosen.startswith(prefix):
            return "postgresql+psycopg://" + chosen[len(prefix):]
    return chosen


def event_store_environment(url: str) -> dict[str, str]:
    """The event store's settings: the database, and the cipher when a key is configured.

    With ``$CARE_EPISODES_CIPHER_KEY`` set, event payloads are encrypted (AES-GCM) before they
    reach the database; a key can also be given explicitly with
    ``Episodes(url, env=encryption.cipher_environment(key))``.  See docs/compliance.md (encryption at rest).
    """
    return {
        "PERSISTENCE_MODULE": "eventsourcing_sqlalchemy",
        "SQLALCHEMY_URL": url,
        "CREATE_TABLE": "yes",
        **encryption.environment(),
    }


def tune_engine(engine: Engine) -> None:
    """Per-connection settings the event store does not make itself."""
    if engine.dialect.name == "sqlite":
        sqlite_binding.bind_as_they_are()
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL: readers never block the writer.  NORMAL is durable in WAL mode except for the
        # last transactions on power loss, the usual trade-off for an embedded store.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    engine.dispose()  # connections opened before the listener existed get the pragmas too


ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_SQLITE_WRITE_LOCK = text(f"UPDATE {EVENTS_TABLE} SET id = id WHERE 1 = 0")
_EVENTS_TABLE_LOCK = text(f"LOCK TABLE {EVENTS_TABLE} IN EXCLUSIVE MODE")


def events_write_lock(dialect: str) -> TextClause:
    """The statement that makes a transaction the only appender to the event log until it ends.

    PostgreSQL: the events table in EXCLUSIVE mode, as eventsourcing-sqlalchemy locks it, so
    notification ids are committed in their order and a polling reader never skips an id that
    commits late.  SQLite: a no-op UPDATE, which takes the database's one write lock now.
    """
    return _EVENTS_TABLE_LOCK if dialect == "postgresql" else _SQLITE_WRITE_LOCK


def lock_stream(session: Session | Connection, stream_id: UUID) -> None:
    """Serialise writers of one stream for the rest of the transaction.

    Optimistic concurrency alone (a unique version per stream) never loses a write, but when
    several writers hammer one episode the losers can keep losing.  So the application takes
    this lock before it loads, decides and appends; the version check stays as the safety net.
    PostgreSQL: a transaction-scoped advisory lock on the stream only.  SQLite has one writer
    at a time anyway: a no-op UPDATE takes the database's write lock at once, instead of after
    the read, when another writer may already have moved on.
    """
    dialect = (session.dialect if isinstance(session, Connection) else session.get_bind().dialect).name
    if dialect == "postgresql":
        session.execute(ADVISORY_LOCK, {"key": advisory_key(stream_id)})
    elif dialect == "sqlite":
        session.execute(_SQLITE_WRITE_LOCK)


def advisory_key(stream_id: UUID) -> int:
    """The PostgreSQL advisory lock key of a stream: a signed 64-bit key from the id's high bits."""
    return (stream_id.int >> 64) - (1 << 63)
