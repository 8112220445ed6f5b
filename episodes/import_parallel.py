"""Deciding the import's histories in worker processes while the importing process writes.

Deciding a history (validating, deciding, encoding, chaining) is pure Python and needs no
database (:mod:`episodes.import_decider`), so it spreads over processes; writing stays in the
importing process, one batch a transaction, in input order.  Each batch is cut into chunks of
about :data:`CHUNK_COMMANDS` commands, so that every worker has work even when a batch is one
transaction's worth; the chunks' outcomes are taken back in order, and the first rejection of
a batch stops the import before that batch is written, as in one process.  Where workers
are spawned, the importing process, between writes, decides the chunks no worker has started
yet instead of waiting (it has the same decider): a spawned worker takes half a second or
more to start, and a busy machine may give workers little time.  Forked workers start at
once, and the importing process only writes (:data:`DECIDE_HERE_TOO`).

A worker is forked or spawned (:func:`episodes.workers.context`); either way it opens the
store as the application did (:class:`StoreSpec`) only to build the same mapper
(transcodings, cipher, compression), then builds one :class:`Decider` with the program
definitions, the actor and the correlation id the importing process read, and the same
clock.  Workers ignore Ctrl-C: the importing process gets it and shuts them down.
"""

from __future__ import annotations

import gc
import signal
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import chain
from uuid import UUID

from sqlalchemy.engine import Engine

from episodes import garbage
from episodes.import_decider import Decider, Planned
from episodes.import_input import EpisodeHistory, ImportRejected
from episodes.program import ProgramDefinition
from episodes.values import Actor
from episodes.workers import StoreSpec, context, forget_parent

# A batch's histories to decide, in input order; a rejection made before deciding (the same
# referral twice in one import) stands at the place of its history.
Work = Sequence[EpisodeHistory | ImportRejected]
Outcome = list[Planned] | ImportRejected  # the decided histories, or the first rejection
SortedBatch = tuple[list[UUID], Work]  # a batch's episodes already stored, and its work

CHUNK_COMMANDS = 1_000  # commands a worker decides per task: small enough to share a batch
# Does the importing process, between its writes, decide the chunks no worker has started?  By
# how the workers start (episodes.workers.start_method): spawned ones take half a second or more
# before they decide anything, and meanwhile this process has little else to do; forked ones
# start at once, and this process helping them only delays its writes (measured on 2 cores,
# SQLite, 21,854 and 66,649 commands: the import 0-22% faster without its help, its own CPU
# halved).
DECIDE_HERE_TOO = {"fork": False, "spawn": True}
STOP_SECONDS = 30.0  # a worker still running this long after the import ended is terminated


class ImportWorkerDied(RuntimeError):
    """A worker process of the import ended without a word (killed, or out of memory): the
    batch it was deciding and those after it were not written; the batches before it were.
    Importing the same input again skips the episodes already stored."""


def decide_all(decider: Decider, work: Work) -> Outcome:
    """The histories decided in order, or the first rejection (made earlier, or the decider's)."""
    planned: list[Planned] = []
    for item in work:
        if isinstance(item, ImportRejected):
            return item
        try:
            planned.append(decider.decide(item))
        except ImportRejected as rejected:
            return rejected
    return planned


def commands_in(work: Work) -> int:
    return sum(len(item.commands) for item in work if isinstance(item, EpisodeHistory))


class DecidingPool:
    """Worker processes deciding batches, helped by this process; :meth:`decided` keeps the
    input order."""

    def __init__(self, workers: int, spec: StoreSpec, programs: Mapping[str, ProgramDefinition],
                 actor: Actor, correlation_id: str | None, here: Decider, engine: Engine):
        self.workers = workers
        mp_context = context(engine)  # the store's idle connections closed: none is copied
        # This process's decider, for the chunks no worker has started; None: it only writes.
        self.here = here if DECIDE_HERE_TOO[mp_context.get_start_method()] else None
        self.histories_in_workers = 0  # decided by the workers so far (the others here)
        self.executor = ProcessPoolExecutor(
            workers, mp_context=mp_context, initializer=_start_worker,
            initargs=(spec, dict(programs), actor, correlation_id))
        # Start the workers now, while no connection is open (the executor forks them at its
        # first task, and reading the input opens one again).
        self.executor.submit(int)

    def decided(self, batches: Iterator[SortedBatch]) -> Iterator[tuple[list[UUID], list[Planned]]]:
        """Each batch's skipped episodes and decided histories, in input order, while the
        next batches are being decided; raises the first rejection when its batch's turn comes.

        At most ``workers + 1`` batches are read ahead (the input may be far larger than
        memory).  An error reading the input is raised in its turn too: after the batches
        read before it, as in one process."""
        pending: deque[tuple[list[UUID], list[_Chunk]]] = deque()
        input_error: Exception | None = None
        exhausted = False
        while True:
            while not exhausted and len(pending) <= self.workers:
                try:
                    skipped, work = next(batches)
                except StopIteration:
                    exhausted = True
                except Exception as error:  # noqa: BLE001 - raised below, in its turn
                    input_error, exhausted = error, True
                else:
                    pending.append((skipped, [_Chunk(chunk, self.executor.submit(_decide, chunk))
                                              for chunk in _chunks(work)]))
            if not pending:
                break
            skipped, chunks = pending.popleft()
            planned: list[Planned] = []
            for index, chunk in enumerate(chunks):
                outcome = self._outcome(chunk, chain(chunks[index + 1:],
                                                     *(later for _, later in pending)))
                if isinstance(outcome, ImportRejected):
                    raise outcome
                planned.extend(outcome)
                if chunk.outcome is None:
                    self.histories_in_workers += len(outcome)
            yield skipped, planned
        if input_error is not None:
            raise input_error

    def _outcome(self, chunk: _Chunk, later: Iterator[_Chunk]) -> Outcome:
        """The chunk's outcome.  Where this process helps (:data:`DECIDE_HERE_TOO`), rather than
        wait it decides the chunk itself if no worker has started it, else the next chunks no
        worker has started (spawned workers take a second or more to start, and this process
        has little else to do between writes)."""
        chunk.take_here(self.here)
        while chunk.outcome is None and not chunk.future.done():
            if not any(spare.take_here(self.here) for spare in later):
                break  # every chunk is taken: wait for the worker
        return chunk.result()

    def close(self) -> None:
        """Stop the workers: chunks not started are dropped, running ones finish; returns
        once every worker process has exited and been reaped.

        The executor's management thread joins the workers once their running chunks are
        done, so it is waited for first: joining the workers here at the same time would race
        it for each worker's exit status (the loser's ``waitpid`` fails, and the process is
        left looking alive to ``multiprocessing.active_children``).  Not ``shutdown(wait=True)``
        alone: on Python 3.11, when a worker dies (killed, or its start-up failed) while chunks
        this process took back are cancelled, the management thread fails (``InvalidStateError``
        setting the cancelled futures' error) without joining anyone, and ``shutdown(wait=True)``
        then never returns.  So the worker processes are joined here too, and any still alive
        after :data:`STOP_SECONDS` terminated."""
        processes = list((getattr(self.executor, "_processes", None) or {}).values())
        manager = getattr(self.executor, "_executor_manager_thread", None)
        deadline = time.monotonic() + STOP_SECONDS
        self.executor.shutdown(wait=False, cancel_futures=True)
        if manager is not None:
            manager.join(STOP_SECONDS)
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join()


class _Chunk:
    """Some histories of a batch, submitted to the workers, or decided here instead."""

    def __init__(self, work: Work, future: Future[Outcome]):
        self.work = work
        self.future = future
        self.outcome: Outcome | None = None  # when decided in this process

    def take_here(self, decider: Decider | None) -> bool:
        """Decide the chunk in this process if no worker has started it and this process
        helps (``decider``); True if so."""
        if decider is None or self.outcome is not None or not self.future.cancel():
            return False
        self.outcome = decide_all(decider, self.work)
        return True

    def result(self) -> Outcome:
        if self.outcome is not None:
            return self.outcome
        try:
            return self.future.result()
        except BrokenProcessPool as broken:
            raise ImportWorkerDied(
                "an import worker process ended abruptly (killed, or out of memory?); this batch "
                "and those after it were not written, the ones before it were; import the same "
                "input again to go on (episodes already stored are skipped), or with --workers 0"
            ) from broken


def _chunks(work: Work) -> Iterator[list[EpisodeHistory | ImportRejected]]:
    chunk: list[EpisodeHistory | ImportRejected] = []
    commands = 0
    for item in work:
        chunk.append(item)
        commands += len(item.commands) if isinstance(item, EpisodeHistory) else 1
        if commands >= CHUNK_COMMANDS:
            yield chunk
            chunk, commands = [], 0
    if chunk:
        yield chunk


# ---------------------------------------------------------------- in the worker process

_decider: Decider | None = None
_start_error: Exception | None = None


def _start_worker(spec: StoreSpec, programs: Mapping[str, ProgramDefinition], actor: Actor,
                  correlation_id: str | None) -> None:
    # An initializer that raises breaks the whole pool with a bare "a child process terminated
    # abruptly"; kept and raised by the first chunk instead, the error itself (a wrong cipher
    # key, a database that does not answer) reaches the importing process.
    global _decider, _start_error
    forget_parent()
    gc.set_threshold(*garbage.THRESHOLD)  # the process lives for the import (episodes.garbage)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the importing process stops the workers
    try:
        app = spec.open()
        try:
            _decider = Decider(app.mapper, spec.clock, programs, actor, correlation_id)
        finally:
            app.close()  # the mapper needs no connection
    except Exception as error:  # noqa: BLE001 - raised in the importing process, by _decide
        _start_error = error


def _decide(work: Work) -> Outcome:
    if _start_error is not None:
        raise _start_error
    assert _decider is not None, "the worker's initializer builds the decider"
    return decide_all(_decider, work)
