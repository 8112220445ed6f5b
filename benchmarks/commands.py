"""1. Commands: one command = load the episode, decide, append one event, update the inline
read models, commit (:class:`projections.ProjectedEpisodes`, as the panel records).

Measured on the main database, after the import and the rebuild: new demo episodes (another
seed) are recorded command by command among the N already there.

Limit: raw single-row INSERT transactions (``BEGIN``; ``INSERT``; ``COMMIT``) per second
through the driver itself.
"""

from __future__ import annotations

from benchmarks import raw, workload
from benchmarks.context import Context
from projections import ProjectedEpisodes


def run(ctx: Context) -> None:
    app = ProjectedEpisodes(ctx.main_url, clock=workload.bench_clock())
    try:
        ctx.log(f"recording {ctx.sizes.command_episodes} episodes as inline commands")
        seeded = workload.seed(app, ctx.sizes.command_episodes, seed=workload.COMMANDS_SEED)
        ctx.note("inline_commands", seeded.commands)
    finally:
        app.close()
    payloads = raw.sample_payloads(ctx.main_url)
    connection = ctx.backend.raw_scratch()
    try:
        raw.create_raw_table(connection)
        limit = raw.single_row_transactions(connection, payloads, ctx.sizes.raw_seconds)
        raw.drop_raw_table(connection)
    finally:
        connection.close()
    ctx.emit("commands", seeded.rate, "commands/s", limit)
