"""Encoding events as JSON in half the time, to the very same bytes.

eventsourcing's :class:`~eventsourcing.persistence.JSONTranscoder` encodes with ``json``'s C
encoder, which calls back into Python (``default``) for every value it does not know (each
date, enum member and value object of an event: six to ten of them) and then encodes the
``{"_type_": ..., "_data_": ...}`` dict it got back.  Encoding was a third of a bulk import's
time and a sixth of a command's CPU (``docs/performance.md``).

:class:`FastJSONTranscoder` writes the same text directly: one function per exact type, the
strings quoted by ``json``'s own C function, a value object's fields in the order its
transcoding gives them.  It is the transcoder the application uses (``Episodes``), so the bytes
that are stored, and hashed into each stream's chain, are exactly those the stock transcoder
writes; the tests compare the two on every demo event and on generated values.

Anything it does not know exactly (a subclass of a JSON type, a dict with keys that are not
strings, a float that is not finite, a type with no transcoding, a reference cycle) makes it
give up on that object, which the stock encoder then encodes from the start (and raises the
stock errors for).  It decodes with a leaner hook to the same values
(:mod:`episodes.json_decoding`), so every reader of the application's mapper gains too: the
replay of a stream a command finds no kept copy of, the repository, the projector's catch-up.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, datetime
from json.encoder import encode_basestring  # json's own C function (ensure_ascii=False)
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Transcoder,
    Transcoding,
    UUIDAsHex,
)

from episodes.json_decoding import lean_decoder
from episodes.transcodings import DataclassAsDict, DateAsISO, EnumAsValue

Encode = Callable[[Any], str]


class NotFast(Exception):
    """A value this encoder does not know exactly: the stock encoder takes the whole object."""


# The Python types json encodes natively.  A registered transcoding for a subclass of one of
# them is never called by json (an IntEnum is written as its number): such a type gets no
# encoder here, so it goes the stock way.
JSON_NATIVE = (str, int, float, bool, list, tuple, dict)


def faster(transcoder: Transcoder) -> Transcoder:
    """The same transcoder, its transcodings registered, encoding faster where it is the stock
    JSON one (another, configured through eventsourcing's ``TRANSCODER_TOPIC``, is kept)."""
    if type(transcoder) is not JSONTranscoder:
        return transcoder
    fast = FastJSONTranscoder()
    fast.types.update(transcoder.types)
    fast.names.update(transcoder.names)
    return fast


class FastJSONTranscoder(JSONTranscoder):
    """A :class:`JSONTranscoder` whose ``encode`` gives the same bytes, and whose ``decode``
    the same values, faster."""

    def __init__(self) -> None:
        super().__init__()
        # Built on first use, after the transcodings are registered.
        self._encoders: dict[type, Encode] | None = None
        self._lean_decoder: Any = None

    def register(self, transcoding: Transcoding) -> None:
        super().register(transcoding)
        self._encoders = None
        self._lean_decoder = None

    def decode(self, data: bytes) -> Any:
        decoder = self._lean_decoder
        if decoder is None:
            decoder = self._lean_decoder = lean_decoder(self)
        return decoder.decode(data)

    def encode(self, obj: Any) -> bytes:
        encoders = self._encoders
        if encoders is None:
            encoders = self._encoders = _encoders(self.types)
        try:
            return _encode_value(encoders, obj).encode("utf8")
        except (NotFast, RecursionError):
            return super().encode(obj)


def _encode_value(encoders: dict[type, Encode], value: Any) -> str:
    try:
        encode = encoders[type(value)]
    except KeyError:
        raise NotFast from None
    return encode(value)


def _encoders(types: dict[type, Transcoding]) -> dict[type, Encode]:
    encoders: dict[type, Encode] = {}

    def value(v: Any) -> str:
        try:
            encode = encoders[type(v)]
        except KeyError:
            raise NotFast from None
        return encode(v)

    def mapping(d: dict[Any, Any]) -> str:
        parts = []
        for k, v in d.items():
            if type(k) is not str:  # json turns some keys into strings: the stock way
                raise NotFast
            try:
                encode = encoders[type(v)]
            except KeyError:
                raise NotFast from None
            parts.append(encode_basestring(k) + ":" + encode(v))
        return "{" + ",".join(parts) + "}"

    def array(items: list[Any] | tuple[Any, ...]) -> str:
        return "[" + ",".join([value(v) for v in items]) + "]"

    def number(f: float) -> str:
        if not math.isfinite(f):  # json writes NaN and Infinity (or refuses): the stock way
            raise NotFast
        return float.__repr__(f)

    encoders.update({
        str: encode_basestring,
        int: int.__repr__,
        float: number,
        bool: lambda b: "true" if b else "false",
        type(None): lambda _: "null",
        dict: mapping,
        list: array,
        tuple: array,
    })
    for cls, transcoding in types.items():
        if issubclass(cls, JSON_NATIVE) or cls in encoders:
            continue
        encoders[cls] = _transcoded(transcoding, value)
    return encoders


def _transcoded(transcoding: Transcoding, value: Encode) -> Encode:
    """``{"_type_": name, "_data_": ...}`` as json writes what ``default`` returns for it."""
    head = '{"_type_":' + encode_basestring(transcoding.name) + ',"_data_":'
    kind = type(transcoding)
    if kind is EnumAsValue:
        return lambda member: head + value(member.value) + "}"
    if kind in (DateAsISO, DatetimeAsISO) and transcoding.type in (date, datetime):
        # An ISO date or datetime has nothing json would escape.
        return lambda day: head + '"' + day.isoformat() + '"}'
    if kind is UUIDAsHex and transcoding.type is UUID:
        return lambda uuid: head + '"' + uuid.hex + '"}'
    if kind is DecimalAsStr:
        return lambda number: head + encode_basestring(str(number)) + "}"
    if kind is DataclassAsDict:
        fields = [(name, encode_basestring(name) + ":") for name in transcoding._names]  # type: ignore[attr-defined]

        def dataclass(obj: Any) -> str:
            parts = []
            for name, key in fields:
                parts.append(key + value(getattr(obj, name)))
            return head + "{" + ",".join(parts) + "}}"

        return dataclass
    encode = transcoding.encode  # a transcoding of someone else's: what it returns, as json would
    return lambda obj: head + value(encode(obj)) + "}"
