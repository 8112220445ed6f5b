"""Fewer garbage collections during a bulk pass (an import, a rebuild).

A bulk pass allocates a few dozen containers per event and keeps none beyond its batch; with
the default thresholds a young collection runs every 700 allocations, and each older one
walks every object the process holds: the application's, and an import's whole input when
it was given as a list (measured: a 1,000-episode import spent a third of the importing
process's CPU in collections, docs/performance.md).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Young collections every 50,000 allocations: a few percent of the time, and memory still
# bounded by the pass's batch (cycles among its objects are collected as they go).
THRESHOLD = (50_000, 20, 100)


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect garbage less often during a pass, then as before.

    What the process holds when the pass starts is frozen (left out of collections) and young
    collections run every 50,000 allocations.  (A process that froze objects itself keeps its
    own freeze: this one then leaves freezing alone.)
    """
    threshold = gc.get_threshold()
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    gc.set_threshold(*THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        if freeze:
            gc.unfreeze()


__all__ = ["THRESHOLD", "fewer_collections"]
