"""Many events into the event store's own table in one transaction: the bulk import's writes.

The rows are exactly those eventsourcing-sqlalchemy writes (stream id, version, topic, state;
the notification id from the table's own sequence), into the same table, in the caller's
transaction.  Only the way they travel differs, because at tens of thousands of rows the
per-row work of the ORM, and even of SQLAlchemy's parameter handling, costs more than the
database's own (docs/performance.md):

* PostgreSQL (psycopg 3): ``COPY ... FROM STDIN``, the server's bulk-load path, after
  ``LOCK TABLE ... IN EXCLUSIVE MODE`` as eventsourcing-sqlalchemy takes it, so notification
  ids are committed in order.  Constraints (the unique stream and version) hold as for INSERT.
* Any other database (SQLite): the prebuilt Core ``INSERT`` compiled once for the dialect,
  executed by the driver with all the rows (``executemany``), each value converted by its
  column type's own bind processor as SQLAlchemy would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from episodes import bulk_rows, integrity, storage

COLUMNS = ("originator_id", "originator_version", "topic", "state")
_IDS_PER_SELECT = 1_000  # stream ids per "which of these exist?" query

Row = tuple[UUID, int, str, bytes]  # an events table row, in COLUMNS order


class BulkInserter:
    """Prebuilt statements for one event store; ``insert`` runs in the caller's transaction."""

    def __init__(self, recorder: Any):
        self.events = recorder.events_record_cls.__table__
        self.dialect = recorder.datastore.engine.dialect
        # A duplicate (stream, version) fails with SQLAlchemy's error, or the driver's in a COPY.
        dbapi = getattr(self.dialect, "loaded_dbapi", None) or self.dialect.dbapi
        self.integrity_errors: tuple[type[Exception], ...] = (
            IntegrityError, *((dbapi.IntegrityError,) if dbapi is not None else ()))
        self.insert_heads = insert(integrity.heads)
        self.select_first = select(self.events.c.originator_id).where(
            self.events.c.originator_version == 1)
        # SQLite: the write lock is taken now, before the caller re-checks which streams exist.
        self.lock_statement = storage.events_write_lock(self.dialect.name)
        self.rows = bulk_rows.BulkInserter(self.events)

    def lock(self, connection: Connection) -> None:
        connection.execute(self.lock_statement)

    def existing(self, connection: Connection, stream_ids: Sequence[UUID]) -> set[UUID]:
        """Which of the streams have a first event already."""
        found: set[UUID] = set()
        for start in range(0, len(stream_ids), _IDS_PER_SELECT):
            chunk = list(stream_ids[start:start + _IDS_PER_SELECT])
            statement = self.select_first.where(self.events.c.originator_id.in_(chunk))
            found.update(UUID(str(row[0])) for row in connection.execute(statement))
        return found

    def insert(self, connection: Connection, rows: Sequence[Row],
               heads: Sequence[dict[str, Any]]) -> None:
        """The events (in notification order) and their streams' new head rows."""
        self.rows.insert(connection, [dict(zip(COLUMNS, row)) for row in rows])
        connection.execute(self.insert_heads, heads)
