"""Episodes recently decided in this process, so the next command need not replay them.

Replaying a stream is the largest cost of a command that appends one event, and it grows
with the episode (docs/performance.md).  An entry is only ever *trusted* after the caller has
locked the stream and read its head from the heads table (written in the same transaction as
the events): if another process, thread or a rolled-back transaction moved the stream, the
version or the digest differs and the caller replays as before.

An entry is *taken* (removed) while a command works on it and put back only after its
transaction committed, so two threads never decide on one object, and an aggregate that was
mutated by a failed command is simply never put back.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any
from uuid import UUID

from episodes.writer import Head

DEFAULT_SIZE = 1_000


class RecentEpisodes:
    def __init__(self, size: int = DEFAULT_SIZE):
        self._size = size
        self._entries: OrderedDict[UUID, tuple[Any, Head]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, stream_id: UUID, head: Head | None) -> Any | None:
        """The aggregate at ``head``, if one is kept exactly there; it is no longer kept."""
        with self._lock:
            entry = self._entries.pop(stream_id, None)
        if entry is None or head is None:
            return None
        aggregate, kept = entry
        if kept != head or aggregate.version != head.version:
            return None  # the stream moved on elsewhere (or the object was changed)
        return aggregate

    def put(self, aggregate: Any, head: Head) -> None:
        """Keep an aggregate whose newest event is committed at ``head``."""
        with self._lock:
            self._entries.pop(aggregate.id, None)
            self._entries[aggregate.id] = (aggregate, head)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
