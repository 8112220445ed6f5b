"""2. Bulk import: loading historical episodes, events per second.

The library's import path today: ``Episodes.execute`` for each historical event, through a
plain :class:`episodes.Episodes` (no inline read models): each event is validated, its
episode loaded, the pathway checked, the event appended with its hash-chain head, committed.

Limit: raw multi-row INSERTs of the same payloads in large transactions.
"""

from __future__ import annotations

import time

from benchmarks import raw, workload
from benchmarks.context import Context
from episodes import Episodes

MIN_RAW_ROWS = 10_000
MAX_RAW_ROWS = 50_000


def run(ctx: Context) -> None:
    ctx.main_url = ctx.backend.fresh("main")
    app = Episodes(ctx.main_url, clock=workload.bench_clock())
    try:
        ctx.log(f"importing {ctx.sizes.episodes} historical episodes (Episodes.execute per event)")
        seeded = workload.seed(app, ctx.sizes.episodes)
        ctx.note("imported_events", seeded.commands)
        lengths = workload.stream_lengths(app, seeded.episode_ids)
        ctx.typical_episode = max(lengths, key=lambda episode_id: lengths[episode_id])
        ctx.note("longest_demo_episode_events", lengths[ctx.typical_episode])
        ctx.note("mean_events_per_episode", round(sum(lengths.values()) / len(lengths), 1))
        start = time.perf_counter()
        ctx.long_episode = workload.record_long_episode(app, ctx.sizes.long_episode)
        ctx.note("long_episode_events", ctx.sizes.long_episode)
        ctx.log(f"long episode recorded in {time.perf_counter() - start:.1f} s (not a figure)")
    finally:
        app.close()
    payloads = raw.sample_payloads(ctx.main_url)
    rows = min(MAX_RAW_ROWS, max(MIN_RAW_ROWS, seeded.commands))
    connection = ctx.backend.raw_scratch()
    try:
        raw.create_raw_table(connection)
        limit = raw.multi_row_inserts(connection, payloads, rows)
        raw.drop_raw_table(connection)
    finally:
        connection.close()
    ctx.emit("bulk_import", seeded.rate, "events/s", limit)
