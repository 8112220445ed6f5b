"""The dedicated rebuild (``projections.rebuild``): the rows of incremental projection, exactly,
on SQLite and PostgreSQL; never claiming to be current before it is; nothing lost to writers
who append while it runs.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, inspect, select

from episodes import Episodes
from episodes.demo import seed_demo
from episodes.encryption import cipher_environment
from projections import ProjectedEpisodes, Projector, derive, tables
from projections.dump import canonical_dump
from projections.rebuild import (
    REBUILDING,
    interrupted,
    rebuild,
)
from tests.pathways import admitted_episode, attend
from tests.test_projection_processing import record_a_varied_history

KEY = "q0fBI7lAbmFzd9bUqqYx9Tz5tJQmXo3oXnFL2p3ufd4="  # a fixed test key (base64 of 32 bytes)


def events_in(app) -> int:
    return app.recorder.max_notification_id() or 0


def dump(app):
    return canonical_dump(app.recorder.datastore.engine)


def raw_dump(app):
    """Every read-model row as the driver returns it, without SQLAlchemy's type processing."""
    result = {}
    with app.recorder.datastore.engine.connect() as connection:
        for table in tables.READ_MODELS:
            columns = ", ".join(c.name for c in table.columns if c.name != "id" or table is not tables.periods)
            rows = connection.exec_driver_sql(f"SELECT {columns} FROM {table.name}").all()
            result[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return result


def test_the_pass_reads_no_stream_back(projected, clinician, clock, monkeypatch):
    record_a_varied_history(projected, clinician, clock)
    expected = dump(projected)

    def no_read_back(*args, **kwargs):
        raise AssertionError("the rebuild read a stream back instead of using the one it folded")

    # The corrected events' types come from the stream in memory, the programs from their fold.
    monkeypatch.setattr(projected.repository, "get", no_read_back)
    monkeypatch.setattr(projected.events, "get", no_read_back)
    assert rebuild(projected, page_events=11) == events_in(projected)
    assert dump(projected) == expected


def incremental_dump(app):
    """The read models as the projector builds them, one batch of 50 at a time from scratch."""
    projector = Projector(app)
    projector.drop_tables()
    projector.create_tables()
    projector.catch_up(batch_size=50)
    return dump(app)


@pytest.mark.parametrize("page_events", [7, 5_000])
def test_a_rebuild_writes_exactly_the_rows_of_incremental_projection(any_projected, clinician, clock,
                                                                     page_events):
    record_a_varied_history(any_projected, clinician, clock)
    # Inline projection wrote these rows one command at a time.
    inline = dump(any_projected)
    stored = raw_dump(any_projected)
    assert inline["rm_periods"] and any(row[-1] is not None for row in inline["rm_periods"]), (
        "the history should close some periods (corrections, status changes)")
    # Small pages: streams continue from one page (and transaction) into the next.
    applied = rebuild(any_projected, page_events=page_events)
    assert applied == events_in(any_projected) == len(inline["rm_audit"])
    assert dump(any_projected) == inline
    # Byte for byte as stored, too (SQLite keeps dates and ids as text: the same text).
    assert raw_dump(any_projected) == stored
    assert Projector(any_projected).lag() == 0
    assert not interrupted(any_projected)
    # The secondary indexes, dropped for the pass, are all back.
    assert indexes(any_projected) == {index.name for table in tables.READ_MODELS for index in table.indexes}


def test_a_rebuild_of_an_empty_store_leaves_empty_current_read_models(any_app):
    assert rebuild(any_app) == 0
    assert Projector(any_app).position() == 0 and Projector(any_app).lag() == 0
    assert not interrupted(any_app)
    assert all(not rows for rows in dump(any_app).values())
    assert indexes(any_app) == {index.name for table in tables.READ_MODELS for index in table.indexes}


def test_a_rebuild_of_an_encrypted_store_decodes_with_its_key(sqlite_url, clock, clinician):
    app = ProjectedEpisodes(sqlite_url, clock=clock, env=cipher_environment(KEY))
    try:
        seed_demo(app, episodes=4, seed=3, today=date(2026, 5, 30))
        inline = dump(app)
        assert rebuild(app) == events_in(app)
        assert dump(app) == inline
    finally:
        app.close()


def test_periods_followed_event_by_event_equal_periods_derived_from_scratch(app, clinician, clock):
    from projections.streams import EpisodeStream

    record_a_varied_history(app, clinician, clock)
    stored = app.recorder.select_notifications(start=1, limit=10_000)
    episode_events = [n for n in stored if n.topic.startswith("episodes.events:")]
    episode_ids = [n.originator_id for n in episode_events if n.originator_version == 1]
    checked = 0
    for episode_id in episode_ids:
        stream = EpisodeStream()
        timeline = stream._timeline
        for event in app.events.get(episode_id):
            stream.add(0, event)
            assert timeline.current() == derive.periods(stream.episode), (episode_id, event)
            checked += 1
    assert checked == len(episode_events) > 200


class PowerCut(Exception):
    pass


def test_an_interrupted_rebuild_claims_nothing_and_a_second_one_completes(sqlite_url, clock, clinician):
    app = ProjectedEpisodes(sqlite_url, clock=clock)
    try:
        record_a_varied_history(app, clinician, clock)
        expected = dump(app)

        def cut_after_two_pages(applied, seen=[]):  # noqa: B006 - a counter
            seen.append(applied)
            if len(seen) == 2:
                raise PowerCut

        with pytest.raises(PowerCut):
            rebuild(app, page_events=20, progress=cut_after_two_pages)
        # Two pages of rows were committed, yet nothing claims to be current.  (On SQLite a
        # page's audit rows go into rm_audit or wait in the staging table until every pass is
        # done: projections.stream_pass.audit_in_place.)
        projector = Projector(app)
        assert 0 < count(app, tables.audit_staging) + count(app, tables.audit) < events_in(app)
        assert projector.position() == 0
        assert projector.lag() == events_in(app)
        assert interrupted(app)
        # Running the rebuild again drops the partial rows and completes.
        assert rebuild(app, page_events=20) == events_in(app)
        assert not interrupted(app)
        assert dump(app) == expected
        with app.recorder.datastore.engine.connect() as connection:
            assert not connection.dialect.has_table(connection, tables.audit_staging.name)
            marker = connection.execute(
                select(tables.tracking.c.position).where(tables.tracking.c.projection == REBUILDING)
            ).first()
        assert marker is None
    finally:
        app.close()


def test_events_appended_during_the_rebuild_are_caught_up(database_url, clock, clinician):
    app = ProjectedEpisodes(database_url, clock=clock)
    writer = Episodes(database_url, clock=clock)  # another process: it does not project
    try:
        episode = admitted_episode(app, clinician, date(2026, 3, 2))
        for day in (5, 6, 9):
            attend(app, episode, clinician, date(2026, 3, day))
        before = events_in(app)
        appended = []

        def write_meanwhile(applied):
            if not appended:  # once, after the first page committed
                appended.append(attend(writer, episode, clinician, date(2026, 3, 10), minutes=90))

        applied = rebuild(app, page_events=2, progress=write_meanwhile)
        assert appended and events_in(app) == before + 1
        assert applied == before + 1  # the pass covered the snapshot, catch-up the new event
        assert Projector(app).lag() == 0
        rebuilt = dump(app)
        assert rebuilt == incremental_dump(app)
        sessions = rebuilt["rm_sessions"]
        assert len(sessions) == 4
    finally:
        writer.close()
        app.close()


def test_an_inline_command_during_the_rebuild_is_recorded_and_projected_after_it(database_url, clock,
                                                                               clinician):
    app = ProjectedEpisodes(database_url, clock=clock)
    panel = ProjectedEpisodes(database_url, clock=clock)  # a panel worker, projecting inline
    try:
        episode = admitted_episode(app, clinician, date(2026, 3, 2))
        attend(app, episode, clinician, date(2026, 3, 5))
        recorded = []

        def record_meanwhile(applied):
            if not recorded:  # while the read models are half rebuilt
                recorded.append(attend(panel, episode, clinician, date(2026, 3, 6), minutes=60))

        rebuild(app, page_events=2, progress=record_meanwhile)
        # Check the command was neither refused nor applied twice, and the rows are complete.
        assert recorded and recorded[0].version == 5
        assert Projector(app).lag() == 0
        rebuilt = dump(app)
        assert rebuilt == incremental_dump(app)
        assert len(rebuilt["rm_sessions"]) == 2
    finally:
        panel.close()
        app.close()


def test_the_pass_covers_the_events_up_to_its_snapshot_and_catch_up_the_rest(app, clinician, clock,
                                                                               monkeypatch):
    episode = admitted_episode(app, clinician, date(2026, 3, 2))
    attend(app, episode, clinician, date(2026, 3, 5))
    total = events_in(app)
    # As if the session had been appended just after the pass took its snapshot.
    monkeypatch.setattr(app.recorder, "max_notification_id", lambda: total - 1)
    positions, caught_up = [], []
    catch_up = Projector.catch_up

    def watched_catch_up(projector, **kwargs):
        positions.append(projector.position())
        caught_up.append(catch_up(projector, **kwargs))
        return caught_up[-1]

    monkeypatch.setattr(Projector, "catch_up", watched_catch_up)
    assert rebuild(app, page_events=3) == total
    assert positions == [total - 1] and caught_up == [1]
    assert count(app, tables.sessions) == 1
    assert Projector(app).lag() == 0


def indexes(app) -> set[str]:
    inspector = inspect(app.recorder.datastore.engine)
    return {index["name"] for table in tables.READ_MODELS for index in inspector.get_indexes(table.name)}


def count(app, table) -> int:
    with app.recorder.datastore.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def test_the_commands_after_an_interrupted_rebuild(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from admin.cli import main as full_cli

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    assert runner.invoke(full_cli, ["--db", url, "demo", "--episodes", "3", "--seed", "2"]).exit_code == 0
    app = Episodes(url)
    try:
        def cut(applied):
            raise PowerCut

        with pytest.raises(PowerCut):
            rebuild(app, page_events=5, progress=cut)
    finally:
        app.close()
    # Catching up from position 0 would apply again what the interrupted pass wrote: refused.
    refused = runner.invoke(full_cli, ["--db", url, "project"])
    assert refused.exit_code != 0
    assert "a rebuild of the read models was interrupted; run 'care-episodes rebuild' again" in refused.output
    rebuilt = runner.invoke(full_cli, ["--db", url, "rebuild"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "An earlier rebuild had not finished: this one started again from the beginning." in rebuilt.output
    assert runner.invoke(full_cli, ["--db", url, "lag"]).output.strip() == "0"
