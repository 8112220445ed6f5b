"""The rebuild in several processes (``projections.rebuild_workers``): exactly the rows of a
rebuild in one process, on SQLite and PostgreSQL; a failure anywhere fails the whole rebuild,
claims nothing and leaves no process behind; events appended meanwhile are caught up.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from datetime import date
from uuid import UUID

import pytest
from click.testing import CliRunner

from episodes import Episodes, driver
from episodes.demo import seed_demo
from episodes.encryption import cipher_environment
from episodes.workers import START_METHOD_VARIABLE
from projections import ProjectedEpisodes, Projector, tables
from projections.rebuild import PARALLEL_MIN_EVENTS, Rebuild, interrupted, rebuild
from projections.rebuild_workers import SMALLEST_SHARE_PER_PROCESS, RebuildWorkerFailed, id_ranges
from tests.pathways import admitted_episode, attend
from tests.test_projection_processing import record_a_varied_history
from tests.test_rebuild import KEY, count, dump, events_in, indexes, raw_dump

ALL_INDEXES = {index.name for table in tables.READ_MODELS for index in table.indexes}


class PowerCut(Exception):
    pass


def no_workers_left() -> bool:
    return not [p for p in multiprocessing.active_children() if p.name.startswith("care-episodes-rebuild")]


@pytest.mark.parametrize("processes", [1, 2, 3, 8])
def test_id_ranges_cover_every_uuid_once_in_order_and_shrink_toward_the_end(processes):
    ranges = id_ranges(processes)
    assert ranges[0][0] == UUID(int=0) and ranges[-1][1] is None
    # Check each range begins where the one before ends: no stream in two ranges, none in none.
    assert all(high == ranges[i + 1][0] for i, (_low, high) in enumerate(ranges[:-1]))
    assert all(low < high for low, high in ranges[:-1])
    # Check the first is a 2*processes-th of all ids, and each later one no larger than the one
    # before (the last takes what is left: less than two of the smallest), and no smaller than
    # the smallest share, so that at the end the others wait for a small range at most.
    widths = [(high.int if high else 1 << 128) - low.int for low, high in ranges]
    smallest = (1 << 128) // (SMALLEST_SHARE_PER_PROCESS * processes)
    assert widths[0] == (1 << 128) // (2 * processes)
    assert all(after <= before for before, after in zip(widths[:-2], widths[1:-1]))
    assert all(width >= smallest for width in widths) and widths[-1] < 2 * smallest
    assert len(ranges) > 2 * processes  # more than processes: one done early takes another


@pytest.mark.parametrize("page_events, method", [(7, "fork"), (2_000, "fork"), (2_000, "spawn")])
def test_a_rebuild_in_two_processes_writes_exactly_the_rows_of_one_process(
        any_projected, clinician, clock, monkeypatch, page_events, method):
    monkeypatch.setenv(START_METHOD_VARIABLE, method)  # forked or spawned workers alike
    record_a_varied_history(any_projected, clinician, clock)
    seed_demo(any_projected, episodes=30, seed=5, today=date(2026, 5, 30))  # streams for both
    inline = dump(any_projected)
    assert rebuild(any_projected, workers=1) == events_in(any_projected)
    one_process, stored = dump(any_projected), raw_dump(any_projected)
    assert one_process == inline

    job = Rebuild(any_projected, workers=2, page_events=page_events)
    assert job.run() == events_in(any_projected)
    assert job.processes_used == 2 and len(job.worker_peaks_kib) == 1
    assert dump(any_projected) == one_process
    assert raw_dump(any_projected) == stored  # as stored, byte for byte
    assert Projector(any_projected).lag() == 0 and not interrupted(any_projected)
    assert indexes(any_projected) == ALL_INDEXES
    assert no_workers_left()


def test_workers_decode_an_encrypted_store_with_its_key(sqlite_url, clock):
    app = ProjectedEpisodes(sqlite_url, clock=clock, env=cipher_environment(KEY))
    try:
        seed_demo(app, episodes=10, seed=3, today=date(2026, 5, 30))
        inline = dump(app)
        assert rebuild(app, workers=2) == events_in(app)
        assert dump(app) == inline
    finally:
        app.close()


def test_a_failing_worker_fails_the_rebuild_and_claims_nothing(sqlite_url, clock):
    app = Episodes(sqlite_url, clock=clock, env=cipher_environment(KEY))
    try:
        seed_demo(app, episodes=10, seed=3, today=date(2026, 5, 30))
        # The worker opens the store with the settings the application was given: here another
        # key, so it cannot read the events and fails at once; this process could.
        app.settings.update(cipher_environment("A" * 43 + "="))
        with pytest.raises(RebuildWorkerFailed, match="EncryptionKeyError"):
            rebuild(app, workers=2, page_events=5)
        assert interrupted(app)
        assert Projector(app).position() == 0
        assert no_workers_left()
        app.settings.update(cipher_environment(KEY))
        assert rebuild(app, workers=2) == events_in(app)
        assert not interrupted(app) and Projector(app).lag() == 0
    finally:
        app.close()


def test_a_worker_killed_part_way_fails_the_rebuild(sqlite_url, clock):
    app = Episodes(sqlite_url, clock=clock)
    try:
        seed_demo(app, episodes=20, seed=4, today=date(2026, 5, 30))
        killed = []

        def kill_the_worker(applied):
            if not killed:  # at this process's first page: the worker is still starting
                workers = [p for p in multiprocessing.active_children()
                           if p.name.startswith("care-episodes-rebuild")]
                for worker in workers:
                    os.kill(worker.pid, signal.SIGKILL)
                killed.extend(workers)

        with pytest.raises(RebuildWorkerFailed, match="exit code -9"):
            rebuild(app, workers=2, page_events=5, progress=kill_the_worker)
        assert killed
        assert interrupted(app) and Projector(app).position() == 0
        assert no_workers_left()
    finally:
        app.close()


def test_an_interruption_of_the_rebuilding_process_stops_the_workers(sqlite_url, clock):
    app = Episodes(sqlite_url, clock=clock)
    try:
        seed_demo(app, episodes=20, seed=4, today=date(2026, 5, 30))

        def cut_after_twenty_pages(applied, seen=[]):  # noqa: B006 - a counter
            seen.append(applied)
            if len(seen) == 20:  # 100 events: some streams' rows are written by then
                raise PowerCut

        with pytest.raises(PowerCut):
            rebuild(app, workers=2, page_events=5, progress=cut_after_twenty_pages)
        assert no_workers_left()
        assert interrupted(app) and Projector(app).position() == 0
        # (SQLite: a page's audit rows in rm_audit or in the staging table, moved at the end.)
        assert 0 < count(app, tables.audit_staging) + count(app, tables.audit) < events_in(app)
        assert rebuild(app, workers=2, page_events=5) == events_in(app)
        assert not interrupted(app) and count(app, tables.audit) == events_in(app)
    finally:
        app.close()


def test_events_appended_during_a_parallel_rebuild_are_caught_up(database_url, clock, clinician):
    app = ProjectedEpisodes(database_url, clock=clock)
    writer = Episodes(database_url, clock=clock)  # another process: it does not project
    try:
        seed_demo(app, episodes=8, seed=6, today=date(2026, 5, 30))
        episode = admitted_episode(app, clinician, date(2026, 3, 2))
        attend(app, episode, clinician, date(2026, 3, 5))
        before = events_in(app)
        appended = []

        def write_meanwhile(applied):
            if not appended:
                appended.append(attend(writer, episode, clinician, date(2026, 3, 10), minutes=90))

        applied = rebuild(app, workers=2, page_events=4, progress=write_meanwhile)
        assert appended and applied == before + 1 == events_in(app)
        assert Projector(app).lag() == 0
        rebuilt = dump(app)
        assert rebuild(app, workers=1) == events_in(app)
        assert dump(app) == rebuilt
    finally:
        writer.close()
        app.close()


def test_how_many_processes_a_rebuild_uses(sqlite_url, clock, monkeypatch):
    app = Episodes(sqlite_url, clock=clock)
    memory = Episodes("sqlite:///:memory:", clock=clock)
    try:
        monkeypatch.setattr("episodes.workers.available_cores", lambda: 4)
        # The library's default: this process alone for a small log, one per core for a large
        # one; "small" by what starting the workers costs (spawned: far more than forked).
        assert PARALLEL_MIN_EVENTS["fork"] < PARALLEL_MIN_EVENTS["spawn"]
        for method, smallest in PARALLEL_MIN_EVENTS.items():
            monkeypatch.setenv(START_METHOD_VARIABLE, method)
            assert Rebuild(app).processes_for(smallest - 1) == 1
            assert Rebuild(app).processes_for(smallest) == 4
        # Asked for: as many as asked, whatever the size; 0 or 1 is this process alone.
        assert Rebuild(app, workers=3).processes_for(10) == 3
        assert Rebuild(app, workers=0).processes_for(10**6) == 1
        assert Rebuild(app, workers=1).processes_for(10**6) == 1
        # No other process can open an in-memory database.
        assert Rebuild(memory, workers=3).processes_for(10**6) == 1
        with pytest.raises(ValueError, match="workers"):
            Rebuild(app, workers=-1)
    finally:
        memory.close()
        app.close()


def test_the_rebuild_command_takes_a_number_of_processes(tmp_path):
    from admin.cli import main as full_cli

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    assert runner.invoke(full_cli, ["--db", url, "demo", "--episodes", "6", "--seed", "2"]).exit_code == 0
    before = runner.invoke(full_cli, ["--db", url, "list", "--page-size", "100"]).stdout
    rebuilt = runner.invoke(full_cli, ["--db", url, "rebuild", "--workers", "2", "--page-size", "10"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "events in 2 processes." in rebuilt.output
    assert runner.invoke(full_cli, ["--db", url, "lag"]).output.strip() == "0"
    assert runner.invoke(full_cli, ["--db", url, "list", "--page-size", "100"]).stdout == before
    refused = runner.invoke(full_cli, ["--db", url, "rebuild", "--workers", "-1"])
    assert refused.exit_code != 0


class RecordingLock:
    """A lock that says whether it is held, and how often it was taken."""

    def __init__(self, free: bool = True):
        self.free = free
        self.held = False
        self.taken = self.released = 0

    def acquire(self, timeout: float) -> bool:
        assert timeout > 0  # never an unbounded wait on a lock its holder may never release
        if not self.free:
            return False
        self.held, self.taken = True, self.taken + 1
        return True

    def release(self) -> None:
        assert self.held
        self.held, self.released = False, self.released + 1


def test_on_sqlite_the_passes_write_only_in_their_turn(sqlite_url, clock, clinician, monkeypatch):
    from episodes.bulk_rows import BulkInserter
    from projections.stream_pass import StreamPass, create_audit_staging, move_staged_audit

    app = ProjectedEpisodes(sqlite_url, clock=clock)
    try:
        seed_demo(app, episodes=12, seed=4, today=date(2026, 5, 30))
        inline = dump(app)
        lock, writes, prepared_holding = RecordingLock(), [], []
        write, prepare = BulkInserter.write, BulkInserter.prepare

        def write_in_turn(self, connection, prepared):
            writes.append(lock.held)
            write(self, connection, prepared)

        def prepare_outside(self, dialect, rows):
            prepared_holding.append(lock.held)
            return prepare(self, dialect, rows)

        monkeypatch.setattr(BulkInserter, "write", write_in_turn)
        monkeypatch.setattr(BulkInserter, "prepare", prepare_outside)
        Projector(app).drop_tables()
        Projector(app).create_tables()
        with driver.transaction(app.recorder.datastore.engine) as connection:
            create_audit_staging(connection)
        assert StreamPass(app, events_in(app), page_events=50, write_lock=lock).run() == events_in(app)
        with driver.transaction(app.recorder.datastore.engine) as connection:
            move_staged_audit(connection)
        # Check every table's rows were written holding the lock, a turn a page of streams,
        # and their values bound before it was taken (the other passes wait for it).
        assert writes and all(writes)
        assert len(prepared_holding) == len(writes) and not any(prepared_holding)
        assert lock.taken == lock.released > 1 and not lock.held
        assert dump(app) == inline
    finally:
        app.close()


def test_a_pass_whose_turn_does_not_come_goes_on_to_sqlites_own_lock(sqlite_url, clock, monkeypatch):
    from projections import stream_pass

    app = ProjectedEpisodes(sqlite_url, clock=clock)
    try:
        seed_demo(app, episodes=5, seed=4, today=date(2026, 5, 30))
        inline = dump(app)
        lock = RecordingLock(free=False)  # its holder is gone without releasing it
        monkeypatch.setattr(stream_pass, "TURN_SECONDS", 0.01)
        Projector(app).drop_tables()
        Projector(app).create_tables()
        with driver.transaction(app.recorder.datastore.engine) as connection:
            stream_pass.create_audit_staging(connection)
        assert stream_pass.StreamPass(app, events_in(app), write_lock=lock).run() == events_in(app)
        with driver.transaction(app.recorder.datastore.engine) as connection:
            stream_pass.move_staged_audit(connection)
        # Check the rows were written all the same, and no turn was released that was not taken.
        assert dump(app) == inline and lock.released == 0
    finally:
        app.close()


def test_the_rebuilding_process_and_its_workers_share_one_write_lock_on_sqlite_only(
        any_projected, clock, monkeypatch):
    from projections import rebuild_workers, stream_pass

    seed_demo(any_projected, episodes=8, seed=4, today=date(2026, 5, 30))
    own, given, asides = [], [], []
    init = stream_pass.StreamPass.__init__

    def recording(self, *args, **kwargs):
        own.append(kwargs.get("write_lock"))
        init(self, *args, **kwargs)

    context = rebuild_workers.context

    def recording_context(engine):
        ctx = context(engine)
        process = ctx.Process

        class Recorded:  # the context, whose processes' arguments are noted
            def __getattr__(self, name):
                return getattr(ctx, name)

            def Process(self, *args, **kwargs):  # noqa: N802 - the context's own name
                given.append(kwargs["args"][5])  # _worker's write_lock
                asides.append(kwargs["args"][6])  # ... and checkpoints_aside
                return process(*args, **kwargs)

        return Recorded()

    monkeypatch.setattr(stream_pass.StreamPass, "__init__", recording)
    monkeypatch.setattr(rebuild_workers, "context", recording_context)
    assert rebuild(any_projected, workers=3) == events_in(any_projected)
    sqlite = any_projected.recorder.datastore.engine.dialect.name == "sqlite"
    # Check this process's pass and both workers were given the one lock (none on PostgreSQL).
    assert len(own) == 1 and len(given) == 2
    assert all(lock is own[0] for lock in given) and (own[0] is not None) == sqlite
    # ... and told that SQLite's log is checkpointed beside them (projections.checkpoints).
    assert asides == [sqlite, sqlite]


def test_a_worker_that_dies_in_its_turn_fails_the_rebuild_while_the_others_wait(
        sqlite_url, clock, monkeypatch, tmp_path):
    import signal
    import time
    import traceback

    from episodes.bulk_rows import BulkInserter
    from projections import stream_pass

    app = ProjectedEpisodes(sqlite_url, clock=clock)
    died = tmp_path / "worker-died"
    try:
        seed_demo(app, episodes=60, seed=4, today=date(2026, 5, 30))
        write, write_page = BulkInserter.write, stream_pass.StreamPass._write

        def dying_write(self, connection, prepared):
            if multiprocessing.current_process().name == "care-episodes-rebuild-1":
                died.touch()
                os.kill(os.getpid(), signal.SIGKILL)  # holding the passes' lock: never released
            write(self, connection, prepared)

        def write_page_after_the_death(self, done):
            # This process's pages wait for the worker's death, so that this process then
            # waits for its turn (else, on a fast machine, it could be done with its ranges
            # before the worker's first write, and find the death only when joining it).
            deadline = time.monotonic() + 60
            while multiprocessing.current_process().name == "MainProcess" and not died.exists() \
                    and time.monotonic() < deadline:
                time.sleep(0.01)
            write_page(self, done)

        monkeypatch.setenv(START_METHOD_VARIABLE, "fork")  # the workers share this process's patches
        monkeypatch.setattr(BulkInserter, "write", dying_write)
        monkeypatch.setattr(stream_pass.StreamPass, "_write", write_page_after_the_death)
        monkeypatch.setattr(stream_pass, "TURN_SECONDS", 60.0)
        with pytest.raises(RebuildWorkerFailed, match="exit code -9") as failed:
            Rebuild(app, workers=2, page_events=50).run()
        # Check the failure was found while this process waited for its turn (it checks its
        # workers between tries), not after giving up on the lock.
        frames = [frame.name for frame in traceback.extract_tb(failed.value.__traceback__)]
        assert "_turn" in frames
        assert interrupted(app) and no_workers_left()
    finally:
        app.close()
