"""Encryption at rest: with a key, a patient's name and diagnosis never reach the database in
clear; without the key, or with another one, reading fails with a clear error.

The application builds its mapper through the factory (so it gets the cipher), the mapper
names a key problem as such, and the key is checked when the application opens.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pytest
from eventsourcing.cryptography import AESCipher
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from episodes import Episodes, storage
from episodes.application import TupleRestoringMapper
from episodes.encryption import (
    CIPHER_TOPIC,
    KEY_VARIABLE,
    check_key,
    cipher_environment,
    create_key,
)
from episodes.errors import EncryptionKeyError, EpisodesError
from tests.pathways import ALL_DIMENSIONS_MODERATE, define_standard_program

# Fixed test keys (base64 of 32 bytes each), so a failure can be replayed.
KEY = "q0fBI7lAbmFzd9bUqqYx9Tz5tJQmXo3oXnFL2p3ufd4="
OTHER_KEY = "Zm9yIHRlc3Rpbmcgb25seTogYSBzZWNvbmQga2V5ISE="

PATIENT = "Patient/Jane-Doe"
DIAGNOSIS = "Major depressive disorder"


_Mapper = TupleRestoringMapper  # the application's own mapper, which checks the key


def mapper_with(app: Episodes, key: str | None) -> _Mapper:
    """The application's mapper as it would be with another key (or none): to read one event."""
    cipher = AESCipher({"CIPHER_KEY": key}) if key else None
    return _Mapper(transcoder=app.mapper.transcoder, cipher=cipher)


@pytest.fixture(autouse=True)
def no_key_in_the_environment(monkeypatch):
    monkeypatch.delenv(KEY_VARIABLE, raising=False)
    monkeypatch.delenv("CIPHER_KEY", raising=False)
    monkeypatch.delenv("CIPHER_TOPIC", raising=False)


@contextmanager
def opened(url: str, clock, cls=Episodes, **kwargs) -> Iterator[Episodes]:
    app = cls(url, clock=clock, **kwargs)
    try:
        yield app
    finally:
        app.close()


def record_jane_doe(app: Episodes, actor):
    """A referral for Jane Doe and her intake, with a diagnosis of depression."""
    define_standard_program(app, actor)
    episode = app.refer(
        actor, patient_ref=PATIENT, effective_date=date(2026, 3, 2), source="primary care",
        direction="step-up", requested_level="2.1",
    ).episode_id
    app.complete_intake(
        episode, actor, effective_date=date(2026, 3, 3), clinician=actor.id,
        diagnoses=[{"code": "F32.1", "category": "mental-health", "display": DIAGNOSIS}],
        asam_ratings=ALL_DIMENSIONS_MODERATE, recommended_level="2.1", phq9=18, gad7=13,
    )
    return episode


def raw_database(url: str) -> bytes:
    """What an attacker with the database would read, bypassing the library."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database)
        with sqlite3.connect(path) as conn:  # fold the WAL into the file first
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        wal = path.with_name(path.name + "-wal")
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    engine = create_engine(url)  # PostgreSQL: the stored payloads, as bytes
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT topic, state FROM care_episodes_events")).all()
    finally:
        engine.dispose()
    return b"\n".join(topic.encode() + b" " + bytes(state) for topic, state in rows)


# ---------------------------------------------------------------- what reaches the database


def test_with_a_key_the_patient_and_diagnosis_are_not_in_the_database(
    database_url, clock, clinician
):
    with opened(database_url, clock, env=cipher_environment(KEY)) as app:
        episode = record_jane_doe(app, clinician)
        written = list(app.history(episode))

    raw = raw_database(database_url)
    # Check neither the patient nor the diagnosis is there in clear, in any form we wrote.
    assert PATIENT.encode() not in raw
    assert b"Jane-Doe" not in raw
    assert DIAGNOSIS.encode() not in raw
    assert b"depressive" not in raw
    # Check the event types are (documented: topics stay in clear), so the bytes were read.
    assert b"ReferralReceived" in raw
    assert b"IntakeCompleted" in raw

    # Check the application with the key reads every event back as it was written.
    with opened(database_url, clock, env=cipher_environment(KEY)) as app:
        assert list(app.history(episode)) == written
        view = app.episode(episode)
        assert view.version == 2
        assert view.state.patient_ref == PATIENT
        intake = view.facts[1]  # version 2, the intake
        assert [d.display for d in intake.diagnoses] == [DIAGNOSIS]


def test_without_a_key_the_same_record_is_in_clear(database_url, clock, clinician):
    # The control: the same recording without a key is readable in the raw bytes.
    with opened(database_url, clock) as app:
        record_jane_doe(app, clinician)

    raw = raw_database(database_url)
    # Check both strings are there (so the test above could fail).
    assert PATIENT.encode() in raw
    assert DIAGNOSIS.encode() in raw


def test_the_variable_is_honoured(monkeypatch, sqlite_url, clock, clinician):
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    # Check the event store's settings name the cipher and the key.
    settings = storage.event_store_environment(sqlite_url)
    assert settings["CIPHER_TOPIC"] == "eventsourcing.cryptography:AESCipher"
    assert settings["CIPHER_KEY"] == KEY

    with opened(sqlite_url, clock) as app:  # no key given: the variable's
        episode = record_jane_doe(app, clinician)
    # Check nothing in clear, and that the explicit same key reads it.
    assert PATIENT.encode() not in raw_database(sqlite_url)
    monkeypatch.delenv(KEY_VARIABLE)
    with opened(sqlite_url, clock, env=cipher_environment(KEY)) as app:
        assert app.episode(episode).state.patient_ref == PATIENT


def test_the_plain_application_encrypts_with_the_variable_set(
    monkeypatch, sqlite_url, clock, clinician
):
    # Needs the application.py hook (docs/compliance.md (encryption at rest)): Episodes' own mapper must get the cipher.
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    with opened(sqlite_url, clock, cls=Episodes) as app:
        record_jane_doe(app, clinician)
    # Check the write side itself, not a test subclass, keeps the patient out of the file.
    assert PATIENT.encode() not in raw_database(sqlite_url)


def test_an_explicit_key_wins_over_the_variable(monkeypatch, sqlite_url, clock, clinician):
    with opened(sqlite_url, clock, env=cipher_environment(KEY)) as app:
        episode = record_jane_doe(app, clinician)
    # The process has another key; the one given to the application is used.
    monkeypatch.setenv(KEY_VARIABLE, OTHER_KEY)
    with opened(sqlite_url, clock, env=cipher_environment(KEY)) as app:
        # Check the record reads with the explicit key.
        assert app.episode(episode).state.patient_ref == PATIENT


def test_eventsourcing_settings_work_when_the_variable_is_unset(sqlite_url, clock, clinician):
    env = {"CIPHER_TOPIC": CIPHER_TOPIC, "CIPHER_KEY": KEY}
    with opened(sqlite_url, clock, env=env) as app:
        episode = record_jane_doe(app, clinician)
    # Check it was encrypted, and the helper's settings (the same key) read it back.
    assert PATIENT.encode() not in raw_database(sqlite_url)
    with opened(sqlite_url, clock, env=cipher_environment(KEY)) as app:
        assert app.episode(episode).state.patient_ref == PATIENT


# ---------------------------------------------------------------- the wrong key, or none


def test_opening_an_encrypted_database_without_the_key_is_a_clear_error(
    database_url, clock, clinician
):
    with opened(database_url, clock, env=cipher_environment(KEY)) as app:
        record_jane_doe(app, clinician)

    with pytest.raises(EncryptionKeyError) as raised:
        Episodes(database_url, clock=clock)
    # Check the message says what is wrong and what to check, and it is one of ours.
    message = str(raised.value)
    assert message.startswith("cannot decrypt the stored events")
    assert "no key is configured" in message
    assert "CARE_EPISODES_CIPHER_KEY" in message
    assert isinstance(raised.value, EpisodesError)


def test_opening_it_with_a_wrong_key_is_a_clear_error(database_url, clock, clinician):
    with opened(database_url, clock, env=cipher_environment(KEY)) as app:
        record_jane_doe(app, clinician)

    with pytest.raises(EncryptionKeyError) as raised:
        Episodes(database_url, clock=clock, env=cipher_environment(OTHER_KEY))
    # Check the message blames the key, not the JSON.
    assert "not the key it was encrypted with" in str(raised.value)
    assert "CARE_EPISODES_CIPHER_KEY" in str(raised.value)


def test_reading_an_event_with_the_wrong_key_or_none_is_the_same_error(
    sqlite_url, clock, clinician
):
    with opened(sqlite_url, clock, env=cipher_environment(KEY)) as app:
        episode = record_jane_doe(app, clinician)
        intake = app.recorder.select_events(episode)[1]

        # Check the mapper alone (without the check on opening) blames the key, not the JSON.
        with pytest.raises(EncryptionKeyError, match="not the key it was encrypted with"):
            mapper_with(app, OTHER_KEY).to_domain_event(intake)
        no_key = "it looks encrypted, and no key is configured"
        with pytest.raises(EncryptionKeyError, match=no_key):
            mapper_with(app, None).to_domain_event(intake)
        # Check the right key reads it: the intake with its diagnosis.
        assert mapper_with(app, KEY).to_domain_event(intake).diagnoses[0].display == DIAGNOSIS


def test_the_error_names_the_event_but_none_of_its_content(sqlite_url, clock, clinician):
    with opened(sqlite_url, clock, env=cipher_environment(KEY)) as app:
        episode = record_jane_doe(app, clinician)
        referral = app.recorder.select_events(episode)[0]
        with pytest.raises(EncryptionKeyError) as raised:
            mapper_with(app, OTHER_KEY).to_domain_event(referral)
    # Check it points at the first event of the episode: version 1, its stream, its type.
    message = str(raised.value)
    assert f"event 1 of stream {episode} (episodes.events:ReferralReceived)" in message
    assert PATIENT not in message


def test_a_database_written_without_a_key_opened_with_one_is_a_clear_error(
    sqlite_url, clock, clinician
):
    with opened(sqlite_url, clock) as app:
        record_jane_doe(app, clinician)

    # Turning encryption on for an existing database is not supported: it says so.
    with pytest.raises(EncryptionKeyError, match="the database was written without a key"):
        Episodes(sqlite_url, clock=clock, env=cipher_environment(KEY))


def test_an_empty_database_opens_with_any_key(sqlite_url, clock):
    # Check the check on opening has nothing to object to in an empty store.
    with opened(sqlite_url, clock, env=cipher_environment(KEY)) as app:
        assert app.recorder.max_notification_id() is None


# ---------------------------------------------------------------- keys


def test_a_new_key_is_256_bits_of_base64():
    key = create_key()
    # Check it is accepted as it is, and two keys differ.
    assert check_key(key) == key
    assert len(key) == 44  # 32 bytes -> 4 * ceil(32 / 3) = 44 base64 characters
    assert create_key() != key


@pytest.mark.parametrize(
    ("key", "complaint"),
    [
        ("not a key!", "not valid base64"),
        ("c2hvcnQ=", "is 5 bytes long"),  # "short"
        (KEY[:-4], "is 30 bytes long"),  # 40 base64 characters -> 30 bytes
    ],
)
def test_a_malformed_key_is_a_clear_error(monkeypatch, sqlite_url, key, complaint):
    monkeypatch.setenv(KEY_VARIABLE, key)
    # Check the variable is checked before the database is touched, with a hint.
    with pytest.raises(EncryptionKeyError, match=complaint) as raised:
        storage.event_store_environment(sqlite_url)
    assert "16, 24 or 32 bytes" in str(raised.value) or "generate one with" in str(raised.value)


def test_surrounding_whitespace_in_the_variable_is_ignored(monkeypatch, sqlite_url):
    monkeypatch.setenv(KEY_VARIABLE, f"  {KEY}\n")  # as read from a file
    # Check the stripped key is set under both names (the prefixed one wins in eventsourcing).
    settings = storage.event_store_environment(sqlite_url)
    assert settings["CIPHER_KEY"] == KEY
    assert settings[KEY_VARIABLE] == KEY


def test_an_empty_variable_means_no_key(monkeypatch, sqlite_url):
    monkeypatch.setenv(KEY_VARIABLE, "")
    # Check no cipher settings at all.
    assert "CIPHER_TOPIC" not in storage.event_store_environment(sqlite_url)
