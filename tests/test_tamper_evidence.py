"""Tamper evidence: each way of altering the record behind the software's back is detected.

The record is changed with SQL straight on the database (SQLite and PostgreSQL), the way
someone with database access and no respect for the software would.  ``verify`` must name the
episode, the version and what is wrong; an untouched record verifies as intact.
"""

from __future__ import annotations

import json
from datetime import date

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from episodes.verification import export_checkpoint, take_checkpoint, verify
from tests.pathways import admitted_episode, attend

EVENTS = "care_episodes_events"


@pytest.fixture
def record(any_app, clinician):
    """Two episodes: one with six events, one with three (plus a program); then a checkpoint."""
    first = admitted_episode(any_app, clinician, date(2026, 3, 2))
    for day in (5, 6, 9):
        attend(any_app, first, clinician, date(2026, 3, day))
    second = admitted_episode(any_app, clinician, date(2026, 4, 6))
    take_checkpoint(any_app)
    return first, second


def sql(app, statement: str, **params) -> None:
    with app.recorder.datastore.engine.begin() as connection:
        connection.execute(text(statement), params)


def stream_id_for_sql(app, episode) -> object:
    # SQLAlchemy-Utils stores UUIDs as 16 bytes on SQLite and as uuid on PostgreSQL.
    return episode.bytes if app.recorder.datastore.engine.dialect.name == "sqlite" else episode


def first_problem(app, exported=None):
    report = verify(app, exported)
    assert not report.intact, "the tampering went unnoticed"
    return report.problems[0]


def test_an_untouched_record_is_intact(any_app, record):
    report = verify(any_app)
    # 1 program + 6 + 3 events; 3 streams; 1 checkpoint.
    assert (report.intact, report.streams, report.events, report.checkpoints) == (True, 3, 10, 1)
    assert report.summary() == ("intact: 3 streams, 10 events, 0 access entries and "
                                "1 checkpoints verified")


def test_a_modified_event_is_detected(any_app, record):
    first, _ = record
    # Change the first session's minutes from 180 to 120 inside the stored JSON.
    if any_app.recorder.datastore.engine.dialect.name == "sqlite":
        change = "CAST(replace(CAST(state AS TEXT), :old, :new) AS BLOB)"
    else:
        change = "convert_to(replace(convert_from(state, 'UTF8'), :old, :new), 'UTF8')"
    sql(any_app, f"UPDATE {EVENTS} SET state = {change} WHERE originator_id = :id AND originator_version = 4",
        id=stream_id_for_sql(any_app, first), old='"minutes":180', new='"minutes":120')
    assert any_app.get(first).facts[4].minutes == 120  # the change took: the library reads it
    problem = first_problem(any_app)
    # Version 5 recorded the hash of the original version 4: the chain breaks there.
    assert (problem.stream_id, problem.version) == (first, 5)
    assert "it does not chain to version 4 (version 4 was changed" in problem.what


def test_an_overwritten_event_is_detected(any_app, record):
    first, _ = record
    # Version 4 overwritten with the bytes of version 5: it no longer chains to version 3.
    sql(any_app, f"UPDATE {EVENTS} SET state = (SELECT state FROM {EVENTS} e WHERE "
        f"e.originator_id = :id AND e.originator_version = 5) "
        f"WHERE originator_id = :id AND originator_version = 4", id=stream_id_for_sql(any_app, first))
    problem = first_problem(any_app)
    assert (problem.stream_id, problem.version) == (first, 4)


def test_an_inserted_event_is_detected(any_app, record):
    _, second = record
    # A forged seventh... a copy of version 3 appended as version 4 of the second episode.
    sql(any_app, f"INSERT INTO {EVENTS} (originator_id, originator_version, topic, state) "
        f"SELECT originator_id, 4, topic, state FROM {EVENTS} "
        f"WHERE originator_id = :id AND originator_version = 3", id=stream_id_for_sql(any_app, second))
    problem = first_problem(any_app)
    assert (problem.stream_id, problem.version) == (second, 4)
    assert "inserted" in problem.what or "modified" in problem.what


def test_a_deleted_event_is_detected(any_app, record):
    first, _ = record
    sql(any_app, f"DELETE FROM {EVENTS} WHERE originator_id = :id AND originator_version = 3",
        id=stream_id_for_sql(any_app, first))
    problem = first_problem(any_app)
    assert (problem.stream_id, problem.version, problem.what) == (
        first, 3, "deleted: versions 3 to 3 are missing")


def test_reordered_events_are_detected(any_app, record):
    first, _ = record
    stream = stream_id_for_sql(any_app, first)
    # Swap versions 4 and 5 through a free number (the pair is unique).
    for old, new in ((4, 99), (5, 4), (99, 5)):
        sql(any_app, f"UPDATE {EVENTS} SET originator_version = :new "
            f"WHERE originator_id = :id AND originator_version = :old", id=stream, old=old, new=new)
    problem = first_problem(any_app)
    assert (problem.stream_id, problem.version) == (first, 4)
    assert "reordered" in problem.what


def test_truncated_newest_events_are_detected(any_app, record):
    first, _ = record
    sql(any_app, f"DELETE FROM {EVENTS} WHERE originator_id = :id AND originator_version >= 5",
        id=stream_id_for_sql(any_app, first))
    problem = first_problem(any_app)
    assert (problem.stream_id, problem.version) == (first, 5)
    assert problem.what == "truncated: the head names version 6, the stream ends at 4"


def test_truncation_with_the_heads_rewritten_too_is_caught_by_the_checkpoint(any_app, record):
    first, _ = record
    exported = export_checkpoint(any_app)
    stream = stream_id_for_sql(any_app, first)
    sql(any_app, f"DELETE FROM {EVENTS} WHERE originator_id = :id AND originator_version >= 5", id=stream)
    # The careful tamperer also moves the head back to version 4, with version 4's own digest.
    digest = verify(any_app).problems  # (the head still says 6 here)
    assert digest
    from eventsourcing.persistence import StoredEvent

    from episodes import integrity

    stored = any_app.recorder.select_events(first)[-1]
    assert isinstance(stored, StoredEvent) and stored.originator_version == 4
    head_id = first.hex if any_app.recorder.datastore.engine.dialect.name == "sqlite" else first
    sql(any_app, "UPDATE care_episodes_heads SET version = 4, digest = :d WHERE stream_id = :id",
        d=integrity.stored_digest(any_app.mapper, stored), id=head_id)
    assert verify(any_app).intact is False  # the latest checkpoint in the database still knows
    problem = first_problem(any_app, exported)
    assert problem.what == "truncated: the latest checkpoint names version 6, the stream ends at 4"
    # Even with the checkpoint tables rewritten as well, the exported copy still knows.
    sql(any_app, "DELETE FROM care_episodes_checkpoint_heads")
    sql(any_app, "DELETE FROM care_episodes_checkpoints")
    assert first_problem(any_app, exported).what == (
        "truncated: the exported checkpoint names version 6, the stream ends at 4")


def test_a_removed_stream_is_detected(any_app, record):
    _, second = record
    sql(any_app, f"DELETE FROM {EVENTS} WHERE originator_id = :id", id=stream_id_for_sql(any_app, second))
    problem = first_problem(any_app)
    assert problem.stream_id == second
    assert problem.what == "removed: the stream is gone, but its head names version 3"


def test_verify_command_exit_codes(any_app, record, database_url):
    from admin.cli import main

    runner = CliRunner()
    intact = runner.invoke(main, ["--db", database_url, "verify"])
    assert (intact.exit_code, intact.output.startswith("intact: 3 streams, 10 events")) == (0, True)
    first, _ = record
    sql(any_app, f"DELETE FROM {EVENTS} WHERE originator_id = :id AND originator_version = 2",
        id=stream_id_for_sql(any_app, first))
    broken = runner.invoke(main, ["--db", database_url, "verify"])
    assert broken.exit_code == 1
    assert broken.output.startswith(f"BROKEN: stream {first} version 2: deleted")


def test_checkpoint_command_exports_a_file_verify_can_use(any_app, record, database_url, tmp_path):
    from admin.cli import main

    runner = CliRunner()
    exported = tmp_path / "checkpoint.json"
    made = runner.invoke(main, ["--db", database_url, "checkpoint", "--export", str(exported)])
    assert made.exit_code == 0, made.output
    document = json.loads(exported.read_text())
    assert (document["streams"], document["events"]) == (3, 10)
    checked = runner.invoke(main, ["--db", database_url, "verify", "--checkpoint", str(exported)])
    assert checked.exit_code == 0, checked.output
    # An altered export is refused rather than trusted.
    document["heads"][0]["version"] += 1
    exported.write_text(json.dumps(document))
    refused = runner.invoke(main, ["--db", database_url, "verify", "--checkpoint", str(exported)])
    assert refused.exit_code != 0
    assert "does not match its own digest" in str(refused.exception)


def test_the_access_log_is_chained_too(any_app, record):
    from episodes.access import AccessLog

    log = AccessLog(any_app.recorder.datastore.engine, any_app.clock)
    first, _ = record
    for detail in ("episode page", "export csv", "episode page again"):
        log.record(actor_id="rev-cy", actor_role="reviewer", action="read", episode_id=first,
                   patient_ref="Patient/1001", detail=detail)
    assert verify(any_app).access_entries == 3
    sql(any_app, "DELETE FROM care_episodes_access WHERE detail = 'export csv'")
    problem = first_problem(any_app)
    assert "does not chain to the one before" in problem.what
