"""One rebuild of a database at a time (``projections.rebuild_lock``): a second rebuild while
one runs fails at once and changes nothing; the first completes; the lock goes with the
process that held it, however that process ends.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from episodes.workers import context
from projections import ProjectedEpisodes, Projector, tables
from projections.rebuild import Rebuild, interrupted, rebuild
from projections.rebuild_lock import LOCK_FILE_SUFFIX, RebuildAlreadyRunning, exclusive_rebuild
from tests.test_projection_processing import record_a_varied_history
from tests.test_rebuild import dump, events_in


def test_a_second_rebuild_while_one_runs_fails_and_changes_nothing(database_url, clock, clinician):
    app = ProjectedEpisodes(database_url, clock=clock)
    try:
        record_a_varied_history(app, clinician, clock)
        expected = dump(app)
        refusals: list[str] = []
        seen_between_pages: list[tuple[dict, dict]] = []

        def second_rebuild_between_pages(applied: int) -> None:
            if refusals:
                return
            before = dump(app), audit_rows_so_far(app)  # the first rebuild's rows so far
            with pytest.raises(RebuildAlreadyRunning) as refused:
                rebuild(app, page_events=3)
            refusals.append(str(refused.value))
            seen_between_pages.append((before, (dump(app), audit_rows_so_far(app))))

        applied = rebuild(app, page_events=3, progress=second_rebuild_between_pages)
        # Check the second was refused part-way through the first, having touched nothing,
        # and the first completed exactly.
        assert len(refusals) == 1 and "another rebuild of the read models is running" in refusals[0]
        (before, after), = seen_between_pages
        assert before == after and 0 < before[1] < events_in(app)
        assert applied == events_in(app) and dump(app) == expected
        assert not interrupted(app) and Projector(app).lag() == 0
        # Once the first has finished, the lock is free again.
        assert rebuild(app) == events_in(app) and dump(app) == expected
    finally:
        app.close()


def audit_rows_so_far(app) -> int:
    """The audit rows a rebuild has written: in rm_audit, and on SQLite in its staging table
    until every pass is done."""
    with app.recorder.datastore.engine.connect() as connection:
        staged = connection.dialect.has_table(connection, tables.audit_staging.name)
        written = (tables.audit_staging, tables.audit) if staged else (tables.audit,)
        return sum(connection.execute(select(func.count()).select_from(table)).scalar_one()
                   for table in written)


def _hold_and_die(url: str, ready) -> None:  # in a child process
    app = ProjectedEpisodes(url)
    with exclusive_rebuild(app.recorder.datastore.engine):
        ready.set()
        time.sleep(120)  # until killed


def test_the_lock_of_a_rebuild_that_died_is_released(database_url, clock, clinician):
    app = ProjectedEpisodes(database_url, clock=clock)
    try:
        record_a_varied_history(app, clinician, clock)
        expected = dump(app)
        ctx = context()
        ready = ctx.Event()
        holder = ctx.Process(target=_hold_and_die, args=(database_url, ready), daemon=True)
        holder.start()
        try:
            assert ready.wait(60)
            with pytest.raises(RebuildAlreadyRunning):
                Rebuild(app).run()
        finally:
            holder.kill()
            holder.join()
        # Check the killed holder left the lock free: the next rebuild runs.
        assert rebuild(app) == events_in(app) and dump(app) == expected
    finally:
        app.close()


def test_the_lock_file_sits_beside_an_sqlite_database(sqlite_url, clock):
    app = ProjectedEpisodes(sqlite_url, clock=clock)
    try:
        rebuild(app)
    finally:
        app.close()
    database = sqlite_url.removeprefix("sqlite:///")
    assert Path(database + LOCK_FILE_SUFFIX).exists()


def test_an_in_memory_database_needs_no_lock(clock):
    app = ProjectedEpisodes("sqlite:///:memory:", clock=clock)
    try:
        engine = app.recorder.datastore.engine
        with exclusive_rebuild(engine), exclusive_rebuild(engine):
            assert rebuild(app) == 0  # one process only: nothing to keep out
    finally:
        app.close()


def command_during_a_rebuild(tmp_path, *args: str) -> tuple[str, object]:
    """The CLI command ``args`` run on a demo database while a rebuild of it is under way (its
    marker there, its lock held): (the database URL, the command's result)."""
    from admin.cli import main as full_cli

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    assert runner.invoke(full_cli, ["--db", url, "demo", "--episodes", "2", "--seed", "2"]).exit_code == 0
    app = ProjectedEpisodes(url)
    results = []

    def run_meanwhile(applied: int) -> None:
        if not results:
            assert interrupted(app)  # the running rebuild's marker
            results.append(runner.invoke(full_cli, ["--db", url, *args]))

    try:
        rebuild(app, page_events=5, progress=run_meanwhile)
    finally:
        app.close()
    return url, results[0]


def test_the_rebuild_command_says_another_one_is_running(tmp_path):
    url, refused = command_during_a_rebuild(tmp_path, "rebuild")
    assert refused.exit_code == 1
    assert "Error: another rebuild of the read models is running" in refused.output
    assert "had not finished" not in refused.output  # the marker was the running rebuild's
    after = ProjectedEpisodes(url)
    try:
        assert not interrupted(after) and Projector(after).lag() == 0
    finally:
        after.close()


def test_project_says_a_rebuild_is_running_rather_than_interrupted(tmp_path):
    _, said = command_during_a_rebuild(tmp_path, "lag")
    assert "a rebuild of the read models is running; wait for it to finish" in said.output
    assert "interrupted" not in said.output


def test_one_sqlite_file_one_lock_whatever_the_url_says(tmp_path, monkeypatch):
    from sqlalchemy import create_engine

    from projections.rebuild_lock import rebuild_running

    monkeypatch.chdir(tmp_path)
    urls = ["sqlite:///store.db", f"sqlite:///{tmp_path / 'store.db'}",
            f"sqlite:///file:{tmp_path / 'store.db'}?uri=true"]
    engines = [create_engine(url) for url in urls]
    try:
        with engines[0].begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x)")  # the file exists
        for holder in engines:
            with exclusive_rebuild(holder):
                # Check every spelling of the same file sees the lock.
                assert all(rebuild_running(other) for other in engines)
        assert not any(rebuild_running(engine) for engine in engines)
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(LOCK_FILE_SUFFIX)) == [
            "store.db" + LOCK_FILE_SUFFIX]
    finally:
        for engine in engines:
            engine.dispose()


def test_a_lock_connection_that_dropped_neither_fails_the_rebuild_nor_stays_pooled(postgres_url, clock):
    app = ProjectedEpisodes(postgres_url, clock=clock)
    engine = app.recorder.datastore.engine
    try:
        with exclusive_rebuild(engine):
            with engine.connect() as other:  # the server ends the session holding the lock
                pid = other.exec_driver_sql(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %(c)s "
                    "AND objid = 1", {"c": 0x43455049}).scalar_one()
                other.exec_driver_sql("SELECT pg_terminate_backend(%(pid)s)", {"pid": pid})
        # Check the block ended without an error and the lock is free for the next rebuild.
        assert rebuild(app) == events_in(app)
    finally:
        app.close()


def test_a_worker_stops_once_the_rebuilding_process_is_gone(sqlite_url, clock, clinician, monkeypatch):
    import queue
    import signal

    from episodes.workers import StoreSpec
    from projections import rebuild_workers

    app = ProjectedEpisodes(sqlite_url, clock=clock)
    try:
        record_a_varied_history(app, clinician, clock)
        spec, snapshot = StoreSpec.of(app), events_in(app)
    finally:
        app.close()

    class Gone:
        def is_alive(self) -> bool:
            return False

    monkeypatch.setattr(rebuild_workers.multiprocessing, "parent_process", lambda: Gone())
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # the worker ignores Ctrl-C
    tasks, reports = queue.Queue(), queue.Queue()
    for id_range in rebuild_workers.id_ranges(1):
        tasks.put(id_range)
    tasks.put(None)
    with pytest.raises(SystemExit):
        rebuild_workers._worker(spec, snapshot, 3, tasks, reports, None)
    told = [reports.get_nowait() for _ in range(reports.qsize())]
    # Check it wrote no page and said why it stopped.
    assert [kind for kind, _ in told] == ["failed"]
    assert "the rebuilding process is gone" in told[0][1]
