"""One pass of a rebuild over a range of streams: read in stream order, fold, derive, write.

A rebuild (:mod:`projections.rebuild`) runs one pass over every stream in its own process, or
one pass per range of stream ids in worker processes (:mod:`projections.rebuild_workers`).
Streams are independent, so a pass needs nothing from any other: it reads the events of the
streams whose id is in ``[low, high)``, up to the rebuild's snapshot, in pages of
``page_events`` (keyset pages on the events table's index on stream and version), folds each
stream once (:mod:`projections.streams`), and writes the rows of the streams a page completed
in one transaction (:class:`episodes.bulk_rows.BulkInserter`; COPY on PostgreSQL).  Memory
holds one page of events, the rows of the streams it completed, and the one stream that
continues into the next page.  On SQLite, where ``rm_audit`` keeps its rows in position order,
a page's audit rows go straight into it where each stream's events lie together in the log (an
imported history), else to ``rm_audit_staging`` (``projections.tables.audit_staging``), which
the rebuild moves into ``rm_audit`` in position order once every pass is done
(:func:`audit_in_place`).

The pass never touches the tracking row: the rebuild says the read models are current only
after every pass has written its rows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from operator import itemgetter
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, bindparam, insert, select, tuple_
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateTable, DropTable

from episodes import driver
from episodes.application import Episodes
from episodes.bulk_rows import BulkInserter
from projections import tables
from projections.checkpoints import BACKSTOP_PAGES
from projections.decoding import fast_event_decoder
from projections.projector import freed_pages_not_zeroed, sqlite_pragma
from projections.streams import EpisodeStream, ProgramStream, Rows, stream_for

PAGE_EVENTS = 2_000  # events read (and rows written) per transaction: ~15 MiB of memory
# Parents first is not needed (no foreign keys), but one fixed order keeps runs comparable.
WRITE_ORDER = ("programs", "episodes", "periods", "sessions", "outcomes", "authorizations", "audit")
FIRST_ID = UUID(int=0)
# A page's audit rows go straight into rm_audit (SQLite) where, in position order, they run
# on for at least this many rows on average (a run: positions one after another).  Each run
# lands on pages of its own, so short runs rewrite many pages for few rows, where staging them
# appends (docs/performance.md).  A 10,000-episode log, a rebuild in two processes, its events
# in four orders: a stream's events together (runs of ~48 rows) 8.5-9.1 s in place against
# 8.9-9.4 staged and moved; month by month (~19) 8.4 against 9.3-9.9; week by week (~7)
# 9.0-9.4 against 9.7-10.0; day by day (~2.7) 10.4-10.6 against 10.0-10.2.
IN_PLACE_RUN = 6
TURN_SECONDS = 5.0  # waited for the passes' write lock before going on to SQLite's own
TURN_CHECK_SECONDS = 0.5  # how often a pass waiting for its turn calls ``waiting``


class StreamPass:
    """Derives and writes the read-model rows of the streams in one range of ids."""

    def __init__(self, app: Episodes, snapshot: int, *, page_events: int = PAGE_EVENTS,
                 write_lock: Any = None, waiting: Callable[[], None] | None = None,
                 checkpoints_aside: bool = False):
        """``write_lock``: a lock the rebuild's passes in several processes share (a
        ``multiprocessing`` lock), taken around each write transaction on SQLite;
        ``waiting``: called every ``TURN_CHECK_SECONDS`` while a pass waits for it (it may
        raise to stop the pass: the rebuilding process checks its workers there);
        ``checkpoints_aside``: SQLite's log is checkpointed beside the passes
        (:func:`projections.checkpoints.checkpoints_aside`), so their commits checkpoint only
        past ``checkpoints.BACKSTOP_PAGES``."""
        if page_events < 1:
            raise ValueError("page_events must be at least 1")
        self.engine = app.recorder.datastore.engine  # type: ignore[attr-defined]
        self.snapshot = snapshot
        self.page_events = page_events
        self.decode = fast_event_decoder(app.mapper)
        events = app.recorder.events_record_cls.__table__  # type: ignore[attr-defined]
        after = tuple_(bindparam("after_id", type_=events.c.originator_id.type), bindparam("after_version"))
        page = (
            select(events.c.id, events.c.originator_id, events.c.originator_version, events.c.topic,
                   events.c.state)
            .where(events.c.id <= bindparam("snapshot"),
                   tuple_(events.c.originator_id, events.c.originator_version) > after)
            .order_by(events.c.originator_id, events.c.originator_version)
            .limit(bindparam("limit"))
        )
        bounded = page.where(events.c.originator_id < bindparam("before_id", type_=events.c.originator_id.type))
        dialect = self.engine.dialect
        # Compiled once and run as the driver's own SQL (episodes.driver): SQLAlchemy's result
        # processing of every row cost more than the database's reading; the stream id is
        # converted here once a stream instead of once a row.
        self._pages = {False: driver.Prepared(page, dialect), True: driver.Prepared(bounded, dialect)}
        self._stream_id = _stream_id_reader(dialect.name)
        self._sqlite = dialect.name == "sqlite"
        targets = {name: getattr(tables, name) for name in WRITE_ORDER}
        self._inserts = {name: BulkInserter(table) for name, table in targets.items()}
        # SQLite: where a page's audit rows do not lie together in the log, appended to the
        # staging table, then moved into rm_audit in position order (audit_in_place).
        self._staging = BulkInserter(tables.audit_staging) if stages_audit(dialect) else None
        self.write_lock = write_lock
        self.waiting = waiting
        self._autocheckpoint = BACKSTOP_PAGES if checkpoints_aside and self._sqlite else None

    def run(self, low: UUID = FIRST_ID, high: UUID | None = None,
            progress: Callable[[int], None] | None = None) -> int:
        """Write the rows of the streams whose id is in ``[low, high)`` (``high`` None: no upper
        bound); returns the events applied.  ``progress`` is called after each page's commit."""
        after: tuple[UUID, int] = (low, 0)  # versions start at 1: the first stream is included
        current_id: Any = None
        current: EpisodeStream | ProgramStream | None = None
        stream_id = self._stream_id
        decode = self.decode
        applied = 0
        while True:
            page = self._read(after, high)
            done: list[Rows] = []
            for position, stored_id, version, topic, state in page:
                if stored_id != current_id:
                    if current is not None:
                        done.append(current.rows())
                    current_id = stored_id
                    event = decode(topic, state, stream_id(stored_id), version)
                    current = stream_for(event)
                else:
                    event = decode(topic, state, event.originator_id, version)
                current.add(position, event)  # type: ignore[union-attr]
            last_page = len(page) < self.page_events
            if last_page and current is not None:
                done.append(current.rows())
            if done:
                self._write(done)
            applied += len(page)
            if progress and page:
                progress(len(page))
            if last_page:
                return applied
            after = (event.originator_id, page[-1][2])

    def _read(self, after: tuple[UUID, int], high: UUID | None) -> list[tuple[Any, ...]]:
        values = {"snapshot": self.snapshot, "after_id": after[0], "after_version": after[1],
                  "limit": self.page_events}
        if high is not None:
            values["before_id"] = high
        prepared = self._pages[high is not None]
        with self.engine.connect() as connection:  # a read: the pool rolls it back on return
            return driver.fetch_raw(connection, prepared, values)

    def _write(self, done: list[Rows]) -> None:
        """One transaction with the rows of the streams ``done``, their values bound before
        it starts: on SQLite the transaction holds the database's one write lock, for which
        the other passes of the rebuild wait."""
        dialect = self.engine.dialect
        batches = []
        for name in WRITE_ORDER:
            rows = [row for stream in done for row in stream.get(name, ())]
            if rows:
                inserter = self._inserts[name]
                if name == "audit" and self._staging is not None and not audit_in_place(rows):
                    inserter = self._staging
                batches.append((inserter, inserter.prepare(dialect, rows)))
        with self._write_transaction() as connection:
            for inserter, prepared in batches:
                inserter.write(connection, prepared)

    @contextmanager
    def _write_transaction(self) -> Iterator[Connection]:
        """A transaction for one page's rows.  On SQLite it takes the write lock first
        (``BEGIN IMMEDIATE``), after the rebuild's own ``write_lock`` when there is one."""
        if not self._sqlite:
            with self.engine.begin() as connection:
                # PostgreSQL: the commit does not wait for the page's write-ahead log to reach
                # the disk (a 2,000-event page's flush took ~6 ms: 68 of a 1 s rebuild at 1,000
                # episodes, 6 without).  Safe: the log is one ordered stream, so a crash that
                # loses a page's commit loses every later one too, the rebuild's last
                # transaction (the position, the marker removed) included, and the marker then
                # says the rebuild is to be run again; and a restart that the connections
                # came through unnoticed (a pooler) fails that last transaction
                # (Rebuild._run checks the server's start time).  (SQLite's NORMAL synchronous
                # mode does not wait at a commit either.)
                connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
                yield connection
            return
        with self._turn(), driver.transaction(self.engine, autocheckpoint=self._autocheckpoint) as connection:
            yield connection

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """The rebuild's passes take turns at SQLite's write lock through ``write_lock``.

        Waiting on SQLite's own lock, a pass sleeps in SQLite's busy handler (1, 2, 5, 10, 15,
        20, 25 ms... between tries) and wakes well after the lock was freed: measured, 20-35 ms
        lost at one turn in three with two passes, a fifth of a 1,000-episode rebuild.  A
        semaphore wakes the next pass as the lock is released.  SQLite's lock still guards the
        data (anything else writing, this lock's holder gone): after ``TURN_SECONDS`` without
        its turn a pass goes on to SQLite's lock alone."""
        lock = self.write_lock
        if lock is None:
            yield
            return
        acquired = False
        deadline = time.monotonic() + TURN_SECONDS
        while not acquired and (left := deadline - time.monotonic()) > 0:
            acquired = lock.acquire(timeout=min(left, TURN_CHECK_SECONDS))
            if not acquired and self.waiting is not None:
                self.waiting()  # (a holder that died never releases: the rebuild is told sooner)
        try:
            yield
        finally:
            if acquired:
                lock.release()


def audit_in_place(rows: list[dict[str, Any]]) -> bool:
    """SQLite: do a page's audit rows go straight into ``rm_audit`` (which keeps its rows in
    position order), rather than to the staging table?  Yes where, in position order, they run
    on for :data:`IN_PLACE_RUN` rows or more on average, as an imported episode's events do:
    each run is written where it belongs, a few pages for many rows, and the move is spared.
    (The rows are sorted by position here: in place, they then go in in order.)"""
    rows.sort(key=_position)
    positions = list(map(_position, rows))
    runs = 1 + sum(1 for before, after in zip(positions, positions[1:]) if after != before + 1)
    return len(rows) >= runs * IN_PLACE_RUN


_position = itemgetter("position")


def stages_audit(dialect: Dialect) -> bool:
    """May the passes append audit rows to ``tables.audit_staging`` (SQLite, whose ``rm_audit``
    keeps its rows in log order; :func:`audit_in_place` decides a page), for the rebuild to
    create it first and move them into ``rm_audit`` after (:func:`create_audit_staging`,
    :func:`move_staged_audit`)?"""
    return dialect.name == "sqlite"


def create_audit_staging(connection: Connection) -> None:
    """SQLite: the table a pass appends the audit rows to (``tables.audit_staging``), created
    with the read models before any pass runs."""
    connection.execute(CreateTable(tables.audit_staging))


def move_staged_audit(connection: Connection) -> None:
    """SQLite, once every pass is done: the staged audit rows moved into ``rm_audit`` (beside
    those written there in place) in position order (one sort and one append, in SQLite), the
    staging table dropped (its freed pages left as they are: see ``Projector.drop_tables``), in
    the caller's transaction."""
    staging = tables.audit_staging
    with sorting_threads(connection):
        connection.execute(insert(tables.audit).from_select(
            [column.name for column in staging.columns],
            select(*staging.columns).order_by(staging.c.position)))
    with freed_pages_not_zeroed(connection):
        connection.execute(DropTable(staging))


@contextmanager
def sorting_threads(connection: Connection) -> Iterator[None]:
    """SQLite sorts with helper threads, one a core (``PRAGMA threads``; its default is none),
    the connection's own setting restored after.  The move's sort of the staged audit rows is
    the longest step after the pass, with every other core idle: at 10,000 episodes 0.38 s
    with none, 0.32-0.35 s with two (the index builds gained nothing: docs/performance.md)."""
    with sqlite_pragma(connection, "threads", min(os.cpu_count() or 1, 8)):
        yield


def _stream_id_reader(dialect_name: str) -> Callable[[Any], UUID]:
    """The stream id as the driver returns it, as a UUID (psycopg gives UUIDs; SQLite keeps
    the 16 bytes, as eventsourcing-sqlalchemy's column type writes them)."""
    if dialect_name == "sqlite":
        return lambda value: UUID(bytes=bytes(value))
    return lambda value: value if isinstance(value, UUID) else UUID(str(value))
