"""Worker processes for the long bulk jobs (the import, the rebuild): how many, and how each
one opens the same store as the application that started it.

Those jobs are mostly Python (validating, deciding and encoding; decoding and folding), so one
process uses one core while the database waits.  Every worker opens its own engine from a
:class:`StoreSpec`; it never uses a connection of the process that started it.

How a worker starts (:func:`context`): ``spawn`` imports the library afresh, about half a second
of CPU a worker before it does anything (more on a slower machine), which is most of a small
job.  So on Linux, when the starting process has no other thread, a worker is *forked* instead
(a few milliseconds): it then holds a copy of every object of its parent, the parent's pooled
connections included, so its first step (:func:`forget_parent`) takes all of them out of the
garbage collector's reach: a child that finalized one would close or roll back the parent's
session on the parent's socket.  Before forking, the store's idle pooled connections are
closed (:func:`context` with the engine), so none is copied at all; and a SQLite file still
open in this process (another connection to it, anywhere in the program) means spawn:
SQLite keeps its file locks' bookkeeping per process, so a connection opened in a forked child
would trust locks that only the parent holds (measured: an idle WAL connection holds a read
lock on the file and on its shared-memory index).  A process with other threads (a web
server's) always spawns: forking it could copy a lock another thread holds.
``$CARE_EPISODES_WORKER_START`` (``fork`` or ``spawn``) overrides the choice, except that a
SQLite file open in this process is never forked with.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING

from sqlalchemy.engine import URL, Engine

from episodes import driver
from episodes.clock import Clock, SystemClock

if TYPE_CHECKING:
    from episodes.application import Episodes

MAX_AUTOMATIC_WORKERS = 8  # beyond this the database's single write path is the limit anyway


@dataclass(frozen=True)
class StoreSpec:
    """What a worker needs to open the store as the parent application did (picklable)."""

    url: str
    settings: Mapping[str, str] = field(default_factory=dict)  # e.g. an explicit cipher key
    clock: Clock = field(default_factory=SystemClock)

    @classmethod
    def of(cls, app: Episodes) -> StoreSpec:
        return cls(app.database_url, dict(app.settings), app.clock)

    def open(self) -> Episodes:
        from episodes.application import Episodes

        return Episodes(self.url, clock=self.clock, env=dict(self.settings))

    @property
    def shareable(self) -> bool:
        """Can another process open this store?  (Not an in-memory SQLite database.)"""
        return not is_in_memory(self.url)


def is_in_memory(url: str | URL) -> bool:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def worker_count(requested: int | None, spec: StoreSpec) -> int:
    """The number of worker processes to use: ``requested`` if given (0 or 1: none, the job
    runs in this process), else one per available core up to :data:`MAX_AUTOMATIC_WORKERS`;
    always none for a store no other process can open."""
    if requested is not None and requested < 0:
        raise ValueError("workers must be 0 or more")
    if not spec.shareable:
        return 0
    if requested is None:
        requested = min(available_cores(), MAX_AUTOMATIC_WORKERS)
    return 0 if requested <= 1 else requested


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


START_METHOD_VARIABLE = "CARE_EPISODES_WORKER_START"


def context(engine: Engine | None = None) -> BaseContext:
    """The way to start workers from here now (:func:`start_method`).  Call it just before
    starting them, while no thread of ours runs yet, with the store's engine."""
    return multiprocessing.get_context(start_method(engine))


def sqlite_file_open_here(path: str) -> bool:
    """Does this process hold a SQLite database file, its write-ahead log or its shared-memory
    index open (Linux: its open files, in ``/proc/self/fd``)?  True where that cannot be told."""
    files = set()
    for name in (path, f"{path}-wal", f"{path}-shm"):
        try:
            found = os.stat(name)
        except OSError:
            continue
        files.add((found.st_dev, found.st_ino))
    try:
        descriptors = os.listdir("/proc/self/fd")
    except OSError:
        return True
    for descriptor in descriptors:
        try:
            target = os.stat(f"/proc/self/fd/{descriptor}")
        except OSError:  # closed since it was listed (the listing's own descriptor among them)
            continue
        if (target.st_dev, target.st_ino) in files:
            return True
    return False


def start_method(engine: Engine | None = None) -> str:
    """``fork`` when safe (see the module), else ``spawn``.  With the store's engine, a fork is
    prepared for: the engine's idle pooled connections are closed (the caller's next statement
    opens one again), and a SQLite file still open in this process means ``spawn``."""
    chosen = os.environ.get(START_METHOD_VARIABLE, "").strip().lower()
    if chosen and chosen not in ("fork", "spawn"):
        raise ValueError(f"{START_METHOD_VARIABLE} must be fork or spawn, not {chosen!r}")
    if not chosen:
        forkable = sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()
        chosen = "fork" if forkable and threading.active_count() == 1 else "spawn"
    if chosen == "fork" and engine is not None and not is_in_memory(engine.url):
        # (An in-memory database lives in its one connection: never closed here, and never
        # given to workers anyway.)  The pool's own dispose: only the idle connections are closed, and those checked out
        # (a rebuild's lock, say) still come back to this pool.  (Engine.dispose would leave
        # them to a discarded pool, to be closed by the garbage collector.)
        driver.release(engine)  # a connection kept for the next command is an idle one too
        engine.pool.dispose()
        if engine.dialect.name == "sqlite" and engine.url.database:
            if sqlite_file_open_here(engine.url.database):
                return "spawn"
    return chosen


def forget_parent() -> None:
    """A worker's first step: a forked worker must never finalize an object it inherited (the
    parent's connections among them), so every object there is now is frozen out of the
    garbage collector.  Harmless in a spawned worker (it froze its own imports)."""
    gc.freeze()


__all__ = ["MAX_AUTOMATIC_WORKERS", "START_METHOD_VARIABLE", "StoreSpec", "available_cores",
           "context", "forget_parent", "is_in_memory", "sqlite_file_open_here", "start_method",
           "worker_count"]
