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
session on the parent's socket.  A process with other threads (a web server's) always
spawns: forking it could copy a lock another thread holds.  ``$CARE_EPISODES_WORKER_START``
(``fork`` or ``spawn``) overrides the choice.
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


def is_in_memory(url: str) -> bool:
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


def context() -> BaseContext:
    """The way to start workers from here now: ``fork`` when safe (see the module), else
    ``spawn``.  Decide just before starting them, while no thread of ours runs yet."""
    return multiprocessing.get_context(start_method())


def start_method() -> str:
    chosen = os.environ.get(START_METHOD_VARIABLE, "").strip().lower()
    if chosen in ("fork", "spawn"):
        return chosen
    if chosen:
        raise ValueError(f"{START_METHOD_VARIABLE} must be fork or spawn, not {chosen!r}")
    forkable = sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()
    return "fork" if forkable and threading.active_count() == 1 else "spawn"


def forget_parent() -> None:
    """A worker's first step: a forked worker must never finalize an object it inherited (the
    parent's connections among them), so every object there is now is frozen out of the
    garbage collector.  Harmless in a spawned worker (it froze its own imports)."""
    gc.freeze()


__all__ = ["MAX_AUTOMATIC_WORKERS", "START_METHOD_VARIABLE", "StoreSpec", "available_cores",
           "context", "forget_parent", "is_in_memory", "start_method", "worker_count"]
