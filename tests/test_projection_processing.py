"""How events reach the read models: inline, catch-up, exactly once, rebuild.

One code path (``Projector.apply``) serves both ways of running; these tests hold it to its
promises on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from episodes import Episodes
from episodes.demo import seed_demo
from projections import AlreadyApplied, ProjectedEpisodes, Projector, tables
from projections.dump import canonical_dump
from tests.pathways import admitted_episode, attend


def count(app, table) -> int:
    with app.recorder.datastore.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def test_a_command_and_its_read_models_commit_together(any_projected, clinician):
    episode = admitted_episode(any_projected, clinician, date(2026, 3, 2))
    attend(any_projected, episode, clinician, date(2026, 3, 5), minutes=150)
    # Check the panel can read its own write at once: nothing is left to apply.
    assert any_projected.projector.lag() == 0
    with any_projected.recorder.datastore.engine.connect() as connection:
        row = connection.execute(
            select(tables.episodes).where(tables.episodes.c.episode_id == episode)
        ).mappings().one()
    assert (row["status"], row["attended"], row["attended_minutes"], row["version"]) == (
        "active", 1, 150, 4,
    )
    # 1 program definition + 4 episode events = 5 audit rows, one per event.
    assert count(any_projected, tables.audit) == 5


def test_when_the_read_models_fail_the_command_is_not_recorded(projected, clinician, monkeypatch):
    episode = admitted_episode(projected, clinician, date(2026, 3, 2))
    before = len(list(projected.history(episode)))

    def broken(*args, **kwargs):
        raise RuntimeError("read model write failed")

    monkeypatch.setattr(projected.projector, "_apply_events", broken)  # both the inline and the catch-up path
    with pytest.raises(RuntimeError, match="read model write failed"):
        attend(projected, episode, clinician, date(2026, 3, 5))
    monkeypatch.undo()
    # Check neither the event nor any read-model row was written.
    assert len(list(projected.history(episode))) == before
    assert count(projected, tables.sessions) == 0
    assert projected.projector.lag() == 0


def test_an_event_is_never_applied_twice(projected, clinician):
    admitted_episode(projected, clinician, date(2026, 3, 2))
    projector = projected.projector
    position = projector.position()
    already = projected.recorder.select_notifications(start=1, limit=1)
    with pytest.raises(AlreadyApplied, match=f"at or below the projection's position {position}"):
        with projected.recorder.transaction(commit=True) as session:
            projector.apply(session.connection(), already, position)
    # Check catching up again finds nothing to do and writes nothing more.
    audit_rows = count(projected, tables.audit)
    assert projector.catch_up() == 0
    assert count(projected, tables.audit) == audit_rows


def test_catch_up_follows_a_writer_that_does_not_project(database_url, clock, clinician):
    writer = Episodes(database_url, clock=clock)
    episode = admitted_episode(writer, clinician, date(2026, 3, 2))
    for day in (5, 6, 9):
        attend(writer, episode, clinician, date(2026, 3, day))
    projector = Projector(writer)
    projector.create_tables()
    # 1 program + referral, intake, admission + 3 sessions = 7 events waiting.
    assert projector.lag() == 7
    assert projector.catch_up(batch_size=3) == 7
    assert projector.lag() == 0
    assert count(writer, tables.sessions) == 3
    writer.close()


def test_an_inline_writer_catches_up_what_others_wrote_first(sqlite_url, clock, clinician):
    plain = Episodes(sqlite_url, clock=clock)
    episode = admitted_episode(plain, clinician, date(2026, 3, 2))
    attend(plain, episode, clinician, date(2026, 3, 5))
    inline = ProjectedEpisodes(sqlite_url, clock=clock)
    attend(inline, episode, clinician, date(2026, 3, 6))
    # Check the session written without projection is not skipped.
    assert count(inline, tables.sessions) == 2
    assert inline.projector.lag() == 0
    plain.close()
    inline.close()


def test_a_crash_mid_batch_leaves_nothing_half_applied(sqlite_url, clock, clinician, monkeypatch):
    writer = Episodes(sqlite_url, clock=clock)
    for n in range(3):
        admitted_episode(writer, clinician, date(2026, 3, 2 + n))
    projector = Projector(writer)
    projector.create_tables()
    original = projector._write_episode
    calls = {"n": 0}

    def crash_on_second_episode(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("power cut")
        return original(*args, **kwargs)

    monkeypatch.setattr(projector, "_write_episode", crash_on_second_episode)
    with pytest.raises(RuntimeError, match="power cut"):
        projector.catch_up(batch_size=100)
    # Check the whole batch rolled back: no position, no audit row, no episode row.
    assert projector.position() == 0
    assert count(writer, tables.audit) == 0
    assert count(writer, tables.episodes) == 0
    monkeypatch.undo()
    # 1 program + 3 episodes x 3 events = 10 events, all applied after the restart.
    assert Projector(writer).catch_up() == 10
    assert count(writer, tables.episodes) == 3
    writer.close()


def record_a_varied_history(app, clinician, clock) -> None:
    """Demo episodes plus one episode with every kind of correction, with recorded times apart."""
    seed_demo(app, episodes=12, seed=11, today=date(2026, 5, 30))
    clock.advance(timedelta(hours=1))
    episode = admitted_episode(app, clinician, date(2026, 2, 2))
    first = attend(app, episode, clinician, date(2026, 2, 5), minutes=240)
    wrong_day = attend(app, episode, clinician, date(2026, 2, 6))
    app.place_on_hold(episode, clinician, effective_date="2026-02-10", reason="flu")
    clock.advance(timedelta(hours=1))
    app.amend_event(episode, clinician, target_version=first.version, changes={"minutes": 120},
                    reason="entered 4 hours instead of 2")
    app.void_event(episode, clinician, target_version=wrong_day.version, reason="wrong patient's day")
    app.amend_event(episode, clinician, target_version=6, changes={"effective_date": "2026-02-12"},
                    reason="hold began on the 12th")
    app.resume(episode, clinician, effective_date="2026-02-16")


def test_a_rebuild_gives_exactly_the_rows_of_incremental_processing(any_projected, clinician, clock):
    record_a_varied_history(any_projected, clinician, clock)
    incremental = canonical_dump(any_projected.recorder.datastore.engine)
    assert incremental["rm_audit"], "the history should not be empty"

    projector = Projector(any_projected)
    projector.drop_tables()
    projector.create_tables()
    applied = projector.catch_up(batch_size=50)
    assert applied == len(incremental["rm_audit"])  # every event, once
    assert canonical_dump(any_projected.recorder.datastore.engine) == incremental


def test_catch_up_can_stop_and_restart_anywhere(sqlite_url, clock, clinician):
    writer = ProjectedEpisodes(sqlite_url, clock=clock)
    record_a_varied_history(writer, clinician, clock)
    expected = canonical_dump(writer.recorder.datastore.engine)
    writer.projector.drop_tables()

    class Interrupted(Exception):
        pass

    def stop_after_three_batches(applied: int, seen=[]) -> None:  # noqa: B006 - a counter
        seen.append(applied)
        if len(seen) == 3:
            raise Interrupted

    first = Projector(writer)
    first.create_tables()
    with pytest.raises(Interrupted):
        first.catch_up(batch_size=13, progress=stop_after_three_batches)
    # Three batches of 13 were committed before the interruption.
    assert first.position() == 39
    Projector(writer).catch_up(batch_size=13)
    assert canonical_dump(writer.recorder.datastore.engine) == expected
    writer.close()


def test_an_inline_command_does_not_replay_its_own_stream_again(projected, clinician, monkeypatch):
    episode = admitted_episode(projected, clinician, date(2026, 3, 2))
    projected.projector._cache.clear()  # a cold projector, as after a restart

    def no_replay(*args, **kwargs):
        raise AssertionError("the projector replayed a stream the command had just loaded")

    # The command loads the episode itself; the projector must reuse it.
    monkeypatch.setattr(projected.writer, "aggregate", no_replay)
    receipt = attend(projected, episode, clinician, date(2026, 3, 5), minutes=150)
    assert receipt.version == 4
    with projected.recorder.datastore.engine.connect() as connection:
        minutes = connection.execute(
            select(tables.episodes.c.attended_minutes).where(tables.episodes.c.episode_id == episode)
        ).scalar_one()
    assert minutes == 150
