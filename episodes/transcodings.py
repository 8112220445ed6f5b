"""How domain values are stored as JSON in the event store.

Every application that reads the events (the write side, the projections, the exporters)
must register the same transcodings: call :func:`register_all` on its transcoder.
The stored names (``"date"``, ``"enum:EpisodeStatus"``, ...) are part of the storage format:
never rename them.
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import date
from typing import Any

from eventsourcing.persistence import JSONTranscoder, Transcoding

from episodes import values, vocabulary
from episodes.program import ProgramDefinition
from episodes.state import EpisodeState, Hold


class DateAsISO(Transcoding):
    type = date
    name = "date"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class EnumAsValue(Transcoding):
    """One transcoding per enum class, storing the member's value."""

    def __init__(self, enum_class: type[enum.Enum]):
        self.type = enum_class
        self.name = f"enum:{enum_class.__name__}"

    def encode(self, obj: enum.Enum) -> Any:
        return obj.value

    def decode(self, data: Any) -> enum.Enum:
        return self.type(data)


class DataclassAsDict(Transcoding):
    """A frozen dataclass stored as its fields; lists come back as the tuples they were."""

    def __init__(self, cls: type, name: str):
        self.type = cls
        self.name = name
        self._tuple_fields = {
            f.name for f in dataclasses.fields(cls) if str(f.type).startswith("tuple")
        }
        # The transcoder picks a transcoding by the exact type, so the field names are known
        # here; dataclasses.fields() on every encode was a measurable share of a bulk import.
        self._names = tuple(f.name for f in dataclasses.fields(cls))

    def encode(self, obj: Any) -> dict[str, Any]:
        return {name: getattr(obj, name) for name in self._names}

    def decode(self, data: dict[str, Any]) -> Any:
        kwargs = {k: tuple(v) if k in self._tuple_fields else v for k, v in data.items()}
        return self.type(**kwargs)


ENUMS: tuple[type[enum.Enum], ...] = tuple(
    obj
    for obj in vars(vocabulary).values()
    if isinstance(obj, type) and issubclass(obj, enum.Enum) and obj is not enum.Enum
)

VALUE_OBJECTS: dict[str, type] = {
    "level_of_care": vocabulary.LevelOfCare,
    "envelope": values.Envelope,
    "actor": values.Actor,
    "diagnosis": values.Diagnosis,
    "care_team_member": values.CareTeamMember,
    "hold": Hold,
    "episode_state": EpisodeState,
    "program_definition": ProgramDefinition,
}


def register_all(transcoder: JSONTranscoder) -> None:
    transcoder.register(DateAsISO())
    for enum_class in ENUMS:
        transcoder.register(EnumAsValue(enum_class))
    for name, cls in VALUE_OBJECTS.items():
        transcoder.register(DataclassAsDict(cls, name))
