"""The database's own cost of the statements a command sends (SQLite): input for the
optimisation work, not a figure.

    python -m benchmarks.statement_floor [--episodes N] [--command-episodes K]

Records N demo episodes inline (``ProjectedEpisodes``), copies the database file, then records
K more while capturing every statement the commands send (through SQLAlchemy and through
``episodes.driver``) with its parameters as the driver received them, and every commit.  The
capture is then replayed on the copy through the ``sqlite3`` module alone, three times: the
time SQLite itself needs for exactly our statements, without any Python of ours.  Printed
beside it: the library's own time a command and the raw single-row limit of the ``commands``
figure, so "the best ratio this schema allows" (limit over floor) can be read off.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import struct
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event

from benchmarks import raw, workload
from benchmarks.backends import SQLiteBackend, raw_connect
from episodes import driver
from projections import ProjectedEpisodes

Capture = list[tuple[str, Any, bool] | None]  # (sql, parameters, many), or None for a COMMIT


def capture(app: ProjectedEpisodes, episodes: int) -> tuple[Capture, float, int]:
    """The statements of ``episodes`` demo episodes' commands, the library's µs a command,
    and how many commands."""
    log: Capture = []
    engine = app.recorder.datastore.engine  # type: ignore[attr-defined]
    execute, execute_many = driver.execute, driver.execute_many

    def captured_execute(connection: Any, prepared: Any, values: Any = None) -> Any:
        log.append((prepared.sql, prepared.parameters(values or {}), False))
        return execute(connection, prepared, values or {})

    def captured_execute_many(connection: Any, prepared: Any, rows: Any) -> None:
        log.append((prepared.sql, [prepared.parameters(row) for row in rows], True))
        execute_many(connection, prepared, rows)

    def captured_sqlalchemy(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                            many: bool) -> None:
        log.append((statement, parameters, many))

    def captured_commit(conn: Any) -> None:
        log.append(None)

    driver.execute, driver.execute_many = captured_execute, captured_execute_many  # type: ignore[assignment]
    event.listen(engine, "before_cursor_execute", captured_sqlalchemy)
    event.listen(engine, "commit", captured_commit)
    try:
        seeded = workload.seed(app, episodes, seed=workload.COMMANDS_SEED)
    finally:
        driver.execute, driver.execute_many = execute, execute_many  # type: ignore[assignment]
        event.remove(engine, "before_cursor_execute", captured_sqlalchemy)
        event.remove(engine, "commit", captured_commit)
    return log, 1e6 / seeded.rate, seeded.commands


def replay(path: Path, log: Capture) -> float:
    """Seconds the ``sqlite3`` module takes to run the capture, with the library's pragmas."""
    connection = raw_connect(f"sqlite:///{path}").connection
    start = time.perf_counter()
    _run(connection, log)
    elapsed = time.perf_counter() - start
    connection.close()
    return elapsed


def pages_written(snapshot: Path, log: Capture) -> tuple[int, Counter[str]]:
    """Database pages the capture's commits write to the WAL, all commits together (a count
    that does not depend on the machine's load, to judge a change of schema or statements),
    and how many of them belong to each table or index (by the page numbers in the WAL's
    frame headers, looked up in SQLite's ``dbstat``; empty where the module lacks it)."""
    copy = snapshot.with_suffix(".pages")
    for suffix in ("-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    shutil.copy(snapshot, copy)
    connection = raw_connect(f"sqlite:///{copy}").connection
    connection.execute("PRAGMA wal_autocheckpoint=0")  # the WAL keeps every frame written
    _run(connection, log)
    by_btree = _frames_by_btree(connection, Path(f"{copy}-wal"))
    frames = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    connection.close()
    return int(frames), by_btree


WAL_HEADER, FRAME_HEADER = 32, 24  # bytes (https://www.sqlite.org/fileformat2.html#walformat)


def _frames_by_btree(connection: sqlite3.Connection, wal: Path) -> Counter[str]:
    """The WAL's frames counted by the b-tree (table or index) their page belongs to."""
    try:
        owner = dict(connection.execute("SELECT pageno, name FROM dbstat"))
    except sqlite3.OperationalError:  # built without SQLITE_ENABLE_DBSTAT_VTAB
        return Counter()
    owner[1] = "page 1 (the file header and sqlite_schema)"
    data = wal.read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    counts: Counter[str] = Counter()
    for offset in range(WAL_HEADER, len(data) - FRAME_HEADER + 1, FRAME_HEADER + page_size):
        page = struct.unpack(">I", data[offset:offset + 4])[0]
        counts[owner.get(page, "(free pages)")] += 1
    return counts


def _run(connection: sqlite3.Connection, log: Capture) -> None:
    cursor = connection.cursor()
    for entry in log:
        if entry is None:
            if connection.in_transaction:
                connection.execute("COMMIT")
            continue
        sql, parameters, many = entry
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
            cursor.fetchall()



def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.statement_floor")
    parser.add_argument("--episodes", type=int, default=300, help="episodes recorded first")
    parser.add_argument("--command-episodes", type=int, default=200, help="episodes captured")
    args = parser.parse_args(argv)
    backend = SQLiteBackend()
    try:
        url = backend.fresh("floor")
        path = Path(url.removeprefix("sqlite:///"))
        app = ProjectedEpisodes(url, clock=workload.bench_clock())
        workload.seed(app, args.episodes)
        with sqlite3.connect(path) as checkpoint:
            checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        snapshot = path.with_suffix(".snapshot")
        shutil.copy(path, snapshot)
        log, library_us, commands = capture(app, args.command_episodes)
        app.close()
        pages, by_btree = pages_written(snapshot, log)
        floors = []
        for _ in range(3):
            copy = path.with_suffix(".replay")
            for suffix in ("-wal", "-shm"):
                Path(f"{copy}{suffix}").unlink(missing_ok=True)
            shutil.copy(snapshot, copy)
            floors.append(replay(copy, log) * 1e6 / commands)
        scratch = backend.raw_scratch()
        raw.create_raw_table(scratch)
        limit = raw.single_row_transactions(scratch, raw.sample_payloads(url), 3.0)
        scratch.close()
    finally:
        backend.close()
    floor = sorted(floors)[1]
    statements = sum(1 for entry in log if entry is not None)
    print(f"{commands} commands, {statements / commands:.1f} statements each")
    print(f"{pages / commands:.2f} pages written to the WAL a command")
    if by_btree:
        print("  by table or index: " + ", ".join(
            f"{name} {count / commands:.2f}" for name, count in by_btree.most_common()))
    print(f"library: {library_us:.0f} us a command")
    print(f"the same statements through sqlite3 alone: {floor:.0f} us a command "
          f"(runs: {', '.join(f'{f:.0f}' for f in floors)})")
    print(f"raw single-row limit: {1e6 / limit:.0f} us a transaction ({limit:.0f}/s)")
    print(f"ratio now: {1e6 / library_us / limit:.3f}; "
          f"best this schema allows (no Python at all): {1e6 / floor / limit:.3f}")


if __name__ == "__main__":
    main()
