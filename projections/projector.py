"""Applying events to the read models, exactly once.

A batch of events and the new tracking position are written in one transaction: a crash
leaves either all of a batch applied or none of it, and an event at or below the position
is never applied again.  Two ways to run share this one code path:

* inline (:class:`projections.ProjectedEpisodes`): the command's own transaction also runs
  :meth:`Projector.apply_pending`, so the panel reads its own writes;
* catch-up (:meth:`Projector.catch_up`, ``care-episodes rebuild`` / ``project``): a loop that
  polls the event log from the tracking position.  SQLite has no subscriptions, and polling
  works the same on PostgreSQL.

Concurrency: each batch first locks the projection's tracking row (a no-op UPDATE: a row
lock on PostgreSQL, the write lock on SQLite), then reads the position.  So an inline writer
and a catch-up runner never apply the same events twice; the second waits, then finds them done.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple
from uuid import UUID

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from episodes import driver
from episodes.application import Episodes
from episodes.episode import Episode
from episodes.program import Program
from projections import derive, tables

PROJECTION_NAME = "read_models"
# A tracking row present while `projections.rebuild` runs: the read models are being derived
# again from scratch, and everything recorded meanwhile is applied when it finishes.
REBUILDING = f"{PROJECTION_NAME}:rebuilding"
DEFAULT_BATCH = 500
PROGRAM_EVENTS = (Program.Defined, Program.Revised)


class AlreadyApplied(Exception):
    """An event at or below the tracking position was offered again: it is refused."""


def drop_read_models(connection: Connection) -> None:
    """Drop every read model in the caller's transaction (see :meth:`Projector.drop_tables`)."""
    with freed_pages_not_zeroed(connection):
        if connection.dialect.name == "sqlite":
            tables.metadata.drop_all(connection)
            tables.rebuild_metadata.drop_all(connection)  # what an interrupted rebuild left
        else:  # drop_all sends a look-up and a DROP a table: 10 ms on PostgreSQL, this 3
            quote = connection.dialect.identifier_preparer.format_table
            connection.exec_driver_sql("DROP TABLE IF EXISTS " + ", ".join(
                quote(table) for table in reversed(tables.metadata.sorted_tables)))


@contextmanager
def freed_pages_not_zeroed(connection: Connection) -> Iterator[None]:
    """SQLite: ``secure_delete=FAST`` while dropping tables whose content the events keep
    anyway (see :meth:`Projector.drop_tables`); the connection's setting restored after."""
    with sqlite_pragma(connection, "secure_delete", "FAST"):
        yield


@contextmanager
def sqlite_pragma(connection: Connection, name: str, value: object) -> Iterator[None]:
    """SQLite: ``PRAGMA name=value`` for the block, the connection's own value restored after
    (a pooled connection goes back as it came); nothing on another database."""
    if connection.dialect.name != "sqlite":
        yield
        return
    was = connection.exec_driver_sql(f"PRAGMA {name}").scalar()
    connection.exec_driver_sql(f"PRAGMA {name}={value}")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA {name}={int(was)}")


class Projector:
    def __init__(self, app: Episodes, *, cache_size: int = 2_000):
        self.app = app
        self.engine = app.recorder.datastore.engine  # type: ignore[attr-defined]
        # Episodes recently projected, kept at their version so the next event folds onto them
        # instead of replaying the stream.  Bounded, so a rebuild runs in bounded memory.
        self._cache: OrderedDict[UUID, Episode] = OrderedDict()
        self._cache_size = cache_size
        # The episode rows this projector last wrote, so the next update sets only the columns
        # that changed: an UPDATE that names an indexed column maintains that index (SQLite)
        # or loses the heap-only update (PostgreSQL), even when the value is the same.
        self._rows: OrderedDict[UUID, dict[str, Any]] = OrderedDict()
        # Each episode's session and authorization counts at a version, so the next event adds
        # to them instead of recounting the episode (see derive.Tally).
        self._tallies: OrderedDict[UUID, tuple[int, derive.Tally]] = OrderedDict()
        self._statements = _Statements()
        self._prepared = _Prepared(self.engine)

    # ---------------------------------------------------------------- set-up

    def create_tables(self) -> None:
        tables.metadata.create_all(self.engine)
        with self.engine.begin() as connection:
            exists = connection.execute(
                select(tables.tracking.c.position).where(tables.tracking.c.projection == PROJECTION_NAME)
            ).first()
            if exists is None:
                connection.execute(insert(tables.tracking).values(projection=PROJECTION_NAME, position=0))

    def drop_tables(self) -> None:
        """Drop every read model (a rebuild derives them again at once).

        SQLite built with ``SECURE_DELETE`` (Debian's is) overwrites every page a dropped table
        frees with zeros, through the write-ahead log: at 100,000 episodes 8.7 s and 800 MB of
        log to drop 1.1 GB of read models, against 0.7 s and 1 MB without.  So the drop runs
        with ``secure_delete=FAST`` (content deleted inside pages still in use is still zeroed,
        freed pages are not): what the dropped tables held is derived from the events, which
        keep all of it, and is written again into those same free pages by the rebuild that
        follows, so nothing deleted is left behind that was not in the record anyway."""
        with self.engine.begin() as connection:
            drop_read_models(connection)
        self.forget()

    def remember(self, aggregates: Iterable[Any]) -> None:
        """Keep the episodes a command just saved, so projecting their events inline does not
        read and decode the streams again.  Only call this inside the saving transaction: if
        it fails, ``forgetting_on_failure`` drops them."""
        for aggregate in aggregates:
            if isinstance(aggregate, Episode):
                self._cache.pop(aggregate.id, None)
                self._cache[aggregate.id] = aggregate
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    # ---------------------------------------------------------------- positions

    def position(self) -> int:
        with self.engine.connect() as connection:
            return _position(connection)

    def lag(self) -> int:
        """Events recorded but not yet applied to the read models."""
        with self.engine.connect() as connection:
            position = _position(connection)
            events = self.app.recorder.events_record_cls.__table__  # type: ignore[attr-defined]
            from sqlalchemy import func

            return int(connection.execute(
                select(func.count()).select_from(events).where(events.c.id > position)
            ).scalar_one())

    # ---------------------------------------------------------------- processing

    def queue_inline(self, connection: Connection, events: Sequence[Any]) -> Queued:
        """Inside a command's transaction, after its ``events`` are queued: what projecting them
        will read, sent now so that on PostgreSQL it goes in the append's round trip: the
        position (:meth:`queue_position`), and the episode's open status periods when an event
        may change them (else read when they are written: one more round trip)."""
        position = self.queue_position(connection)
        periods: dict[UUID, Any] = {}
        # PostgreSQL only (SQLite sends nothing ahead): after the position's lock, so that what
        # is read is what another projector committed before it (READ COMMITTED).
        if position is not None:
            for event in events:
                if (event.originator_version > 1 and event.originator_id not in periods
                        and not isinstance(event, PROGRAM_EVENTS) and derive.may_change_periods(event)):
                    periods[event.originator_id] = driver.execute(
                        connection, self._prepared.open_periods, {"key": event.originator_id})
        return Queued(position, periods)

    def queue_position(self, connection: Connection) -> Any:
        """Inside a command's transaction, after its events are queued: lock the position and
        read it (on PostgreSQL in the same round trip as the append; the events table is
        already locked, so the lock order is the same as a catch-up's).  None on SQLite, whose
        transaction holds the database's write lock: :meth:`project_own` moves the position
        with one conditional UPDATE instead of a read and a write."""
        if self._prepared.move_position is not None:
            return None
        return driver.execute(connection, self._prepared.lock_and_read_position)

    def project_own(self, connection: Connection, appended: Sequence[Any], aggregate: Any, queued: Queued) -> None:
        """Inside a command's transaction: project the events it has just appended
        (``queued``: what :meth:`queue_inline` sent).

        When the read models are current up to the event before them (the usual case), they
        are applied as they are, already decoded and folded, and the position moves to the
        last of them.  Otherwise (another writer's events are pending, the log has a gap left
        by a rolled-back transaction, or a rebuild is under way) everything after the
        position is applied, or left to the rebuild.
        """
        self.remember([aggregate])
        first, last = appended[0].notification_id, appended[-1].notification_id
        position = queued.position
        if position is None:  # SQLite: moved only if it is just before the command's events
            moved = driver.execute(connection, self._prepared.move_position,
                                   {"new_position": last, "expected": first - 1}).rowcount == 1
        elif driver.fetch_one(connection, position)[0] == first - 1:
            driver.execute(connection, self._prepared.set_position, {"new_position": last})
            moved = True
        else:
            moved = False
        if moved:
            self._apply_events(connection, [(a.notification_id, a.event) for a in appended],
                               dict(queued.periods))
        else:
            self.apply_pending(connection)
        # Not kept past the command: the application keeps this very object for the episode's
        # next command, which decides on it (changes it) without a lock (episodes/recent.py),
        # and a fold here onto a cached object changes that object in place.
        if self._cache.get(aggregate.id) is aggregate:
            del self._cache[aggregate.id]

    def apply_pending(self, connection: Connection, limit: int | None = None) -> int:
        """Inside the caller's transaction: lock the position, apply what follows it."""
        connection.execute(self._statements.lock_position)
        if connection.execute(self._statements.rebuilding).first() is not None:
            return 0  # a rebuild is under way: it applies these events when it finishes
        position = _position(connection)
        applied = 0
        while True:
            # Read on the caller's connection: a command's own uncommitted events included.
            batch = self.app.writer.notifications(connection, position, limit or DEFAULT_BATCH)
            if not batch:
                return applied
            self.apply(connection, batch, position)
            position = batch[-1].id
            applied += len(batch)
            if limit is not None or len(batch) < DEFAULT_BATCH:
                # A short batch was all there was: asking again would only find nothing.  (A
                # writer who appends after this read projects its own events, ours included.)
                return applied

    def catch_up(self, *, batch_size: int = DEFAULT_BATCH, progress: Callable[[int], None] | None = None) -> int:
        """Apply every pending event, one transaction per batch; returns how many."""
        total = 0
        while True:
            with self.forgetting_on_failure(), self.app.writer.transaction() as connection:
                applied = self.apply_pending(connection, limit=batch_size)
            total += applied
            if progress and applied:
                progress(applied)
            if applied == 0:
                return total

    @contextmanager
    def forgetting_on_failure(self) -> Iterator[None]:
        """If the transaction fails, the cached episodes may hold events that were rolled back."""
        try:
            yield
        except BaseException:
            self.forget()
            raise

    def forget(self) -> None:
        """Drop every cached episode and row (after a failed transaction)."""
        self._cache.clear()
        self._rows.clear()
        self._tallies.clear()

    def apply(self, connection: Connection, notifications: Sequence[Any], position: int) -> None:
        """Apply a batch of notifications that follows ``position``; then move the position."""
        if notifications[0].id <= position:
            raise AlreadyApplied(
                f"event {notifications[0].id} is at or below the projection's position {position}"
            )
        mapper = self.app.mapper
        self._apply_events(connection, [(n.id, mapper.to_domain_event(n)) for n in notifications])
        driver.execute(connection, self._prepared.set_position, {"new_position": notifications[-1].id})

    def _apply_events(self, connection: Connection, items: Sequence[tuple[int, Any]],
                      open_periods: dict[UUID, Any] | None = None) -> None:
        """Write the read-model rows of decoded events (the tracking row is the caller's).
        ``open_periods``: cursors of :meth:`queue_inline`'s reads of open periods, by episode;
        each serves that episode's first change of periods here (later ones read again)."""
        touched: dict[UUID, list[Any]] = {}
        latest: dict[UUID, Episode] = {}
        audit_rows = []
        for notification_id, event in items:
            if isinstance(event, PROGRAM_EVENTS):
                self._apply_program(connection, event)
                audit_rows.append(derive.audit_row(notification_id, event, None, None))
                continue
            episode = latest[event.originator_id] = self._fold(connection, event)
            target = None
            if derive.is_correction(event):
                target = type(self._target_event(connection, event)).__name__
            audit_rows.append(derive.audit_row(notification_id, event, episode.state.patient_ref, target))
            touched.setdefault(event.originator_id, []).append(event)
            if derive.may_change_periods(event):
                # Each version of the periods is stamped with the event that made it, so a
                # rebuild in large batches writes the same rows as one event at a time.
                queued = open_periods.pop(event.originator_id, None) if open_periods else None
                self._write_periods(connection, episode, event.timestamp, queued)
        for episode_id, events in touched.items():
            self._write_episode(connection, latest[episode_id], events)
        if audit_rows:
            self._prepared.insert(connection, "audit", audit_rows)

    # ---------------------------------------------------------------- episodes

    def _fold(self, connection: Connection, event: Any) -> Episode:
        """The episode at the event's version, from the cache when it holds the version before."""
        episode_id = event.originator_id
        cached = self._cache.pop(episode_id, None)
        if cached is not None and cached.version == event.originator_version:
            episode = cached  # the writer's own aggregate: this event is already in it
        elif cached is not None and cached.version == event.originator_version - 1:
            episode = event.mutate(cached)
        elif event.originator_version == 1:
            episode = event.mutate(None)
        else:
            episode = self.app.writer.aggregate(connection, episode_id, event.originator_version)
        self._cache[episode_id] = episode
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return episode

    def _target_event(self, connection: Connection, correction: Any) -> Any:
        # The corrected event itself, as first recorded (the audit names its category).
        return self.app.writer.event(connection, correction.originator_id, correction.target_version)

    def _write_episode(self, connection: Any, episode: Episode, events: list[Any]) -> None:
        recorded_at = events[-1].timestamp
        row = derive.episode_row(episode, recorded_at, self._tally(episode, events))
        statements, prepared = self._statements, self._prepared
        previous = self._rows.pop(episode.id, None)
        if any(e.originator_version == 1 for e in events):
            prepared.insert(connection, "episodes", [row])
        elif previous is not None and previous["version"] == events[0].originator_version - 1:
            # The stored row is the one written here last (events are applied in order, by
            # one projector at a time): set what changed (version and recorded_at always do).
            changed = {name: value for name, value in row.items() if previous[name] != value}
            prepared.update_episode(connection, episode.id, changed)
        else:
            prepared.update_episode(connection, episode.id, row)
        self._rows[episode.id] = row
        while len(self._rows) > self._cache_size:
            self._rows.popitem(last=False)
        if any(derive.is_correction(e) for e in events):
            # A correction can change any earlier fact: rewrite this episode's fact rows.
            for name in ("sessions", "outcomes", "authorizations"):
                connection.execute(statements.delete_facts[name], {"key": episode.id})
            new_facts = [episode.facts[v] for v in sorted(episode.facts)]
        else:
            new_facts = [e for e in events if e.originator_version in episode.facts]
        for name, rows in derive.fact_rows(episode.id, new_facts).items():
            if rows:
                prepared.insert(connection, name, rows)

    def _tally(self, episode: Episode, events: list[Any]) -> derive.Tally:
        """The episode's counts at its version: the kept ones plus these events' facts when
        they follow on (no correction, no session dated before one counted), else a recount."""
        kept = self._tallies.pop(episode.id, None)
        tally: derive.Tally | None = None
        if kept is not None and kept[0] == events[0].originator_version - 1:
            tally = kept[1]
            for event in events:
                if derive.is_correction(event):
                    tally = None
                    break
                fact = episode.facts.get(event.originator_version)
                if fact is not None and (tally := tally.then(fact)) is None:
                    break
        if tally is None:
            tally = derive.Tally.of(episode.facts.values())
        self._tallies[episode.id] = (episode.version, tally)
        while len(self._tallies) > self._cache_size:
            self._tallies.popitem(last=False)
        return tally

    def _write_periods(self, connection: Connection, episode: Episode, recorded_at: Any,
                       queued: Any = None) -> None:
        """Close the periods the record no longer holds; open the ones it now holds.
        ``queued``: the cursor of the open periods' read, already sent (else read now)."""
        if episode.version == 1:
            current = []  # a new episode (its referral): no period of it yet
        else:
            read = self._prepared.open_periods
            if queued is None:
                queued = driver.execute(connection, read, {"key": episode.id})
            current = driver.fetch_all(connection, read, queued)
        held = {r[1:]: r[0] for r in current}
        wanted = derive.periods(episode)
        stale = [{"row_id": row_id, "recorded_to": recorded_at} for key, row_id in held.items() if key not in wanted]
        if stale:
            self._prepared.close_periods(connection, stale)
        new = [key for key in wanted if key not in held]
        if new:
            self._prepared.insert(connection, "periods", [
                {**dict(zip(PERIOD_KEY, key)), "episode_id": episode.id, "recorded_from": recorded_at}
                for key in new
            ])

    def _apply_program(self, connection: Connection, event: Any) -> None:
        program = self.app.writer.aggregate(connection, event.originator_id, event.originator_version)
        row = derive.program_row(program)
        connection.execute(delete(tables.programs).where(tables.programs.c.code == row["code"]))
        connection.execute(insert(tables.programs), [row])


class Queued(NamedTuple):
    """What :meth:`Projector.queue_inline` sent ahead of projecting a command's events."""

    position: Any  # the position's cursor (PostgreSQL), or None (SQLite: moved conditionally)
    periods: dict[UUID, Any]  # episode id -> the cursor of its open periods' read


PERIOD_KEY = ("status", "level_code", "tapering", "program_code", "clinic", "valid_from", "valid_to")


class _Statements:
    """Statements built once: building an ``insert()`` or ``update()`` per call costs about
    three times executing it (SQLAlchemy caches the compiled form of a reused statement)."""

    def __init__(self) -> None:
        t = tables.tracking
        this_projection = t.c.projection == PROJECTION_NAME
        self.rebuilding = select(t.c.position).where(t.c.projection == REBUILDING)
        self.lock_position = update(t).where(this_projection).values(position=t.c.position)
        self.delete_facts = {
            name: delete(getattr(tables, name)).where(getattr(tables, name).c.episode_id == bindparam("key"))
            for name in ("sessions", "outcomes", "authorizations")
        }


class _Prepared:
    """The statements every command's inline projection sends, through the driver
    (episodes/driver.py): compiled once per set of columns."""

    def __init__(self, engine: Any) -> None:
        t = tables.tracking
        self._statements = driver.Statements(engine)
        this_projection = t.c.projection == PROJECTION_NAME
        lock_and_read = select(t.c.position).where(this_projection)
        if engine.dialect.name != "sqlite":  # SQLite: the transaction holds the write lock already
            lock_and_read = lock_and_read.with_for_update()
        self.lock_and_read_position = self._statements.get("lock_and_read_position", lambda: lock_and_read)
        self.set_position = self._statements.get("set_position", lambda: (
            update(t).where(this_projection).values(position=bindparam("new_position"))
        ))
        p = tables.periods
        self.open_periods = self._statements.get("open_periods", lambda: (
            select(p.c.id, *(p.c[name] for name in PERIOD_KEY))
            .where(p.c.episode_id == bindparam("key"), p.c.recorded_to.is_(None))
        ))
        self.move_position = None if engine.dialect.name != "sqlite" else self._statements.get(
            "move_position", lambda: (
                update(t).where(this_projection, t.c.position == bindparam("expected"))
                .values(position=bindparam("new_position"))
            ))

    def insert(self, connection: Connection, table: str, rows: Sequence[dict[str, Any]]) -> None:
        keys = tuple(rows[0])
        prepared = self._statements.get((table, keys), lambda: insert(getattr(tables, table)), keys)
        if len(rows) == 1:
            driver.execute(connection, prepared, rows[0])
        else:
            driver.execute_many(connection, prepared, rows)

    def close_periods(self, connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
        p = tables.periods
        prepared = self._statements.get("close_periods", lambda: (
            update(p).where(p.c.id == bindparam("row_id")).values(recorded_to=bindparam("recorded_to"))
        ))
        driver.execute_many(connection, prepared, rows)

    def update_episode(self, connection: Connection, episode_id: UUID, values: dict[str, Any]) -> None:
        keys = tuple(values)
        prepared = self._statements.get(("update_episode", keys), lambda: (
            update(tables.episodes).where(tables.episodes.c.episode_id == bindparam("key"))
        ), keys)
        driver.execute(connection, prepared, {**values, "key": episode_id})


def _position(connection: Any) -> int:
    value = connection.execute(
        select(tables.tracking.c.position).where(tables.tracking.c.projection == PROJECTION_NAME)
    ).scalar_one_or_none()
    return int(value or 0)
