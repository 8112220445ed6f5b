"""Turning a validated command into the fields of its event.

Most commands map one to one.  A few need the current state or another aggregate:
an admission takes its defaults from the program, a level change records the level it
leaves, and an amendment is validated against the schema of the event it amends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import ValidationError

from episodes.command_input import schema_for
from episodes.episode import Episode
from episodes.errors import InvalidCommand, ProgramNotFound
from episodes.program import ProgramDefinition
from episodes.vocabulary import LevelChangeKind

# A program's definition by its code (ProgramNotFound if there is none): the command's own
# transaction reads it for a live command; an import reads the definitions once, beforehand.
ProgramLookup = Callable[[str], ProgramDefinition]


def prepare(lookup: ProgramLookup, command: str, episode: Episode, values: dict[str, Any]) -> dict[str, Any]:
    preparer = _PREPARERS.get(command)
    return preparer(lookup, episode, values) if preparer else values


def _admit(lookup: ProgramLookup, episode: Episode, values: dict[str, Any]) -> dict[str, Any]:
    try:
        program = lookup(values["program_code"])
    except ProgramNotFound as missing:
        raise InvalidCommand("admit", {"program_code": [str(missing)]}) from None
    if program.clinics and values["clinic"] not in program.clinics:
        raise InvalidCommand(
            "admit",
            {"clinic": [f"{program.name} runs at {', '.join(program.clinics)}; not at {values['clinic']}."]},
        )
    if values.get("level_of_care") is None:
        values["level_of_care"] = program.level_of_care
    if values.get("format") is None:
        values["format"] = program.format
    if values.get("planned_days_per_week") is None:
        values["planned_days_per_week"] = program.days_per_week
    return values


def _change_level(lookup: ProgramLookup, episode: Episode, values: dict[str, Any]) -> dict[str, Any]:
    current = episode.state.level_of_care
    if values.get("to_level") is None:
        if values["kind"] is not LevelChangeKind.TAPER:
            raise InvalidCommand(
                "change_level_of_care", {"to_level": ["Required for a step-up or a step-down."]}
            )
        values["to_level"] = current
    values["from_level"] = current
    return values


def _amend(lookup: ProgramLookup, episode: Episode, values: dict[str, Any]) -> dict[str, Any]:
    target = episode.facts.get(values["target_version"])
    if target is None:
        return values  # the episode reports which versions can be corrected
    try:
        changes = schema_for(target.step().command).load(values["changes"], partial=True)
    except ValidationError as invalid:
        raise InvalidCommand(
            "amend_event", {f"changes.{k}": v for k, v in invalid.messages_dict.items()}
        ) from None
    values["changes"] = dict(changes)
    return values


_PREPARERS = {
    "admit": _admit,
    "change_level_of_care": _change_level,
    "amend_event": _amend,
}
