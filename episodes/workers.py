"""Worker processes for the long bulk jobs (the import, the rebuild): how many, and how each
one opens the same store as the application that started it.

Those jobs are mostly Python (validating, deciding and encoding; decoding and folding), so one
process uses one core while the database waits.  A worker is a separate process started with
``spawn``: it imports the library afresh and opens its own engine, instead of inheriting (with
``fork``) the parent's pooled connections, whose sockets a child must never use or close.
"""

from __future__ import annotations

import multiprocessing
import os
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


def context() -> BaseContext:
    return multiprocessing.get_context("spawn")


__all__ = ["MAX_AUTOMATIC_WORKERS", "StoreSpec", "available_cores", "context", "is_in_memory",
           "worker_count"]
