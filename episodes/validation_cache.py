"""Loading many commands with their marshmallow schemas, each distinct input validated once.

A migration file repeats itself: every patient of a group session has an attendance with the
same date, kind, minutes, format and topic; only the command id differs.  ``schema.load`` is
a pure function of its input, so :class:`CachedLoader` remembers its result for inputs made
of plain scalar values (strings, numbers, dates, ...) and, on a repeat, validates only the
fields that tell records apart (``command_id``, ``correlation_id``, ``patient_ref``) and the
clinical date (``effective_date``, a new one every day a clinic records) with their own schema
fields: no schema-level rule reads them, so the rest of the input decides the rest of the
result.  Every input is still validated by marshmallow, and an invalid one still gets every
field's error at once: errors are never remembered, only successful loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, missing

from episodes.fields import plain_key
from episodes.schemas import CommandSchema, EpisodeCommandSchema

# Validated on every load by their own field, never part of the key: the identifiers,
# different in every command or episode, and the clinical date, different every day (with it
# in the key, a clinic's attendance of today missed what yesterday's loaded: 34% of the
# benchmark's commands).  None of them is read by a schema-level validator (a property test
# compares every load with the schema's own: tests/test_validation.py).
VALIDATED_EVERY_TIME = ("command_id", "correlation_id", "patient_ref", "effective_date")
MAX_ENTRIES = 100_000  # per schema; then the memory starts again from empty


class CachedLoader:
    """``schema.load`` for one command's schema (``episode_id`` left to the caller)."""

    def __init__(self, schema_class: type[CommandSchema], max_entries: int = MAX_ENTRIES):
        episode_command = issubclass(schema_class, EpisodeCommandSchema)
        self.schema = schema_class(exclude=("episode_id",)) if episode_command else schema_class()
        self.every_time = {name: self.schema.fields[name] for name in VALIDATED_EVERY_TIME
                       if name in self.schema.fields}
        self.results: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.max_entries = max_entries
        self.hits = 0

    def load(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The typed values, as ``dict(schema.load(data))``; raises ``ValidationError``."""
        key = plain_key(data, self.every_time)
        known = self.results.get(key) if key is not None else None
        if known is None:
            values = dict(self.schema.load(data))
            if key is not None:
                if len(self.results) >= self.max_entries:
                    self.results.clear()
                self.results[key] = {k: v for k, v in values.items() if k not in self.every_time}
            return values
        self.hits += 1
        values = dict(known)
        errors = {}
        for name, field in self.every_time.items():
            try:
                values[name] = field.deserialize(data.get(name, missing), name, data)
            except ValidationError as invalid:
                errors[name] = invalid.messages
        if errors:
            raise ValidationError(errors)
        return values
