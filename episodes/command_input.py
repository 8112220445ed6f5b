"""A command's input before the domain sees it: who may record, the schema's typed values,
and the envelope (who, which command, why) every event of the command carries."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any
from uuid import uuid4

from marshmallow import ValidationError

from episodes.errors import InvalidCommand, NotPermitted
from episodes.schemas import SCHEMAS
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
