"""The limits: what the database and its driver reach by themselves (``sqlite3``, psycopg),
with no ORM, no event store and no domain code, on the same machine in the same run.

Writes go to a table shaped like the event store's (``bench_raw_events``: id, stream id,
version, topic, payload; unique on stream and version), with payloads copied from the events
the library recorded, and explicit ``BEGIN`` / ``COMMIT``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any
from uuid import uuid4

from benchmarks.backends import Raw, raw_connect

EVENTS_TABLE = "care_episodes_events"
RAW_TABLE = "bench_raw_events"
ROWS_PER_STATEMENT = 500  # a multi-row INSERT ... VALUES (...), (...), ...
ROWS_PER_TRANSACTION = 10_000

Payload = tuple[str, bytes]  # (topic, stored state)


def create_raw_table(raw: Raw) -> None:
    raw.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
    if raw.kind == "sqlite":
        raw.execute(f"CREATE TABLE {RAW_TABLE} (id INTEGER PRIMARY KEY, originator_id BLOB NOT NULL,"
                    " originator_version INTEGER NOT NULL, topic TEXT NOT NULL, state BLOB NOT NULL)")
    else:
        raw.execute(f"CREATE TABLE {RAW_TABLE} (id BIGSERIAL PRIMARY KEY, originator_id UUID NOT NULL,"
                    " originator_version INTEGER NOT NULL, topic TEXT NOT NULL, state BYTEA NOT NULL)")
    raw.execute(f"CREATE UNIQUE INDEX {RAW_TABLE}_stream ON {RAW_TABLE} (originator_id, originator_version)")


def drop_raw_table(raw: Raw) -> None:
    raw.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")


def sample_payloads(url: str, limit: int = 500) -> list[Payload]:
    """Real stored events (topic and payload) from the event store at ``url``."""
    raw = raw_connect(url)
    try:
        rows = raw.execute(f"SELECT topic, state FROM {EVENTS_TABLE} ORDER BY id DESC LIMIT ?",
                           (limit,)).fetchall()
    finally:
        raw.close()
    if not rows:
        raise RuntimeError("no events to copy payloads from")
    return [(topic, bytes(state)) for topic, state in rows]


def _insert(raw: Raw, rows: int = 1) -> str:
    values = ", ".join(["(?, ?, ?, ?)"] * rows)
    return raw.sql(f"INSERT INTO {RAW_TABLE} (originator_id, originator_version, topic, state) "
                   f"VALUES {values}")


def single_row_transactions(raw: Raw, payloads: Sequence[Payload], seconds: float) -> float:
    """Transactions per second, each ``BEGIN``; one ``INSERT``; ``COMMIT``, for ``seconds``."""
    limit = SingleRowTransactions(raw, payloads)
    limit.run(seconds)
    return limit.rate


class SingleRowTransactions:
    """The single-row transactions' limit measured a slice at a time, so that it can run
    between the library's commands (``benchmarks.commands``): the transactions and their
    seconds add up over every slice."""

    def __init__(self, raw: Raw, payloads: Sequence[Payload]):
        self.raw = raw
        self.payloads = payloads
        self.statement = _insert(raw)
        self.done = 0
        self.seconds = 0.0

    def run(self, seconds: float) -> None:
        """Transactions for about ``seconds`` (the clock is read at every tenth, as
        :func:`single_row_transactions` always did; the seconds counted are the slice's own)."""
        raw, payloads, connection, statement = self.raw, self.payloads, self.raw.connection, self.statement
        clock = time.perf_counter
        start = clock()
        deadline = start + seconds
        done = self.done
        while True:
            topic, state = payloads[done % len(payloads)]
            connection.execute("BEGIN")
            connection.execute(statement, (raw.stream_id(uuid4()), 1, topic, state))
            connection.execute("COMMIT")
            done += 1
            if done % 10 == 0 and clock() >= deadline:  # (the clock read once in 10, as before)
                break
        self.done = done
        self.seconds += clock() - start

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


def settle(raw: Raw, payloads: Sequence[Payload], rows: int) -> None:
    """Before a limit is measured again after a large figure: on PostgreSQL, ``rows`` rows
    written and their time discarded.  Right after a 100,000-episode import the server wrote
    these rows at a tenth of its rate before the import (8,500 a second against 88,000), a
    `CHECKPOINT` first did not help, and a second slice was back at 51,000, a third at 80,000:
    the limit is what the database reaches, not that trough.  Nothing on SQLite, whose limit
    writes to a file of its own (115,000 and 130,000 rows a second before and after the same
    import)."""
    if raw.kind == "postgres":
        multi_row_seconds(raw, payloads, rows)


def multi_row_inserts(raw: Raw, payloads: Sequence[Payload], rows: int) -> float:
    """Rows per second, in transactions of ``ROWS_PER_TRANSACTION`` rows written by multi-row
    INSERTs of ``ROWS_PER_STATEMENT`` rows."""
    return rows / multi_row_seconds(raw, payloads, rows)


def multi_row_seconds(raw: Raw, payloads: Sequence[Payload], rows: int) -> float:
    """The seconds :func:`multi_row_inserts` takes to write ``rows`` rows."""
    connection = raw.connection
    full = _insert(raw, ROWS_PER_STATEMENT)
    written = 0
    start = time.perf_counter()
    while written < rows:
        connection.execute("BEGIN")
        in_transaction = 0
        while in_transaction < ROWS_PER_TRANSACTION and written < rows:
            count = min(ROWS_PER_STATEMENT, rows - written)
            params: list[Any] = []
            for n in range(written, written + count):
                topic, state = payloads[n % len(payloads)]
                params += (raw.stream_id(uuid4()), 1, topic, state)
            connection.execute(full if count == ROWS_PER_STATEMENT else _insert(raw, count), params)
            written += count
            in_transaction += count
        connection.execute("COMMIT")
    return time.perf_counter() - start


def scan_and_decode(url: str, min_seconds: float = 0.5) -> tuple[float, int]:
    """Events per second reading every payload of the event store and decoding its JSON
    (repeated until ``min_seconds`` have passed, so a small table still gives a steady rate);
    and how many events one scan read."""
    decoded, seconds, per_scan = scans_and_decodes(url, min_seconds)
    return decoded / seconds, per_scan


def scans_and_decodes(url: str, min_seconds: float = 0.5) -> tuple[int, float, int]:
    """:func:`scan_and_decode`'s counts: events decoded in all, the seconds it took, and how
    many events one scan read."""
    raw = raw_connect(url)
    statement = raw.sql(f"SELECT state FROM {EVENTS_TABLE} ORDER BY id")
    decoded = scans = per_scan = 0
    start = time.perf_counter()
    try:
        while scans == 0 or time.perf_counter() - start < min_seconds:
            per_scan = 0
            for (state,) in raw.connection.execute(statement):
                json.loads(state)
                per_scan += 1
            decoded += per_scan
            scans += 1
    finally:
        raw.close()
    return decoded, time.perf_counter() - start, per_scan


def query_latencies(raw: Raw, statement: str, params: Sequence[Any], repeats: int,
                    warmup: int = 2) -> tuple[list[float], int]:
    """Milliseconds per run of one query (all its rows fetched); and the rows it returned."""
    sql = raw.sql(statement)
    samples, rows = [], 0
    for n in range(warmup + repeats):
        start = time.perf_counter()
        rows = len(raw.connection.execute(sql, params).fetchall())
        elapsed = (time.perf_counter() - start) * 1000
        if n >= warmup:
            samples.append(elapsed)
    return samples, rows


def concurrent_worker(url: str, payloads: list[Payload], seconds: float, barrier: Any,
                      results: Any) -> None:
    """One of several processes doing single-row transactions at once (a process entry point)."""
    raw = raw_connect(url)
    try:
        barrier.wait()
        statement = _insert(raw)
        done = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            topic, state = payloads[done % len(payloads)]
            raw.connection.execute("BEGIN")
            raw.connection.execute(statement, (raw.stream_id(uuid4()), 1, topic, state))
            raw.connection.execute("COMMIT")
            done += 1
            if done % 10 == 0 and time.perf_counter() >= deadline:
                break
        results.put((done, time.perf_counter() - start))
    finally:
        raw.close()


def concurrent_single_row_transactions(url: str, payloads: list[Payload], processes: int,
                                       seconds: float) -> float:
    """Transactions per second of ``processes`` writers together, started at once."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [context.Process(target=concurrent_worker,
                               args=(url, payloads, seconds, barrier, results))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=seconds + 120) for _ in workers]
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise RuntimeError(f"a raw writer process failed (exit code {worker.exitcode})")
    return sum(done for done, _ in outcomes) / max(elapsed for _, elapsed in outcomes)


def decode_command_ids(raw: Raw, stream_ids: Sequence[Any]) -> list[tuple[Any, int, str]]:
    """(stream id, version, command id) of every event of the given streams, from the payloads."""
    placeholders = ", ".join(["?"] * len(stream_ids))
    rows = raw.execute(
        f"SELECT originator_id, originator_version, state FROM {EVENTS_TABLE} "
        f"WHERE originator_id IN ({placeholders}) ORDER BY id",
        [raw.stream_id(s) for s in stream_ids],
    ).fetchall()
    return [(stream, version, json.loads(state)["envelope"]["_data_"]["command_id"])
            for stream, version, state in rows]
