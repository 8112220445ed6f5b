"""SQLite's write-ahead log copied back into the database beside a rebuild's passes, not in
their turns at the write lock.

SQLite checkpoints by itself in the connection whose commit takes the log past 1,000 pages
(``wal_autocheckpoint``), before that commit returns: it copies the log's pages into the
database file and syncs both.  The rebuild's passes take turns at the write lock
(``projections.stream_pass.StreamPass._turn``), and a pass keeps its turn until its commit
returns, so every automatic checkpoint held up the other passes too: at 10,000 episodes a
process held its turns 2.1-2.4 s of an 8 s pass, 1.65 s with no checkpoint at all
(docs/performance.md).  A checkpoint needs no write lock (writers append to the log while it
copies, readers read on), so while the passes run, :func:`checkpoints_aside` runs one every
:data:`CHECKPOINT_SECONDS` in a thread of the rebuilding process, on a connection of its own
(``PASSIVE``: it copies what no reader still needs, waiting for nobody), and the passes'
commits checkpoint by themselves only past :data:`BACKSTOP_PAGES`, should the thread fall
behind (``driver.transaction``'s ``autocheckpoint``).  The copying is the same; it runs
beside the passes instead of between their turns.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine

from episodes.workers import is_in_memory

CHECKPOINT_SECONDS = 0.05
BACKSTOP_PAGES = 10_000  # ~40 MB of log at most between the passes' own checkpoints


def aside(engine: Engine) -> bool:
    """Are the checkpoints of a rebuild's passes on ``engine`` run aside (a SQLite file)?"""
    return engine.dialect.name == "sqlite" and not is_in_memory(engine.url)


@contextmanager
def checkpoints_aside(engine: Engine) -> Iterator[bool]:
    """While the block runs, a thread checkpoints ``engine``'s SQLite database every
    :data:`CHECKPOINT_SECONDS` (nothing elsewhere); gives whether it does (:func:`aside`).  Start it after any worker process is
    forked: a process must not be forked with a thread of its own running.  A failure of the
    thread is raised when the block ends (the passes' own checkpoints kept the log bounded)."""
    if not aside(engine):
        yield False
        return
    stop = threading.Event()
    failures: list[BaseException] = []

    def checkpoint() -> None:
        try:
            with engine.connect() as connection:
                while not stop.wait(CHECKPOINT_SECONDS):
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except BaseException as failure:  # noqa: BLE001 - told to the rebuild when the block ends
            failures.append(failure)

    thread = threading.Thread(target=checkpoint, name="care-episodes-checkpoints", daemon=True)
    thread.start()
    try:
        yield True
    finally:
        stop.set()
        thread.join()
    if failures:
        raise failures[0]


__all__ = ["BACKSTOP_PAGES", "CHECKPOINT_SECONDS", "aside", "checkpoints_aside"]
