"""The application service: one method per use case.

Every command goes the same way: check the actor may record, validate the input with the
command's schema, load the episode, skip it if its command id was already recorded, let
the episode decide, and append.  When another writer appended first, the command is
retried against the new state; if it no longer holds, a :class:`ConflictError` says so.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from functools import partial
from typing import Any
from uuid import UUID

import sqlalchemy.exc
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, JSONTranscoder, Mapper, Transcoder
from eventsourcing.utils import get_topic

from episodes import access, driver, encryption, history, integrity, preparation, rules, storage
from episodes.clock import Clock, SystemClock, latest_clinical_date
from episodes.command_input import check_may_record, envelope_for, load_command, load_values
from episodes.episode import Episode
from episodes.errors import (
    ConflictError,
    EpisodeNotFound,
    EpisodesError,
    InvalidCommand,
    ProgramNotFound,
    RuleViolation,
)
from episodes.events import EVENT_CLASSES, EpisodeEvent, ReferralReceived
from episodes.history import EpisodeView
from episodes.import_input import episode_id_for
from episodes.json_encoding import faster
from episodes.pathway import PATHWAY
from episodes.program import Program, ProgramDefinition, program_id
from episodes.program_index import create_program_index, program_stream_ids
from episodes.recent import RecentEpisodes
from episodes.schemas import SCHEMAS, DefineProgramSchema
from episodes.transcodings import register_all
from episodes.values import Actor, Envelope
from episodes.writer import Appended, Head, StreamWriter

MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Receipt:
    """What a command recorded (or, for a repeated command id, had already recorded)."""

    episode_id: UUID
    version: int
    event: str
    recorded_at: datetime
    duplicate: bool = False


class TupleRestoringMapper(encryption.KeyCheckingMapper):
    """JSON has no tuples: give tuple-typed event fields back as tuples, as they were saved."""

    def to_domain_event(self, stored_event: Any) -> Any:
        domain_event = super().to_domain_event(stored_event)
        for name, value in vars(domain_event).items():
            if isinstance(value, list):
                object.__setattr__(domain_event, name, tuple(value))
        return domain_event


class Episodes(Application[UUID]):
    """Episodes of care in Intensive Outpatient Programs, recorded as event streams.

    >>> app = Episodes("sqlite:///:memory:")   # or a file, or postgresql+psycopg://...
    """

    name = storage.APPLICATION_NAME  # fixes the table names: never derive them from a class

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # eventsourcing names a subclass after itself, which would give it new, empty tables.
        cls.name = storage.APPLICATION_NAME

    def __init__(
        self,
        url: str | None = None,
        *,
        clock: Clock | None = None,
        env: Mapping[str, str] | None = None,
    ):
        self.database_url = storage.database_url(url)
        self.clock: Clock = clock or SystemClock()
        self.settings: dict[str, str] = dict(env or {})  # for worker processes (episodes.workers)
        super().__init__({**storage.event_store_environment(self.database_url), **self.settings})
        engine = self.recorder.datastore.engine  # type: ignore[attr-defined]
        storage.tune_engine(engine)
        integrity.metadata.create_all(engine)
        access.metadata.create_all(engine)  # reads are audited beside the events
        create_program_index(engine)  # the programs found without reading the whole log
        try:
            # A wrong or missing key fails here, before anything is written in clear beside
            # encrypted events.
            encryption.check_readable(self.recorder, self.mapper)
        except EpisodesError:
            self.close()
            raise
        self.writer = StreamWriter(self.recorder, self.mapper)
        self._recent = RecentEpisodes()
        self._programs = RecentEpisodes(size=100)  # program definitions, checked like episodes
        # Appends another writer beat, decided again: a figure for operators, not an error.
        self.retried_appends = 0

    def _record(self, processing_event: Any) -> Any:
        # The events and their streams' new heads are written in one transaction.
        with self.recorder.transaction(commit=True) as session:
            recordings = super()._record(processing_event)
            integrity.advance_heads(session, self.mapper, processing_event.events)
        return recordings

    def _load(self, aggregate_id: UUID) -> tuple[Any, str]:
        """An aggregate and the digest of its newest stored event (the chain's head)."""
        stored = self.recorder.select_events(aggregate_id)
        if not stored:
            raise AggregateNotFoundError(aggregate_id)
        aggregate = None
        for event in map(self.mapper.to_domain_event, stored):
            aggregate = event.mutate(aggregate)  # type: ignore[attr-defined]
        return aggregate, integrity.stored_digest(self.mapper, stored[-1])

    def construct_mapper(self) -> Mapper[UUID]:
        # The factory's mapper, so a configured cipher (CARE_EPISODES_CIPHER_KEY) is used.
        return self.factory.mapper(self.construct_transcoder(), mapper_class=TupleRestoringMapper)

    def construct_transcoder(self) -> Transcoder:
        return faster(super().construct_transcoder())  # the same bytes (episodes.json_encoding)

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        register_all(transcoder)

    # ----------------------------------------------------------------- programs

    def define_program(self, actor: Actor, **data: Any) -> ProgramDefinition:
        """Define a program (or return it unchanged if the same definition exists)."""
        definition, envelope = self._load_program(actor, data)
        try:
            existing = self.program(definition.code)
        except ProgramNotFound:
            program = Program._create(
                Program.Defined, id=program_id(definition.code), timestamp=self.clock.now(),
                definition=definition, envelope=replace(envelope, previous_hash=integrity.GENESIS),
            )
            try:
                self.save(program)
                return definition
            except IntegrityError:  # defined by someone else at the same moment
                existing = self.program(definition.code)
        if existing == definition:
            return existing
        raise InvalidCommand(
            "define_program", {"code": [f"Program {definition.code!r} exists; revise it instead."]}
        )

    def revise_program(self, actor: Actor, **data: Any) -> ProgramDefinition:
        """Replace a program's definition; the earlier one stays on the record."""
        definition, envelope = self._load_program(actor, data)
        with self.recorder.transaction(commit=True) as session:
            storage.lock_stream(session, program_id(definition.code))
            try:
                program, head = self._load(program_id(definition.code))
            except AggregateNotFoundError:
                raise ProgramNotFound(definition.code) from None
            if program.definition != definition:
                program.trigger_event(
                    Program.Revised, timestamp=self.clock.now(), definition=definition,
                    envelope=replace(envelope, previous_hash=head),
                )
                self.save(program)
        return definition

    def program(self, code: str) -> ProgramDefinition:
        return self._get_program(code).definition

    def programs(self) -> list[ProgramDefinition]:
        with self.recorder.datastore.engine.connect() as connection:  # type: ignore[attr-defined]
            ids = program_stream_ids(connection, self.recorder.events_record_cls.__table__)
        return sorted((self.repository.get(i).definition for i in ids), key=lambda d: d.code)

    def _program_in(self, connection: Any, code: str) -> ProgramDefinition:
        """A program's definition read in a command's transaction: kept from an earlier
        command when the program's stream head is still where it was, else replayed."""
        stream_id = program_id(code)
        head = self.writer.head(connection, stream_id)
        if head is None:
            raise ProgramNotFound(code)
        program = self._programs.take(stream_id, head) or self.writer.aggregate(connection, stream_id)
        self._programs.put(program, head)  # a command never changes the program it reads
        return program.definition

    def _get_program(self, code: str) -> Program:
        try:
            return self.repository.get(program_id(code))
        except AggregateNotFoundError:
            raise ProgramNotFound(code) from None

    def _load_program(self, actor: Actor, data: Mapping[str, Any]) -> tuple[ProgramDefinition, Envelope]:
        check_may_record(actor)
        values = load_values(DefineProgramSchema(), "define_program", data)
        envelope = envelope_for(actor, values)
        values["clinics"] = tuple(values["clinics"])
        return ProgramDefinition(**values), envelope

    # ----------------------------------------------------------------- commands

    def execute(self, command: str, data: Mapping[str, Any], actor: Actor) -> Receipt:
        """Run any pathway command by name with raw or typed input (the panel's entry point)."""
        if command not in SCHEMAS:
            raise InvalidCommand(command, {"command": [f"Unknown command; known: {', '.join(SCHEMAS)}."]})
        check_may_record(actor)
        values = load_command(command, data)
        envelope = envelope_for(actor, values)
        effective_date: date = values.pop("effective_date") or self.clock.now().date()
        if SCHEMAS[command].creates_episode:
            return self._create(values, envelope, effective_date)
        return self._append(command, values.pop("episode_id"), values, envelope, effective_date)

    def _create(self, values: dict[str, Any], envelope: Envelope, effective_date: date) -> Receipt:
        # The stream id comes from the command id, so a repeated referral finds its episode;
        # it never comes from the patient, whose reference stays inside the (encryptable) payload.
        episode_id = episode_id_for(envelope.command_id)
        try:
            with self.writer.transaction() as connection:
                if self.writer.head(connection, episode_id) is not None:
                    episode = None  # referred before: answered below, outside this transaction
                else:
                    episode = Episode.refer(
                        id=episode_id, timestamp=self.clock.now(), latest_date=self._latest_date(),
                        effective_date=effective_date,
                        envelope=replace(envelope, previous_hash=integrity.GENESIS), **values,
                    )
                    appended = self._append_events(connection, episode)
        except (IntegrityError, sqlalchemy.exc.IntegrityError):  # the same referral, twice at once
            episode = None
        except BaseException:
            self._discard(episode_id)
            raise
        if episode is None:
            stored = self.repository.get(episode_id)
            return self._duplicate(episode_id, stored.command_ids[envelope.command_id])
        receipt = _receipt(episode.id, episode.facts[1])
        self._recent.put(episode, _head(appended))  # from here another command may change it
        return receipt

    def _append(
        self, command: str, episode_id: UUID, values: dict[str, Any], envelope: Envelope,
        effective_date: date,
    ) -> Receipt:
        event_class = EVENT_CLASSES[PATHWAY[command].event]
        # The usual case: this process made the episode's last change and keeps it.  It is
        # decided on at once, unchecked (episodes/recent.py): its append is refused if the
        # stream moved on elsewhere, and the command is then tried again on the stream as
        # stored.  On PostgreSQL this saves the round trip that reads the head first.
        unchecked = self._recent.take_unchecked(episode_id)
        attempt = 0  # attempts on the stream as stored
        while attempt < MAX_ATTEMPTS:
            kept, unchecked = unchecked, None
            try:
                # Load, decide and append in one transaction, holding the stream's lock
                # (PostgreSQL: the lock goes with the transaction's next round trip).
                with self.writer.transaction() as connection:
                    self.writer.lock_stream(connection, episode_id)
                    episode, head = kept or self._current_episode(connection, episode_id)
                    if envelope.command_id in episode.command_ids:
                        duplicate_of = episode.command_ids[envelope.command_id]
                        self._recent.put(episode, head)  # untouched (an event never changes)
                        break  # answered below, outside the transaction
                    try:
                        rules.check_status(episode.state, PATHWAY[command])  # before any lookup
                        lookup = partial(self._program_in, connection)
                        fields = preparation.prepare(lookup, command, episode, dict(values))
                        event = episode.record(
                            event_class, timestamp=self.clock.now(), latest_date=self._latest_date(),
                            effective_date=effective_date,
                            envelope=replace(envelope, previous_hash=head.digest), **fields,
                        )
                    except EpisodesError as refused:  # a database error is raised as it is
                        if kept is not None and self.writer.head(connection, episode_id) != head:
                            raise _Stale from refused  # refused by an out-of-date copy: again
                        if attempt == 0 or not isinstance(refused, RuleViolation):
                            raise
                        raise ConflictError(
                            f"another user changed this episode while you were working (it is now "
                            f"at version {episode.version}), and the {command.replace('_', ' ')} no "
                            f"longer holds: {refused}"
                        ) from refused
                    appended = self._append_events(connection, episode)
            except _Stale:
                self._discard(episode_id)
                self._recent.mark_shared(episode_id)
                continue  # nothing was appended: decide on the stream as stored
            except (IntegrityError, sqlalchemy.exc.IntegrityError):
                self._discard(episode_id)
                self.retried_appends += 1
                if kept is None:
                    attempt += 1
                else:
                    self._recent.mark_shared(episode_id)
                continue  # another writer appended first: decide again
            except BaseException:
                self._discard(episode_id)
                raise
            receipt = _receipt(episode.id, event)
            self._recent.put(episode, _head(appended))  # from here another command may change it
            return receipt
        else:
            raise ConflictError(
                f"the {command.replace('_', ' ')} kept conflicting with other writers "
                f"after {MAX_ATTEMPTS} attempts; nothing was recorded, try again"
            )
        return self._duplicate(episode_id, duplicate_of)

    def _current_episode(self, connection: Any, episode_id: UUID) -> tuple[Episode, Head]:
        """The episode at its stream's head: kept from this process's last command on it when
        that is still the head (checked against the heads table), else replayed."""
        # Nothing kept: the stream is read anyway, so with the head (PostgreSQL: one round trip).
        kept = self._recent.holds(episode_id)
        queued = None if kept else self.writer.queue_stream(connection, episode_id)
        head = self.writer.head(connection, episode_id)
        episode = self._recent.take(episode_id, head)
        if episode is not None:
            assert head is not None
            return episode, head
        stored = self.writer.stream_read(connection, queued or self.writer.queue_stream(connection, episode_id))
        if not stored or stored[0].topic != get_topic(ReferralReceived):
            raise EpisodeNotFound(episode_id)
        episode = None
        for event in map(self.mapper.to_domain_event, stored):
            episode = event.mutate(episode)  # type: ignore[attr-defined]
        assert isinstance(episode, Episode)
        return episode, Head(episode.version, integrity.stored_digest(self.mapper, stored[-1]))

    def _append_events(self, connection: Any, aggregate: Any) -> list[Appended]:
        """Write the aggregate's new events and its stream's head in the command's transaction."""
        events = aggregate.collect_events()
        queued = self.writer.queue_append(connection, events)
        inline = self._queue_inline(connection, events)  # goes with the append (one round trip)
        appended = queued.appended()
        self._project_inline(connection, appended, aggregate, inline)
        return appended

    def _queue_inline(self, connection: Any, events: list[Any]) -> Any:
        """A hook: statements for the inline read models of ``events``, queued with the append
        (none here)."""

    def _project_inline(self, connection: Any, appended: list[Appended], aggregate: Any, queued: Any) -> None:
        """A hook for read models written in the command's own transaction (none here)."""

    def _discard(self, episode_id: UUID) -> None:
        """A command on this episode failed: whatever was kept of it may not be current."""
        self._recent.take(episode_id, None)

    def _duplicate(self, episode_id: UUID, version: int) -> Receipt:
        """The receipt of the event at ``version``, which recorded the command sent again."""
        event = next(e for e in self.events.get(episode_id, gt=version - 1, lte=version))
        return _receipt(episode_id, event, duplicate=True)  # type: ignore[arg-type]

    def _latest_date(self) -> date:
        return latest_clinical_date(self.clock)

    # One method per use case, each a thin, named door to execute().
    def refer(self, actor: Actor, **data: Any) -> Receipt:
        return self.execute("refer", data, actor)

    def complete_intake(self, episode_id: UUID, actor: Actor, **data: Any) -> Receipt:
        return self.execute("complete_intake", {"episode_id": episode_id, **data}, actor)

    def waitlist(self, episode_id: UUID, actor: Actor, **data: Any) -> Receipt:
        return self.execute("waitlist", {"episode_id": episode_id, **data}, actor)

    def cancel_referral(self, episode_id: UUID, actor: Actor, **data: Any) -> Receipt:
        return self.execute("cancel_referral", {"episode_id": episode_id, **data}, actor)

    def decline_referral(self, episode_id: UUID, actor: Actor, **data: Any) -> Receipt:
        return self.execute("decline_referral", {"episode_id": episode_id, **data}, actor)

    def admit(self, episode_id: UUID, actor: Actor, **data: Any) -> Receipt:
        return self.execute("admit", {"episode_id": episode_id, **data}, actor)

    def record_attendance(self, episode_id: UUID, actor: Actor, **data: Any) -> Receipt:
        return self.execute("record_attendance", {"episode_id": episode_id, **data}, actor)

    def record_absence(self, episode_id: UUID, actor: Actor, **data: Any) -> Receipt:
        return self.execute("record_absence", {"episode_id": episode_id, **data}, actor)

    def record_program_cancellation(self, episode_id: UUID, actor: Actor, **data: Any) -> Receipt:
        return self.execute("record_program_cancellation", {"episode_id": episode_id, **data}, actor)

    def record_outcome(self, episode_id: UUID, actor: Actor, **data: Any) -> Receipt:
        return self.execute("record_outcome", {"episode_id": episode_id, **data}, actor)

    def record_authorization(self, episode_id: UUID, actor: Actor, **data: Any) -> Receipt:
        return self.execute("record_authorization", {"episode_id": episode_id, **data}, actor)

    def change_level_of_care(self, episode_id: UUID, actor: Actor, **data: Any) -> Receipt:
        return self.execute("change_level_of_care", {"episode_id": episode_id, **data}, actor)

    def place_on_hold(self, episode_id: UUID, actor: Actor, **data: Any) -> Receipt:
        return self.execute("place_on_hold", {"episode_id": episode_id, **data}, actor)

    def resume(self, episode_id: UUID, actor: Actor, **data: Any) -> Receipt:
        return self.execute("resume", {"episode_id": episode_id, **data}, actor)

    def discharge(self, episode_id: UUID, actor: Actor, **data: Any) -> Receipt:
        return self.execute("discharge", {"episode_id": episode_id, **data}, actor)

    def void_event(self, episode_id: UUID, actor: Actor, **data: Any) -> Receipt:
        return self.execute("void_event", {"episode_id": episode_id, **data}, actor)

    def amend_event(self, episode_id: UUID, actor: Actor, **data: Any) -> Receipt:
        return self.execute("amend_event", {"episode_id": episode_id, **data}, actor)

    def mark_entered_in_error(self, episode_id: UUID, actor: Actor, **data: Any) -> Receipt:
        return self.execute("mark_entered_in_error", {"episode_id": episode_id, **data}, actor)

    def import_episodes(self, histories: Any, *, actor: Actor, **options: Any) -> Any:
        """Load historical episodes (a migration): every rule applies, many events a
        transaction.  See :func:`episodes.importing.import_episodes` for the options."""
        from episodes.importing import import_episodes  # it builds on this class

        return import_episodes(self, histories, actor=actor, **options)

    def close(self) -> None:
        engine = getattr(self.recorder.datastore, "engine", None)  # type: ignore[attr-defined]
        if engine is not None:
            driver.release(engine)  # the connection kept for the next command, first
        super().close()
        if engine is not None:
            engine.dispose()  # return pooled connections now, not at garbage collection

    # ----------------------------------------------------------------- reads

    def get(self, episode_id: UUID) -> Episode:
        """The episode aggregate at its latest version."""
        return self._load_episode(episode_id)[0]

    def _load_episode(self, episode_id: UUID) -> tuple[Episode, str]:
        try:
            episode, head = self._load(episode_id)
        except AggregateNotFoundError:
            raise EpisodeNotFound(episode_id) from None
        if not isinstance(episode, Episode):
            raise EpisodeNotFound(episode_id)
        return episode, head

    def episode(
        self,
        episode_id: UUID,
        *,
        version: int | None = None,
        recorded_at: datetime | None = None,
        effective_on: date | None = None,
    ) -> EpisodeView:
        """The episode as the record stood at a version or a recorded time, and/or as it
        stood on a clinical date (by today's knowledge, or by the knowledge at ``recorded_at``)."""
        events = list(self.history(episode_id))
        return history.view(events, version=version, recorded_at=recorded_at, effective_on=effective_on)

    def history(self, episode_id: UUID) -> Iterator[EpisodeEvent]:
        """Every event of the episode in the order it was recorded, corrections included."""
        events = iter(self.events.get(episode_id))
        first = next(events, None)
        if first is None or type(first).__name__ != "ReferralReceived":
            raise EpisodeNotFound(episode_id)
        yield first  # type: ignore[misc]
        yield from events  # type: ignore[misc]


class _Stale(Exception):
    """A command was refused by a kept episode that the stream has moved on from."""


def _head(appended: list[Appended]) -> Head:
    newest = appended[-1]
    return Head(newest.event.originator_version, newest.digest)


def _receipt(episode_id: UUID, event: EpisodeEvent, duplicate: bool = False) -> Receipt:
    return Receipt(
        episode_id=episode_id,
        version=event.originator_version,
        event=type(event).__name__,
        recorded_at=event.timestamp,
        duplicate=duplicate,
    )


__all__ = ["Episodes", "Receipt", "EpisodesError"]
