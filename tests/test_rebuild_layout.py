"""A SQLite rebuild writes about as much whatever the order its log holds the episodes' events in.

A clinic records day by day, so one episode's events lie all over the log; an import writes each
episode's events together.  ``rm_audit`` keeps its rows in log order, and a rebuild derives them
stream by stream: written straight into it, every page of a stream's rows landed on pages that
later pages of streams rewrote again (284,000 pages written to the write-ahead log against
61,000 for the same 10,000 episodes imported; docs/performance.md).  The passes append them to
a staging table instead, moved into ``rm_audit`` in log order at the end
(``projections.stream_pass.move_staged_audit``); where a page's rows lie together in the log, as
an imported episode's do, straight into ``rm_audit``, which spares the move
(``projections.stream_pass.audit_in_place``).
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import func, select

from episodes import driver
from projections import ProjectedEpisodes, tables
from projections import rebuild as rebuild_module
from projections.dump import canonical_dump
from projections.rebuild import Rebuild
from projections.stream_pass import IN_PLACE_RUN, audit_in_place, move_staged_audit
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


@pytest.fixture
def staged(monkeypatch) -> list[int]:
    """The staged audit rows of each rebuild from now on, counted before they are moved."""
    counts: list[int] = []

    def move_counting(connection):
        counts.append(connection.execute(select(func.count()).select_from(tables.audit_staging)).scalar())
        move_staged_audit(connection)

    monkeypatch.setattr(rebuild_module, "move_staged_audit", move_counting)
    return counts


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
        tmp_path, clock, clinician, staged):
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
    # Check the imported episodes' rows went straight into rm_audit, and those recorded day by
    # day (each page's rows a position apart: runs of one) were staged and moved, every one.
    assert staged == [0, len(dumps[True][tables.audit.name])]


def test_a_log_of_imported_episodes_then_of_episodes_recorded_day_by_day_is_rebuilt_row_for_row(
        tmp_path, clock, clinician, staged):
    app = ProjectedEpisodes(f"sqlite:///{tmp_path / 'mixed.db'}", clock=clock)
    try:
        first = date(2026, 3, 2)
        episodes = [admitted_episode(app, clinician, first - timedelta(days=5)) for _ in range(EPISODES)]
        imported, day_by_day = episodes[:EPISODES // 2], episodes[EPISODES // 2:]
        days = [first + timedelta(days=n) for n in range(SESSIONS)]
        for episode in imported:
            for day in days:
                attend(app, episode, clinician, day)
        for day in days:
            for episode in day_by_day:
                attend(app, episode, clinician, day)
        engine = app.recorder.datastore.engine
        inline = canonical_dump(engine)
        # Pages shorter than a stream: most complete one stream, decided on its own.
        Rebuild(app, workers=1, page_events=10).run()
        assert canonical_dump(engine) == inline
    finally:
        app.close()
    # Check the streams recorded day by day were staged (the program's one row may have been
    # with one of them) and the imported ones written in place: rm_audit got rows both ways.
    per_episode = 3 + SESSIONS
    assert len(day_by_day) * per_episode <= staged[0] <= len(day_by_day) * per_episode + 1


def test_a_pages_audit_rows_go_in_place_where_they_run_on_long_enough_in_log_order():
    def rows(*positions):
        return [{"position": position} for position in positions]

    run = IN_PLACE_RUN
    together = rows(*range(100, 100 + run), *range(10, 10 + run))  # two runs, out of order
    assert audit_in_place(together)
    assert [row["position"] for row in together] == sorted(row["position"] for row in together)
    assert audit_in_place(rows(*range(run)))
    assert not audit_in_place(rows(*range(run - 1)))  # one run, too short
    assert not audit_in_place(rows(*range(run), *range(run + 1, 2 * run)))  # two runs, 2*run-1 rows
    assert not audit_in_place(rows(*range(0, 4 * run, 2)))  # every row a run of its own


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
