"""3. Rebuild: every read model dropped and rebuilt from the events, events per second.

The library's path (``care-episodes rebuild``): ``projections.rebuild.rebuild``, which drops
the read models, creates them again, derives every stream's rows in one pass in stream order
(pages of 2,000 events per transaction), then catches up with anything appended meanwhile.

Limit: a raw scan of the events table that decodes every payload (``json.loads``).
"""

from __future__ import annotations

import time

from benchmarks import raw, workload
from benchmarks.context import Context
from episodes import Episodes
from projections.rebuild import rebuild as rebuild_read_models


def rebuild(url: str) -> tuple[int, float]:
    """Rebuild the read models at ``url``: (events applied, seconds)."""
    app = Episodes(url, clock=workload.bench_clock())
    try:
        start = time.perf_counter()  # dropping and creating the tables is part of it
        applied = rebuild_read_models(app)
        return applied, time.perf_counter() - start
    finally:
        app.close()


def run(ctx: Context) -> None:
    applied, seconds = rebuild(ctx.main_url)
    ctx.note("rebuilt_events", applied)
    limit, scanned = raw.scan_and_decode(ctx.main_url)
    if scanned != applied:
        raise RuntimeError(f"the rebuild applied {applied} events but the table holds {scanned}")
    ctx.emit("rebuild", applied / seconds, "events/s", limit)
