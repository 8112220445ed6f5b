"""Scratch databases for a run, and raw driver connections to them.

* SQLite: files in a temporary directory, with the pragmas the library itself sets
  (WAL journal, ``synchronous=NORMAL``), so the raw limits run under the same durability.
* PostgreSQL: one scratch database (``care_episodes_bench`` by default) created for the run
  and dropped after it; :meth:`Backend.fresh` empties it (drops and recreates the ``public``
  schema).  Given an existing database instead (the tests' ``postgres_url``), the schema is
  emptied the same way and the database is left in place.

Raw connections are DB-API connections in autocommit mode: a benchmark writes its own
``BEGIN`` / ``COMMIT``.  SQL is written with ``?`` placeholders; :meth:`Raw.sql` adapts it.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

DEFAULT_POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_POSTGRES_DATABASE = "care_episodes_bench"


class BackendUnavailable(RuntimeError):
    """The database server does not answer."""


@dataclass
class Raw:
    """A raw driver connection (``sqlite3`` or psycopg), autocommit, no ORM."""

    kind: str  # "sqlite" | "postgres"
    connection: Any

    def sql(self, statement: str) -> str:
        return statement if self.kind == "sqlite" else statement.replace("?", "%s")

    def execute(self, statement: str, params: Any = ()) -> Any:
        return self.connection.execute(self.sql(statement), params)

    def stream_id(self, episode_id: UUID) -> Any:
        """An id as the event store keeps it (SQLite: 16 bytes; PostgreSQL: uuid)."""
        return episode_id.bytes if self.kind == "sqlite" else episode_id

    def row_id(self, episode_id: UUID) -> Any:
        """An id as the read models keep it (SQLAlchemy ``Uuid``: 32 hex digits on SQLite)."""
        return episode_id.hex if self.kind == "sqlite" else episode_id

    def close(self) -> None:
        self.connection.close()


def raw_connect(url: str) -> Raw:
    """A raw connection to the database of a SQLAlchemy URL."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        connection = sqlite3.connect(parsed.database, isolation_level=None, timeout=30)
        # The library's own settings (episodes.storage.tune_engine).
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA busy_timeout=10000")
        return Raw("sqlite", connection)
    import psycopg

    connection = psycopg.connect(
        host=parsed.host, port=parsed.port or 5432, user=parsed.username,
        password=parsed.password, dbname=parsed.database, autocommit=True,
    )
    return Raw("postgres", connection)


class SQLiteBackend:
    name = "sqlite"

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="care-episodes-bench-"))

    def fresh(self, label: str) -> str:
        """The URL of a new, empty database file."""
        path = self.directory / f"{label}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"

    def raw_scratch(self) -> Raw:
        """A connection for the raw limits: a file of its own beside the others."""
        return raw_connect(self.fresh("raw"))

    def describe(self) -> str:
        return f"SQLite {sqlite3.sqlite_version} (files in {self.directory})"

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class PostgresBackend:
    name = "postgres"

    def __init__(self, admin_url: str = DEFAULT_POSTGRES_ADMIN_URL,
                 database: str = DEFAULT_POSTGRES_DATABASE, *, existing_url: str | None = None):
        """A scratch database ``database`` created on the server of ``admin_url`` (dropped by
        :meth:`close`), or, with ``existing_url``, that database as it is (emptied, kept)."""
        from sqlalchemy.engine import make_url

        self.admin_url = make_url(admin_url).set(drivername="postgresql+psycopg")
        self.owned = existing_url is None
        if existing_url is not None:
            self.url = make_url(existing_url).set(drivername="postgresql+psycopg")
        else:
            self.url = self.admin_url.set(database=database)
            self._admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            self._admin(f'CREATE DATABASE "{database}"')
        self.database = self.url.database

    def _admin(self, statement: str) -> None:
        import psycopg

        admin = self.admin_url
        try:
            with psycopg.connect(host=admin.host, port=admin.port or 5432, user=admin.username,
                                 password=admin.password, dbname=admin.database or "postgres",
                                 autocommit=True, connect_timeout=5) as connection:
                connection.execute(statement)
        except psycopg.OperationalError as error:
            raise BackendUnavailable(
                f"no PostgreSQL server answers at {admin.host}:{admin.port or 5432} ({error})"
            ) from None

    def url_string(self) -> str:
        return self.url.render_as_string(hide_password=False)

    def fresh(self, label: str) -> str:
        """The scratch database, emptied (``label`` only names the stage in the log)."""
        with raw_connect(self.url_string()).connection as connection:
            connection.execute("DROP SCHEMA public CASCADE")
            connection.execute("CREATE SCHEMA public")
        return self.url_string()

    def raw_scratch(self) -> Raw:
        """A connection for the raw limits: the scratch database (own table)."""
        return raw_connect(self.url_string())

    def describe(self) -> str:
        with raw_connect(self.url_string()).connection as connection:
            version = connection.execute("SHOW server_version").fetchone()[0]
            sync = connection.execute("SHOW synchronous_commit").fetchone()[0]
        return (f"PostgreSQL {version} at {self.url.host}:{self.url.port or 5432}, "
                f"database {self.database}, synchronous_commit={sync}")

    def close(self) -> None:
        if self.owned:
            self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


Backend = SQLiteBackend | PostgresBackend
