"""3. Rebuild: every read model dropped and rebuilt from the events, events per second.

The library's path (``care-episodes rebuild``): ``Projector.drop_tables``, ``create_tables``,
then ``catch_up`` in batches of 500 events per transaction.

Limit: a raw scan of the events table that decodes every payload (``json.loads``).
"""

from __future__ import annotations

import time

from benchmarks import raw, workload
from benchmarks.context import Context
from episodes import Episodes
from projections import Projector


def rebuild(url: str) -> tuple[int, float]:
    """Rebuild the read models at ``url``: (events applied, seconds)."""
    app = Episodes(url, clock=workload.bench_clock())
    try:
        projector = Projector(app)
        projector.drop_tables()
        projector.create_tables()
        start = time.perf_counter()
        applied = projector.catch_up()
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
