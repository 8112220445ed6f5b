"""The command path's own SQL: appending to a stream with prebuilt statements.

Why not ``Application.save``: on a command that appends one event, the ORM flush, the
statement building and a second encoding of the event for its digest cost more than the
database's own work (docs/performance.md, "Changes").  This module writes the *same rows* to
the *same tables* as eventsourcing-sqlalchemy (so every reader of the event store, and
eventsourcing's own notification log, sees no difference), inside the caller's transaction:

* statements are built once and executed with parameters (SQLAlchemy caches their compiled
  form; building ``insert()``/``update()`` objects per call costs three times their execution);
* an event is transcoded once (:func:`episodes.integrity.encode`): its plaintext both feeds
  the hash chain and, compressed and encrypted when configured, becomes the stored state;
* on PostgreSQL the events table is locked in EXCLUSIVE mode before the insert, exactly as
  eventsourcing-sqlalchemy does, so notification ids are committed in order and a polling
  projector never skips an id that commits late.  (No ``NOTIFY`` is sent: the projections
  here poll, and eventsourcing's listen/notify subscription needs a poll anyway.)
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, Notification, StoredEvent
from sqlalchemy import Connection, bindparam, insert, select
from sqlalchemy.exc import NoResultFound

from episodes import driver, integrity, storage


@dataclass(frozen=True)
class Head:
    """The newest event of a stream as the heads table records it."""

    version: int
    digest: str


@dataclass(frozen=True)
class QueuedStream:
    """The read of a stream, sent (:meth:`StreamWriter.queue_stream`), its rows not yet fetched."""

    stream_id: UUID
    prepared: driver.Prepared
    cursor: Any


@dataclass(frozen=True)
class Appended:
    """An event as written: its notification id (position in the log) and its digest."""

    notification_id: int
    event: Any
    digest: str


class StreamWriter:
    def __init__(self, recorder: Any, mapper: Mapper[UUID]):
        self.mapper = mapper
        self.engine = recorder.datastore.engine
        events = recorder.events_record_cls.__table__
        dialect = self.engine.dialect.name
        self._sqlite = dialect == "sqlite"
        heads = integrity.heads
        self._select_notifications = (
            select(events.c.id, events.c.originator_id, events.c.originator_version, events.c.topic,
                   events.c.state)
            .where(events.c.id > bindparam("after"))
            .order_by(events.c.id)
            .limit(bindparam("limit"))
        )
        # The command path's own statements, sent through the driver (episodes/driver.py).
        prepare = self.engine.dialect
        insert_event = insert(events)
        if not self._sqlite:
            insert_event = insert_event.returning(events.c.id)  # SQLite: the cursor's lastrowid
        self._insert_event = driver.Prepared(
            insert_event, prepare, ["originator_id", "originator_version", "topic", "state"]
        )
        # The stream's reads too (a command on an episode it keeps no copy of replays it): through
        # SQLAlchemy, the result's set-up and its rows' processing cost as much as the reading.
        stream = (
            select(events.c.originator_version, events.c.topic, events.c.state)
            .where(events.c.originator_id == bindparam("stream_id"))
            .order_by(events.c.originator_version)
        )
        self._stream_rows = driver.Prepared(stream, prepare)
        self._stream_rows_up_to = driver.Prepared(
            stream.where(events.c.originator_version <= bindparam("up_to")), prepare)
        self._one_row = driver.Prepared(
            stream.where(events.c.originator_version == bindparam("version")), prepare)
        self._select_head = driver.Prepared(
            select(heads.c.version, heads.c.digest).where(heads.c.stream_id == bindparam("stream_id")), prepare
        )
        self._move_head = driver.Prepared(integrity.move_head(dialect), prepare, ["stream_id", "version", "digest"])
        self._lock_table = driver.Prepared(storage.events_write_lock(dialect), prepare)
        self._advisory_lock = driver.Prepared(storage.ADVISORY_LOCK, prepare)
        # Before any statement goes through the driver: an ORM session's commit (the projector
        # catching up in Episodes.save) must also end a pipeline.
        driver.enable(self.engine)

    # ---------------------------------------------------------------- transactions

    def transaction(self) -> AbstractContextManager[Connection]:
        """One command's transaction (:func:`episodes.driver.transaction`): on SQLite it holds
        the write lock from the start, so the head read next is the one the append follows."""
        return driver.transaction(self.engine)

    def lock_stream(self, connection: Connection, stream_id: UUID) -> None:
        """Serialise writers of one stream (see :func:`episodes.storage.lock_stream`); on
        SQLite the transaction already holds the only write lock there is."""
        if not self._sqlite:
            driver.execute(connection, self._advisory_lock, {"key": storage.advisory_key(stream_id)})

    # ---------------------------------------------------------------- reading

    def stream(self, connection: Connection, stream_id: UUID, up_to: int | None = None) -> list[StoredEvent]:
        """A stream (up to a version), read in the caller's transaction."""
        return self.stream_read(connection, self.queue_stream(connection, stream_id, up_to))

    def queue_stream(self, connection: Connection, stream_id: UUID, up_to: int | None = None) -> QueuedStream:
        """Send the read of a stream (up to a version), in the caller's transaction, for
        :meth:`stream_read`; on PostgreSQL it waits in the pipeline, and goes with the next
        statement whose result is asked for."""
        if up_to is None:
            prepared, values = self._stream_rows, {"stream_id": stream_id}
        else:
            prepared, values = self._stream_rows_up_to, {"stream_id": stream_id, "up_to": up_to}
        return QueuedStream(stream_id, prepared, driver.execute(connection, prepared, values))

    def stream_read(self, connection: Connection, queued: QueuedStream) -> list[StoredEvent]:
        """The stored events of a read :meth:`queue_stream` sent."""
        rows = driver.fetch_all(connection, queued.prepared, queued.cursor)
        stream_id = queued.stream_id
        return [StoredEvent(stream_id, version, topic, bytes(state)) for version, topic, state in rows]

    def event(self, connection: Connection, stream_id: UUID, version: int) -> Any:
        """One event of a stream, decoded, read in the caller's transaction."""
        prepared = self._one_row
        rows = driver.fetch_all(connection, prepared, driver.execute(
            connection, prepared, {"stream_id": stream_id, "version": version}))
        if not rows:  # (as SQLAlchemy's Result.one() would say it)
            raise NoResultFound(f"stream {stream_id} has no event at version {version}")
        version_, topic, state = rows[0]
        return self.mapper.to_domain_event(StoredEvent(stream_id, version_, topic, bytes(state)))

    def aggregate(self, connection: Connection, stream_id: UUID, version: int | None = None) -> Any:
        """A stream folded up to ``version`` (all of it by default), read in the caller's
        transaction: the ORM repository would open a session of its own, which on an
        in-memory SQLite database shares, and would end, the caller's connection."""
        aggregate = None
        for stored in self.stream(connection, stream_id, up_to=version):
            aggregate = self.mapper.to_domain_event(stored).mutate(aggregate)  # type: ignore[attr-defined]
        return aggregate

    def notifications(self, connection: Connection, after: int, limit: int) -> list[Notification]:
        """The event log after a position, read in the caller's transaction (so a command's
        own uncommitted events are included)."""
        return [
            Notification(id=row[0], originator_id=row[1], originator_version=row[2], topic=row[3],
                         state=bytes(row[4]))
            for row in connection.execute(self._select_notifications, {"after": after, "limit": limit})
        ]

    def head(self, connection: Connection, stream_id: UUID) -> Head | None:
        row = driver.fetch_one(connection, driver.execute(connection, self._select_head, {"stream_id": stream_id}))
        return Head(row[0], row[1]) if row else None

    # ---------------------------------------------------------------- writing

    def queue_append(self, connection: Connection, events: Sequence[Any]) -> QueuedAppend:
        """Insert the new events of one stream and move its head (an upsert), in the caller's
        transaction; their positions in the log are read only when asked for (on PostgreSQL,
        statements the caller queues meanwhile go in the same round trip).  A concurrent
        append at the same version fails on the store's unique (stream, version) index: the
        caller's transaction rolls back, nothing is lost."""
        if not self._sqlite:
            driver.execute(connection, self._lock_table)
        inserted = []
        for event in events:
            stored, digest = integrity.encode(self.mapper, event)
            cursor = driver.execute(connection, self._insert_event, {
                "originator_id": stored.originator_id,
                "originator_version": stored.originator_version,
                "topic": stored.topic,
                "state": stored.state,
            })
            inserted.append((cursor, event, digest))
        _, newest, digest = inserted[-1]
        driver.execute(connection, self._move_head, {
            "stream_id": newest.originator_id, "version": newest.originator_version, "digest": digest,
        })
        return QueuedAppend(connection, inserted, self._sqlite)


class QueuedAppend:
    """Events inserted (on PostgreSQL perhaps not yet sent); :meth:`appended` reads their
    positions in the log."""

    def __init__(self, connection: Connection, inserted: list[tuple[Any, Any, str]], sqlite: bool):
        self._connection, self._inserted, self._sqlite = connection, inserted, sqlite

    def appended(self) -> list[Appended]:
        return [Appended(self._position(cursor), event, digest) for cursor, event, digest in self._inserted]

    def _position(self, cursor: Any) -> int:
        if self._sqlite:
            return int(cursor.lastrowid)
        return int(driver.fetch_one(self._connection, cursor)[0])
