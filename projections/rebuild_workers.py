"""The rebuild's pass in several processes: the streams split by ranges of their ids.

Streams are independent (an episode's rows depend on its own events only; a program's on its
own), so the id space is cut into ranges, more ranges than processes, and each process takes
the next range not yet taken and runs a :class:`projections.stream_pass.StreamPass` on it:
reading, decoding, folding, deriving and writing its streams' rows, a page a transaction, on
a connection of its own.  Cutting the id space evenly gives ranges of about the same number
of streams because stream ids are random (``uuid4``) or hashes (``uuid5``); the extra ranges
even out what is left (a long stream, a busy core).

The rebuilding process is one of them: it starts the workers (forked where that is safe, else
spawned: about a second each before they read anything, see ``episodes.workers``) and takes
ranges itself meanwhile, so a worker that starts late just takes fewer.  Between its pages it
reports the workers' pages to the caller's ``progress`` and watches them: when a worker fails
(an exception, or a process that dies without saying why), or this process's own pass or the
caller's ``progress`` raises, every worker is stopped and the failure raised, so the rebuild
ends without moving the position or removing its marker.  No worker outlives :func:`run_pass`;
workers ignore Ctrl-C (the rebuilding process gets it and stops them).

On SQLite the processes' write transactions take turns at the database's one write lock (each
page is a short transaction started with ``BEGIN IMMEDIATE``), queued on a lock of the
rebuild's own that wakes the next one at once; on PostgreSQL each process's ``COPY`` runs on
its own connection into the same tables.
"""

from __future__ import annotations

import multiprocessing
import queue
import resource
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any
from uuid import UUID

from episodes.application import Episodes
from episodes.garbage import fewer_collections
from episodes.workers import StoreSpec, context, forget_parent
from projections import checkpoints
from projections.stream_pass import StreamPass

# More ranges than processes, each a share of what is left (guided self-scheduling): large
# ones first, for few of a range's fixed costs (its first read, its last partial page), then
# smaller and smaller, so that at the end the others wait for a small range at most.  Each
# range is a 2*processes-th of the ids left, and never less than the smallest share, a
# 64*processes-th of them all (16 ranges for two processes; the last range of equal ranges,
# 16 a process, left one process alone for 1/32 of the pass: 0.24 s of a 9.6 s rebuild at
# 10,000 episodes, docs/performance.md).
SMALLEST_SHARE_PER_PROCESS = 64
WATCH_SECONDS = 0.5  # how often a waiting rebuild checks that its workers are still alive
UUIDS = 1 << 128
IdRange = tuple[UUID, UUID | None]


class RebuildWorkerFailed(RuntimeError):
    """A worker process of a rebuild failed: the rebuild did not finish."""


@dataclass
class PassReport:
    """What the pass did: events applied, and each worker's peak memory (KiB)."""

    applied: int = 0
    worker_peaks_kib: list[int] = field(default_factory=list)


def id_ranges(processes: int) -> list[IdRange]:
    """Consecutive ranges ``[low, high)`` covering every UUID (the last one open), for
    ``processes`` processes to share: each a ``2 * processes``-th of the ids not yet in a
    range, none smaller than a ``SMALLEST_SHARE_PER_PROCESS * processes``-th of them all
    (but the last, which takes what is left)."""
    smallest = max(1, UUIDS // (SMALLEST_SHARE_PER_PROCESS * processes))
    bounds = [0]
    while (left := UUIDS - bounds[-1]) > 0:
        step = max(left // (2 * processes), smallest)
        bounds.append(UUIDS if left - step < smallest else bounds[-1] + step)  # no sliver at the end
    return [(UUID(int=low), UUID(int=high) if high < UUIDS else None)
            for low, high in zip(bounds, bounds[1:])]


def run_pass(app: Episodes, snapshot: int, processes: int, *, page_events: int,
             progress: Callable[[int], None] | None = None) -> PassReport:
    """Pass every stream up to ``snapshot`` in ``processes`` processes (this one and
    ``processes - 1`` workers); returns when all have written their rows, raises (with every
    worker stopped) when any failed."""
    if processes < 2:
        raise ValueError("a pass in several processes needs at least 2")
    ctx = context(app.recorder.datastore.engine)  # idle connections closed: none is copied
    tasks: Any = ctx.Queue()
    reports: Any = ctx.Queue()
    # The passes' turns at SQLite's one write lock (StreamPass._turn); PostgreSQL's COPYs run
    # side by side.
    engine = app.recorder.datastore.engine
    write_lock = ctx.Lock() if engine.dialect.name == "sqlite" else None
    aside = checkpoints.aside(engine)  # SQLite's log checkpointed beside the passes
    workers = [
        ctx.Process(target=_worker, args=(StoreSpec.of(app), snapshot, page_events, tasks, reports,
                                          write_lock, aside),
                    name=f"care-episodes-rebuild-{n}", daemon=True)
        for n in range(1, processes)
    ]
    watch = _Watch(workers, reports, progress)
    try:
        # Started before the first task is queued: a queue's first put starts its feeder
        # thread, and a forked worker must not copy a process with threads running.
        for worker in workers:
            worker.start()
        for id_range in id_ranges(processes):
            tasks.put(id_range)
        for _ in range(processes):
            tasks.put(None)  # after every range, one "no more ranges" for each process to take
        own = StreamPass(app, snapshot, page_events=page_events, write_lock=write_lock,
                         waiting=watch.look, checkpoints_aside=aside)
        # (The checkpoints' thread started once the workers are: never fork with it running.)
        with checkpoints.checkpoints_aside(engine):
            with fewer_collections():
                while (id_range := _next_range(tasks, watch)) is not None:
                    own.run(*id_range, progress=watch.own_page)
            watch.until_done()
        return watch.report
    finally:
        _stop(workers)
        for channel in (tasks, reports):
            channel.cancel_join_thread()  # never wait on a queue nobody reads any more
            channel.close()


def _next_range(tasks: Any, watch: _Watch) -> IdRange | None:
    while True:
        try:
            id_range = tasks.get(timeout=WATCH_SECONDS)
            break
        except queue.Empty:  # a worker that died while taking a range would block it: look
            watch.look()
    return id_range


class _Watch:
    """The rebuilding process's view of its workers: their pages, their end, their failure."""

    def __init__(self, workers: list[BaseProcess], reports: Any, progress: Callable[[int], None] | None):
        self.workers = workers
        self.reports = reports
        self.progress = progress
        self.report = PassReport()
        self.finished = 0

    def own_page(self, applied: int) -> None:
        self._page(applied)
        self.look()

    def look(self) -> None:
        """Take in what the workers said so far, without waiting."""
        self._read(wait=False)

    def until_done(self) -> None:
        while self.finished < len(self.workers):
            self._read(wait=True)

    def _read(self, *, wait: bool) -> None:
        """Take in what the workers said (waiting a while for something when ``wait``); a
        worker that ended without saying it was done is a failure."""
        while True:
            try:
                kind, value = self.reports.get(timeout=WATCH_SECONDS) if wait else self.reports.get_nowait()
            except queue.Empty:
                self._check_alive()
                return
            if kind == "page":
                self._page(value)
            elif kind == "done":
                self.finished += 1
                self.report.worker_peaks_kib.append(value)
            else:
                raise RebuildWorkerFailed(f"a rebuild worker failed:\n{value}")
            wait = False  # then take whatever else is already there

    def _page(self, applied: int) -> None:
        self.report.applied += applied
        if self.progress:
            self.progress(applied)

    def _check_alive(self) -> None:
        dead = [w for w in self.workers if w.exitcode not in (None, 0)]
        if not dead:
            return
        try:  # it may have said why just before it ended
            kind, value = self.reports.get(timeout=WATCH_SECONDS)
        except queue.Empty:
            raise RebuildWorkerFailed(
                f"a rebuild worker ({dead[0].name}) ended with exit code {dead[0].exitcode}"
            ) from None
        if kind == "failed":
            raise RebuildWorkerFailed(f"a rebuild worker failed:\n{value}")
        self.reports.put((kind, value))  # another worker's news: read it in turn


def _stop(workers: list[BaseProcess]) -> None:
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        if worker.pid is not None:  # started
            worker.join()


def _worker(spec: StoreSpec, snapshot: int, page_events: int, tasks: Any, reports: Any,
            write_lock: Any, checkpoints_aside: bool = False) -> None:
    """A worker process: the ranges it takes, a pass each, then its peak memory."""
    forget_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()

    def still_wanted() -> None:
        # A daemon worker is stopped when the rebuilding process exits normally, not when it
        # is killed (SIGKILL, the OOM killer): its lock is gone then, and a new rebuild may
        # drop and recreate the tables.  So a worker stops, between its pages, once the
        # rebuilding process is gone.  (A page already being written still lands.)
        if parent is not None and not parent.is_alive():
            raise SystemExit("the rebuilding process is gone")

    def page(applied: int) -> None:
        reports.put(("page", applied))
        still_wanted()

    try:
        app = spec.open()
        try:
            stream_pass = StreamPass(app, snapshot, page_events=page_events, write_lock=write_lock,
                                     waiting=still_wanted, checkpoints_aside=checkpoints_aside)
            with fewer_collections():
                while (id_range := tasks.get()) is not None:
                    still_wanted()
                    stream_pass.run(*id_range, progress=page)
        finally:
            app.close()
    except BaseException:  # noqa: BLE001 - any failure is told to the rebuilding process
        reports.put(("failed", traceback.format_exc()))
        raise SystemExit(1) from None
    reports.put(("done", own_peak_rss_kib()))


def own_peak_rss_kib() -> int:
    """This process's peak resident memory in KiB.  Linux: ``VmHWM``, the peak of this
    program's own memory; ``ru_maxrss`` would also count the memory of the process it was
    started from (the kernel carries the high-water mark across ``exec``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
