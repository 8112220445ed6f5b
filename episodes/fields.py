"""The field types of the command schemas (``episodes.schemas``), each with a shortcut for its
common case.

marshmallow's ``Field.deserialize`` is general: the missing-value checks, the field's pre-load
hooks, the type's ``_deserialize``, every validator through a new ``And`` per call, post-load
hooks.  For the values a form, the API and a migration file give nearly always (a ``str`` for a
text field, an ``int`` for a number, a ``date`` for a date, an enum's value for a choice), a
field here computes the very output marshmallow would and runs its own validators on it.  When
a validator refuses, or the value is of any other type, or the field has hooks, it goes
marshmallow's own way (``super().deserialize``): every error is marshmallow's, word for word.
A complete intake validates in about half the time (benchmarks in ``docs/performance.md``);
``tests/test_fields.py`` checks every schema against marshmallow's own path on generated input.
"""

from __future__ import annotations

import re
import uuid
from collections import abc
from collections.abc import Callable, Container, Iterable
from datetime import date, datetime
from enum import Enum
from typing import Any

from marshmallow import Schema, ValidationError, fields, missing, utils, validate

from episodes.vocabulary import CriteriaEdition, LevelOfCare

STOCK: Any = object()  # "no shortcut for this value": marshmallow's own path
MEMO_ENTRIES = 10_000  # per field: then nothing more is remembered (inputs are few and repeat)
# Input values whose equality means "the same input": hashable, immutable, and compared with
# their type (so 1, 1.0 and True, which are equal in Python, are different keys).
SCALARS = frozenset({str, int, float, bool, type(None), date, datetime, uuid.UUID})


class Shortcut(fields.Field):
    """A field whose common values skip marshmallow's general machinery (see the module)."""

    def quick(self, value: Any, kwargs: dict[str, Any]) -> Any:
        """The output for ``value`` as the type's ``_deserialize`` gives it, before validation,
        or ``STOCK`` when this value has no shortcut."""
        return STOCK

    def checked(self, value: Any, kwargs: dict[str, Any]) -> Any:
        """The output for ``value`` when the shortcut applies and every validator accepts it."""
        if self.pre_load or self.post_load:
            return STOCK
        output = self.quick(value, kwargs)
        if output is STOCK or not _passes(self.validators, output):
            return STOCK
        return output

    def deserialize(self, value: Any, attr: Any = None, data: Any = None, **kwargs: Any) -> Any:
        if value is missing and not self.required:  # the default as given, as marshmallow does
            default = self.load_default
            return default() if callable(default) else default
        if value is None and self.allow_none and not self.pre_load:
            return None
        output = self.checked(value, kwargs)
        if output is STOCK:
            return super().deserialize(value, attr, data, **kwargs)
        return output


def _passes(validators: Iterable[Callable[[Any], Any]], value: Any) -> bool:
    for validator in validators:
        try:
            if validator(value) is False:
                return False
        except ValidationError:
            return False  # marshmallow's own path raises it, with its messages
    return True


class Text(Shortcut, fields.String):
    """A string with surrounding white space removed (blank is refused by the length rule;
    ``OptionalText`` takes it as not given)."""

    def __init__(self, *, max_length: int = 200, **kwargs: Any):
        kwargs.setdefault("validate", validate.Length(min=1, max=max_length))
        super().__init__(**kwargs)

    def quick(self, value: Any, kwargs: dict[str, Any]) -> Any:
        return value.strip() if type(value) is str else STOCK

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip()


class OptionalText(Text):
    def __init__(self, **kwargs: Any):
        kwargs.setdefault("load_default", None)
        kwargs.setdefault("allow_none", True)
        super().__init__(**kwargs)

    def deserialize(self, value: Any, attr: Any = None, data: Any = None, **kwargs: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            value = None  # an empty form field means "not given"
        return super().deserialize(value, attr, data, **kwargs)


class Key(Shortcut, fields.String):
    """A string as given (a mapping's key)."""

    def quick(self, value: Any, kwargs: dict[str, Any]) -> Any:
        return value if type(value) is str else STOCK


class WholeNumber(Shortcut, fields.Integer):
    """An integer, also from a form's text ("60"); never a rounded fraction or a boolean."""

    def __init__(self, **kwargs: Any):
        super().__init__(strict=True, **kwargs)

    def quick(self, value: Any, kwargs: dict[str, Any]) -> Any:
        return value if type(value) is int else STOCK

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]{1,9}\s*", value):  # ASCII digits only
            value = int(value)
        return super()._deserialize(value, attr, data, **kwargs)


class Date(Shortcut, fields.Date):
    """An ISO 8601 date, or a ``date``."""

    def quick(self, value: Any, kwargs: dict[str, Any]) -> Any:
        return value if type(value) is date else STOCK


class Uuid(Shortcut, fields.UUID):
    """A UUID, or its text."""

    def quick(self, value: Any, kwargs: dict[str, Any]) -> Any:
        return value if type(value) is uuid.UUID else STOCK


class Choice(Shortcut, fields.Enum):
    """A member of an enumeration, given as itself or by its value."""

    def __init__(self, enum_class: type[Enum], **kwargs: Any):
        super().__init__(enum_class, by_value=True, **kwargs)
        self.members = {member.value: member for member in enum_class}

    def quick(self, value: Any, kwargs: dict[str, Any]) -> Any:
        if isinstance(value, self.enum):
            return value
        return self.members.get(value, STOCK) if type(value) is str else STOCK


class LevelOfCareField(Shortcut):
    """An ASAM level: ``"2.1"`` (4th edition), ``"asam-3:2.1"``, ``{"code", "edition"}``."""

    default_error_messages = {
        "invalid": "Not a level of care: give an ASAM code such as 2.1, or edition:code "
        "such as asam-3:2.5."
    }

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.known: dict[str, LevelOfCare] = {}  # text -> level (a level is immutable)

    def quick(self, value: Any, kwargs: dict[str, Any]) -> Any:
        if isinstance(value, LevelOfCare):
            return value
        if type(value) is not str:
            return STOCK
        level = self.known.get(value)
        if level is None:
            try:
                level = self._deserialize(value, None, None)
            except ValidationError:
                return STOCK
            if len(self.known) < MEMO_ENTRIES:
                self.known[value] = level
        return level

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> LevelOfCare:
        if isinstance(value, LevelOfCare):
            return value
        try:
            if isinstance(value, dict):
                return LevelOfCare(str(value["code"]), CriteriaEdition(value.get("edition", "asam-4")))
            if isinstance(value, str):
                edition, _, code = value.strip().rpartition(":")
                return LevelOfCare(code, CriteriaEdition(edition) if edition else CriteriaEdition.ASAM_4)
        except (KeyError, ValueError) as e:
            raise ValidationError(f"{self.error_messages['invalid']} ({e})") from e
        raise self.make_error("invalid")

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else {"code": value.code, "edition": value.edition.value}


class Mapping(Shortcut, fields.Dict):
    """A dict whose keys and values are fields of this module."""

    def quick(self, value: Any, kwargs: dict[str, Any]) -> Any:
        keys, values = self.key_field, self.value_field
        if type(value) is not dict or not isinstance(keys, Shortcut) or not isinstance(values, Shortcut):
            return STOCK
        result = {}
        for key, item in value.items():
            key, item = keys.checked(key, kwargs), values.checked(item, kwargs)
            if key is STOCK or item is STOCK:
                return STOCK
            result[key] = item
        return result


class ObjectList(Shortcut, fields.List):
    """A list of nested schemas turned into value objects (and a tuple).

    Each distinct item is loaded by its schema once (a migration's diagnoses repeat: F33.1,
    F10.20, ...): a load is a pure function of the item, and remembering it is worth the
    whole nested schema's machinery.  Every instance of a schema shares the memory of its
    class's field (marshmallow copies a field shallowly for each instance), and an instance may
    narrow the nested schema (``exclude=("diagnoses.display",)``, ``only``, ``dump_only``): a
    load is a pure function of the item *and* the fields the nested schema loads, so both make
    the key."""

    def __init__(self, schema: type[Schema], factory: type, **kwargs: Any):
        self._factory = factory
        if not kwargs.get("required"):
            kwargs.setdefault("load_default", ())
        super().__init__(fields.Nested(schema), **kwargs)
        self.loaded: dict[tuple[Any, ...], dict[str, Any]] = {}  # (nested fields, item) -> load

    def quick(self, value: Any, kwargs: dict[str, Any]) -> Any:
        if kwargs or type(value) not in (list, tuple):
            return STOCK  # a partial load (an amendment) goes marshmallow's way
        nested = self.inner.schema  # type: ignore[attr-defined]
        loads = (tuple(nested.load_fields), nested.unknown)
        try:
            return tuple(self._factory(**self._load(item, loads)) for item in value)
        except Exception:  # noqa: BLE001 - marshmallow's own path raises what it raises
            return STOCK

    def _load(self, item: Any, loads: tuple[Any, ...]) -> dict[str, Any]:
        if isinstance(item, self._factory):
            item = vars(item)
        key = plain_key(item) if type(item) is dict else None
        if key is not None:
            key = (loads, key)
        loaded = self.loaded.get(key) if key is not None else None
        if loaded is None:
            loaded = dict(self.inner.deserialize(item))
            if key is not None and len(self.loaded) < MEMO_ENTRIES:
                self.loaded[key] = loaded
        return loaded

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> tuple[Any, ...]:
        if not utils.is_collection(value):
            raise self.make_error("invalid")  # "Not a valid list.", as marshmallow's own List
        raw = [vars(v) if isinstance(v, self._factory) else v for v in value]
        return tuple(self._factory(**item) for item in super()._deserialize(raw, attr, data, **kwargs))


def plain_key(data: abc.Mapping[str, Any], skip: Container[str] = ()) -> tuple[Any, ...] | None:
    """``data`` as a key, without the names in ``skip`` (each value with its type), or None
    when a value is not a plain scalar (``SCALARS``, or an enum member)."""
    key = []
    for name, value in data.items():
        if name in skip:
            continue
        kind = type(value)
        if kind not in SCALARS and not isinstance(value, Enum):
            return None
        key.append((name, kind, value))
    return tuple(key)
