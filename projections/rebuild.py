"""Rebuilding every read model from the events: stream by stream, in bounded memory, in one
process or several.

``care-episodes rebuild`` used to replay the log through the incremental projector, which
reads back the open periods and re-folds the episode at every status change, and keeps an
LRU of folded episodes.  This path reads the events in stream order instead (the event
table's own index on stream and version), folds each stream once, derives its final rows in
memory (:mod:`projections.streams`, the same rows the projector leaves behind) and writes them
with prebuilt statements, many rows at once, one transaction per page of events
(:mod:`projections.stream_pass`).  Streams are independent: with ``workers``, ranges of stream
ids are passed in worker processes, each writing its own streams' rows
(:mod:`projections.rebuild_workers`), and the rows are the same.

Exactly once, and never claiming too much:

* The pass covers the events up to the log's newest id when it starts (the *snapshot*).  The
  tracking position stays 0 while it runs, and a marker row (``REBUILDING``) says a rebuild is
  under way; once every stream's rows are written (by this process or by every worker), the
  secondary indexes are built (on PostgreSQL after every table's ``VACUUM (ANALYZE)``, side by
  side with several processes), then one last transaction moves the position to the snapshot
  and removes the marker.  A crash
  part-way (or a worker's failure, which stops the others) leaves
  the read models at position 0 with the marker: nothing claims to be current,
  ``care-episodes project`` refuses, and running the rebuild again drops the partial rows and
  starts over.
* Events appended by writers meanwhile are above the snapshot: after the pass, the projector's
  ordinary ``catch_up`` applies them from the position, one batch per transaction.  (Writers
  that project inline, ``ProjectedEpisodes``, find the position at 0 during the pass: their
  catch-up runs into the pass's rows and their command is refused, nothing recorded.)
* One rebuild of a database at a time (:mod:`projections.rebuild_lock`): a second one fails
  at once with :class:`RebuildAlreadyRunning` instead of dropping the tables under the first.
* Memory holds, in each process that passes streams, one page of events, the rows of the
  streams it completed, and the one stream that continues into the next page.

Speed: rows go in through :class:`episodes.bulk_rows.BulkInserter` (COPY on PostgreSQL), the
payloads are decoded by :func:`projections.decoding.fast_event_decoder`, the tables' secondary
indexes are built once at the end instead of row by row, on SQLite the audit rows of streams
whose events lie apart in the log are staged and moved into ``rm_audit`` in log order before
them (``projections.tables.audit_staging``: written stream by stream, they rewrote pages all
over the table; those of streams whose events lie together go straight in,
``projections.stream_pass.audit_in_place``), and the garbage collector
runs less often while millions of short-lived objects pass.  Worker processes take a few
milliseconds to start where they are forked, about a second where they are spawned
(:mod:`episodes.workers`), so by default a log smaller than :data:`PARALLEL_MIN_EVENTS` (for
that way of starting) is passed in this process.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlalchemy.schema import CreateTable

from episodes import driver
from episodes.application import Episodes
from episodes.garbage import fewer_collections
from episodes.workers import StoreSpec, start_method, worker_count
from projections import tables
from projections.checkpoints import checkpoints_aside
from projections.projector import (
    DEFAULT_BATCH,
    PROJECTION_NAME,
    REBUILDING,
    Projector,
    drop_read_models,
)
from projections.rebuild_lock import RebuildAlreadyRunning, exclusive_rebuild
from projections.rebuild_workers import run_pass
from projections.stream_pass import (
    PAGE_EVENTS,
    StreamPass,
    create_audit_staging,
    move_staged_audit,
    stages_audit,
)

SECONDARY_INDEXES = tuple(index for table in tables.READ_MODELS for index in table.indexes)
# Below this many events, the library's default (workers=None) passes the streams in this
# process: starting the workers costs more than they save.  By how they start
# (episodes.workers.start_method): a spawned worker takes ~0.5-1 s, a forked one a few ms.
# Measured on 2 cores (docs/performance.md): forked, two processes were as fast as one at
# ~2,000 events and 10-50% faster from ~5,000.
PARALLEL_MIN_EVENTS = {"fork": 5_000, "spawn": 50_000}
CANCEL_AGAIN_SECONDS = 0.2  # after a failure side by side, how often the others are cancelled


def interrupted(app: Episodes) -> bool:
    """Did a rebuild start and not finish?  (Its marker row is still there.)"""
    t = tables.tracking
    with app.recorder.datastore.engine.connect() as connection:  # type: ignore[attr-defined]
        if not connection.dialect.has_table(connection, t.name):
            return False
        return connection.execute(select(t.c.position).where(t.c.projection == REBUILDING)).first() is not None


def rebuild(app: Episodes, *, workers: int | None = None, page_events: int = PAGE_EVENTS,
            batch_size: int = DEFAULT_BATCH, progress: Callable[[int], None] | None = None) -> int:
    """Drop every read model and derive it again from the events; returns the events applied.

    ``workers``: how many processes pass the streams, this one included (0 or 1: this one
    alone; None: one per core when the log has at least :data:`PARALLEL_MIN_EVENTS` events
    (5,000 where workers are forked, 50,000 where they are spawned),
    else this one alone; an in-memory SQLite database is always passed in this process)."""
    return Rebuild(app, page_events=page_events, workers=workers).run(batch_size=batch_size,
                                                                      progress=progress)


class DatabaseRestarted(RuntimeError):
    """The PostgreSQL server restarted while a rebuild ran: it did not finish (run it again)."""


class Rebuild:
    def __init__(self, app: Episodes, *, page_events: int = PAGE_EVENTS, workers: int | None = None):
        if page_events < 1:
            raise ValueError("page_events must be at least 1")
        if workers is not None and workers < 0:
            raise ValueError("workers must be 0 or more")
        self.app = app
        self.engine = app.recorder.datastore.engine  # type: ignore[attr-defined]
        self.page_events = page_events
        self.requested_workers = workers
        self.processes_used = 1  # after run(): the processes that passed the streams
        self.restarted = False  # after run(): an earlier rebuild had not finished
        self.worker_peaks_kib: list[int] = []  # after run(): each worker's peak memory
        t = tables.tracking
        self._set_position = (
            update(t).where(t.c.projection == PROJECTION_NAME).values(position=bindparam("new_position"))
        )
        self._start = insert(t).values(projection=PROJECTION_NAME, position=bindparam("position"))
        self._mark = insert(t).values(projection=REBUILDING, position=bindparam("snapshot"))
        self._unmark = delete(t).where(t.c.projection == REBUILDING)
        self._touch_mark = update(t).where(t.c.projection == REBUILDING).values(position=t.c.position)

    def processes_for(self, events: int) -> int:
        """How many processes pass ``events`` events, this one included."""
        requested = self.requested_workers
        processes = max(1, worker_count(requested, StoreSpec.of(self.app)))
        if processes > 1 and requested is None:  # the threshold: by how workers would start
            if events < PARALLEL_MIN_EVENTS[start_method(self.engine)]:
                return 1
        return processes

    def run(self, *, batch_size: int = DEFAULT_BATCH, progress: Callable[[int], None] | None = None) -> int:
        """Rebuild (see :func:`rebuild`); raises :class:`RebuildAlreadyRunning`, having changed
        nothing, while another rebuild of the same database runs."""
        with exclusive_rebuild(self.engine):
            return self._run(batch_size, progress)

    def _run(self, batch_size: int, progress: Callable[[int], None] | None) -> int:
        self.restarted = interrupted(self.app)  # read under the lock: not a running rebuild's marker
        snapshot = self.app.recorder.max_notification_id() or 0
        postgresql = self.engine.dialect.name == "postgresql"
        staged = stages_audit(self.engine.dialect)  # the audit rows, on SQLite
        # The old read models dropped and the new tables created in one transaction (SQLite:
        # BEGIN IMMEDIATE, without which the sqlite3 module commits each CREATE on its own),
        # so a failure leaves the old ones as they were, and no writer finds no tables.
        with driver.transaction(self.engine) as connection:
            drop_read_models(connection)
            # Without their secondary indexes (built once every row is written): creating them
            # with the tables and dropping them again was 16 statements more, ~15 ms of a 0.7 s
            # rebuild at 1,000 episodes on PostgreSQL.
            for table in tables.metadata.sorted_tables:
                connection.execute(CreateTable(table))
            if staged:
                create_audit_staging(connection)
            connection.execute(self._start, {"position": 0})
            connection.execute(self._mark, {"snapshot": snapshot})
            started = _server_started(connection)
        applied = self._pass(snapshot, progress)
        if staged:
            with driver.transaction(self.engine) as connection:
                move_staged_audit(connection)
        # The secondary indexes (on PostgreSQL after each table's VACUUM (ANALYZE)), side by
        # side where that helps, the marker still standing: a crash before the next
        # transaction leaves an interrupted rebuild.
        if postgresql:
            # The pages committed without waiting for their log (StreamPass): one commit that
            # waits flushes the log up to it, every page's commit included, so the vacuums
            # can mark the pages all-visible (a row whose commit is not yet on disk cannot be
            # hinted as committed, and a page holding one is not all-visible).
            with self.engine.begin() as connection:
                connection.exec_driver_sql("SET LOCAL synchronous_commit = on")
                connection.execute(self._touch_mark)
        self._in_turns(self._side_by_side(), self._closing_work(), _close,
                       autocommit=postgresql)  # (VACUUM runs outside a transaction)
        with self.engine.begin() as connection:  # every stream's rows are written: current now
            if _server_started(connection) != started:
                # Pages committed without waiting may have been lost in a restart that the
                # connections came through (a pooler, a pre-ping): not current, run again.
                raise DatabaseRestarted(
                    "the database server restarted during the rebuild, so rows it had written "
                    "may be lost; the read models are left marked as an interrupted rebuild: "
                    "run 'care-episodes rebuild' again")
            connection.execute(self._set_position, {"new_position": snapshot})
            connection.execute(self._unmark)
        # What writers appended during the pass, the ordinary way, from the snapshot on.
        return applied + Projector(self.app).catch_up(batch_size=batch_size, progress=progress)

    def _pass(self, snapshot: int, progress: Callable[[int], None] | None) -> int:
        """Write every stream's rows, up to the snapshot: here, or here and in worker processes."""
        self.processes_used = self.processes_for(snapshot)  # ids up to the snapshot: about its events
        if self.processes_used == 1:
            with checkpoints_aside(self.engine) as aside, fewer_collections():
                return StreamPass(self.app, snapshot, page_events=self.page_events,
                                  checkpoints_aside=aside).run(progress=progress)
        report = run_pass(self.app, snapshot, self.processes_used, page_events=self.page_events,
                          progress=progress)
        self.worker_peaks_kib = report.worker_peaks_kib
        return report.applied

    def _side_by_side(self) -> int:
        """How many connections build the indexes and vacuum the tables at once: on PostgreSQL
        one a process the pass used (index builds of one table, and anything on different
        tables, run side by side there; SQLite has one writer)."""
        return self.processes_used if self.engine.dialect.name == "postgresql" else 1

    def _in_turns(self, connections: int, items: Sequence[Any], work: Callable[[Connection, Any], None],
                  *, autocommit: bool = False) -> None:
        """``work(connection, item)`` for every item, shared out over ``connections``
        connections in threads (each its own transaction, or autocommit): each connection
        takes the next item, in their given order, when it is done with its last, so one long
        item does not hold up the rest.  The first failure (or Ctrl-C) stops the others: no
        thread starts another item, and the statements running are cancelled (an index build
        or a VACUUM runs for seconds at 100,000 episodes), then it is raised."""
        pending = deque(items)  # popleft: atomic, each item taken once
        stop = threading.Event()
        running: list[Any] = []  # the driver's connections in use, to cancel their statements

        def run() -> None:
            options = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
            with self.engine.connect().execution_options(**options) as connection:
                running.append(connection.connection.driver_connection)
                while True:
                    try:
                        item = pending.popleft()
                    except IndexError:  # none left (another connection may have taken the last)
                        break
                    if stop.is_set():
                        return
                    work(connection, item)
                if not autocommit:
                    connection.commit()

        lanes = min(connections, len(items))
        if lanes <= 1:
            run()
            return
        with ThreadPoolExecutor(lanes, thread_name_prefix="care-episodes-rebuild") as pool:
            started = [pool.submit(run) for _ in range(lanes)]
            try:
                for done in as_completed(started):  # a failure as soon as it happens
                    done.result()
            except BaseException:
                stop.set()
                # Cancelled until every thread is done: one that had just taken an item when
                # the first cancel went out may send its statement after it.
                while not all(future.done() for future in started):
                    for driver_connection in running:
                        _cancel(driver_connection)
                    wait(started, timeout=CANCEL_AGAIN_SECONDS)
                raise

    def _closing_work(self) -> list[Any]:
        """What follows the pass, for :func:`_close`: the secondary indexes, the largest tables'
        first; on PostgreSQL after a ``VACUUM (ANALYZE)`` of every read model (a table's name),
        the largest first, instead of whenever autovacuum gets to them (never, where it is off).

        Statistics: without them the planner guessed an episode's audit rows at 0.5% of the
        table and, for the streamed export, walked the whole log in position order (0.76 s for
        a 500-event episode at 100,000 episodes).  The vacuum sets the visibility map, so a
        count (the episode list's total, the dashboard's census) is an index-only scan, and the
        first reads do not each rewrite the pages to set hint bits: the list of 61,500 finished
        episodes at 100,000 took 21.3 / 25.0 ms (median / p95) analysed only, 12.2 / 15.1 ms
        vacuumed.  About 4 s for every read model at 100,000 episodes, one after another,
        when every column was analysed.

        The vacuums come first: an index build and a vacuum of one table wait for each other
        (an index taken while its table is still being vacuumed waits for the vacuum), and a
        vacuum before the indexes has none to visit.  With several connections, each
        takes the next item when it is done (at 1,000 episodes the audit log's vacuum and its
        three indexes take 80 ms, the other tables' together about as long: 0.09 s for
        indexes, then vacuums, one phase after the other; 0.07 s mixed).  The audit log's
        statistics are of the columns its queries use, ``tables.PLANNED_COLUMNS`` (its ANALYZE
        90 ms at 1,000 episodes with every column, 35 without the others).  Autovacuum, where it
        runs, analyses every column some time later: an ANALYZE of some columns does not reset
        its count of the rows changed."""
        if self.engine.dialect.name != "postgresql":
            return list(SIDE_BY_SIDE_INDEXES)
        names = sorted((table.name for table in tables.READ_MODELS), key=_largest_first)
        return [*names, *SIDE_BY_SIDE_INDEXES]


def _server_started(connection: Connection) -> Any:
    """When the PostgreSQL server last started (None elsewhere: SQLite commits wait for no disk
    but lose nothing the rebuild would not notice, its rebuild holding the file's lock)."""
    if connection.dialect.name != "postgresql":
        return None
    return connection.exec_driver_sql("SELECT pg_postmaster_start_time()").scalar()


def _close(connection: Connection, item: Any) -> None:
    """One item of :meth:`Rebuild._closing_work`: a table's name is vacuumed, an index built."""
    if isinstance(item, str):
        _vacuum(connection, item)
    else:
        _create_index(connection, item)


def _create_index(connection: Connection, index: Any) -> None:
    index.create(connection)


def _vacuum(connection: Connection, name: str) -> None:
    # The statistics of the columns plans use, where the table lists them (tables.PLANNED_COLUMNS).
    quote = connection.dialect.identifier_preparer.quote
    columns = tables.PLANNED_COLUMNS.get(name)
    listed = f" ({', '.join(map(quote, columns))})" if columns else ""
    connection.exec_driver_sql(f"VACUUM (ANALYZE) {quote(name)}{listed}")  # (not in a transaction: autocommit)


def _largest_first(name: str) -> tuple[int, str]:
    """The audit log (a row an event) first, then the sessions (most of the events), then the
    rest by name: the longest work is started first, the rest fills in around it."""
    return {tables.audit.name: 0, tables.sessions.name: 1}.get(name, 2), name


def _cancel(driver_connection: Any) -> None:
    """Cancel the statement running on a psycopg connection, if any (best effort)."""
    cancel = getattr(driver_connection, "cancel_safe", None) or getattr(driver_connection, "cancel", None)
    if cancel is not None:
        try:
            cancel()
        except Exception:  # noqa: BLE001 - the connection may be closing: nothing to stop
            pass


# The secondary indexes in the order they are shared out side by side: the largest tables' first.
SIDE_BY_SIDE_INDEXES = tuple(sorted(SECONDARY_INDEXES, key=lambda index: (*_largest_first(index.table.name), index.name)))


__all__ = ["PARALLEL_MIN_EVENTS", "DatabaseRestarted", "Rebuild", "RebuildAlreadyRunning", "interrupted",
           "rebuild"]
