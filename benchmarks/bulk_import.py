"""2. Bulk import: loading historical episodes, events per second.

The library's import path (``episodes.importing.import_episodes``, plain
:class:`episodes.Episodes`, no inline read models) over the demo episodes given as histories
of commands (``workload.histories``): every command validated by its schema and decided by the
episode in memory, the events encoded and hash-chained, then written many episodes to a
transaction; a large input is decided in worker processes (``--workers``, default one per
core) while the importing process writes.  The figure is the whole call, from the input to
the last commit, worker start-up included.

Limit: raw multi-row INSERTs of the same payloads in large transactions.

The limit runs half before the import and half after it, into the same table, and is their
total rows over their total seconds: the import runs once, so the limit cannot be interleaved
with it as the commands' is, but it is measured on both sides of it (these machines' speed
drifts within seconds: docs/performance.md).  Its payloads are the events of the first
:data:`PAYLOAD_HISTORIES` histories, imported into a throwaway SQLite file first (the stored
bytes do not depend on the backend).
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from benchmarks import raw, workload
from benchmarks.context import Context
from episodes import Actor, ActorRole, Episodes
from episodes.importing import episode_id_for, import_episodes

MIN_RAW_ROWS = 10_000
MAX_RAW_ROWS = 50_000
IMPORT_ACTOR = Actor("migration-bench", ActorRole.SYSTEM)
PAYLOAD_HISTORIES = 30  # ~650 events: the limit's payloads are the last 500 of them


def run(ctx: Context) -> None:
    ctx.main_url = ctx.backend.fresh("main")
    histories = workload.histories(ctx.sizes.episodes)
    lengths = {episode_id_for(h.commands[0].data["command_id"]): len(h.commands) for h in histories}
    expected = sum(lengths.values())
    rows = min(MAX_RAW_ROWS, max(MIN_RAW_ROWS, expected))
    connection = ctx.backend.raw_scratch()  # (on PostgreSQL in the main database: created after it)
    try:
        raw.create_raw_table(connection)
        payloads = import_payloads(histories)
        before = raw.multi_row_seconds(connection, payloads, rows // 2)
        summary, seconds = _import(ctx, histories, lengths, expected)
        raw.settle(connection, payloads, rows - rows // 2)  # (the server just after a large import)
        after = raw.multi_row_seconds(connection, payloads, rows - rows // 2)
        raw.drop_raw_table(connection)
    finally:
        connection.close()
    ctx.note("import_limit_rows_per_s_before_after", [round(rows // 2 / before), round((rows - rows // 2) / after)])
    ctx.emit("bulk_import", summary.events / seconds, "events/s", rows / (before + after))


def import_payloads(histories: list[Any]) -> list[raw.Payload]:
    """Stored events of the first histories, as the import stores them."""
    with tempfile.TemporaryDirectory(prefix="care-episodes-payloads-") as directory:
        url = f"sqlite:///{directory}/payloads.db"
        app = Episodes(url, clock=workload.bench_clock())
        try:
            workload.define_programs(app)
            import_episodes(app, histories[:PAYLOAD_HISTORIES], actor=IMPORT_ACTOR, workers=0)
        finally:
            app.close()
        return raw.sample_payloads(url)


def _import(ctx: Context, histories: list[Any], lengths: dict[Any, int], expected: int) -> tuple[Any, float]:
    """The import the figure times, and the long episode after it; (its summary, seconds)."""
    app = Episodes(ctx.main_url, clock=workload.bench_clock())
    try:
        workload.define_programs(app)
        ctx.log(f"importing {len(histories)} historical episodes, {expected} events "
                "(episodes.importing.import_episodes)")
        start = time.perf_counter()
        summary = import_episodes(app, histories, actor=IMPORT_ACTOR, workers=ctx.sizes.workers)
        seconds = time.perf_counter() - start
        if (summary.imported, summary.events) != (len(histories), expected):
            ctx.problem(f"imported {summary.imported} episodes and {summary.events} events "
                        f"of {len(histories)} and {expected}")
        ctx.note("imported_events", summary.events)
        ctx.note("import_workers", summary.workers)  # 0: decided in the importing process
        ctx.note("import_decided_by_workers", summary.decided_by_workers)  # histories
        ctx.typical_episode = max(lengths, key=lambda episode_id: lengths[episode_id])
        ctx.note("longest_demo_episode_events", lengths[ctx.typical_episode])
        ctx.note("mean_events_per_episode", round(expected / len(lengths), 1))
        stored = workload.stream_lengths(app, (ctx.typical_episode,))[ctx.typical_episode]
        if stored != lengths[ctx.typical_episode]:
            ctx.problem(f"the longest episode has {stored} events stored, "
                        f"{lengths[ctx.typical_episode]} imported")
        start = time.perf_counter()
        long = workload.long_history(ctx.sizes.long_episode)
        import_episodes(app, [long], actor=IMPORT_ACTOR)
        ctx.long_episode = episode_id_for(long.commands[0].data["command_id"])
        ctx.note("long_episode_events", ctx.sizes.long_episode)
        ctx.log(f"long episode imported in {time.perf_counter() - start:.1f} s (not a figure)")
        return summary, seconds
    finally:
        app.close()
