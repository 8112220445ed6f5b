"""The command path's statements sent through the driver (episodes/driver.py).

They bypass SQLAlchemy's execution, so these tests hold them to what SQLAlchemy would have
done: the same values stored, the same exceptions raised, and (PostgreSQL) no connection
handed back to the pool still in pipeline mode, whether the transaction committed or failed.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime, timezone
from uuid import uuid4

import pytest
import sqlalchemy.exc
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    create_engine,
    insert,
    select,
)

from episodes import driver

metadata = MetaData()
things = Table(
    "driver_things", metadata,
    Column("id", Uuid, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("label", String(20)),
    Column("count", Integer, nullable=False, default=0),
)


@pytest.fixture
def engine(database_url):
    engine = create_engine(database_url)
    driver.enable(engine)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    yield engine
    driver.release(engine)
    metadata.drop_all(engine)
    engine.dispose()


def test_values_are_stored_as_sqlalchemy_stores_them(engine):
    prepared = driver.Prepared(insert(things), engine.dialect, ["id", "at", "label", "count"])
    row = {"id": uuid4(), "at": datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc), "label": "é", "count": 3}
    with engine.connect() as connection:
        connection.begin()
        driver.execute(connection, prepared, row)
        driver.execute_many(connection, prepared, [{**row, "id": uuid4(), "count": n} for n in (4, 5)])
        connection.commit()
    with engine.connect() as connection:
        stored = connection.execute(select(things).where(things.c.id == row["id"])).one()
        counts = sorted(connection.execute(select(things.c.count)).scalars())
    assert stored.id == row["id"] and stored.label == "é" and stored.count == 3
    assert stored.at.replace(tzinfo=timezone.utc) == row["at"]  # SQLite keeps no zone
    assert counts == [3, 4, 5]


def test_a_duplicate_raises_sqlalchemys_integrity_error_and_writes_nothing(engine):
    prepared = driver.Prepared(insert(things), engine.dialect, ["id", "at"])
    row = {"id": uuid4(), "at": datetime(2026, 3, 2, tzinfo=timezone.utc)}
    with pytest.raises(sqlalchemy.exc.IntegrityError), engine.connect() as connection:
        connection.begin()
        driver.execute(connection, prepared, row)
        driver.execute(connection, prepared, row)
        driver.leave_pipeline(connection)  # PostgreSQL: the error arrives with the results
        connection.commit()
    with engine.connect() as connection:
        assert connection.execute(select(things)).all() == []
        assert not any(key.startswith("care_episodes.") for key in connection.connection.info)


def test_sqlalchemy_statements_between_queued_ones_see_them(engine):
    prepared = driver.Prepared(insert(things), engine.dialect, ["id", "at"])
    with engine.connect() as connection:
        connection.begin()
        driver.execute(connection, prepared, {"id": uuid4(), "at": datetime.now(timezone.utc)})
        # A SQLAlchemy read sends what is queued first, and reads its result normally.
        assert len(connection.execute(select(things)).all()) == 1
        driver.execute(connection, prepared, {"id": uuid4(), "at": datetime.now(timezone.utc)})
        connection.rollback()  # the queued insert is dropped with the transaction
    with engine.connect() as connection:
        assert connection.execute(select(things)).all() == []


def test_a_transaction_commits_its_queued_writes_or_none_of_them(engine):
    prepared = driver.Prepared(insert(things), engine.dialect, ["id", "at"])
    kept, dropped = uuid4(), uuid4()
    with driver.transaction(engine) as connection:
        driver.execute(connection, prepared, {"id": kept, "at": datetime.now(timezone.utc)})
    with pytest.raises(RuntimeError), driver.transaction(engine) as connection:
        driver.execute(connection, prepared, {"id": dropped, "at": datetime.now(timezone.utc)})
        raise RuntimeError("the command failed after its write was queued")
    with engine.connect() as connection:
        assert list(connection.execute(select(things.c.id)).scalars()) == [kept]
        assert not any(key.startswith("care_episodes.") for key in connection.connection.info)


@pytest.mark.parametrize("fails", [False, True], ids=["commits", "fails"])
def test_sqlalchemys_statements_in_a_transaction_commit_or_roll_back_with_it(engine, fails):
    """On SQLite the transaction is the driver's own (no SQLAlchemy record of it until a
    statement of SQLAlchemy's runs in it): whichever ran, everything is committed together,
    or nothing."""
    prepared = driver.Prepared(insert(things), engine.dialect, ["id", "at"])
    now = datetime.now(timezone.utc)
    with pytest.raises(RuntimeError) if fails else nullcontext():
        with driver.transaction(engine) as connection:
            driver.execute(connection, prepared, {"id": uuid4(), "at": now})
            connection.execute(insert(things), {"id": uuid4(), "at": now})  # through SQLAlchemy
            driver.execute(connection, prepared, {"id": uuid4(), "at": now})
            if fails:
                raise RuntimeError("the command failed after its writes")
    with driver.transaction(engine) as connection:  # the next runs as usual either way
        assert not connection.in_transaction() or engine.dialect.name != "sqlite"
        stored = connection.execute(select(things.c.id)).all()
    assert len(stored) == (0 if fails else 3)
    with engine.connect() as other:
        assert len(other.execute(select(things.c.id)).all()) == len(stored)


def driver_connection_of(engine):
    with driver.transaction(engine) as connection:
        return connection.connection.driver_connection


def test_write_transactions_run_on_one_connection_kept_between_them(engine):
    first = driver_connection_of(engine)
    assert driver_connection_of(engine) is first
    assert engine.pool.checkedout() == 1  # the kept one, out of the pool between transactions
    driver.release(engine)
    assert engine.pool.checkedout() == 0


def test_disposing_of_the_engine_closes_the_kept_connection(engine):
    kept = driver_connection_of(engine)
    engine.dispose()
    assert driver._Kept.ATTRIBUTE not in engine.__dict__
    assert driver_connection_of(engine) is not kept  # a new pool's connection


def test_a_failed_transaction_closes_its_connection_instead_of_keeping_it(engine):
    prepared = driver.Prepared(insert(things), engine.dialect, ["id", "at"])
    driver_connection_of(engine)
    row = {"id": uuid4(), "at": datetime.now(timezone.utc)}
    with pytest.raises(sqlalchemy.exc.IntegrityError), driver.transaction(engine) as connection:
        driver.execute(connection, prepared, row)
        driver.execute(connection, prepared, row)  # the same key twice
    assert engine.pool.checkedout() == 0  # back in the pool, rolled back
    with engine.connect() as connection:
        assert connection.execute(select(things.c.id)).all() == []


def test_no_connection_is_kept_for_an_in_memory_database():
    engine = create_engine("sqlite://")  # one connection everything shares (a static pool)
    try:
        driver_connection_of(engine)
        assert driver._Kept.ATTRIBUTE not in engine.__dict__
    finally:
        engine.dispose()


def test_a_forked_process_never_uses_its_parents_kept_connection(sqlite_url):
    import multiprocessing

    engine = create_engine(sqlite_url)
    try:
        parents = driver_connection_of(engine)
        context = multiprocessing.get_context("fork")
        queue = context.SimpleQueue()
        child = context.Process(target=_report_kept, args=(engine, parents, queue))
        child.start()
        child.join(60)
        assert queue.get() == (False, False)  # nothing kept there; a connection of its own
        assert driver_connection_of(engine) is parents  # the parent's is still its own
    finally:
        driver.release(engine)
        engine.dispose()


def _report_kept(engine, parents, queue):
    """(In the child) whether a connection is kept for the engine, and whether a transaction
    there runs on the parent's."""
    queue.put((driver._Kept.ATTRIBUTE in engine.__dict__, driver_connection_of(engine) is parents))


def test_a_session_the_server_ended_raises_its_own_error(postgres_url):
    # A session the server ends (a restart, an idle timeout) is a disconnect: the caller sees
    # that error, not one from the pipeline's clean-up on the way out, which asked the dead
    # connection for its pipeline and so tried to reconnect inside the failed transaction.
    engine = create_engine(postgres_url)
    driver.enable(engine)
    try:
        with pytest.raises(sqlalchemy.exc.OperationalError) as raised:
            with engine.connect() as connection:
                pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
                with engine.connect() as other:
                    other.exec_driver_sql("SELECT pg_terminate_backend(%(pid)s)", {"pid": pid})
                connection.exec_driver_sql("SELECT 1")
        assert raised.value.connection_invalidated
        with engine.connect() as connection:  # the pool gives a live session again
            assert connection.exec_driver_sql("SELECT 1").scalar_one() == 1
    finally:
        engine.dispose()
