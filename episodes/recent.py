"""Episodes recently decided in this process, so the next command need not replay them.

Replaying a stream is the largest cost of a command that appends one event, and it grows
with the episode (docs/performance.md).  An entry is used in one of two ways:

* *checked* (:meth:`RecentEpisodes.take`): after the caller has locked the stream and read its
  head from the heads table (written in the same transaction as the events): if another
  process, thread or a rolled-back transaction moved the stream, the version or the digest
  differs and the caller replays as before;
* *unchecked* (:meth:`RecentEpisodes.take_unchecked`): the caller decides on it at once and
  lets the store check it: appending at the next version fails on the store's unique
  (stream, version) index if the stream moved on, and the caller then tries again, checked.
  An event already stored is never changed, so a kept episode that is still at the head is
  the stream exactly; one that is behind can only make the append fail.  A stream that
  another writer moved since this process last wrote it is *shared*: its kept episode is
  only used checked, until a check finds the stream where this process left it (so writers
  taking turns on one episode do not each fail an append first).

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
        self._shared: OrderedDict[UUID, None] = OrderedDict()  # streams others write too
        self._lock = threading.Lock()

    def holds(self, stream_id: UUID) -> bool:
        """Is anything kept of the stream (to be checked by :meth:`take`)?  A hint only: another
        thread may put or take its entry the moment after."""
        return stream_id in self._entries

    def take(self, stream_id: UUID, head: Head | None) -> Any | None:
        """The aggregate at ``head``, if one is kept exactly there; it is no longer kept."""
        with self._lock:
            entry = self._entries.pop(stream_id, None)
            if entry is None or head is None:
                return None
            aggregate, kept = entry
            if kept != head or aggregate.version != head.version:
                self._mark_shared(stream_id)
                return None  # the stream moved on elsewhere (or the object was changed)
            self._shared.pop(stream_id, None)  # nobody else wrote it since
        return aggregate

    def take_unchecked(self, stream_id: UUID) -> tuple[Any, Head] | None:
        """The aggregate kept for the stream and the head it was kept at, whether or not the
        stream is still there; it is no longer kept.  None for a shared stream (its entry is
        left for :meth:`take`)."""
        with self._lock:
            if stream_id in self._shared:
                return None
            entry = self._entries.pop(stream_id, None)
        if entry is None or entry[0].version != entry[1].version:
            return None  # the object was changed after it was kept
        return entry

    def put(self, aggregate: Any, head: Head) -> None:
        """Keep an aggregate whose newest event is committed at ``head`` (unless a later
        version is kept already: another thread's command committed after this one)."""
        with self._lock:
            kept = self._entries.pop(aggregate.id, None)
            if kept is not None and kept[1].version > head.version:
                aggregate, head = kept
            self._entries[aggregate.id] = (aggregate, head)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def mark_shared(self, stream_id: UUID) -> None:
        """Another writer moved the stream: its kept episode is used checked from now on."""
        with self._lock:
            self._mark_shared(stream_id)

    def _mark_shared(self, stream_id: UUID) -> None:
        self._shared.pop(stream_id, None)
        self._shared[stream_id] = None
        while len(self._shared) > self._size:
            self._shared.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._shared.clear()

    def __len__(self) -> int:
        return len(self._entries)
