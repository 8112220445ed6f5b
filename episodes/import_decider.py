"""Deciding an imported history in memory: every command validated and decided as a live one.

For each command, in order: its marshmallow schema (through :class:`CachedLoader`), the
actor's permission, the pathway status, the program lookups (``preparation.prepare``) and the
episode's own rules (``Episode.refer`` / ``episode.record``), exactly as
``Episodes.execute`` does them.  Then the event is encoded and chained: ``previous_hash`` is
``integrity.GENESIS`` for the referral and the digest of the event before it otherwise.  The
result is the rows to write; nothing touches the database here, so it can run in a worker
process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper
from marshmallow import ValidationError

from episodes import integrity, preparation, rules
from episodes.bulk_insert import Row
from episodes.clock import Clock, latest_clinical_date
from episodes.episode import Episode
from episodes.errors import (
    ClinicalDateError,
    CorrectionRejected,
    EpisodesError,
    InvalidCommand,
    NotPermitted,
    ProgramNotFound,
    ReasonRequired,
    TransitionNotAllowed,
)
from episodes.events import EVENT_CLASSES
from episodes.import_input import EpisodeHistory, ImportCommand, ImportRejected
from episodes.pathway import PATHWAY
from episodes.program import ProgramDefinition
from episodes.schemas import SCHEMAS
from episodes.validation_cache import CachedLoader
from episodes.values import Actor, Envelope

# Which field a rule is about, when the rule itself says it (for ImportRejected.errors).
_RULE_FIELDS: tuple[tuple[type[Exception], str], ...] = (
    (ClinicalDateError, "effective_date"),
    (ReasonRequired, "reason"),
    (TransitionNotAllowed, "command"),
    (CorrectionRejected, "target_version"),
    (NotPermitted, "actor"),
    (ProgramNotFound, "program_code"),
)


@dataclass(frozen=True)
class Planned:
    """A decided episode: its events table rows (in version order) and its heads row."""

    episode_id: UUID
    rows: list[Row]
    head: dict[str, Any]


class _Programs:
    """The program lookup of ``preparation.prepare``, from definitions read before the import."""

    def __init__(self, definitions: Mapping[str, ProgramDefinition]):
        self.definitions = dict(definitions)

    def program(self, code: str) -> ProgramDefinition:
        try:
            return self.definitions[code]
        except KeyError:
            raise ProgramNotFound(code) from None


class Decider:
    def __init__(self, mapper: Mapper[UUID], clock: Clock, programs: Mapping[str, ProgramDefinition],
                 actor: Actor, correlation_id: str | None):
        self.mapper = mapper
        self.clock = clock
        self.programs = _Programs(programs)
        self.actor = actor
        self.correlation_id = correlation_id
        # One loader per command, its schema built once; the stream id is the import's to give.
        self.loaders = {name: CachedLoader(cls) for name, cls in SCHEMAS.items()}

    def decide(self, history: EpisodeHistory) -> Planned:
        """Every command of the history checked and decided, the events encoded and chained;
        raises :class:`ImportRejected` for the first command that does not hold."""
        source, commands = history.source, history.commands
        episode_id = history.stream_id()
        if not commands or commands[0].command != "refer":
            raise ImportRejected("an episode history begins with its referral (command refer)",
                                 source=source, index=1 if commands else None,
                                 command=commands[0].command if commands else None,
                                 errors={"command": ["The first command must be refer."]},
                                 rule="TransitionNotAllowed")
        if episode_id is None:
            raise ImportRejected(
                "command_id: required for the referral of an import: the episode's id derives "
                "from it, so that importing the same input again finds the episode",
                source=source, index=1, command="refer",
                errors={"command_id": ["Required for the referral of an import."]},
                rule="InvalidCommand")
        latest = latest_clinical_date(self.clock)
        episode: Episode | None = None
        head = integrity.GENESIS
        rows: list[Row] = []
        for index, item in enumerate(commands, 1):
            try:
                event = self._decide_one(episode, episode_id, index, item, head, latest)
            except (EpisodesError, ValueError) as error:
                raise _rejected(error, source, episode_id, index, item.command) from None
            if episode is None:
                episode = event  # the referral returns the new aggregate
                event = episode.pending_events[0]
            stored, head = integrity.encode(self.mapper, event)
            rows.append((episode_id, stored.originator_version, stored.topic, stored.state))
        assert episode is not None
        episode.collect_events()  # they are in ``rows`` now
        return Planned(episode_id, rows, {"stream_id": episode_id, "version": len(rows), "digest": head})

    def _decide_one(self, episode: Episode | None, episode_id: UUID, index: int,
                    item: ImportCommand, head: str, latest: date) -> Any:
        command = item.command
        loader = self.loaders.get(command)
        if loader is None:
            raise InvalidCommand(command, {"command": [f"Unknown command; known: {', '.join(SCHEMAS)}."]})
        if (command == "refer") != (episode is None):
            raise InvalidCommand(command, {"command": [
                "An episode history has exactly one referral, its first command."]})
        actor = item.actor or self.actor
        if not actor.role.can_record:
            raise NotPermitted(f"{actor.id} acts as {actor.role.value}, and a {actor.role.value} "
                               "may read and audit but not record")
        data = dict(item.data)
        given_id = data.pop("episode_id", None)
        if given_id is not None and str(given_id) != str(episode_id):
            raise InvalidCommand(command, {"episode_id": [
                f"Not this history's episode ({episode_id}, from its referral's command id)."]})
        if not data.get("command_id"):
            # Deterministic, so the same input imports the same record.
            data["command_id"] = f"import:{episode_id}:{index}"
        try:
            values = loader.load(data)
        except ValidationError as invalid:
            raise InvalidCommand(command, invalid.messages_dict) from None
        command_id = values.pop("command_id")
        envelope = Envelope(
            actor_id=actor.id, actor_role=actor.role, command_id=command_id,
            correlation_id=values.pop("correlation_id", None) or self.correlation_id or command_id,
            reason=values.pop("reason", None), previous_hash=head,
        )
        now = self.clock.now()
        # As execute: a command whose schema lets the date out (mark_entered_in_error) is
        # dated the day it is recorded.
        effective_date = values.pop("effective_date") or now.date()
        if episode is None:
            return Episode.refer(id=episode_id, timestamp=now, latest_date=latest,
                                 effective_date=effective_date, envelope=envelope, **values)
        if command_id in episode.command_ids:
            raise InvalidCommand(command, {"command_id": [
                f"{command_id!r} is already used by version {episode.command_ids[command_id]} "
                "of this episode."]})
        step = PATHWAY[command]
        rules.check_status(episode.state, step)  # before any lookup, as execute does
        fields = preparation.prepare(self.programs.program, command, episode, values)
        return episode.record(EVENT_CLASSES[step.event], timestamp=now, latest_date=latest,
                              effective_date=effective_date, envelope=envelope, **fields)


def _rejected(error: Exception, source: str | None, episode_id: UUID, index: int,
              command: str) -> ImportRejected:
    if isinstance(error, InvalidCommand):
        errors = error.errors
    else:
        errors = next(({name: [str(error)]} for kind, name in _RULE_FIELDS if isinstance(error, kind)), {})
    rule = type(error).__name__ if isinstance(error, EpisodesError) else "InvalidValue"
    return ImportRejected(f"{error} [{rule}]", source=source, episode_id=episode_id, index=index,
                          command=command, errors=errors, rule=rule)
