"""The application's JSON encoder (``episodes.json_encoding``) writes exactly the bytes of
eventsourcing's stock ``JSONTranscoder``: on every event the demo records, on generated values
of every kind an event can hold, and, by handing them to the stock encoder, on what it does not
know (the same bytes, or the same error).  Its decoder (``episodes.json_decoding``) reads them
back to the same values, or raises the same error."""

from __future__ import annotations

import enum
from collections import namedtuple
from datetime import date
from decimal import Decimal
from uuid import UUID

import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Transcoding,
    UUIDAsHex,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from episodes.demo import seed_demo
from episodes.json_encoding import FastJSONTranscoder, faster
from episodes.transcodings import ENUMS, register_all
from episodes.values import Diagnosis, Envelope
from episodes.vocabulary import ActorRole, LevelOfCare
from tests.test_projection_processing import record_a_varied_history


def transcoders() -> tuple[JSONTranscoder, FastJSONTranscoder]:
    """The stock transcoder and the fast one, as the application registers them."""
    stock, fast = JSONTranscoder(), FastJSONTranscoder()
    for transcoder in (stock, fast):
        for default in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):  # eventsourcing's own
            transcoder.register(default)
        register_all(transcoder)
    return stock, fast


def encoded(transcoder: JSONTranscoder, value: object) -> bytes | type[BaseException]:
    try:
        return transcoder.encode(value)
    except Exception as error:  # noqa: BLE001 - the error is what is compared
        return type(error)


STOCK, FAST = transcoders()


def test_the_application_stores_and_hashes_the_stock_encoders_bytes(app, clinician, clock):
    assert type(app.mapper.transcoder) is FastJSONTranscoder
    record_a_varied_history(app, clinician, clock)
    seed_demo(app, episodes=12, seed=5, today=date(2026, 5, 30))
    stored = app.recorder.select_notifications(start=1, limit=100_000)
    topics = set()
    for event in stored:
        state = dict(vars(app.mapper.to_domain_event(event)))
        del state["originator_id"], state["originator_version"]
        # What was written (by the fast encoder), and hashed, is what the stock one writes.
        assert event.state == STOCK.encode(state)
        topics.add(event.topic.rsplit(":", 1)[1])
    assert {"Program.Defined", "ReferralReceived", "IntakeCompleted", "Admitted", "SessionAttended",
            "EventAmended", "EventVoided", "Discharged"} <= topics


members = st.sampled_from([member for cls in ENUMS for member in cls])
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(), st.text(), st.text(st.characters(max_codepoint=0x3000)), st.dates(), st.datetimes(),
    st.datetimes(timezones=st.timezones()), st.uuids(), st.decimals(allow_nan=False), members,
)
value_objects = st.one_of(
    st.builds(Envelope, actor_id=st.text(), actor_role=st.sampled_from(list(ActorRole)),
              command_id=st.text(), correlation_id=st.text(), reason=st.none() | st.text(),
              previous_hash=st.none() | st.text()),
    st.builds(Diagnosis, code=st.text(), category=members, display=st.text()),
    st.sampled_from([LevelOfCare("2.1"), LevelOfCare("2.5")]),
)
values = st.recursive(
    scalars | value_objects,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.text(), inner, max_size=4),
        st.dictionaries(st.integers() | st.booleans() | st.none(), inner, max_size=3),
    ),
    max_leaves=20,
)


@given(values)
@settings(max_examples=500, deadline=None)
def test_any_value_an_event_can_hold_is_encoded_as_the_stock_encoder_encodes_it(value):
    assert encoded(FAST, value) == encoded(STOCK, value)


@pytest.mark.parametrize("value", [
    float("nan"), [float("inf")], {"x": -float("inf")},  # json writes NaN and Infinity
    {1: "a", False: "b", None: "c", 2.5: "d"},  # keys json turns into strings
    namedtuple("Point", "x y")(1, date(2026, 1, 2)),  # a tuple subclass: an array
    type("Mapping", (dict,), {})(a=UUID(int=7)),  # a dict subclass: an object
    "\u2028\x00\x1f\"\\é😀",  # escapes, and what ensure_ascii=False leaves as it is
    "\ud800",  # a lone surrogate: not UTF-8 either way
    object(),  # no transcoding: the stock error
])
def test_what_the_fast_encoder_does_not_know_comes_out_as_the_stock_encoders(value):
    assert encoded(FAST, value) == encoded(STOCK, value)


def test_a_reference_cycle_raises_the_stock_error():
    cycle: list = []
    cycle.append(cycle)
    assert encoded(FAST, cycle) is encoded(STOCK, cycle) is ValueError


class Priority(enum.IntEnum):
    LOW = 1


class PriorityAsName(Transcoding):
    """Another library's transcoding, for a subclass of int (which json writes as a number
    without asking): neither encoder uses it."""
    type = Priority
    name = "priority"

    def encode(self, obj: Priority) -> str:
        return obj.name

    def decode(self, data: str) -> Priority:
        return Priority[data]


class Money:
    def __init__(self, cents: int):
        self.cents = cents


class MoneyAsParts(Transcoding):
    """A transcoding the fast encoder has no special case for: written as json would."""
    type = Money
    name = "money"

    def encode(self, obj: Money) -> dict:
        return {"units": obj.cents // 100, "cents": Decimal(obj.cents % 100), "of": [obj.cents]}

    def decode(self, data: dict) -> Money:
        return Money(data["units"] * 100 + int(data["cents"]))


def test_other_libraries_transcodings_are_written_as_the_stock_encoder_writes_them():
    stock, fast = transcoders()
    for transcoder in (stock, fast):
        transcoder.register(PriorityAsName())
        transcoder.register(MoneyAsParts())
    value = {"priority": Priority.LOW, "price": Money(1234), "at": [Money(5)]}
    assert fast.encode(value) == stock.encode(value)
    assert b'"priority":1' in fast.encode(value)


def test_a_transcoding_registered_after_use_is_used():
    _, fast = transcoders()
    assert encoded(fast, Money(1)) is encoded(STOCK, Money(1))
    stored = b'{"_type_":"money","_data_":{"units":1,"cents":{"_type_":"decimal_str","_data_":"1"},"of":[101]}}'
    assert decoded(fast, stored) == decoded(STOCK, stored)  # not registered: the same error
    fast.register(MoneyAsParts())
    assert fast.encode(Money(101)) == stored
    assert fast.decode(stored).cents == 101


def test_another_configured_transcoder_is_kept():
    class Other(JSONTranscoder):
        pass

    other = Other()
    assert faster(other) is other
    stock = transcoders()[0]
    fast = faster(stock)
    assert type(fast) is FastJSONTranscoder
    assert fast.types == stock.types and fast.names == stock.names


def decoded(transcoder: JSONTranscoder, data: bytes) -> tuple[str, type] | tuple[type[BaseException], str]:
    """What ``transcoder`` reads from ``data``, as something to compare: its ``repr`` (which
    shows every nested value's type too) and type, or the error's type and message."""
    try:
        value = transcoder.decode(data)
    except Exception as error:  # noqa: BLE001 - the error is what is compared
        return type(error), str(error)
    return repr(value), type(value)


def test_the_application_reads_every_stored_event_as_the_stock_decoder_does(app, clinician, clock):
    record_a_varied_history(app, clinician, clock)
    seed_demo(app, episodes=12, seed=5, today=date(2026, 5, 30))
    for event in app.recorder.select_notifications(start=1, limit=100_000):
        assert decoded(app.mapper.transcoder, event.state) == decoded(STOCK, event.state)


@given(values)
@settings(max_examples=500, deadline=None)
def test_any_value_an_event_can_hold_is_read_back_as_the_stock_decoder_reads_it(value):
    data = encoded(STOCK, value)
    assume(isinstance(data, bytes))  # (what cannot be written is never read)
    assert decoded(FAST, data) == decoded(STOCK, data)


@pytest.mark.parametrize("data", [
    b'{"_type_":"no such type","_data_":1}',  # not registered
    b'{"_type_":"date","_data_":"the 30th of May"}', b'{"_type_":"date","_data_":20260530}',
    b'{"_type_":"datetime_iso","_data_":"noon"}',
    b'{"_type_":"enum:ActorRole","_data_":"surgeon"}', b'{"_type_":"enum:ActorRole","_data_":["admin"]}',
    b'{"_type_":"envelope","_data_":{"actor_id":"a"}}',  # a field missing
    b'{"_type_":"diagnosis","_data_":{"code":"F33.1","category":{"_type_":"enum:DiagnosisCategory","_data_":"mental-health"},"display":"","system":"x","extra":1}}',
    b'{"_type_":"date","_data_":"2026-05-30","note":1}',  # three keys: a plain object
    b'{"_type_":"date"}', b'{"_data_":"2026-05-30","x":1}', b'{"_type_":"date","x":1}',
    b'{"_type_":["date"],"_data_":"2026-05-30"}',  # a name that is no name
    b'[{"_type_":"uuid_hex","_data_":"0123456789abcdef0123456789abcdef"}, {"_type_":"decimal_str","_data_":"1.50"}]',
])
def test_what_the_lean_decoder_is_given_reads_as_the_stock_decoder_reads_it(data):
    assert decoded(FAST, data) == decoded(STOCK, data)
