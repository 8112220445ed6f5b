"""How the bulk jobs' worker processes are counted and open the store (episodes.workers)."""

from __future__ import annotations

import gc
import multiprocessing
import pickle
import sys
import threading
from base64 import b64encode
from datetime import UTC, datetime
from pathlib import Path

import pytest

from episodes import Episodes, FixedClock
from episodes.encryption import cipher_environment
from episodes.workers import (
    MAX_AUTOMATIC_WORKERS,
    START_METHOD_VARIABLE,
    StoreSpec,
    available_cores,
    context,
    forget_parent,
    is_in_memory,
    sqlite_file_open_here,
    start_method,
    worker_count,
)

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def test_a_spec_opens_the_same_store_with_the_same_settings_after_pickling(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    key = b64encode(bytes(range(32))).decode()
    app = Episodes(url, clock=FixedClock(NOW), env=cipher_environment(key))
    try:
        spec = pickle.loads(pickle.dumps(StoreSpec.of(app)))
        assert spec.url == app.database_url
        assert spec.settings == app.settings and spec.settings  # the explicit cipher settings
        opened = spec.open()
        try:
            assert opened.clock.now() == NOW
            assert opened.database_url == app.database_url
        finally:
            opened.close()
    finally:
        app.close()


@pytest.mark.parametrize("url, expected", [
    ("sqlite:///:memory:", True), ("sqlite://", True), ("sqlite:////tmp/x.db", False),
    ("postgresql+psycopg://localhost/x", False),
])
def test_in_memory_stores_are_recognised(url, expected):
    assert is_in_memory(url) is expected


def test_worker_count():
    shared, private = StoreSpec("sqlite:////tmp/x.db"), StoreSpec("sqlite:///:memory:")
    assert worker_count(None, private) == 0  # no other process can open it
    assert worker_count(4, private) == 0
    assert worker_count(0, shared) == 0 and worker_count(1, shared) == 0  # one process: this one
    assert worker_count(3, shared) == 3
    automatic = min(available_cores(), MAX_AUTOMATIC_WORKERS)
    assert worker_count(None, shared) == (automatic if automatic > 1 else 0)
    with pytest.raises(ValueError, match="workers"):
        worker_count(-1, shared)


# ---------------------------------------------------------------- how workers start


@pytest.mark.skipif(sys.platform != "linux", reason="workers are forked on Linux only")
def test_workers_are_forked_only_while_no_other_thread_runs(monkeypatch):
    monkeypatch.delenv(START_METHOD_VARIABLE, raising=False)
    if threading.active_count() == 1:
        assert start_method() == "fork"
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert start_method() == "spawn"  # forking could copy a lock the other thread holds
    finally:
        release.set()
        other.join()


def test_the_start_method_can_be_chosen_and_a_wrong_choice_is_named(monkeypatch):
    for chosen in ("spawn", "fork", " Spawn "):
        monkeypatch.setenv(START_METHOD_VARIABLE, chosen)
        assert start_method() == chosen.strip().lower()
    monkeypatch.setenv(START_METHOD_VARIABLE, "forkserver")
    with pytest.raises(ValueError, match=f"{START_METHOD_VARIABLE} must be fork or spawn"):
        start_method()


class _Finalized:
    """Writes its name to a file when finalized; kept in a reference cycle, so only the
    garbage collector can finalize it (as a connection in a cycle of SQLAlchemy objects)."""

    def __init__(self, path: Path):
        self.path = path
        self.cycle = self

    def __del__(self):
        with open(self.path, "a") as out:
            out.write(f"{multiprocessing.current_process().name}\n")


def _collect(forget: bool) -> None:
    if forget:
        forget_parent()
    gc.collect()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
@pytest.mark.parametrize("forget", [True, False])
def test_a_forked_worker_never_finalizes_what_it_inherited(tmp_path, forget):
    log = tmp_path / "finalized"
    gc.disable()  # the inherited garbage must still be there when the worker starts
    try:
        _Finalized(log)  # garbage now, collected by whoever collects first
        worker = multiprocessing.get_context("fork").Process(target=_collect, args=(forget,),
                                                             name="the-worker")
        worker.start()
        worker.join()
        assert worker.exitcode == 0
        # Check the worker finalized nothing of the parent's when it forgot its parent first
        # (and, as a control, that it would have: the test can fail).
        assert (log.read_text() if log.exists() else "") == ("" if forget else "the-worker\n")
    finally:
        gc.enable()
    gc.collect()  # this process finalizes its own garbage as usual
    assert log.read_text().splitlines()[-1] == "MainProcess"


@pytest.mark.skipif(sys.platform != "linux", reason="workers are forked on Linux only")
def test_a_sqlite_file_open_elsewhere_in_this_process_is_never_forked_with(tmp_path, monkeypatch):
    # SQLite keeps its locks' bookkeeping per process: a forked worker's own connection would
    # trust the locks another connection of the parent holds.  So before forking, the store's
    # idle connections are closed, and any other connection to the file means spawn.
    monkeypatch.setenv(START_METHOD_VARIABLE, "fork")
    path = tmp_path / "store.db"
    url = f"sqlite:///{path}"
    app = Episodes(url, clock=FixedClock(NOW))
    other = Episodes(url, clock=FixedClock(NOW))  # another part of the same program
    try:
        assert app.recorder.max_notification_id() is None  # a connection of each, idle now,
        assert other.recorder.max_notification_id() is None  # holding the file open
        assert sqlite_file_open_here(str(path))
        assert context(app.recorder.datastore.engine).get_start_method() == "spawn"
        other.close()
        # Check only the application's own idle connections were left, and were closed.
        assert context(app.recorder.datastore.engine).get_start_method() == "fork"
        assert not sqlite_file_open_here(str(path))
        assert app.recorder.max_notification_id() is None  # and it opens one again at need
    finally:
        other.close()
        app.close()


def test_preparing_a_fork_leaves_an_in_memory_database_alone(monkeypatch):
    # An in-memory database lives in its one connection: closing the idle connections before
    # a fork would lose it (no worker can open it anyway).
    monkeypatch.setenv(START_METHOD_VARIABLE, "fork")
    app = Episodes("sqlite:///:memory:", clock=FixedClock(NOW))
    try:
        assert app.recorder.max_notification_id() is None  # its tables are there
        assert start_method(app.recorder.datastore.engine) == "fork"
        assert app.recorder.max_notification_id() is None  # and still are
    finally:
        app.close()
