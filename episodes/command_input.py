"""A command's input before the domain sees it: who may record, the schema's typed values,
and the envelope (who, which command, why) every event of the command carries."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any
from uuid import uuid4

from marshmallow import ValidationError, missing

from episodes.errors import InvalidCommand, NotPermitted
from episodes.schemas import SCHEMAS
from episodes.validation_cache import CachedLoader
from episodes.values import Actor, Envelope


def check_may_record(actor: Actor) -> None:
    if not isinstance(actor, Actor):
        raise TypeError(f"actor must be an episodes.Actor, not {type(actor).__name__}")
    if not actor.role.can_record:
        raise NotPermitted(
            f"{actor.id} acts as {actor.role.value}, and a {actor.role.value} may read and "
            "audit but not record"
        )


@cache
def schema_for(command: str) -> Any:
    # One instance per command: building a marshmallow schema costs more than loading with it,
    # and loading keeps no state on the instance.
    return SCHEMAS[command]()


class CommandLoader:
    """A pathway command's input loaded by its schema, a repeated input validated once.

    A clinic repeats itself as a migration does: the attendance of every patient of a group
    session has the same date, kind, minutes, format and topic.  The fields that tell records
    apart are validated on every load, by their own schema fields (the episode's id, and
    those :class:`episodes.validation_cache.CachedLoader` names); the rest is remembered from
    the first time it loaded.  An invalid input is never remembered, and gets every field's
    error at once, as ``schema.load`` gives them.  (The benchmark's commands, 62% of them
    repeats, load in 7.5 µs an input on average instead of 13.3: docs/performance.md.)
    """

    def __init__(self, command: str):
        schema_class = SCHEMAS[command]
        self.cached = CachedLoader(schema_class, max_entries=COMMAND_PATH_ENTRIES)
        self.episode_id = schema_for(command).fields.get("episode_id")  # None: a referral

    def load(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The typed values, as ``dict(schema.load(data))``; raises ``ValidationError``."""
        if self.episode_id is None:
            return self.cached.load(data)
        data = dict(data)
        given = data.pop("episode_id", missing)
        errors: dict[str, Any] = {}
        try:
            values = self.cached.load(data)
        except ValidationError as invalid:
            errors.update(invalid.normalized_messages())
        try:
            episode_id = self.episode_id.deserialize(given, "episode_id", data)
        except ValidationError as invalid:
            errors["episode_id"] = invalid.messages
        if errors:
            raise ValidationError(errors)
        values["episode_id"] = episode_id
        return values


# Distinct inputs remembered per command (then it starts again from empty): a week of a large
# clinic's group sessions, a few hundred bytes each.
COMMAND_PATH_ENTRIES = 2_000


@cache
def loader_for(command: str) -> CommandLoader:
    return CommandLoader(command)


def load_command(command: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A pathway command's typed values, or :class:`InvalidCommand` naming each field and its
    rule (as :func:`load_values` with the command's schema)."""
    try:
        return loader_for(command).load(data)
    except ValidationError as invalid:
        raise InvalidCommand(command, invalid.messages_dict) from None


def load_values(schema: Any, command: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The input's typed values, or :class:`InvalidCommand` naming each field and its rule."""
    try:
        return dict(schema.load(dict(data)))
    except ValidationError as invalid:
        raise InvalidCommand(command, invalid.messages_dict) from None


def envelope_for(actor: Actor, values: dict[str, Any]) -> Envelope:
    """The envelope, taking its fields out of ``values`` (a new command id when none is given)."""
    command_id = values.pop("command_id", None) or uuid4().hex
    return Envelope(
        actor_id=actor.id,
        actor_role=actor.role,
        command_id=command_id,
        correlation_id=values.pop("correlation_id", None) or command_id,
        reason=values.pop("reason", None),
    )
