"""Rebuilding every read model from the events: stream by stream, in bounded memory.

``care-episodes rebuild`` used to replay the log through the incremental projector, which
reads back the open periods and re-folds the episode at every status change, and keeps an
LRU of folded episodes.  This path reads the events in stream order instead (the event
table's own index on stream and version), folds each stream once, derives its final rows in
memory (:mod:`projections.streams`, the same rows the projector leaves behind) and writes them
with prebuilt statements, many rows at once, one transaction per page of events.

Exactly once, and never claiming too much:

* The pass covers the events up to the log's newest id when it starts (the *snapshot*).  The
  tracking position stays 0 while it runs, and a marker row (``REBUILDING``) says a rebuild is
  under way; the last page's transaction moves the position to the snapshot and removes the
  marker.  A crash part-way leaves the read models at position 0 with the marker: nothing
  claims to be current, ``care-episodes project`` refuses, and running the rebuild again
  drops the partial rows and starts over.
* Events appended by writers meanwhile are above the snapshot: after the pass, the projector's
  ordinary ``catch_up`` applies them from the position, one batch per transaction.  (Writers
  that project inline, ``ProjectedEpisodes``, find the position at 0 during the pass: their
  catch-up runs into the pass's rows and their command is refused, nothing recorded.)
* Memory holds one page of events, the rows of the streams it completed, and the one stream
  that continues into the next page.

Speed: rows go in through :class:`episodes.bulk_rows.BulkInserter` (COPY on PostgreSQL), the
payloads are decoded by :func:`projections.decoding.fast_mapper`, the tables' secondary
indexes are built once at the end (in the last page's transaction) instead of row by row,
and the garbage collector runs less often while millions of short-lived objects pass.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, delete, insert, select, tuple_, update

from episodes.application import Episodes
from episodes.bulk_rows import BulkInserter
from projections import tables
from projections.decoding import fast_mapper
from projections.projector import DEFAULT_BATCH, PROJECTION_NAME, REBUILDING, Projector
from projections.streams import EpisodeStream, ProgramStream, Rows, stream_for

PAGE_EVENTS = 2_000  # events read (and rows written) per transaction: ~15 MiB of memory
# Parents first is not needed (no foreign keys), but one fixed order keeps runs comparable.
WRITE_ORDER = ("programs", "episodes", "periods", "sessions", "outcomes", "authorizations", "audit")
SECONDARY_INDEXES = tuple(index for table in tables.READ_MODELS for index in table.indexes)


def interrupted(app: Episodes) -> bool:
    """Did a rebuild start and not finish?  (Its marker row is still there.)"""
    t = tables.tracking
    with app.recorder.datastore.engine.connect() as connection:  # type: ignore[attr-defined]
        if not connection.dialect.has_table(connection, t.name):
            return False
        return connection.execute(select(t.c.position).where(t.c.projection == REBUILDING)).first() is not None


def rebuild(app: Episodes, *, page_events: int = PAGE_EVENTS, batch_size: int = DEFAULT_BATCH,
            progress: Callable[[int], None] | None = None) -> int:
    """Drop every read model and derive it again from the events; returns the events applied."""
    return Rebuild(app, page_events=page_events).run(batch_size=batch_size, progress=progress)


class Rebuild:
    def __init__(self, app: Episodes, *, page_events: int = PAGE_EVENTS):
        if page_events < 1:
            raise ValueError("page_events must be at least 1")
        self.app = app
        self.engine = app.recorder.datastore.engine  # type: ignore[attr-defined]
        self.page_events = page_events
        events = app.recorder.events_record_cls.__table__  # type: ignore[attr-defined]
        after = tuple_(bindparam("after_id", type_=events.c.originator_id.type), bindparam("after_version"))
        # Keyset pages in stream order, on the (originator_id, originator_version) index.
        self._page = (
            select(events.c.id, events.c.originator_id, events.c.originator_version, events.c.topic,
                   events.c.state)
            .where(events.c.id <= bindparam("snapshot"),
                   tuple_(events.c.originator_id, events.c.originator_version) > after)
            .order_by(events.c.originator_id, events.c.originator_version)
            .limit(bindparam("limit"))
        )
        self._inserts = {name: BulkInserter(getattr(tables, name)) for name in WRITE_ORDER}
        t = tables.tracking
        self._set_position = (
            update(t).where(t.c.projection == PROJECTION_NAME).values(position=bindparam("new_position"))
        )
        self._mark = insert(t).values(projection=REBUILDING, position=bindparam("snapshot"))
        self._unmark = delete(t).where(t.c.projection == REBUILDING)

    def run(self, *, batch_size: int = DEFAULT_BATCH, progress: Callable[[int], None] | None = None) -> int:
        projector = Projector(self.app)
        projector.drop_tables()
        projector.create_tables()
        snapshot = self.app.recorder.max_notification_id() or 0
        with self.engine.begin() as connection:
            connection.execute(self._mark, {"snapshot": snapshot})
            for index in SECONDARY_INDEXES:  # built again by the last page's transaction
                index.drop(connection)
        with _fewer_collections():
            applied = self._fast_pass(snapshot, progress)
        self._analyze()
        # What writers appended during the pass, the ordinary way, from the snapshot on.
        return applied + Projector(self.app).catch_up(batch_size=batch_size, progress=progress)

    def _analyze(self) -> None:
        """Give PostgreSQL's planner statistics of the freshly loaded tables at once, instead of
        whenever autovacuum gets to them: without them it guessed an episode's audit rows at
        0.5% of the table and, for the streamed export, walked the whole log in position
        order (0.76 s for a 500-event episode at 100,000 episodes)."""
        if self.engine.dialect.name != "postgresql":
            return
        with self.engine.begin() as connection:
            for table in tables.READ_MODELS:
                connection.exec_driver_sql(f"ANALYZE {table.name}")

    # ---------------------------------------------------------------- the pass

    def _fast_pass(self, snapshot: int, progress: Callable[[int], None] | None) -> int:
        decode = fast_mapper(self.app.mapper).to_domain_event
        after: tuple[UUID, int] = (UUID(int=0), 0)
        current_id: UUID | None = None
        current: EpisodeStream | ProgramStream | None = None
        applied = 0
        while True:
            with self.engine.begin() as connection:
                page = connection.execute(self._page, {
                    "snapshot": snapshot, "after_id": after[0], "after_version": after[1],
                    "limit": self.page_events,
                }).all()
                done: list[Rows] = []
                for stored in page:
                    # A row has the stored event's fields by name: the mapper reads just those.
                    event = decode(stored)
                    stream_id = stored.originator_id
                    if stream_id != current_id:
                        if current is not None:
                            done.append(current.rows())
                        current_id, current = stream_id, stream_for(event)
                    current.add(stored.id, event)
                last_page = len(page) < self.page_events
                if last_page and current is not None:
                    done.append(current.rows())
                self._write(connection, done)
                if last_page:
                    for index in SECONDARY_INDEXES:
                        index.create(connection)
                    connection.execute(self._set_position, {"new_position": snapshot})
                    connection.execute(self._unmark)
            applied += len(page)
            if progress and page:
                progress(len(page))
            if last_page:
                return applied
            after = (page[-1][1], page[-1][2])

    def _write(self, connection: Any, done: list[Rows]) -> None:
        for name in WRITE_ORDER:
            rows = [row for stream in done for row in stream.get(name, ())]
            if rows:
                self._inserts[name].insert(connection, rows)


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Collect garbage less often during the pass, then as before.

    The pass allocates a few dozen containers per event and keeps none beyond its page; with
    the default thresholds a young collection runs every 700 allocations and the older ones
    walk every object the application holds.  Those are frozen (left out of collections) and
    young collections run every 50,000 allocations: a few percent of the time, memory still
    bounded by the page.  (A process that froze objects itself, e.g. before forking workers,
    keeps its own freeze: this one then leaves freezing alone.)
    """
    threshold = gc.get_threshold()
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        if freeze:
            gc.unfreeze()
