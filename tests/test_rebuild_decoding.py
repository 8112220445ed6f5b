"""The rebuild's decoder of stored events (``projections.decoding.fast_event_decoder``) and the
application's own lean decoding (``episodes.json_decoding``): for every stored event, the event
a mapper with eventsourcing's stock JSON transcoder gives; the stock errors for what they
cannot decode."""

from __future__ import annotations

import json
from datetime import date

import pytest
from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent

from episodes import Episodes
from episodes.demo import seed_demo
from episodes.encryption import cipher_environment
from episodes.json_decoding import LeanDecoding
from episodes.values import Envelope
from episodes.vocabulary import ActorRole
from projections.decoding import fast_event_decoder, fast_mapper
from tests.test_projection_processing import record_a_varied_history
from tests.test_rebuild import KEY


def stored_events(app) -> list[StoredEvent]:
    return app.recorder.select_notifications(start=1, limit=100_000)


def stock_transcoder(app) -> JSONTranscoder:
    """eventsourcing's own JSON transcoder, with the application's transcodings."""
    stock = JSONTranscoder()
    stock.types.update(app.mapper.transcoder.types)
    stock.names.update(app.mapper.transcoder.names)
    return stock


def stock_mapper(app) -> Mapper:
    """The application's mapper (its class, cipher, compressor) decoding the stock way."""
    mapper = app.mapper
    return type(mapper)(transcoder=stock_transcoder(app), compressor=mapper.compressor, cipher=mapper.cipher)


def test_every_event_decodes_as_the_applications_mapper_decodes_it(app, clinician, clock):
    record_a_varied_history(app, clinician, clock)
    decode = fast_event_decoder(app.mapper)
    stock = stock_mapper(app)
    stored = stored_events(app)
    kinds = set()
    for event in stored:
        expected = stock.to_domain_event(event)
        for fast in (decode(event.topic, event.state, event.originator_id, event.originator_version),
                     app.mapper.to_domain_event(event)):  # the rebuild's; the application's own
            assert type(fast) is type(expected)
            assert vars(fast) == vars(expected)
            # Check the tuple fields (lists in JSON) came back as tuples, as the mapper gives them.
            assert {k: type(v) for k, v in vars(fast).items()} == {k: type(v) for k, v in vars(expected).items()}
        kinds.add(type(expected).__name__)
    assert {"Defined", "ReferralReceived", "SessionAttended", "EventAmended", "EventVoided"} <= kinds


def test_an_encrypted_store_decodes_with_its_key(sqlite_url, clock):
    app = Episodes(sqlite_url, clock=clock, env=cipher_environment(KEY))
    try:
        seed_demo(app, episodes=3, seed=3, today=date(2026, 5, 30))
        decode = fast_event_decoder(app.mapper)
        stock = stock_mapper(app)
        for event in stored_events(app):
            fast = decode(event.topic, event.state, event.originator_id, event.originator_version)
            assert vars(fast) == vars(app.mapper.to_domain_event(event)) == vars(stock.to_domain_event(event))
    finally:
        app.close()


def test_what_cannot_be_decoded_raises_the_mappers_own_error(app, clinician, clock):
    record_a_varied_history(app, clinician, clock)
    event = stored_events(app)[-1]
    broken = b"{" + event.state[1:-1]  # no longer JSON
    with pytest.raises(Exception) as expected:
        stock_mapper(app).to_domain_event(StoredEvent(event.originator_id, event.originator_version, event.topic, broken))
    with pytest.raises(type(expected.value)) as raised:
        fast_event_decoder(app.mapper)(event.topic, broken, event.originator_id, event.originator_version)
    assert str(raised.value) == str(expected.value)
    with pytest.raises(type(expected.value)) as raised:
        app.mapper.to_domain_event(StoredEvent(event.originator_id, event.originator_version, event.topic, broken))
    assert str(raised.value) == str(expected.value)


def test_value_objects_decode_as_their_constructor_builds_them(app):
    # The decoder builds a value object whose __init__ only assigns its fields from the stored
    # fields directly; what it builds is what __init__ builds, and anything else goes through
    # __init__: a missing field's default, an unknown field's error, a validating __post_init__.
    fast, stock = app.mapper.transcoder, stock_transcoder(app)
    envelope = Envelope(actor_id="clin-ana", actor_role=ActorRole.CLINICIAN, command_id="c-1",
                        correlation_id="c-1", reason="late entry", previous_hash="ab" * 32)
    decoded = fast.decode(stock.encode(envelope))
    assert decoded == envelope and hash(decoded) == hash(envelope) and vars(decoded) == vars(envelope)
    assert decoded is not envelope and type(decoded) is Envelope

    def stored(**fields) -> bytes:
        return json.dumps({"_type_": "envelope", "_data_": fields}).encode()

    given = {"actor_id": "a", "actor_role": {"_type_": "enum:ActorRole", "_data_": "admin"},
             "command_id": "c", "correlation_id": "c"}
    assert fast.decode(stored(**given)) == Envelope("a", ActorRole.ADMIN, "c", "c")  # defaults
    with pytest.raises(TypeError, match="unexpected keyword argument 'signed_by'"):
        fast.decode(stored(**given, signed_by="x"))
    with pytest.raises(TypeError, match="unexpected keyword argument 'signed_by'"):
        stock.decode(stored(**given, signed_by="x"))
    level = b'{"_type_":"level_of_care","_data_":{"code":"9.9","edition":{"_type_":"enum:CriteriaEdition","_data_":"asam-4"}}}'
    assert_the_same_error(app, level, ValueError)


def assert_the_same_error(app, stored: bytes, error: type[Exception]) -> None:
    """The application's transcoder raises what the stock one raises for ``stored``."""
    with pytest.raises(error) as expected:
        stock_transcoder(app).decode(stored)
    with pytest.raises(error) as raised:
        app.mapper.transcoder.decode(stored)
    assert str(raised.value) == str(expected.value)


def test_a_malformed_time_raises_the_mappers_own_error(app):
    # Times are decoded by datetime.fromisoformat itself, without the transcoding's method.
    fast = app.mapper.transcoder
    assert fast.decode(b'{"_type_":"datetime_iso","_data_":"2026-05-30T09:15:00.250000+00:00"}') == \
        stock_transcoder(app).decode(b'{"_type_":"datetime_iso","_data_":"2026-05-30T09:15:00.250000+00:00"}')
    assert_the_same_error(app, b'{"_type_":"datetime_iso","_data_":"the 30th of May"}', ValueError)


def test_a_mapper_with_another_json_transcoder_gets_the_lean_decoding(app, clinician, clock):
    # The application's own transcoder decodes leanly already: fast_mapper gives it back as it
    # is.  A mapper with another JSON transcoder (a configured TRANSCODER_TOPIC) gets a copy
    # decoding through LeanDecoding, to the same events.
    assert fast_mapper(app.mapper) is app.mapper
    record_a_varied_history(app, clinician, clock)
    stock = stock_mapper(app)
    lean = fast_mapper(stock)
    assert type(lean) is type(stock) and isinstance(lean.transcoder, LeanDecoding)
    assert lean.cipher is stock.cipher and lean.compressor is stock.compressor
    for event in stored_events(app):
        assert vars(lean.to_domain_event(event)) == vars(stock.to_domain_event(event))
