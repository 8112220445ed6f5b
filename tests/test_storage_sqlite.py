"""The storage contract, SQLite half: the embedded default (a file, WAL journal) and URLs.

Split out of ``test_storage_contract.py`` to keep each file short; these tests need no server.
"""

from __future__ import annotations

from datetime import date

from episodes import Episodes, EpisodeStatus, storage
from tests.pathways import admitted_episode, define_standard_program


def test_sqlite_connections_use_wal_and_wait_for_the_writer(sqlite_url, clock):
    app = Episodes(sqlite_url, clock=clock)
    try:
        engine = app.recorder.datastore.engine
        engine.dispose()  # whatever the pool held, the next connection is a fresh one
        with engine.connect() as conn:
            journal_mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()
            busy_timeout = conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
    finally:
        app.close()
    # Check WAL (readers never block the writer) and a 10 s wait for a busy writer.
    assert journal_mode == "wal"
    assert busy_timeout == 10000


def test_a_sqlite_file_outlives_the_application(sqlite_url, tmp_path, clock, clinician):
    first = Episodes(sqlite_url, clock=clock)
    episode = admitted_episode(first, clinician, date(2026, 3, 2))
    first.close()

    # Check the file is there, and a new application reads the episode from it.
    assert (tmp_path / "care-episodes.db").is_file()
    second = Episodes(sqlite_url, clock=clock)
    try:
        assert second.episode(episode).version == 3
        assert second.episode(episode).status is EpisodeStatus.ACTIVE
    finally:
        second.close()


def test_the_database_url_defaults_to_a_local_sqlite_file(monkeypatch):
    monkeypatch.delenv("CARE_EPISODES_DATABASE_URL", raising=False)
    # Check the default, then the variable, then an explicit URL, each overriding the last.
    assert storage.database_url() == "sqlite:///care-episodes.db"
    monkeypatch.setenv("CARE_EPISODES_DATABASE_URL", "sqlite:////srv/care/episodes.db")
    assert storage.database_url() == "sqlite:////srv/care/episodes.db"
    assert storage.database_url("sqlite:///other.db") == "sqlite:///other.db"


def test_the_application_opens_the_database_the_variable_names(
    monkeypatch, tmp_path, clock, clinician
):
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.setenv("CARE_EPISODES_DATABASE_URL", url)
    app = Episodes(clock=clock)
    try:
        define_standard_program(app, clinician)
        assert app.database_url == url
    finally:
        app.close()
    # Check the events went to the file the variable names.
    assert (tmp_path / "from-env.db").is_file()


def test_a_plain_postgresql_url_gets_the_psycopg_driver():
    # Check both spellings users write by habit get psycopg 3; an explicit driver is kept.
    assert storage.database_url("postgresql://care@db.example:5432/episodes") == (
        "postgresql+psycopg://care@db.example:5432/episodes"
    )
    assert storage.database_url("postgres://care@db.example/episodes") == (
        "postgresql+psycopg://care@db.example/episodes"
    )
    assert storage.database_url("postgresql+psycopg://care@db.example/episodes") == (
        "postgresql+psycopg://care@db.example/episodes"
    )
