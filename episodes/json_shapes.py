"""Decoding stored events' JSON in C, then only the values that need it: the very same values.

An ``object_hook`` (:mod:`episodes.json_decoding`) makes ``json``'s C parser call back into
Python for every JSON object of a payload: eight for an attended session (the event, its
envelope and the wrapped values ``{"_type_": ..., "_data_": ...}`` of its times, dates and enum
members).  Parsing with ``json`` cost ~61,000 machine instructions an event and the hook's
calls ~13,000 more; msgspec's parser (``msgspec.json.Decoder``, plain Python values) takes
~22,000 (docs/performance.md).

:class:`ShapedDecoder` parses with msgspec and then decodes the wrapped values where the
payload's *shape* says they are, without visiting the rest: a shape is learned from the first
payload with a given tuple of keys (which keys hold a wrapped value of which registered name,
which hold a plain object, which a plain value), and every later payload with those keys is
checked against it as it is decoded (each plain value is still looked at: a wrapped value where
the shape had none does not fit).  What does not fit, a list of unlike items, and whatever
msgspec refuses or reads otherwise than ``json`` would (``NaN``, an escaped lone surrogate, an
infinite number) is decoded the stock way, from the same bytes: so the value, or the error, is
exactly what the hook gives (``tests/test_json_shapes.py`` compares them on every demo event
and on generated payloads, each decoded twice: learning, then fitting).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

MAX_SHAPES = 4  # per tuple of keys: an optional value present or not gives a second shape
# Tuples of keys kept, with shapes or as having none: an event class has one or a few; the
# bounds keep memory bounded whatever is decoded (payloads that are not events').
MAX_KEYS = 1_000
MAX_UNSHAPED = 1_000
_CONTAINERS = frozenset((dict, list))


class _Shape:
    """Where the values that need decoding are in one JSON object with the keys ``keys``."""

    __slots__ = ("keys", "plain", "wrapped", "nested", "objects", "lists")

    def __init__(self, keys: tuple[str, ...]):
        self.keys = keys
        self.plain: list[str] = []  # keys of values left as parsed (neither object nor list)
        # keys of wrapped values whose data is a plain value: (key, name, the name's decoder)
        self.wrapped: list[tuple[str, str, Callable[[Any], Any]]] = []
        # ... whose data is an object: (key, name, decoder, the shape of the data).  (Decoded
        # in ``_fit`` itself, as ``_item`` would: every event's envelope is one, and the call
        # to ``_item`` cost ~2,000 instructions an event, 4% of its decoding.)
        self.nested: list[tuple[str, str, Callable[[Any], Any], _Shape]] = []
        self.objects: list[tuple[str, _Shape]] = []  # keys of plain objects, and their shapes
        # keys of lists: (key, what every item is: None for plain values, else as a value of
        # ``nested`` or ``objects`` is, without its key)
        self.lists: list[tuple[str, _Item | None]] = []

    def __eq__(self, other: object) -> bool:  # (a list's items are alike where their shapes are)
        return isinstance(other, _Shape) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]


# A list's items: ("wrapped", name, decoder, the shape of the data or None for a plain value),
# or ("object", None, None, its shape).
_Item = tuple[str, "str | None", "Callable[[Any], Any] | None", "_Shape | None"]


class NotThisShape(Exception):
    """The payload does not fit the shape: it is decoded the stock way."""


class ShapedDecoder:
    """Decodes a payload to what ``json.loads(data.decode("utf8"), object_hook=hook)`` gives
    (``stock``), parsing in C and decoding only the wrapped values."""

    def __init__(self, decoders: dict[str, Callable[[Any], Any]], stock: Callable[[bytes], Any]):
        """``decoders``: a decoder for each registered name, giving what the hook gives for a
        wrapped value of that name or raising (``episodes.json_decoding.lean_decoder``);
        ``stock``: the payload decoded with the hook, for what does not fit.  Threads may
        share it: the shapes are only ever added (two threads may both add one, which is
        harmless), and a payload is decoded in the objects parsed for it alone."""
        self._parse = msgspec.json.Decoder().decode
        self._decoders = decoders
        self._stock = stock
        self._shapes: dict[tuple[str, ...], list[_Shape]] = {}
        self._unshaped: set[tuple[str, ...]] = set()  # keys whose objects held no shape
        self.fallbacks = 0  # payloads decoded the stock way (for the tests and the curious)

    def decode(self, data: bytes) -> Any:
        if type(data) is not bytes:
            return self._fall_back(data)
        try:
            obj = self._parse(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._fall_back(data)  # (the stock error, or what json reads and msgspec does not)
        if type(obj) is not dict or len(obj) == 2:  # (two keys may be a wrapped value itself)
            return self._fall_back(data)
        keys = tuple(obj)
        shapes = self._shapes.get(keys)
        if shapes is None and keys in self._unshaped:
            return self._fall_back(data)
        try:
            if shapes is not None:
                for shape in shapes:
                    try:
                        return self._fit(obj, shape)
                    except (NotThisShape, KeyError):  # (a key of the shape's missing)
                        obj = self._parse(data)  # (partly decoded: parsed again)
                if len(shapes) >= MAX_SHAPES:
                    return self._fall_back(data)
            shape = self._learn(obj)
            if shape is None:
                if len(self._unshaped) < MAX_UNSHAPED:
                    self._unshaped.add(keys)
                return self._fall_back(data)
            if shapes is not None and shape in shapes:
                return self._fall_back(data)  # (it fits, and a decoder raised: the stock way)
            if shapes is not None or len(self._shapes) < MAX_KEYS:
                self._shapes.setdefault(keys, []).append(shape)
            return self._fit(obj, shape)
        except Exception:  # noqa: BLE001 - a decoder's error, a key missing: decoded the stock way
            return self._fall_back(data)

    def _fall_back(self, data: Any) -> Any:
        self.fallbacks += 1
        return self._stock(data)

    def _fit(self, obj: dict[str, Any], shape: _Shape) -> dict[str, Any]:
        """``obj`` (with the keys ``shape.keys``, in any order) with its wrapped values decoded,
        as the hook leaves it; NotThisShape (or a KeyError) where it does not fit.  (A shape's
        plain objects never have the two keys of a wrapped value, and the hook returns any
        other object as it is: it is not called for them.)"""
        if len(obj) != len(shape.keys):  # (and every key is looked up below)
            raise NotThisShape
        for key in shape.plain:
            if type(obj[key]) in _CONTAINERS:
                raise NotThisShape
        for key, name, decode in shape.wrapped:
            value = obj[key]
            if type(value) is not dict or len(value) != 2 or value["_type_"] != name:
                raise NotThisShape
            content = value["_data_"]
            if type(content) in _CONTAINERS:
                raise NotThisShape
            obj[key] = decode(content)
        for key, name, decode, inner in shape.nested:
            value = obj[key]
            if type(value) is not dict or len(value) != 2 or value["_type_"] != name:
                raise NotThisShape
            content = value["_data_"]
            if type(content) is not dict:
                raise NotThisShape
            obj[key] = decode(self._fit(content, inner))
        for key, inner in shape.objects:
            value = obj[key]
            if type(value) is not dict:
                raise NotThisShape
            self._fit(value, inner)
        for key, item in shape.lists:
            value = obj[key]
            if type(value) is not list:
                raise NotThisShape
            if item is None:
                if not _CONTAINERS.isdisjoint(map(type, value)):
                    raise NotThisShape
            else:
                obj[key] = [self._item(entry, item) for entry in value]
        return obj

    def _item(self, value: Any, item: _Item) -> Any:
        """A list's item decoded as ``item`` says (``_fit``'s steps for one value)."""
        kind, name, decode, inner = item
        if type(value) is not dict:
            raise NotThisShape
        if kind == "object":
            return self._fit(value, inner)  # type: ignore[arg-type]
        if len(value) != 2 or value["_type_"] != name:
            raise NotThisShape
        content = value["_data_"]
        if inner is None:
            if type(content) in _CONTAINERS:
                raise NotThisShape
        elif type(content) is not dict:
            raise NotThisShape
        else:
            self._fit(content, inner)
        return decode(content)  # type: ignore[misc]

    def _learn(self, obj: dict[str, Any]) -> _Shape | None:
        """The shape of ``obj`` as parsed, or None where it holds anything the hook would not
        decode as a registered name, or a list of unlike items."""
        shape = _Shape(tuple(obj))
        for key, value in obj.items():
            if type(value) is list:
                if not value or _CONTAINERS.isdisjoint(map(type, value)):
                    shape.lists.append((key, None))
                    continue
                item = self._learn_item(value[0])
                if item is None or any(self._learn_item(entry) != item for entry in value[1:]):
                    return None
                shape.lists.append((key, item))
            elif type(value) is not dict:
                shape.plain.append(key)
            else:
                learned = self._learn_item(value)
                if learned is None:
                    return None
                kind, name, decode, inner = learned
                if kind == "object":
                    shape.objects.append((key, inner))  # type: ignore[arg-type]
                elif inner is None:
                    shape.wrapped.append((key, name, decode))  # type: ignore[arg-type]
                else:
                    shape.nested.append((key, name, decode, inner))  # type: ignore[arg-type]
        return shape

    def _learn_item(self, value: Any) -> _Item | None:
        """What an object (or a list's item) is: a wrapped value or a plain object, and its
        shape; None for anything else."""
        if type(value) is not dict:
            return None
        if len(value) == 2 and "_type_" in value and "_data_" in value:
            name, content = value["_type_"], value["_data_"]
            if type(name) is not str or name not in self._decoders or type(content) is list:
                return None
            inner = None
            if type(content) is dict and (inner := self._learn(content)) is None:
                return None
            return ("wrapped", name, self._decoders[name], inner)
        inner = self._learn(value)
        return None if inner is None else ("object", None, None, inner)
