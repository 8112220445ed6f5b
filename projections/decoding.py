"""Decoding stored events faster, for a rebuild that decodes every event once.

The application's own transcoder already decodes with a lean ``object_hook``
(:mod:`episodes.json_decoding`).  :func:`fast_mapper` gives that speed to a mapper whose JSON
transcoder is another one (a configured ``TRANSCODER_TOPIC``): a mapper of the same class,
with its own cipher and compressor (so ``$CARE_EPISODES_CIPHER_KEY`` still applies, and a
wrong key is still named as such), decoding the same payloads to the same values.

:func:`fast_event_decoder` goes one step further for the rebuild, which reads the stored
events' columns itself: a function of those columns giving the event the application's mapper
gives (the same class, the same fields, tuple fields as tuples), without building a stored
event and passing it through the mapper's layers one call each.  Whatever it cannot decode
goes through the mapper, so a wrong key is named as such.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent, find_id_convertor
from eventsourcing.utils import resolve_topic

from episodes.application import TupleRestoringMapper
from episodes.json_decoding import LeanDecoding
from episodes.json_encoding import FastJSONTranscoder

# (topic, state, originator id, originator version) -> the domain event
EventDecoder = Callable[[str, bytes, UUID, int], Any]


def fast_mapper(mapper: Mapper[Any]) -> Mapper[Any]:
    """A mapper like ``mapper`` (same class, cipher, compressor) with a faster decoder: itself
    where its transcoder decodes leanly already (the application's own)."""
    transcoder = mapper.transcoder
    if _lean(transcoder) or not isinstance(transcoder, JSONTranscoder):
        return mapper  # already as fast, or nothing known to speed up
    return type(mapper)(transcoder=LeanDecoding(transcoder), compressor=mapper.compressor,
                        cipher=mapper.cipher)


def _lean(transcoder: Any) -> bool:
    """Does the transcoder decode with :func:`episodes.json_decoding.lean_hook`?"""
    return isinstance(transcoder, (FastJSONTranscoder, LeanDecoding))


def fast_event_decoder(mapper: Mapper[Any]) -> EventDecoder:
    """A function of a stored event's columns returning what ``mapper.to_domain_event`` returns
    for that stored event (the application's mapper: see ``Episodes.construct_mapper``)."""
    fast = fast_mapper(mapper)

    def through_the_mapper(topic: str, state: bytes, originator_id: UUID, version: int) -> Any:
        return fast.to_domain_event(StoredEvent(originator_id, version, topic, state))

    if type(mapper) is not TupleRestoringMapper or not _lean(fast.transcoder):
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
