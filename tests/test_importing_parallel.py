"""The bulk import with worker processes (``episodes.import_parallel``): byte for byte the
record one process writes, the same rejections at the same place, the same summary, a bounded
read-ahead of the input, and no worker process left behind, on SQLite and PostgreSQL.

Worker processes start only for a large input (``importing.MIN_PARALLEL_COMMANDS``); these
tests lower that threshold and the chunk size so that small inputs take the parallel path
through several batches and several chunks a batch."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from benchmarks import workload
from episodes import Episodes, import_parallel, importing, integrity
from episodes.cli import main
from episodes.encryption import cipher_environment
from episodes.errors import EncryptionKeyError
from episodes.importing import (
    EpisodeHistory,
    ImportRejected,
    episode_id_for,
    import_episodes,
    read_json_lines,
)
from episodes.verification import verify
from episodes.workers import START_METHOD_VARIABLE
from tests.test_importing import (
    ADMIT,
    INTAKE,
    KEY,
    MIGRATION,
    _empty_postgres,
    as_json_line,
    episode_rows,
    event_count,
    history,
    session,
)

HISTORIES = workload.histories(24)  # every status, holds, corrections; ~500 events
BATCH = 120  # events a batch: four or more batches


@pytest.fixture(autouse=True)
def small_inputs_go_parallel(monkeypatch):
    monkeypatch.setattr(importing, "MIN_PARALLEL_COMMANDS", {"fork": 1, "spawn": 1})
    monkeypatch.setattr(import_parallel, "CHUNK_COMMANDS", 40)  # a few chunks a batch
    # The workers decide every chunk (the importing process would otherwise take those no
    # worker has started, which on a small input may be all of them).
    monkeypatch.setattr(import_parallel, "DECIDE_HERE_TOO", {"fork": False, "spawn": False})


@pytest.fixture(autouse=True)
def no_worker_left_behind():
    yield
    # Check every worker process of the test has exited, whatever the import's outcome.
    assert multiprocessing.active_children() == []


def fresh(url: str, name: str) -> str:
    """An empty store: another SQLite file, or the PostgreSQL test database emptied."""
    if url.startswith("sqlite"):
        return url.replace(".db", f"-{name}.db")
    _empty_postgres(url)
    return url


def heads_of_episodes(app: Episodes) -> list[tuple]:
    episodes = {row[0] for row in episode_rows(app)}
    with app.recorder.datastore.engine.connect() as connection:
        rows = connection.execute(select(integrity.heads).order_by(integrity.heads.c.stream_id))
        return [tuple(row) for row in rows if row[0] in episodes]


def imported_with(url: str, clock, workers: int, histories=HISTORIES, batch_events=BATCH,
                  **options):
    """Import into a new store; its episode rows, heads and summary (or the rejection)."""
    app = Episodes(url, clock=clock)
    try:
        workload.define_programs(app)
        try:
            outcome = import_episodes(app, iter(histories), actor=MIGRATION,
                                      batch_events=batch_events, workers=workers, **options)
        except ImportRejected as rejected:
            outcome = rejected
        return episode_rows(app), heads_of_episodes(app), outcome
    finally:
        app.close()


def rejection_fields(error: ImportRejected) -> tuple:
    return (str(error), error.source, error.episode_id, error.index, error.command, error.errors,
            error.rule)


# ---------------------------------------------------------------- the same record


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_store_byte_for_byte_what_one_process_stores(database_url, clock, monkeypatch,
                                                             method):
    monkeypatch.setenv(START_METHOD_VARIABLE, method)  # forked or spawned workers alike
    rows, heads, summary = imported_with(fresh(database_url, "one"), clock, workers=0)
    rows2, heads2, summary2 = imported_with(fresh(database_url, "two"), clock, workers=2)
    # Check the parallel path was taken, through several batches, every history in a worker.
    assert (summary.workers, summary2.workers) == (0, 2)
    assert summary2.batches == summary.batches >= 4
    assert (summary.decided_by_workers, summary2.decided_by_workers) == (0, len(HISTORIES))
    # Check the same rows in the same notification order (ids, versions, topics, the exact
    # payloads with their previous_hash), the same heads, the same summary.
    assert rows2 == rows and len(rows) == sum(len(h.commands) for h in HISTORIES)
    assert heads2 == heads and len(heads) == len(HISTORIES)
    assert (summary2.imported, summary2.events, summary2.episode_ids, summary2.skipped) == (
        summary.imported, summary.events, summary.episode_ids, summary.skipped)
    assert summary2.episode_ids == [h.stream_id() for h in HISTORIES]  # input order


def test_this_process_deciding_chunks_too_stores_the_same(sqlite_url, clock, monkeypatch):
    monkeypatch.setattr(import_parallel, "DECIDE_HERE_TOO", {"fork": True, "spawn": True})
    rows, heads, summary = imported_with(fresh(sqlite_url, "one"), clock, workers=0)
    rows2, heads2, summary2 = imported_with(fresh(sqlite_url, "two"), clock, workers=2)
    # Check whichever process decided each chunk, the record and the summary are the same.
    assert summary2.workers == 2 and 0 <= summary2.decided_by_workers <= len(HISTORIES)
    assert (rows2, heads2, summary2.episode_ids) == (rows, heads, summary.episode_ids)


def test_an_encrypted_store_gets_its_key_in_the_workers(sqlite_url, clock):
    app = Episodes(sqlite_url, clock=clock, env=cipher_environment(KEY))
    try:
        workload.define_programs(app)
        summary = import_episodes(app, HISTORIES, actor=MIGRATION, batch_events=BATCH, workers=2)
        assert summary.workers == 2 and summary.decided_by_workers == len(HISTORIES)
        states = [bytes(row[3]) for row in episode_rows(app)]
        # Check the workers encrypted every payload with the store's key: none in clear, and
        # every event reads back and the chains verify.
        assert len(states) == summary.events and not any(b'"envelope"' in s for s in states)
        assert sum(len(list(app.history(i))) for i in summary.episode_ids) == summary.events
        assert verify(app).intact
    finally:
        app.close()


# ---------------------------------------------------------------- rejections


def test_a_rejection_stops_at_the_same_batch_as_in_one_process(database_url, clock):
    late = history(INTAKE, ADMIT, session("2026-02-01"), referral="bad", source="line 20")
    histories = [*HISTORIES[:19], late, *HISTORIES[19:]]
    rows, _, one = imported_with(fresh(database_url, "one"), clock, 0, histories)
    rows2, _, two = imported_with(fresh(database_url, "two"), clock, 2, histories)
    # Check the same error, naming the episode, the command, the field and the rule.
    assert isinstance(one, ImportRejected) and isinstance(two, ImportRejected)
    assert rejection_fields(two) == rejection_fields(one)
    assert (two.source, two.index, two.command) == ("line 20", 4, "record_attendance")
    # Check the batches before it are written, its own and those after are not.
    assert rows2 == rows and 0 < len(rows) < sum(len(h.commands) for h in HISTORIES[:19])


def test_the_same_referral_twice_is_refused_in_its_turn(sqlite_url, clock):
    histories = [*HISTORIES[:15], EpisodeHistory(HISTORIES[2].commands, "again")]
    rows, _, one = imported_with(fresh(sqlite_url, "one"), clock, 0, histories)
    rows2, _, two = imported_with(fresh(sqlite_url, "two"), clock, 2, histories)
    assert isinstance(two, ImportRejected) and two.source == "again"
    assert rejection_fields(two) == rejection_fields(one) and rows2 == rows and rows


def test_a_malformed_line_is_raised_after_the_batches_before_it(sqlite_url, clock):
    lines = [as_json_line(history(INTAKE, referral=f"ref-{n}")) for n in range(60)]
    lines[50] = "{not json"
    rows, _, one = imported_with(fresh(sqlite_url, "one"), clock, 0, read_json_lines(lines), 20)
    rows2, _, two = imported_with(fresh(sqlite_url, "two"), clock, 2, read_json_lines(lines), 20)
    # Check it is named, and the five whole batches read before it were written first.
    assert isinstance(two, ImportRejected) and two.source == "line 51"
    assert rejection_fields(two) == rejection_fields(one)
    assert rows2 == rows and len(rows) == 50 * 2


def test_a_dry_run_with_workers_decides_all_and_writes_nothing(sqlite_url, clock):
    rows, _, summary = imported_with(sqlite_url, clock, 2, dry_run=True)
    assert summary.workers == 2 and rows == []
    assert (summary.imported, summary.batches) == (len(HISTORIES), 0)
    assert summary.events == sum(len(h.commands) for h in HISTORIES)


# ---------------------------------------------------------------- the summary and the input


def test_importing_again_with_workers_skips_every_episode_in_input_order(sqlite_url, clock):
    app = Episodes(sqlite_url, clock=clock)
    try:
        workload.define_programs(app)
        import_episodes(app, HISTORIES[:10], actor=MIGRATION, batch_events=BATCH, workers=0)
        events = event_count(app)
        summary = import_episodes(app, HISTORIES, actor=MIGRATION, batch_events=BATCH, workers=2)
        # Check the first ten skipped in order, the others imported in order after them.
        assert summary.workers == 2
        assert summary.skipped == [h.stream_id() for h in HISTORIES[:10]]
        assert summary.episode_ids == [h.stream_id() for h in HISTORIES[10:]]
        assert event_count(app) == events + summary.events
    finally:
        app.close()


def test_progress_after_each_batch_and_a_bounded_read_ahead(sqlite_url, clock):
    histories = [history(INTAKE, referral=f"ref-{n}") for n in range(200)]  # 2 events each
    taken = []

    def one_at_a_time() -> Iterator[EpisodeHistory]:
        for item in histories:
            taken.append(item)
            yield item

    seen = []

    def progress(summary) -> None:
        seen.append((summary.imported, summary.batches, len(taken)))

    app = Episodes(sqlite_url, clock=clock)
    try:
        workload.define_programs(app)
        summary = import_episodes(app, one_at_a_time(), actor=MIGRATION, batch_events=20,
                                  workers=2, progress=progress)
    finally:
        app.close()
    # Check one call per batch of 10 episodes, each after its batch, with the running figures.
    assert [(imported, batches) for imported, batches, _ in seen] == [
        (10 * n, n) for n in range(1, 21)]
    assert summary.workers == 2 and summary.episode_ids == [h.stream_id() for h in histories]
    # Check the input is read a few batches ahead of the writes, never all at once: when a
    # batch is written, at most the workers' batches and one more have been read after it.
    assert all(read - imported <= (2 + 1) * 10 for imported, _, read in seen), seen
    assert seen[0][2] < len(histories)


def test_no_worker_is_left_after_an_interrupt(sqlite_url, clock):
    def interrupt(summary) -> None:
        raise KeyboardInterrupt

    app = Episodes(sqlite_url, clock=clock)
    try:
        workload.define_programs(app)
        with pytest.raises(KeyboardInterrupt):
            import_episodes(app, HISTORIES, actor=MIGRATION, batch_events=BATCH, workers=2,
                            progress=interrupt)
        # Check the first batch was written and the workers are gone (the autouse fixture).
        assert 0 < len(episode_rows(app)) < sum(len(h.commands) for h in HISTORIES)
        assert multiprocessing.active_children() == []
    finally:
        app.close()


# ---------------------------------------------------------------- when to use workers


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_small_input_or_a_memory_store_is_decided_in_this_process(sqlite_url, clock, monkeypatch,
                                                                     method):
    monkeypatch.setenv(START_METHOD_VARIABLE, method)
    # Too few commands for workers started this way, enough for workers started the other way.
    other = "spawn" if method == "fork" else "fork"
    monkeypatch.setattr(importing, "MIN_PARALLEL_COMMANDS", {method: 10_000, other: 1})
    for url in (sqlite_url, "sqlite:///:memory:"):
        app = Episodes(url, clock=clock)
        try:
            workload.define_programs(app)
            summary = import_episodes(app, HISTORIES, actor=MIGRATION, batch_events=BATCH,
                                      workers=2)
            # Check several batches, yet no worker: too few commands to pay for their start.
            assert summary.batches >= 4 and summary.workers == 0
        finally:
            app.close()
    monkeypatch.setattr(importing, "MIN_PARALLEL_COMMANDS", {method: 1, other: 1})
    app = Episodes("sqlite:///:memory:", clock=clock)
    try:
        workload.define_programs(app)
        summary = import_episodes(app, HISTORIES, actor=MIGRATION, batch_events=BATCH, workers=2)
        assert summary.workers == 0  # no other process can open an in-memory database
    finally:
        app.close()


def test_the_import_command_takes_workers(tmp_path, clock):
    source = tmp_path / "legacy.jsonl"
    source.write_text("\n".join(as_json_line(history(INTAKE, referral=f"ref-{n}"))
                                for n in range(30)) + "\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    app = Episodes(url, clock=clock)
    workload.define_programs(app)
    app.close()
    runner = CliRunner()
    first = runner.invoke(main, ["--db", url, "import", "--batch-events", "10", "--workers", "2",
                                 str(source)])
    # Check the workers decided it, every episode imported in input order.
    assert first.exit_code == 0, first.output
    assert "30 episodes imported (60 events)" in first.output
    assert "Decided by 2 worker processes" in first.output
    app = Episodes(url, clock=clock)
    try:
        assert [row[0] for row in episode_rows(app)][::2] == [
            episode_id_for(f"ref-{n}") for n in range(30)]
    finally:
        app.close()
    again = runner.invoke(main, ["--db", url, "import", "--workers", "0", str(source)])
    assert again.exit_code == 0, again.output
    assert "30 skipped" in again.output and "worker" not in again.output
    assert runner.invoke(main, ["--db", url, "import", "--workers", "-1", str(source)]).exit_code == 2
    assert "--workers" in runner.invoke(main, ["import", "--help"]).output


# ---------------------------------------------------------------- workers that cannot start


@pytest.mark.parametrize("decide_here_too", [False, True])
def test_workers_that_cannot_start_fail_the_import_with_their_error_and_write_nothing(
        sqlite_url, clock, monkeypatch, decide_here_too):
    # The workers open the store with another key than the store's: their start-up fails.  The
    # import must fail with that error (not a bare "a child process terminated abruptly"), write
    # nothing, and leave no worker (with chunks taken back by this process, Python 3.11's
    # executor used to leave the import hanging in its shutdown).
    monkeypatch.setattr(import_parallel, "DECIDE_HERE_TOO",
                        {"fork": decide_here_too, "spawn": decide_here_too})
    if decide_here_too:  # slow this process down, so the workers are up before it is done
        decide_here = import_parallel.decide_all
        monkeypatch.setattr(import_parallel, "decide_all",
                            lambda decider, work: (time.sleep(1.0), decide_here(decider, work))[1])
    app = Episodes(sqlite_url, clock=clock, env=cipher_environment(KEY))
    try:
        workload.define_programs(app)
        before = len(episode_rows(app))
        app.settings.update(cipher_environment("A" * 43 + "="))  # what the workers will get
        with pytest.raises(EncryptionKeyError, match="CARE_EPISODES_CIPHER_KEY"):
            import_episodes(app, HISTORIES, actor=MIGRATION, batch_events=BATCH, workers=2)
        assert len(episode_rows(app)) == before
    finally:
        app.close()


class _EndsTheProcess:
    """Unpickled by the worker that takes its chunk: the process ends without a word, as when
    killed."""

    def __reduce__(self):
        return os._exit, (9,)


def test_a_worker_that_dies_fails_the_import_with_a_plain_message(sqlite_url, clock, monkeypatch):
    chunks = import_parallel._chunks
    monkeypatch.setattr(import_parallel, "_chunks",
                        lambda work: ([_EndsTheProcess(), *chunk] for chunk in chunks(work)))
    with pytest.raises(import_parallel.ImportWorkerDied, match="import the same input again"):
        imported_with(sqlite_url, clock, workers=2)
    app = Episodes(sqlite_url, clock=clock)
    try:
        assert episode_rows(app) == []  # the first batch's chunk killed its worker: nothing written
    finally:
        app.close()
