"""The rebuild's work on the tables themselves (``projections.rebuild``): the old read models
dropped and the new tables created in one transaction; on PostgreSQL the pages committed
without waiting for the disk, the tables vacuumed and analysed (the audit log on the columns
its queries plan by) and the indexes built side by side; a failure or a server restart left as
an interrupted rebuild.
"""

from __future__ import annotations

from datetime import date, timedelta
from inspect import signature as inspect_signature

import pytest
from sqlalchemy import ColumnClause, Join, Select, func, select
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql import visitors

from episodes import Episodes
from episodes.demo import seed_demo
from projections import ProjectedEpisodes, Projector, tables
from projections.dump import canonical_dump
from projections.rebuild import SECONDARY_INDEXES, DatabaseRestarted, Rebuild, interrupted, rebuild
from tests.pathways import admitted_episode, attend
from tests.test_projection_processing import record_a_varied_history
from tests.test_rebuild import indexes


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
