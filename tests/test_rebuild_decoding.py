"""The rebuild's decoder of stored events (``projections.decoding.fast_event_decoder``): for
every stored event, the event the application's own mapper gives; the mapper's errors for
what it cannot decode."""

from __future__ import annotations

from datetime import date

import pytest
from eventsourcing.persistence import StoredEvent

from episodes import Episodes
from episodes.demo import seed_demo
from episodes.encryption import cipher_environment
from projections.decoding import fast_event_decoder
from tests.test_projection_processing import record_a_varied_history
from tests.test_rebuild import KEY


def stored_events(app) -> list[StoredEvent]:
    return app.recorder.select_notifications(start=1, limit=100_000)


def test_every_event_decodes_as_the_applications_mapper_decodes_it(app, clinician, clock):
    record_a_varied_history(app, clinician, clock)
    decode = fast_event_decoder(app.mapper)
    stored = stored_events(app)
    kinds = set()
    for event in stored:
        fast = decode(event.topic, event.state, event.originator_id, event.originator_version)
        expected = app.mapper.to_domain_event(event)
        assert type(fast) is type(expected)
        assert vars(fast) == vars(expected)
        # Check the tuple fields (lists in JSON) came back as tuples, as the mapper gives them.
        assert {k: type(v) for k, v in vars(fast).items()} == {k: type(v) for k, v in vars(expected).items()}
        kinds.add(type(fast).__name__)
    assert {"Defined", "ReferralReceived", "SessionAttended", "EventAmended", "EventVoided"} <= kinds


def test_an_encrypted_store_decodes_with_its_key(sqlite_url, clock):
    app = Episodes(sqlite_url, clock=clock, env=cipher_environment(KEY))
    try:
        seed_demo(app, episodes=3, seed=3, today=date(2026, 5, 30))
        decode = fast_event_decoder(app.mapper)
        for event in stored_events(app):
            fast = decode(event.topic, event.state, event.originator_id, event.originator_version)
            assert vars(fast) == vars(app.mapper.to_domain_event(event))
    finally:
        app.close()


def test_what_cannot_be_decoded_raises_the_mappers_own_error(app, clinician, clock):
    record_a_varied_history(app, clinician, clock)
    event = stored_events(app)[-1]
    broken = b"{" + event.state[1:-1]  # no longer JSON
    with pytest.raises(Exception) as expected:
        app.mapper.to_domain_event(StoredEvent(event.originator_id, event.originator_version, event.topic, broken))
    with pytest.raises(type(expected.value)) as raised:
        fast_event_decoder(app.mapper)(event.topic, broken, event.originator_id, event.originator_version)
    assert str(raised.value) == str(expected.value)
