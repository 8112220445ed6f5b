"""The dedicated rebuild (``projections.rebuild``): the rows of incremental projection, exactly,
on SQLite and PostgreSQL; never claiming to be current before it is; nothing lost to writers
who append while it runs.
"""

from __future__ import annotations

from datetime import date, timedelta
from inspect import signature as inspect_signature

import pytest
from sqlalchemy import ColumnClause, Join, Select, func, inspect, select
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql import visitors

from episodes import Episodes
from episodes.demo import seed_demo
from episodes.encryption import cipher_environment
from projections import ProjectedEpisodes, Projector, derive, tables
from projections.dump import canonical_dump
from projections.rebuild import (
    REBUILDING,
    SECONDARY_INDEXES,
    DatabaseRestarted,
    Rebuild,
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
        # Two pages of rows were committed, yet nothing claims to be current.
        projector = Projector(app)
        assert 0 < count(app, tables.audit) < events_in(app)
        assert projector.position() == 0
        assert projector.lag() == events_in(app)
        assert interrupted(app)
        # Running the rebuild again drops the partial rows and completes.
        assert rebuild(app, page_events=20) == events_in(app)
        assert not interrupted(app)
        assert dump(app) == expected
        with app.recorder.datastore.engine.connect() as connection:
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


@pytest.mark.parametrize("workers", [1, 2])  # 2: indexes built and tables vacuumed side by side
def test_on_postgresql_a_rebuild_leaves_the_read_models_vacuumed_and_analysed(postgres_url, clock,
                                                                              clinician, workers,
                                                                              monkeypatch):
    # Freshly loaded rows have no statistics and no visibility map until autovacuum gets to
    # them (never, where it is off): the planner guesses, and counts read every row.
    import threading

    from projections import rebuild as rebuild_module

    threads: dict[str, set[str]] = {"index": set(), "vacuum": set()}
    taken: list[str] = []
    for kind, name in (("index", "_create_index"), ("vacuum", "_vacuum")):
        def noting(connection, item, kind=kind, work=getattr(rebuild_module, name)):
            threads[kind].add(threading.current_thread().name)
            taken.append(kind)
            work(connection, item)
        monkeypatch.setattr(rebuild_module, name, noting)
    app = ProjectedEpisodes(postgres_url, clock=clock)
    try:
        record_a_varied_history(app, clinician, clock)
        job = Rebuild(app, workers=workers)
        job.run()
        assert job.processes_used == workers
        # Check the vacuums and the index builds ran on as many threads as processes, every
        # vacuum taken before any index build (a vacuum before the indexes has none to visit).
        assert len(threads["vacuum"] | threads["index"]) == workers
        assert taken == ["vacuum"] * len(tables.READ_MODELS) + ["index"] * len(SECONDARY_INDEXES)
        assert indexes(app) == {index.name for t in tables.READ_MODELS for index in t.indexes}
        with app.recorder.datastore.engine.connect() as connection:
            stats = {name: connection.exec_driver_sql(
                "SELECT reltuples, relpages, relallvisible FROM pg_class WHERE oid = %(name)s::regclass",
                {"name": name}).one() for name in (t.name for t in tables.READ_MODELS)}
            counts = {t.name: connection.execute(select(func.count()).select_from(t)).scalar_one()
                      for t in tables.READ_MODELS}
            analysed = {name: set(connection.exec_driver_sql(
                "SELECT attname FROM pg_stats WHERE tablename = %(name)s", {"name": name}).scalars())
                for name in ("rm_audit", "rm_sessions")}
            autoanalysed = connection.exec_driver_sql(
                "SELECT autoanalyze_count FROM pg_stat_user_tables WHERE relname = 'rm_audit'").scalar()
    finally:
        app.close()
    assert counts["rm_audit"] > 0
    # The audit log's statistics: of the columns its queries plan by alone (unless autovacuum,
    # where it runs, analysed every column since); other tables': every column.
    planned = set(tables.PLANNED_COLUMNS["rm_audit"])
    assert analysed["rm_audit"] == planned if autoanalysed == 0 else analysed["rm_audit"] >= planned
    assert analysed["rm_sessions"] == {column.name for column in tables.sessions.columns}
    for name, (reltuples, relpages, relallvisible) in stats.items():
        assert reltuples == counts[name], name  # analysed: the planner knows the rows
        assert relallvisible == relpages, name  # vacuumed: every page is all-visible


def test_on_postgresql_the_pages_commit_without_waiting_for_the_disk_but_the_end_waits(
        postgres_url, clock, clinician):
    # A page's commit need not wait for its log to reach the disk; one commit that waits comes
    # before the vacuums (it flushes every page's log, so their rows can be hinted and their
    # pages marked all-visible), and the last transaction (the marker removed) after them all.
    app = ProjectedEpisodes(postgres_url, clock=clock)
    transactions: list[list[str]] = [[]]  # one process, one connection at a time: in order

    def sent(connection, cursor, statement, *rest):
        transactions[-1].append(statement)

    def ended(connection):
        transactions.append([])

    try:
        record_a_varied_history(app, clinician, clock)
        engine = app.recorder.datastore.engine
        sqlalchemy_event.listen(engine, "before_cursor_execute", sent)
        for end in ("commit", "rollback"):  # (a page's read is rolled back)
            sqlalchemy_event.listen(engine, end, ended)
        try:
            Rebuild(app, workers=0, page_events=40).run()
        finally:
            sqlalchemy_event.remove(engine, "before_cursor_execute", sent)
            for end in ("commit", "rollback"):
                sqlalchemy_event.remove(engine, end, ended)
    finally:
        app.close()

    def first(predicate) -> int:
        return next(n for n, t in enumerate(transactions) if any(predicate(s) for s in t))

    unflushed = [n for n, t in enumerate(transactions) if "SET LOCAL synchronous_commit = off" in t]
    assert len(unflushed) > 1
    assert all(transactions[n][0] == "SET LOCAL synchronous_commit = off" for n in unflushed)
    flush = first(lambda s: s == "SET LOCAL synchronous_commit = on")
    assert any(s.startswith("UPDATE rm_tracking") for s in transactions[flush])  # a write: a commit record
    vacuums = first(lambda s: s.startswith("VACUUM"))
    last = first(lambda s: s.startswith("DELETE FROM rm_tracking"))
    assert max(unflushed) < flush < vacuums < last


def test_a_failure_creating_the_tables_leaves_the_read_models_as_they_were(any_projected, clinician,
                                                                          clock, monkeypatch):
    # The drop and the creation are one transaction (on SQLite too: BEGIN IMMEDIATE).
    from projections import rebuild as rebuild_module

    record_a_varied_history(any_projected, clinician, clock)
    engine = any_projected.recorder.datastore.engine
    before = canonical_dump(engine)

    def failing(table):
        if table.name == tables.sessions.name:
            raise RuntimeError("disk full")
        return CreateTable(table)

    monkeypatch.setattr(rebuild_module, "CreateTable", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        rebuild(any_projected)
    assert canonical_dump(engine) == before  # every read model, every row, as it was
    assert not interrupted(any_projected)
    assert indexes(any_projected) == {index.name for t in tables.READ_MODELS for index in t.indexes}


def test_a_server_restart_during_the_rebuild_leaves_it_interrupted(any_projected, clinician, clock,
                                                                   monkeypatch):
    # Pages committed without waiting for the disk may be lost in a restart the connections
    # came through (a pooler): the last transaction sees the server's start time has changed.
    from projections import rebuild as rebuild_module

    record_a_varied_history(any_projected, clinician, clock)
    starts = iter(["2026-12-04 09:00", "2026-12-04 09:01"])
    monkeypatch.setattr(rebuild_module, "_server_started", lambda connection: next(starts))
    with pytest.raises(DatabaseRestarted, match="run 'care-episodes rebuild' again"):
        rebuild(any_projected)
    assert interrupted(any_projected)  # the marker stands: nothing claims to be current
    # The command line says so in a sentence, not a traceback.
    from click.testing import CliRunner

    from admin.cli import main as full_cli

    starts = iter(["2026-12-04 09:00", "2026-12-04 09:01"])
    said = CliRunner().invoke(full_cli, ["--db", any_projected.database_url, "rebuild"])
    assert said.exit_code == 1 and "the database server restarted during the rebuild" in said.output
    monkeypatch.undo()
    rebuild(any_projected)
    assert not interrupted(any_projected)


def _planned_by(table, statement) -> set[str]:
    """The names of ``table``'s columns that ``statement``, or a statement inside it, filters,
    joins, orders or groups by (its selected columns aside)."""
    names: set[str] = set()
    for element in visitors.iterate(statement):
        if isinstance(element, Select):
            parts = [element.whereclause, *element._having_criteria, *element._order_by_clauses,
                     *element._group_by_clauses,
                     *(join[1] for join in element._setup_joins)]  # select().join(x, onclause)
        elif isinstance(element, Join):
            parts = [element.onclause]
        else:
            continue
        for part in parts:
            for inner in visitors.iterate(part) if part is not None else ():
                # The table's column, or an alias's of it.
                if isinstance(inner, ColumnClause) and getattr(inner, "table", None) is not None \
                        and inner.table.is_derived_from(table):
                    names.add(inner.name)
    return names


def test_the_rebuild_analyses_exactly_the_audit_columns_its_queries_plan_by(projected, clinician, clock):
    # The rebuild's ANALYZE gathers statistics of tables.PLANNED_COLUMNS alone: a query that
    # filtered by another column would be planned blind until autovacuum came by.
    from projections.queries import audit as audit_queries
    from projections.queries import stay

    record_a_varied_history(projected, clinician, clock)
    episode = admitted_episode(projected, clinician, date(2026, 3, 2))
    attend(projected, episode, clinician, date(2026, 3, 9))
    known_on = clock.now().date()
    clock.advance(timedelta(days=2))
    attend(projected, episode, clinician, date(2026, 3, 11))  # recorded after known_on
    engine = projected.recorder.datastore.engine
    sent: list = []

    def note(connection, clause, *rest):
        sent.append(clause)

    sqlalchemy_event.listen(engine, "before_execute", note)
    try:
        with engine.connect() as connection:
            as_of = date(2026, 3, 20)
            assert stay.length_of_stay(connection, episode, as_of, known_on).treatment_days == 1
            stay.length_of_stay_summary(connection, as_of, known_on)
            stay.corrected_since(connection, as_of, known_on)
    finally:
        sqlalchemy_event.remove(engine, "before_execute", note)
    # Every filter the audit queries take, at once (a new one fails here until it is given).
    every_filter = {"episode_id": episode, "actor_id": "someone", "action": "create",
                    "event_type": "SessionAttended", "patient_ref": "Patient/1",
                    "recorded_from": date(2026, 1, 1), "recorded_to": date(2026, 2, 1),
                    "after_position": 3, "limit": 10}
    parameters = set(inspect_signature(audit_queries.audit_statement).parameters)
    assert parameters == set(every_filter)
    # The audit log is queried by those two modules alone (a new one is to be walked here too).
    from pathlib import Path
    root = Path(__file__).parent.parent
    readers = {path.relative_to(root).as_posix()
               for folder in ("projections/queries", "admin") for path in (root / folder).rglob("*.py")
               if "tables.audit" in path.read_text(encoding="utf-8")}
    assert readers == {"projections/queries/audit.py", "projections/queries/stay.py"}
    planned: set[str] = set()
    for statement in [*sent, audit_queries.audit_statement(**every_filter)]:
        planned |= _planned_by(tables.audit, statement)
    assert planned == set(tables.PLANNED_COLUMNS[tables.audit.name])


def _wal_frames(path: str) -> int:
    import os

    size = os.path.getsize(path + "-wal") if os.path.exists(path + "-wal") else 0
    return max(0, size - 32) // (4096 + 24)  # the WAL header, then a header and a page a frame


def _freed_and_written(app, secure_delete: str | None) -> tuple[int, int]:
    """Drop the read models of ``app``'s SQLite file (through the projector, or by hand with
    ``secure_delete`` set): (pages freed, WAL frames written)."""
    engine = app.recorder.datastore.engine
    path = engine.url.database
    with engine.connect() as connection:  # an empty log: every frame after this is the drop's
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    if secure_delete is None:
        Projector(app).drop_tables()
    else:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"PRAGMA secure_delete={secure_delete}")
            tables.metadata.drop_all(connection)
            connection.exec_driver_sql("PRAGMA secure_delete=0")
    with engine.connect() as connection:
        freed = connection.exec_driver_sql("PRAGMA freelist_count").scalar()
    return freed, _wal_frames(path)


def test_dropping_the_read_models_does_not_rewrite_every_page_they_freed(tmp_path, clock):
    # SQLite built with SECURE_DELETE (Debian's is) zeroes every page a dropped table frees,
    # through the log: 800 MB of it at 100,000 episodes.  The read models are derived from the
    # events and written again at once, so a rebuild's drop frees its pages without that.
    frames = {}
    for how in ("projector", "ON"):
        url = f"sqlite:///{tmp_path}/{how}.db"
        app = ProjectedEpisodes(url, clock=clock)
        try:
            seed_demo(app, episodes=60, seed=9, today=date(2026, 5, 30))
            engine = app.recorder.datastore.engine
            with engine.connect() as connection:
                setting = connection.exec_driver_sql("PRAGMA secure_delete").scalar()
            freed, written = _freed_and_written(app, None if how == "projector" else how)
            frames[how] = (freed, written)
            if how == "projector":  # Check the pooled connection got its own setting back.
                with engine.connect() as connection:
                    assert connection.exec_driver_sql("PRAGMA secure_delete").scalar() == setting
        finally:
            app.close()
    (freed, written), (freed_on, written_on) = frames["projector"], frames["ON"]
    assert freed > 100 and freed_on > 100
    # Check the projector's drop wrote a few pages, not one a page freed; and (the control)
    # that with secure_delete on, the same drop does write every page it frees.
    assert written < freed / 4
    assert written_on >= freed_on


def test_a_failure_side_by_side_stops_the_other_connections_work(postgres_url, clock):
    import threading

    app = Episodes(postgres_url, clock=clock)
    started, attempted, outcomes = threading.Event(), [], []

    def work(connection, item):
        attempted.append(item)
        if item == "fail":
            started.wait(30)
            raise RuntimeError("an index build failed")
        started.set()
        try:
            connection.exec_driver_sql("SELECT pg_sleep(60)")
            outcomes.append("slept")
        except Exception as error:  # noqa: BLE001 - what the cancellation raised is the point
            outcomes.append(type(error.__cause__ or error).__name__)
            raise

    try:
        with pytest.raises(RuntimeError, match="an index build failed"):
            Rebuild(app)._in_turns(2, ["sleep", "fail", "never"], work)
    finally:
        app.close()
    # Check the other connection's running statement was cancelled and its next item never begun.
    assert outcomes == ["QueryCanceled"]
    assert sorted(attempted) == ["fail", "sleep"]
