"""One rebuild of a database at a time (``projections.rebuild_lock``): a second rebuild while
one runs fails at once and changes nothing; the first completes; the lock goes with the
process that held it, however that process ends.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from episodes.workers import context
from projections import ProjectedEpisodes, Projector
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
            before = dump(app)  # the first rebuild's rows so far
            with pytest.raises(RebuildAlreadyRunning) as refused:
                rebuild(app, page_events=3)
            refusals.append(str(refused.value))
            seen_between_pages.append((before, dump(app)))

        applied = rebuild(app, page_events=3, progress=second_rebuild_between_pages)
        # Check the second was refused part-way through the first, having touched nothing,
        # and the first completed exactly.
        assert len(refusals) == 1 and "another rebuild of the read models is running" in refusals[0]
        (before, after), = seen_between_pages
        assert before == after and 0 < len(before["rm_audit"]) < events_in(app)
        assert applied == events_in(app) and dump(app) == expected
        assert not interrupted(app) and Projector(app).lag() == 0
        # Once the first has finished, the lock is free again.
        assert rebuild(app) == events_in(app) and dump(app) == expected
    finally:
        app.close()


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


def test_the_rebuild_command_says_another_one_is_running(tmp_path):
    from admin.cli import main as full_cli

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    assert runner.invoke(full_cli, ["--db", url, "demo", "--episodes", "2", "--seed", "2"]).exit_code == 0
    app = ProjectedEpisodes(url)
    outputs = []

    def run_the_command_meanwhile(applied: int) -> None:
        if not outputs:  # a rebuild is running: its marker is there and it holds the lock
            assert interrupted(app)
            refused = runner.invoke(full_cli, ["--db", url, "rebuild"])
            outputs.append((refused.exit_code, refused.output))

    try:
        rebuild(app, page_events=5, progress=run_the_command_meanwhile)
    finally:
        app.close()
    (exit_code, output), = outputs
    assert exit_code == 1
    assert "Error: another rebuild of the read models is running" in output
    assert "had not finished" not in output  # the marker was the running rebuild's
    after = ProjectedEpisodes(url)
    try:
        assert not interrupted(after) and Projector(after).lag() == 0
    finally:
        after.close()
