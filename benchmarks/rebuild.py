"""3. Rebuild: every read model dropped and rebuilt from the events, events per second.

The library's path (``care-episodes rebuild``): ``projections.rebuild.rebuild``, which drops
the read models, creates them again, derives every stream's rows in one pass in stream order
(pages of 2,000 events per transaction; ranges of streams in several processes when the log is
large or ``--workers`` says so), then catches up with anything appended meanwhile.

The first rebuild derives the read models the import left without any (noted as
``first_rebuild_events_per_s``).  The figure is from the rebuilds after it, of a database whose
read models are there, as a rebuild in use runs: its drop of the old tables is timed, and its
rows go into the pages the drop freed.

Limit: a raw scan of the events table that decodes every payload (``json.loads``).

The limit's scans and the rebuilds take turns: a scan, then a rebuild and a scan in each of
up to :data:`MAX_ROUNDS` rounds, as many as fit in :data:`MEASURED_SECONDS` at the first
rebuild's pace (one where a rebuild takes longer); each figure is its own total over the
whole window (events, divided by the seconds they took).  These machines' speed drifts by a
factor of up to two within seconds (docs/performance.md): one rebuild against one scan gave
ratios from 0.15 to 0.25 for the same code.  The ratio of each round (its rebuild against the
scans on either side) is noted too, for the spread.
"""

from __future__ import annotations

import time

from benchmarks import raw, workload
from benchmarks.context import Context
from episodes import Episodes
from projections.rebuild import Rebuild

MEASURED_SECONDS = 5.0  # about how long the rounds of rebuilds take in all
MAX_ROUNDS = 5
SCAN_SECONDS = 0.5  # each scan: at least this long, and at least the whole table once


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


def rounds_for(first_seconds: float) -> int:
    return max(1, min(MAX_ROUNDS, int(MEASURED_SECONDS / max(first_seconds, 1e-9))))


def run(ctx: Context) -> None:
    first, first_seconds, _ = rebuild(ctx.main_url, ctx.sizes.workers)
    ctx.note("first_rebuild_events_per_s", round(first / first_seconds))
    scans = [raw.scans_and_decodes(ctx.main_url, SCAN_SECONDS)]
    rebuilds = []
    for _ in range(rounds_for(first_seconds)):
        rebuilds.append(rebuild(ctx.main_url, ctx.sizes.workers))
        scans.append(raw.scans_and_decodes(ctx.main_url, SCAN_SECONDS))
    applied = {events for events, _, _ in rebuilds}
    scanned = {per_scan for _, _, per_scan in scans}
    if applied != scanned or len(applied) != 1:
        raise RuntimeError(f"the rebuilds applied {sorted(applied)} events but the scans read {sorted(scanned)}")
    ctx.note("rebuilt_events", rebuilds[-1][0])
    ctx.note("rebuild_processes", rebuilds[-1][2])
    ctx.note("rebuild_rounds", len(rebuilds))
    ctx.note("rebuild_round_ratios", [
        round((events / seconds) / ((before[0] + after[0]) / (before[1] + after[1])), 3)
        for (events, seconds, _), before, after in zip(rebuilds, scans, scans[1:])
    ])
    value = sum(events for events, _, _ in rebuilds) / sum(seconds for _, seconds, _ in rebuilds)
    limit = sum(decoded for decoded, _, _ in scans) / sum(seconds for _, seconds, _ in scans)
    ctx.emit("rebuild", value, "events/s", limit)
