"""Bulk import of historical episodes: a migration from another system.

The input is, per episode, the ordered commands that made its history, with the same names
and data as :meth:`Episodes.execute` (each with its clinical ``effective_date``, its actor and
its reason).  Every command goes through the same checks as a live one: its marshmallow
schema, the actor's permission, the pathway and the clinical-date rules, decided by the
:class:`Episode` aggregate in memory.  What differs is only how the events reach the store:

* many episodes are written in one transaction (about ``batch_events`` events, whole
  episodes only), all their rows at once (:mod:`episodes.bulk_insert`: the driver's
  ``executemany`` of the Core ``INSERT`` on SQLite, ``COPY`` on PostgreSQL), instead of one
  transaction, one stream reload and one head update per event;
* without a cipher, each event is transcoded once: the same bytes are its stored state and
  feed its hash-chain digest (with a cipher, the digest is of the clear form, as always);
* each distinct command input is validated by marshmallow once (:mod:`episodes.validation_cache`);
* a large input is decided in worker processes, one per core, while this process writes
  (:mod:`episodes.import_parallel`): deciding is pure Python, writing is the database's.
  The batches are still written here, one after the other in input order, so what is stored
  is byte for byte what one process stores (with the same clock).

What stays the same, for an auditor:

* **the stream id** derives from the referral's command id exactly as a live referral's does,
  so importing the same file again skips the episodes already there (reported as skipped);
* **the recorded time** is the application's clock at the import, never back-dated; the
  clinical dates come from the source (with worker processes, each reads the same clock when
  it decides an event, so across episodes the times need not rise in notification order);
* **the hash chain**: ``envelope.previous_hash`` is ``integrity.GENESIS`` for the referral and
  the digest of the event before it otherwise, and each stream's head row is written in the
  same transaction as its events;
* **atomicity**: a batch is one transaction.  A history that breaks a rule stops the import
  with :class:`ImportRejected` (naming the episode, the command, the field and the rule)
  *before* its batch is written: nothing of that batch is stored, the batches before it are.
  Importing the fixed file again skips those and carries on.  ``dry_run=True`` checks a whole
  input and writes nothing;
* **order**: on PostgreSQL the events table is locked in EXCLUSIVE mode for the batch's
  transaction, as eventsourcing-sqlalchemy does, so notification ids commit in order.

The read models are not written here: the projector's catch-up (``care-episodes project``)
brings them up to date afterwards, as it does after any write it has not seen.

On PostgreSQL an import that wrote anything ends with ``ANALYZE`` of the events table and the
stream heads, as :mod:`projections.rebuild` ends with one of the read models: rows loaded by
``COPY`` leave the planner with no statistics until autovacuum gets to the table (never, where
it is off).  Without them it took every stream for 0.5% of the table (66,000 rows at 2.2
million events, against 20-500), and an episode page's one ``SELECT`` of its stream
(:mod:`episodes.history_page`) was planned as a parallel scan costly enough for JIT
compilation: ~45 ms instead of 0.3 (docs/performance.md).  The ``ANALYZE`` samples a fixed
number of rows: about 0.3 s at 2.2 million events.

Modules: :mod:`episodes.import_input` (the input and its errors),
:mod:`episodes.import_decider` (deciding a history), :mod:`episodes.validation_cache`,
:mod:`episodes.import_parallel` (the worker processes), :mod:`episodes.bulk_insert` (the
writes); this one runs the batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError as StoreIntegrityError

from episodes import integrity
from episodes.bulk_insert import BulkInserter
from episodes.errors import NotPermitted
from episodes.garbage import fewer_collections
from episodes.import_decider import Decider, Planned
from episodes.import_input import (
    EpisodeHistory,
    ImportCommand,
    ImportRejected,
    episode_id_for,
    history_from_json,
    read_json_lines,
)
from episodes.import_parallel import (
    DecidingPool,
    ImportWorkerDied,
    SortedBatch,
    commands_in,
    decide_all,
)
from episodes.values import Actor
from episodes.workers import StoreSpec, start_method, worker_count

DEFAULT_BATCH_EVENTS = 10_000  # events per transaction, as the raw limit's transactions
# Below this many commands, worker processes cost more than they save, and the histories are
# decided in the importing process: by how the workers start (episodes.workers.start_method).
# Deciding in workers costs ~10% more CPU (pickling, a validation cache each); a spawned
# worker also takes 0.4-1.5 s of CPU to start, importing the library, a forked one a few ms.
# Measured on 2 cores (docs/performance.md): spawned, at ~22,000 commands one process was as
# fast on SQLite and 15% faster on PostgreSQL, at ~35,000 two processes were 5-8% faster;
# forked, at ~11,000 commands two processes were 0-20% faster, at ~22,000 25-45%.
MIN_PARALLEL_COMMANDS = {"fork": 10_000, "spawn": 30_000}


@dataclass
class ImportSummary:
    imported: int = 0  # episodes written (or, in a dry run, that would be)
    events: int = 0  # their events
    episode_ids: list[UUID] = field(default_factory=list)  # those episodes, in input order
    skipped: list[UUID] = field(default_factory=list)  # episodes already in the store
    batches: int = 0  # transactions committed
    workers: int = 0  # worker processes started (0: all decided in the importing process)
    decided_by_workers: int = 0  # histories the workers decided (the others: the importing process)


def import_episodes(
    app: Any,
    histories: Iterable[EpisodeHistory | Sequence[ImportCommand]],
    *,
    actor: Actor,
    correlation_id: str | None = None,
    batch_events: int = DEFAULT_BATCH_EVENTS,
    dry_run: bool = False,
    progress: Callable[[ImportSummary], None] | None = None,
    workers: int | None = None,
) -> ImportSummary:
    """Import episode histories into ``app`` (an :class:`episodes.Episodes`).

    ``actor`` runs the import (it must be allowed to record) and stands for the commands that
    name no actor of their own.  ``correlation_id`` is given to every imported event that has
    none in its data (default: its command id, as ``execute`` does).  ``progress`` is called
    with the running summary after each batch.  ``workers``: how many processes decide the
    histories while this one writes (``None``: one per core; 0 or 1: this process only); an
    input of one batch or fewer than :data:`MIN_PARALLEL_COMMANDS` commands (10,000 where
    workers are forked, 30,000 where they are spawned), or an in-memory database, is decided
    here.  Raises :class:`ImportRejected`.
    """
    if not isinstance(actor, Actor):
        raise TypeError(f"actor must be an episodes.Actor, not {type(actor).__name__}")
    if not actor.role.can_record:
        raise NotPermitted(f"{actor.id} acts as {actor.role.value}, and may not import episodes")
    if batch_events < 1:
        raise ValueError("batch_events must be at least 1")
    programs = {definition.code: definition for definition in app.programs()}
    writer = _Writer(app)
    summary = ImportSummary()
    seen: dict[UUID, str | None] = {}  # the episodes of this import, and where each came from
    batches = (writer.sort_out(batch, seen) for batch in _batches(histories, batch_events))
    spec = StoreSpec.of(app)
    count = worker_count(workers, spec)
    engine = app.recorder.datastore.engine
    large = False
    if count:  # the threshold depends on how the workers would start
        large, batches = _look_ahead(batches, MIN_PARALLEL_COMMANDS[start_method(engine)])
    decider = Decider(app.mapper, app.clock, programs, actor, correlation_id)
    # Forked workers inherit the collector's settings (spawned ones set their own).
    with fewer_collections():
        pool = (DecidingPool(count, spec, programs, actor, correlation_id, decider, engine)
                if large else None)
        summary.workers = count if large else 0
        try:
            decided = pool.decided(batches) if pool is not None else _decided_here(decider, batches)
            for skipped, planned in decided:
                _write(writer, summary, skipped, planned, dry_run)
                if pool is not None:
                    summary.decided_by_workers = pool.histories_in_workers
                if progress is not None:
                    progress(summary)
        finally:
            if pool is not None:
                pool.close()
    if summary.batches:
        writer.analyze()
    return summary


def _decided_here(decider: Decider, batches: Iterator[SortedBatch]
                  ) -> Iterator[tuple[list[UUID], list[Planned]]]:
    """Each batch decided in this process; the first rejection ends the import before its
    batch is written."""
    for skipped, work in batches:
        outcome = decide_all(decider, work)
        if isinstance(outcome, ImportRejected):
            raise outcome
        yield skipped, outcome


def _look_ahead(batches: Iterator[SortedBatch], commands: int
                ) -> tuple[bool, Iterator[SortedBatch]]:
    """Is the input worth worker processes (more than one batch, at least ``commands``
    commands)?  And the same batches again, those read to find out first.  An error reading
    the input is kept for its turn, after the batches before it."""
    ahead: list[SortedBatch] = []
    seen_commands = 0
    try:
        for batch in batches:
            ahead.append(batch)
            seen_commands += commands_in(batch[1])
            if len(ahead) > 1 and seen_commands >= commands:
                return True, chain(ahead, batches)
    except Exception as error:  # noqa: BLE001 - raised in its turn
        return False, chain(ahead, _raising(error))
    return False, iter(ahead)


def _raising(error: Exception) -> Iterator[SortedBatch]:
    raise error
    yield  # a generator: the error comes when the batches before it are done


def _write(writer: _Writer, summary: ImportSummary, skipped: list[UUID], planned: list[Planned],
           dry_run: bool) -> None:
    summary.skipped.extend(skipped)
    if not dry_run and planned:
        appeared = writer.write(planned)
        summary.skipped.extend(appeared)
        planned = [p for p in planned if p.episode_id not in appeared]
        summary.batches += 1
    summary.imported += len(planned)
    summary.episode_ids.extend(p.episode_id for p in planned)
    summary.events += sum(len(p.rows) for p in planned)


def _batches(histories: Iterable[Any], batch_events: int) -> Iterator[list[EpisodeHistory]]:
    """Whole histories, about ``batch_events`` commands a batch."""
    batch: list[EpisodeHistory] = []
    commands = 0
    for history in histories:
        if not isinstance(history, EpisodeHistory):
            history = EpisodeHistory(tuple(history))
        batch.append(history)
        commands += len(history.commands)
        if commands >= batch_events:
            yield batch
            batch, commands = [], 0
    if batch:
        yield batch


# ---------------------------------------------------------------- the store


class _Writer:
    def __init__(self, app: Any):
        self.recorder = app.recorder
        self.engine = app.recorder.datastore.engine
        self.inserter = BulkInserter(app.recorder)

    def sort_out(self, batch: list[EpisodeHistory], seen: dict[UUID, str | None]) -> SortedBatch:
        """The batch's episodes already stored (skipped), and the work: each other history,
        or the rejection of one whose referral repeats another of this import."""
        ids = [history.stream_id() for history in batch]
        with self.engine.connect() as connection:
            existing = self.inserter.existing(connection, [i for i in ids if i is not None])
        skipped: list[UUID] = []
        work: list[Any] = []
        for episode_id, history in zip(ids, batch, strict=True):
            if episode_id is not None and episode_id in seen:
                work.append(ImportRejected(
                    f"command_id: the referral's command id opens another episode of this "
                    f"import too ({seen[episode_id] or 'earlier'})",
                    source=history.source, episode_id=episode_id, index=1, command="refer",
                    errors={"command_id": ["Already used by another referral of this import."]},
                    rule="InvalidCommand"))
                continue
            if episode_id is not None:
                seen[episode_id] = history.source
                if episode_id in existing:
                    skipped.append(episode_id)
                    continue
            work.append(history)
        return skipped, work

    def write(self, planned: Sequence[Planned]) -> list[UUID]:
        """One transaction: lock, skip the streams written meanwhile, insert the events and
        the heads.  Returns the episodes skipped because they appeared since the first check."""
        try:
            with self.recorder.transaction(commit=True) as session:
                connection = session.connection()
                self.inserter.lock(connection)
                appeared = self.inserter.existing(connection, [p.episode_id for p in planned])
                kept = [p for p in planned if p.episode_id not in appeared]
                if kept:
                    self.inserter.insert(connection, [row for p in kept for row in p.rows],
                                         [p.head for p in kept])
        except (StoreIntegrityError, *self.inserter.integrity_errors) as error:
            raise ImportRejected(
                f"the database refused the batch ({type(error).__name__}: {error.args[0]}); "
                "nothing of it was written", rule="IntegrityError") from error
        return [p.episode_id for p in planned if p.episode_id in appeared]

    def analyze(self) -> None:
        """Give PostgreSQL's planner statistics of the tables the import loaded (the events and
        the stream heads) at once, instead of whenever autovacuum gets to them (module doc)."""
        if self.engine.dialect.name != "postgresql":
            return
        preparer = self.engine.dialect.identifier_preparer
        with self.engine.begin() as connection:
            for table in (self.inserter.events, integrity.heads):
                connection.exec_driver_sql(f"ANALYZE {preparer.format_table(table)}")


__all__ = [
    "DEFAULT_BATCH_EVENTS", "EpisodeHistory", "ImportCommand", "ImportRejected", "ImportSummary",
    "ImportWorkerDied",
    "episode_id_for", "history_from_json", "import_episodes", "read_json_lines",
]
