"""The programs are listed from a partial index of their first events, on every backend: the
list is the same as before, the index is made where a database lacks it (one of an earlier
version), two processes making it at once do not fail, and SQLite reads it, not the log."""

from __future__ import annotations

import sqlite3
from datetime import date

import pytest
from sqlalchemy import event, text

from episodes import Episodes, program_index
from episodes.program import program_id
from tests.pathways import admitted_episode, attend, define_standard_program

DAY = date(2026, 3, 2)


def define_three(app: Episodes, actor) -> None:
    for code, name in (("iop-youth", "Youth IOP"), ("dbt-6wk", "DBT skills"), ("iop-adult", "Adult IOP")):
        define_standard_program(app, actor, code=code, name=name)


def has_index(app: Episodes) -> bool:
    with app.recorder.datastore.engine.connect() as connection:
        return program_index.exists(connection)


def drop_index(app: Episodes) -> None:
    with app.recorder.datastore.engine.begin() as connection:
        connection.execute(text(f"DROP INDEX {program_index.INDEX_NAME}"))


def test_the_programs_are_listed_in_code_order_among_episodes_and_revisions(any_app, admin_actor, clinician):
    assert any_app.programs() == []
    define_three(any_app, admin_actor)
    episode = admitted_episode(any_app, clinician, DAY)  # other streams' events beside them
    attend(any_app, episode, clinician, date(2026, 3, 5))
    any_app.revise_program(admin_actor, code="dbt-6wk", name="DBT skills group", target_weeks=6,
                           days_per_week=3, clinics=["north"])

    programs = any_app.programs()
    assert [p.code for p in programs] == ["dbt-6wk", "iop-adult", "iop-youth"]
    assert programs[0].name == "DBT skills group"  # the definition in force, not the first
    with any_app.recorder.datastore.engine.connect() as connection:
        ids = program_index.program_stream_ids(connection, any_app.recorder.events_record_cls.__table__)
    assert sorted(ids) == sorted(program_id(code) for code in ("dbt-6wk", "iop-adult", "iop-youth"))


def test_a_database_without_the_index_gets_it_when_opened(database_url, clock, admin_actor):
    app = Episodes(database_url, clock=clock)
    try:
        assert has_index(app)
        define_three(app, admin_actor)
        drop_index(app)  # as a database of an earlier version has it
        assert not has_index(app)
    finally:
        app.close()
    reopened = Episodes(database_url, clock=clock)
    try:
        assert has_index(reopened)
        assert [p.code for p in reopened.programs()] == ["dbt-6wk", "iop-adult", "iop-youth"]
    finally:
        reopened.close()


def test_an_index_made_meanwhile_by_another_process_is_no_error(any_app, monkeypatch):
    """The other process won the race: this one's CREATE fails, and the index is there."""
    engine = any_app.recorder.datastore.engine
    looked = iter([False, True])
    monkeypatch.setattr(program_index, "exists", lambda connection: next(looked))
    monkeypatch.setattr(program_index, "_CREATE", "CREATE INDEX broken ON no_such_table (x)")
    program_index.create_program_index(engine)  # no error
    assert next(looked, "both looked at") == "both looked at"


def test_a_failure_to_make_the_index_is_raised_when_it_is_not_there(any_app, monkeypatch):
    engine = any_app.recorder.datastore.engine
    drop_index(any_app)
    monkeypatch.setattr(program_index, "_CREATE", "CREATE INDEX broken ON no_such_table (x)")
    with pytest.raises(Exception, match="no_such_table"):
        program_index.create_program_index(engine)


def test_on_sqlite_the_programs_are_read_from_the_index(app, admin_actor, sqlite_url):
    define_three(app, admin_actor)
    sent: list[str] = []
    engine = app.recorder.datastore.engine

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        app.programs()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    reads = [sql for sql in sent if program_index.DEFINED_TOPIC in sql]
    assert len(reads) == 1
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as connection:
        plan = [row[-1] for row in connection.execute(f"EXPLAIN QUERY PLAN {reads[0]}")]
    assert plan == [f"SCAN care_episodes_events USING INDEX {program_index.INDEX_NAME}"]


def test_on_postgresql_the_programs_query_can_use_the_index(postgres_url, clock, admin_actor):
    """A planner takes a partial index only for a query whose condition is the index's own: on
    a small table PostgreSQL rightly prefers to read it through, so the reading is turned off
    to see that the index would serve."""
    app = Episodes(postgres_url, clock=clock)
    try:
        define_three(app, admin_actor)
        query = program_index.programs_query(app.recorder.events_record_cls.__table__)
        with app.recorder.datastore.engine.begin() as connection:
            connection.execute(text("SET LOCAL enable_seqscan = off"))
            sql = str(query.compile(connection))  # no parameters: the topic is in the text
            plan = "\n".join(row[0] for row in connection.execute(text(f"EXPLAIN {sql}")))
    finally:
        app.close()
    assert program_index.INDEX_NAME in plan, plan  # (named only where a scan uses it)
