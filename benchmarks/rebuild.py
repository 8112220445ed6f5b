"""3. Rebuild: every read model dropped and rebuilt from the events, events per second.

The library's path (``care-episodes rebuild``): ``projections.rebuild.rebuild``, which drops
the read models, creates them again, derives every stream's rows in one pass in stream order
(pages of 2,000 events per transaction; ranges of streams in several processes when the log is
large or ``--workers`` says so), then catches up with anything appended meanwhile.

Two rebuilds run: the first derives the read models the import left without any (noted as
``first_rebuild_events_per_s``); the figure is the second's, a rebuild of a database whose read
models are there, as a rebuild in use runs: its drop of the old tables is timed, and its rows
go into the pages the drop freed.

Limit: a raw scan of the events table that decodes every payload (``json.loads``).
"""

from __future__ import annotations

import time

from benchmarks import raw, workload
from benchmarks.context import Context
from episodes import Episodes
from projections.rebuild import Rebuild


def rebuild(url: str, workers: int | None = None) -> tuple[int, float, int]:
    """Rebuild the read models at ``url`` (``workers``: as ``projections.rebuild.rebuild``,
    None: the library's choice): (events applied, seconds, processes used)."""
    app = Episodes(url, clock=workload.bench_clock())
    try:
        job = Rebuild(app, workers=workers)
        start = time.perf_counter()  # dropping and creating the tables is part of it
        applied = job.run()  # starting the worker processes too
        return applied, time.perf_counter() - start, job.processes_used
    finally:
        app.close()


def run(ctx: Context) -> None:
    first, first_seconds, _ = rebuild(ctx.main_url, ctx.sizes.workers)
    ctx.note("first_rebuild_events_per_s", round(first / first_seconds))
    applied, seconds, processes = rebuild(ctx.main_url, ctx.sizes.workers)
    ctx.note("rebuilt_events", applied)
    ctx.note("rebuild_processes", processes)
    limit, scanned = raw.scan_and_decode(ctx.main_url)
    if scanned != applied:
        raise RuntimeError(f"the rebuild applied {applied} events but the table holds {scanned}")
    ctx.emit("rebuild", applied / seconds, "events/s", limit)
