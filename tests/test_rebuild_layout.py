"""A SQLite rebuild writes about as much whatever the order its log holds the episodes' events in.

A clinic records day by day, so one episode's events lie all over the log; an import writes each
episode's events together.  ``rm_audit`` keeps its rows in log order, and a rebuild derives them
stream by stream: written straight into it, every page of a stream's rows landed on pages that
later pages of streams rewrote again (284,000 pages written to the write-ahead log against
61,000 for the same 10,000 episodes imported; docs/performance.md).  The passes append them to
a staging table instead, moved into ``rm_audit`` in log order at the end
(``projections.stream_pass.move_staged_audit``).
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import event as sqlalchemy_event

from episodes import driver
from projections import ProjectedEpisodes, tables
from projections.dump import canonical_dump
from projections.rebuild import Rebuild
from tests.pathways import admitted_episode, attend
from tests.test_rebuild_tables import _wal_frames

EPISODES = 30
SESSIONS = 20
PAGE_EVENTS = 40  # many pages, so that many transactions could rewrite the same audit pages


def _record(app, clinician, *, day_by_day: bool) -> None:
    first = date(2026, 3, 2)
    episodes = [admitted_episode(app, clinician, first - timedelta(days=5)) for _ in range(EPISODES)]
    days = [first + timedelta(days=n) for n in range(SESSIONS)]
    if day_by_day:  # as a clinic records: every patient's session of the day, then the next day
        for day in days:
            for episode in episodes:
                attend(app, episode, clinician, day)
    else:  # as an import writes: one episode's sessions, then the next episode's
        for episode in episodes:
            for day in days:
                attend(app, episode, clinician, day)


def _rebuild_frames(app) -> int:
    """WAL frames a one-process rebuild writes (no checkpoint during it to empty the log)."""
    engine = app.recorder.datastore.engine
    sqlalchemy_event.listen(engine, "connect",
                            lambda dbapi, _record: dbapi.execute("PRAGMA wal_autocheckpoint=0"))
    driver.release(engine)
    engine.pool.dispose()
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    Rebuild(app, workers=1, page_events=PAGE_EVENTS).run()
    return _wal_frames(engine.url.database)


def test_a_rebuild_writes_as_much_for_a_log_recorded_day_by_day_as_for_an_imported_one(
        tmp_path, clock, clinician):
    frames, dumps = {}, {}
    for day_by_day in (False, True):
        app = ProjectedEpisodes(f"sqlite:///{tmp_path}/{day_by_day}.db", clock=clock)
        try:
            _record(app, clinician, day_by_day=day_by_day)
            inline = canonical_dump(app.recorder.datastore.engine)
            frames[day_by_day] = _rebuild_frames(app)
            dumps[day_by_day] = canonical_dump(app.recorder.datastore.engine)
            assert dumps[day_by_day] == inline  # the rebuild's rows are the inline ones
        finally:
            app.close()
    assert len(dumps[True][tables.audit.name]) == EPISODES * (3 + SESSIONS) + 1  # + the program
    assert frames[True] <= frames[False] * 1.25


def test_the_staged_rows_are_sorted_with_helper_threads_and_the_connection_given_back_as_it_was(
        tmp_path, clock, clinician, monkeypatch):
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    app = ProjectedEpisodes(f"sqlite:///{tmp_path / 'sorted.db'}", clock=clock)
    try:
        _record(app, clinician, day_by_day=True)
        engine, sent = app.recorder.datastore.engine, []
        sqlalchemy_event.listen(engine, "before_cursor_execute",
                                lambda _c, _cursor, statement, *_rest: sent.append(statement))
        inline = canonical_dump(engine)
        Rebuild(app, workers=1, page_events=PAGE_EVENTS).run()
        assert canonical_dump(engine) == inline
        # Check the move's sort had a helper thread a core, and the pooled connection got its
        # own setting (SQLite's default, none) back after it.
        move = next(i for i, s in enumerate(sent) if s.startswith("INSERT INTO rm_audit "))
        assert sent[move - 1] == "PRAGMA threads=3" and sent[move + 1] == "PRAGMA threads=0"
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA threads").scalar() == 0
    finally:
        app.close()
