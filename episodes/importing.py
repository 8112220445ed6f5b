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
* each distinct command input is validated by marshmallow once (:mod:`episodes.validation_cache`).

What stays the same, for an auditor:

* **the stream id** derives from the referral's command id exactly as a live referral's does,
  so importing the same file again skips the episodes already there (reported as skipped);
* **the recorded time** is the application's clock at the import, never back-dated; the
  clinical dates come from the source;
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

Modules: :mod:`episodes.import_input` (the input and its errors),
:mod:`episodes.import_decider` (deciding a history), :mod:`episodes.validation_cache`,
:mod:`episodes.bulk_insert` (the writes); this one runs the batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError as StoreIntegrityError

from episodes.bulk_insert import BulkInserter
from episodes.errors import NotPermitted
from episodes.import_decider import Decider, Planned
from episodes.import_input import (
    EpisodeHistory,
    ImportCommand,
    ImportRejected,
    episode_id_for,
    history_from_json,
    read_json_lines,
)
from episodes.values import Actor

DEFAULT_BATCH_EVENTS = 10_000  # events per transaction, as the raw limit's transactions


@dataclass
class ImportSummary:
    imported: int = 0  # episodes written (or, in a dry run, that would be)
    events: int = 0  # their events
    episode_ids: list[UUID] = field(default_factory=list)  # those episodes, in input order
    skipped: list[UUID] = field(default_factory=list)  # episodes already in the store
    batches: int = 0  # transactions committed


def import_episodes(
    app: Any,
    histories: Iterable[EpisodeHistory | Sequence[ImportCommand]],
    *,
    actor: Actor,
    correlation_id: str | None = None,
    batch_events: int = DEFAULT_BATCH_EVENTS,
    dry_run: bool = False,
    progress: Callable[[ImportSummary], None] | None = None,
) -> ImportSummary:
    """Import episode histories into ``app`` (an :class:`episodes.Episodes`).

    ``actor`` runs the import (it must be allowed to record) and stands for the commands that
    name no actor of their own.  ``correlation_id`` is given to every imported event that has
    none in its data (default: its command id, as ``execute`` does).  ``progress`` is called
    with the running summary after each batch.  Raises :class:`ImportRejected`.
    """
    if not isinstance(actor, Actor):
        raise TypeError(f"actor must be an episodes.Actor, not {type(actor).__name__}")
    if not actor.role.can_record:
        raise NotPermitted(f"{actor.id} acts as {actor.role.value}, and may not import episodes")
    if batch_events < 1:
        raise ValueError("batch_events must be at least 1")
    programs = {definition.code: definition for definition in app.programs()}
    decider = Decider(app.mapper, app.clock, programs, actor, correlation_id)
    writer = _Writer(app)
    summary = ImportSummary()
    seen: dict[UUID, str | None] = {}  # the episodes of this import, and where each came from
    for batch in _batches(histories, batch_events):
        skipped, work = writer.sort_out(batch, seen)
        planned = []
        for item in work:  # the first rejection ends the import before its batch is written
            if isinstance(item, ImportRejected):
                raise item
            planned.append(decider.decide(item))
        _write(writer, summary, skipped, planned, dry_run)
        if progress is not None:
            progress(summary)
    return summary


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

    def sort_out(self, batch: list[EpisodeHistory], seen: dict[UUID, str | None]
                 ) -> tuple[list[UUID], list[Any]]:
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


__all__ = [
    "DEFAULT_BATCH_EVENTS", "EpisodeHistory", "ImportCommand", "ImportRejected", "ImportSummary",
    "episode_id_for", "history_from_json", "import_episodes", "read_json_lines",
]
