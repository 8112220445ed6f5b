"""A SQLite rebuild's write-ahead log is checkpointed beside its passes, not in their turns.

SQLite checkpoints in the connection whose commit takes the log past 1,000 pages, before that
commit returns, and a pass keeps its turn at the write lock until then: the other passes waited
for every copy and its syncs.  While the passes run, a thread of the rebuilding process
checkpoints instead (``projections.checkpoints``), and the passes' commits checkpoint by
themselves only past a backstop (``driver.transaction``'s ``autocheckpoint``).
"""

from __future__ import annotations

import threading
import time
from datetime import date

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy import event as sqlalchemy_event

from episodes import driver
from episodes.demo import seed_demo
from projections import ProjectedEpisodes, checkpoints
from projections.dump import canonical_dump
from projections.rebuild import Rebuild


def _statements(engine) -> list[tuple[str, str]]:
    """(thread name, statement) of every statement SQLite runs on a connection ``engine``
    opens from now on (its trace callback: what the driver sends too, not only SQLAlchemy)."""
    sent: list[tuple[str, str]] = []

    def trace(dbapi_connection, _record):
        dbapi_connection.set_trace_callback(
            lambda statement: sent.append((threading.current_thread().name, statement)))

    sqlalchemy_event.listen(engine, "connect", trace)
    driver.release(engine)
    engine.pool.dispose()  # the connections open now are opened again, traced
    return sent


def _autocheckpoint(connection) -> int:
    return connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_sqlite_rebuilds_log_is_checkpointed_by_a_thread_while_its_passes_write(
        sqlite_url, clock, monkeypatch, workers):
    monkeypatch.setattr(checkpoints, "CHECKPOINT_SECONDS", 0.001)
    app = ProjectedEpisodes(sqlite_url, clock=clock)
    try:
        seed_demo(app, episodes=12, seed=4, today=date(2026, 5, 30))
        engine = app.recorder.datastore.engine
        inline = canonical_dump(engine)
        sent = _statements(engine)
        job = Rebuild(app, workers=workers, page_events=20)
        job.run()
        assert job.processes_used == workers
        assert canonical_dump(engine) == inline
    finally:
        app.close()
    thread = "care-episodes-checkpoints"
    # Check the thread checkpointed (passively: waiting for no reader or writer), and this
    # process's passes raised their own checkpoints' threshold to the backstop, for their
    # transaction only (each put back after its commit).
    assert (thread, "PRAGMA wal_checkpoint(PASSIVE)") in sent
    raised = [statement for name, statement in sent
              if statement == f"PRAGMA wal_autocheckpoint={checkpoints.BACKSTOP_PAGES}"]
    put_back = [statement for _name, statement in sent if statement == "PRAGMA wal_autocheckpoint=1000"]
    assert raised and len(raised) == len(put_back)
    # Check it stopped with the pass: nothing from it once the secondary indexes are built.
    first_index = next(i for i, (_name, statement) in enumerate(sent) if statement.startswith("CREATE INDEX"))
    assert all(name != thread for name, _statement in sent[first_index:])


def test_a_transactions_own_checkpoint_threshold_is_put_back_after_its_commit_and_after_a_failure(sqlite_url):
    engine = create_engine(sqlite_url)
    try:
        with driver.transaction(engine, autocheckpoint=5_000) as connection:
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            assert _autocheckpoint(connection) == 5_000
            kept = connection.connection.driver_connection
        with pytest.raises(ZeroDivisionError):
            with driver.transaction(engine, autocheckpoint=7) as connection:
                assert _autocheckpoint(connection) == 7
                connection.exec_driver_sql("INSERT INTO t VALUES (1)")
                1 / 0  # noqa: B018 - a failure inside the transaction
        driver.release(engine)
        # Check every pooled connection has SQLite's own threshold again, the one that committed
        # first among them, and the failed transaction's row was rolled back.
        with engine.connect() as connection:
            assert _autocheckpoint(connection) == 1_000
            assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
        assert kept.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1_000
    finally:
        engine.dispose()


def test_the_checkpoints_thread_failure_is_raised_when_its_block_ends(sqlite_url, monkeypatch):
    engine = create_engine(sqlite_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (x INTEGER)"))

        def refuse(*_args, **_kwargs):
            raise RuntimeError("no connection for the checkpoints")

        monkeypatch.setattr(engine, "connect", refuse)
        with pytest.raises(RuntimeError, match="no connection for the checkpoints"):
            with checkpoints.checkpoints_aside(engine):
                time.sleep(0.01)
    finally:
        engine.dispose()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "postgresql+psycopg://localhost/x"])
def test_no_thread_checkpoints_a_database_that_is_not_a_sqlite_file(url):
    engine = create_engine(url)
    assert not checkpoints.aside(engine)
    before = threading.active_count()
    with checkpoints.checkpoints_aside(engine) as aside:
        assert aside is False and threading.active_count() == before
