"""Decoding stored events' JSON with a leaner hook, to the very same values.

eventsourcing's :class:`~eventsourcing.persistence.JSONTranscoder` decodes with ``json`` and a
Python ``object_hook`` that looks every ``{"_type_": ..., "_data_": ...}`` object up among the
registered transcodings; an enum member is then found by calling the enum class, a dataclass
is rebuilt through a dictionary copy.  That was about a third of a rebuild's time, and a
command on an episode its process does not keep replays the episode's stream through it
(docs/performance.md).

:func:`lean_hook` gives a hook that decodes the same objects to the same values:

* an enum member is looked up in the enum's own value map (what calling the class does first;
  anything not found there still goes through the transcoding);
* a date is ``date.fromisoformat``, as :class:`episodes.transcodings.DateAsISO` does, and a
  time ``datetime.fromisoformat``, as eventsourcing's ``DatetimeAsISO`` does: one C call each,
  no method around it (a time stored as anything but a string raises the C function's
  ``TypeError``, which is what the stock transcoding raises too where Python runs without
  assertions);
* a dataclass without tuple fields is built from the stored fields directly;
* every other name (or an unknown one, which raises the usual error) goes to the transcoder.

The application's own transcoder decodes with it (:class:`episodes.json_encoding.FastJSONTranscoder`);
:class:`LeanDecoding` gives it to another JSON transcoder (a configured ``TRANSCODER_TOPIC``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Transcoder

from episodes.json_shapes import ShapedDecoder
from episodes.transcodings import DataclassAsDict, DateAsISO, EnumAsValue

Hook = Callable[[dict[str, Any]], Any]


def lean_decoder(transcoder: JSONTranscoder) -> ShapedDecoder:
    """A decoder of payloads (bytes) giving what ``transcoder.decode`` gives: with
    :func:`lean_hook`, through :class:`episodes.json_shapes.ShapedDecoder`."""
    decoders = lean_decoders(transcoder)
    with_hook = json.JSONDecoder(object_hook=lean_hook(transcoder, decoders))
    # Where a payload fits its shape, an enum member is the value map's own lookup (C): a value
    # not in it raises, and the payload is then decoded with the hook, whose enum_member asks
    # the enum.
    shaped = {name: _member_lookup(transcoder.names[name]) or decode
              for name, decode in decoders.items()}
    return ShapedDecoder(shaped, lambda data: with_hook.decode(data.decode("utf8")))


def _member_lookup(transcoding: Any) -> Callable[[Any], Any] | None:
    if isinstance(transcoding, EnumAsValue):
        return transcoding.type._value2member_map_.__getitem__  # type: ignore[no-any-return]
    return None


def lean_decoders(transcoder: JSONTranscoder) -> dict[str, Callable[[Any], Any]]:
    """The decoder of each name registered now, as :func:`lean_hook` calls them."""
    return {name: _decoder(transcoding) for name, transcoding in transcoder.names.items()}


def lean_hook(transcoder: JSONTranscoder, decoders: dict[str, Callable[[Any], Any]]) -> Hook:
    """The transcoder's ``object_hook``, leaner (``decoders``: :func:`lean_decoders`)."""
    fallback = transcoder._decode_obj  # the original hook: the same errors for unknown names

    def hook(obj: dict[str, Any]) -> Any:
        if len(obj) == 2:
            try:  # a registered name and its data: the common case, in two lookups
                return decoders[obj["_type_"]](obj["_data_"])
            except KeyError:
                pass  # (a KeyError raised by a decoder itself: the fallback decodes it again)
            if "_type_" in obj and "_data_" in obj:
                return fallback(obj)
        return obj

    return hook


class LeanDecoding(Transcoder):
    """A JSON transcoder's own encoding; its decoding with :func:`lean_hook`."""

    def __init__(self, transcoder: JSONTranscoder):
        self.transcoder = transcoder
        self._decoder = lean_decoder(transcoder)

    def encode(self, obj: Any) -> bytes:
        return self.transcoder.encode(obj)

    def decode(self, data: bytes) -> Any:
        return self._decoder.decode(data)


def _decoder(transcoding: Any) -> Callable[[Any], Any]:
    if isinstance(transcoding, EnumAsValue):
        members = transcoding.type._value2member_map_
        slow = transcoding.decode

        def enum_member(value: Any) -> Any:
            try:
                return members[value]
            except (KeyError, TypeError):  # not a plain value of the map: the enum decides
                return slow(value)

        return enum_member
    if isinstance(transcoding, DateAsISO):
        return date.fromisoformat
    if type(transcoding) is DatetimeAsISO:  # (a subclass may decode otherwise)
        return datetime.fromisoformat
    if isinstance(transcoding, DataclassAsDict) and not transcoding._tuple_fields:
        return _dataclass(transcoding.type)
    return transcoding.decode


def _dataclass(cls: type) -> Callable[[dict[str, Any]], Any]:
    """The value object from its stored fields.  Where ``__init__`` only assigns them (no
    ``__post_init__``, no slots, every field an argument), the stored dict becomes the
    instance's own, as ``__init__`` would have filled it: a frozen dataclass assigns each field
    through ``object.__setattr__``, which made building an envelope three times the cost of
    decoding it.  Fields missing or unknown (a payload written by another version) go through
    ``__init__``, which fills the defaults or raises the usual error."""
    names = {f.name for f in dataclasses.fields(cls)}
    if (hasattr(cls, "__post_init__") or hasattr(cls, "__slots__")
            or any(not f.init for f in dataclasses.fields(cls))):
        return lambda fields: cls(**fields)
    new, assign = object.__new__, object.__setattr__

    def build(fields: dict[str, Any]) -> Any:
        if fields.keys() != names:
            return cls(**fields)
        obj = new(cls)
        assign(obj, "__dict__", fields)
        return obj

    return build
