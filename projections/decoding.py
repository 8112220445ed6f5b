"""Decoding stored events faster, for a rebuild that decodes every event once.

The application's mapper decodes a payload with ``json`` and a Python ``object_hook`` that
looks every ``{"_type_": ..., "_data_": ...}`` object up among the registered transcodings;
an enum member is then found by calling the enum class, a dataclass is rebuilt through a
dictionary copy.  That is about a third of a rebuild's time.

:func:`fast_mapper` gives a mapper of the application's own class, with its own cipher and
compressor (so ``$CARE_EPISODES_CIPHER_KEY`` still applies, and a wrong key is still named as
such), whose transcoder decodes the same payloads to the same values with a leaner hook:

* an enum member is looked up in the enum's own value map (what calling the class does first;
  anything not found there still goes through the transcoding);
* a date is ``date.fromisoformat``, as :class:`episodes.transcodings.DateAsISO` does, and a
  time ``datetime.fromisoformat``, as eventsourcing's ``DatetimeAsISO`` does: one C call each,
  no method around it (a time stored as anything but a string raises the C function's
  ``TypeError``, which is what the mapper raises too where Python runs without assertions);
* a dataclass without tuple fields is built from the stored fields directly;
* every other name (or an unknown one, which raises the usual error) goes to the transcoder.

:func:`fast_event_decoder` goes one step further for the rebuild, which reads the stored
events' columns itself: a function of those columns giving the event the application's mapper
gives (the same class, the same fields, tuple fields as tuples), without building a stored
event and passing it through the mapper's layers one call each.  Whatever it cannot decode
goes through the mapper, so a wrong key is named as such.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    DatetimeAsISO,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    Transcoder,
    find_id_convertor,
)
from eventsourcing.utils import resolve_topic

from episodes.application import TupleRestoringMapper
from episodes.transcodings import DataclassAsDict, DateAsISO, EnumAsValue

# (topic, state, originator id, originator version) -> the domain event
EventDecoder = Callable[[str, bytes, UUID, int], Any]


def fast_mapper(mapper: Mapper[Any]) -> Mapper[Any]:
    """A mapper like ``mapper`` (same class, cipher, compressor) with a faster decoder."""
    transcoder = mapper.transcoder
    if not isinstance(transcoder, JSONTranscoder):
        return mapper  # nothing known to speed up
    return type(mapper)(transcoder=FastDecoding(transcoder), compressor=mapper.compressor,
                        cipher=mapper.cipher)


def fast_event_decoder(mapper: Mapper[Any]) -> EventDecoder:
    """A function of a stored event's columns returning what ``mapper.to_domain_event`` returns
    for that stored event (the application's mapper: see ``Episodes.construct_mapper``)."""
    fast = fast_mapper(mapper)

    def through_the_mapper(topic: str, state: bytes, originator_id: UUID, version: int) -> Any:
        return fast.to_domain_event(StoredEvent(originator_id, version, topic, state))

    if type(mapper) is not TupleRestoringMapper or not isinstance(fast.transcoder, FastDecoding):
        return through_the_mapper  # a mapper this module does not know the steps of
    decode_json = fast.transcoder.decode
    cipher, compressor = fast.cipher, fast.compressor
    classes: dict[str, tuple[type, Callable[[Any], Any], int]] = {}

    def decode(topic: str, state: bytes, originator_id: UUID, version: int) -> Any:
        # eventsourcing's Mapper.to_domain_event, step by step, with the class and the id
        # converter found once a topic (the rebuild gives every stream id as a UUID); then
        # TupleRestoringMapper's tuples.
        try:
            cls, convert_id, class_version = classes[topic]
        except KeyError:
            cls = resolve_topic(topic)
            classes[topic] = (cls, find_id_convertor(cls, UUID), getattr(cls, "class_version", 1))
            cls, convert_id, class_version = classes[topic]
        try:
            data = state
            if cipher:
                data = cipher.decrypt(data)
            if compressor:
                data = compressor.decompress(data)
            fields = decode_json(data)
        except Exception:  # noqa: BLE001 - whatever it is, the mapper raises its own error
            return through_the_mapper(topic, state, originator_id, version)
        fields["originator_id"] = convert_id(originator_id)
        fields["originator_version"] = version
        if "class_version" in fields or class_version != 1:
            from_version = fields.pop("class_version", 1)
            while from_version < class_version:
                getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(fields)
                from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", fields)
        # JSON has no tuples (TupleRestoringMapper).  A field's value is what JSON or a
        # transcoding gave, never a subclass of list: looked for by type, in C, first.
        if list in map(type, fields.values()):
            for name, value in fields.items():
                if type(value) is list:
                    fields[name] = tuple(value)
        return event

    return decode


class FastDecoding(Transcoder):
    """The transcoder's own encoding; its decoding with a leaner ``object_hook``."""

    def __init__(self, transcoder: JSONTranscoder):
        self.transcoder = transcoder
        decoders: dict[str, Callable[[Any], Any]] = {}
        for name, transcoding in transcoder.names.items():
            decoders[name] = _decoder(transcoding)
        fallback = transcoder._decode_obj  # the original hook: the same errors for unknown names

        def hook(obj: dict[str, Any]) -> Any:
            if len(obj) == 2 and "_type_" in obj and "_data_" in obj:
                decode = decoders.get(obj["_type_"])
                return fallback(obj) if decode is None else decode(obj["_data_"])
            return obj

        self._decoder = json.JSONDecoder(object_hook=hook)

    def encode(self, obj: Any) -> bytes:
        return self.transcoder.encode(obj)

    def decode(self, data: bytes) -> Any:
        return self._decoder.decode(data.decode("utf8"))


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
