"""Payloads decoded through their learned shapes (``episodes.json_shapes``) read as the stock
decoder reads them: every demo event, generated payloads decoded twice (learning the shape,
then fitting it), and payloads with the keys of a learned shape but something else in them,
which must not fit and must read the stock way."""

from __future__ import annotations

import json
from datetime import date

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from episodes.demo import seed_demo
from episodes.json_decoding import lean_decoder
from tests.test_json_encoding import STOCK, decoded, encoded, transcoders, values
from tests.test_projection_processing import record_a_varied_history


class Shaped:
    """A fresh transcoder with the shaped decoder, compared like the others (``decoded``)."""

    def __init__(self) -> None:
        self.transcoder = transcoders()[1]
        self.decoder = lean_decoder(self.transcoder)

    def decode(self, data: bytes) -> object:
        return self.decoder.decode(data)


def test_every_demo_event_reads_through_its_shape_as_the_stock_decoder_reads_it(app, clinician, clock):
    record_a_varied_history(app, clinician, clock)
    seed_demo(app, episodes=12, seed=5, today=date(2026, 5, 30))
    payloads = [event.state for event in app.recorder.select_notifications(start=1, limit=100_000)]
    shaped = Shaped()
    for data in payloads:  # learning
        assert decoded(shaped, data) == decoded(STOCK, data)
    learned = shaped.decoder.fallbacks
    for data in payloads:  # fitting
        assert decoded(shaped, data) == decoded(STOCK, data)
    # Every event's payload has a shape: none was decoded the stock way once learned.
    assert shaped.decoder.fallbacks == learned
    assert learned <= 2  # (the varied history's corrections and amendments have shapes too)


payloads = st.dictionaries(st.text(max_size=3), values, min_size=3, max_size=6)


@given(st.lists(payloads, min_size=1, max_size=6))
@settings(max_examples=300, deadline=None)
def test_generated_payloads_read_twice_as_the_stock_decoder_reads_them(objects):
    shaped = Shaped()
    for obj in objects * 2:
        data = encoded(STOCK, obj)
        assume(isinstance(data, bytes))
        assert decoded(shaped, data) == decoded(STOCK, data)


@given(st.lists(st.text(min_size=1, max_size=3), min_size=3, max_size=5, unique=True), st.data())
@settings(max_examples=300, deadline=None)
def test_payloads_with_one_set_of_keys_and_unlike_values_read_as_the_stock_decoder_reads_them(keys, data):
    """The same keys, whatever each holds: a later payload may or may not fit the first's
    shape, and reads the same either way."""
    shaped = Shaped()
    for _ in range(4):
        obj = {key: data.draw(values) for key in keys}
        payload = encoded(STOCK, obj)
        assume(isinstance(payload, bytes))
        assert decoded(shaped, payload) == decoded(STOCK, payload)


SESSION = ('{"timestamp":{"_type_":"datetime_iso","_data_":"2026-06-01T12:00:00+00:00"},'
           '"effective_date":{"_type_":"date","_data_":"2025-12-01"},'
           '"envelope":{"_type_":"envelope","_data_":{"actor_id":"clin-chi","actor_role":'
           '{"_type_":"enum:ActorRole","_data_":"clinician"},"command_id":"c-1","correlation_id":'
           '"c-1","reason":null,"previous_hash":"00"}},"kind":{"_type_":"enum:SessionKind",'
           '"_data_":"group"},"minutes":60,"format":{"_type_":"enum:ServiceFormat","_data_":'
           '"in-person"},"topic":"DBT","facilitator":null,"codes":[{"_type_":"date","_data_":'
           '"2025-12-02"}]}')


@pytest.mark.parametrize("change", [
    ('"facilitator":null', '"facilitator":{"_type_":"date","_data_":"2025-12-03"}'),  # wrapped, was plain
    ('"facilitator":null', '"facilitator":[1]'),  # a list, was plain
    ('"facilitator":null', '"facilitator":{"a":1,"b":2,"c":3}'),  # an object, was plain
    ('"minutes":60', '"minutes":NaN'), ('"minutes":60', '"minutes":1e400'),  # what json alone reads
    ('"minutes":60', '"minutes":123456789012345678901234567890'),
    ('"topic":"DBT"', '"topic":"\\ud800"'),  # an escaped lone surrogate
    ('"_data_":"group"', '"_data_":"surgery"'),  # not a member: the enum's own error
    ('"_data_":"group"', '"_data_":["group"]'),
    ('"enum:SessionKind"', '"enum:ServiceFormat"'),  # another name where the shape had this one
    ('"enum:SessionKind"', '"no such name"'),
    ('"_data_":"2025-12-01"', '"_data_":"the first"'),  # a decoder's error
    ('"_data_":"2025-12-01"', '"_other_":"2025-12-01"'),  # a key missing from a wrapped value
    ('"reason":null,', ''),  # the envelope's keys: one fewer, one more
    ('"reason":null', '"reason":null,"extra":{"_type_":"date","_data_":"2025-12-05"}'),
    ('"_data_":"2025-12-02"}]', '"_data_":"2025-12-02"},{"_type_":"date","_data_":"2025-12-04"}]'),
    ('"_data_":"2025-12-02"}]', '"_data_":"2025-12-02"},{"_type_":"datetime_iso","_data_":"x"}]'),
    ('[{"_type_":"date","_data_":"2025-12-02"}]', '[]'),
    ('[{"_type_":"date","_data_":"2025-12-02"}]', '[{"a":1,"b":2,"c":3}]'),
    ('[{"_type_":"date","_data_":"2025-12-02"}]', '{"_type_":"date","_data_":"2025-12-02"}'),
])
def test_a_payload_that_does_not_fit_its_keys_shape_reads_as_the_stock_decoder_reads_it(change):
    shaped = Shaped()
    original = SESSION.encode()
    assert decoded(shaped, original) == decoded(STOCK, original)
    fallbacks = shaped.decoder.fallbacks
    assert decoded(shaped, original) == decoded(STOCK, original)
    assert shaped.decoder.fallbacks == fallbacks == 0  # it fits its own shape
    old, new = change
    assert old in SESSION
    changed = SESSION.replace(old, new, 1).encode()
    for _ in range(2):  # (once as a new shape may be learned from it, once after)
        assert decoded(shaped, changed) == decoded(STOCK, changed)
    assert decoded(shaped, original) == decoded(STOCK, original)


def test_what_msgspec_reads_otherwise_than_json_is_read_the_stock_way():
    shaped = Shaped()
    for text in ('{"a":NaN,"b":1,"c":2}', '{"a":"\\ud800","b":1,"c":2}', '{"a":1e400,"b":1,"c":2}'):
        assert decoded(shaped, text.encode()) == decoded(STOCK, text.encode())
        assert json.loads(text)  # (json reads them: msgspec refuses, and the stock way is taken)
    assert shaped.decoder.fallbacks == 3


def test_a_shape_has_a_bounded_number_of_variants():
    shaped = Shaped()
    for n in range(10):  # each a variant: the n-th value wrapped, the others plain
        obj = {f"k{i}": (date(2026, 1, 1) if i == n else i) for i in range(10)}
        data = STOCK.encode(obj)
        assert decoded(shaped, data) == decoded(STOCK, data)
    (variants,) = shaped.decoder._shapes.values()
    assert len(variants) == 4


def test_the_shapes_kept_are_bounded(monkeypatch):
    monkeypatch.setattr("episodes.json_shapes.MAX_KEYS", 3)
    shaped = Shaped()
    for n in range(6):  # six tuples of keys, each payload still read as the stock decoder reads it
        data = STOCK.encode({f"a{n}": date(2026, 1, 1), "b": 1, "c": None})
        for _ in range(2):
            assert decoded(shaped, data) == decoded(STOCK, data)
    assert len(shaped.decoder._shapes) == 3


def test_a_decoder_raising_where_the_payload_fits_adds_no_shape():
    shaped = Shaped()
    original = SESSION.encode()
    shaped.decode(original)
    not_a_member = SESSION.replace('"_data_":"group"', '"_data_":"surgery"', 1).encode()
    for _ in range(3):
        assert decoded(shaped, not_a_member) == decoded(STOCK, not_a_member)
    (variants,) = shaped.decoder._shapes.values()
    assert len(variants) == 1
