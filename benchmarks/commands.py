"""1. Commands: one command = load the episode, decide, append one event, update the inline
read models, commit (:class:`projections.ProjectedEpisodes`, as the panel records).

Measured on the main database, after the import and the rebuild: new demo episodes (another
seed) are recorded command by command among the N already there.

Limit: raw single-row INSERT transactions (``BEGIN``; ``INSERT``; ``COMMIT``) per second
through the driver itself, with the payloads of the last 500 events the import stored (the
long episode's, sessions mostly; about the size of the commands' own).

``commands.first_visit`` (not one of the issue's figures, and no target): the same, where each
command is a fresh application's first on its episode, so the episode is read from the store
and replayed (what a panel pays after a restart, or where several server processes take turns
at one episode): one group session into each of up to :data:`FIRST_VISITS` episodes, active or
finished (a late entry, dated on the day of admission), of the imported ones and the commands'
own (~48 events each on average since session 18; not the 500-event one), against the same limit measured
interleaved with them.

The two are measured interleaved, in slices: after every :data:`SLICE_SECONDS` of commands,
the limit runs for :data:`LIMIT_SHARE` of that time.  These machines' speed drifts by a
factor of up to two within seconds (docs/performance.md), so a limit measured for five
seconds after the commands could meet another machine than the commands did: the same code
gave ratios of 0.064 and 0.125 in two runs one after the other.  Interleaved, both meet the
same drift, and each figure is its own total over the whole window (transactions or
commands, divided by the seconds they took).
"""

from __future__ import annotations

from benchmarks import raw, workload
from benchmarks.context import Context
from projections import ProjectedEpisodes

FIRST_VISITS = 200  # episodes a fresh application records one session into
SLICE_SECONDS = 0.05  # of commands between two slices of the limit
LIMIT_SHARE = 0.5  # the limit's time, as a share of the commands' time


class Interleaved:
    """Runs the limit for ``share`` of the commands' time, a slice after every ``every``
    seconds of commands (:class:`benchmarks.workload.Timed`'s ``between``)."""

    def __init__(self, limit: raw.SingleRowTransactions, every: float = SLICE_SECONDS,
                 share: float = LIMIT_SHARE):
        self.limit = limit
        self.every = every
        self.share = share
        self.pending = 0.0  # seconds of commands since the last slice
        self.slices = 0

    def __call__(self, command_seconds: float) -> None:
        self.pending += command_seconds
        if self.pending >= self.every:
            self.limit.run(self.pending * self.share)
            self.pending = 0.0
            self.slices += 1


def run(ctx: Context) -> None:
    payloads = raw.sample_payloads(ctx.main_url)
    connection = ctx.backend.raw_scratch()
    try:
        raw.create_raw_table(connection)
        limit = raw.SingleRowTransactions(connection, payloads)
        between = Interleaved(limit)
        app = ProjectedEpisodes(ctx.main_url, clock=workload.bench_clock())
        try:
            ctx.log(f"recording {ctx.sizes.command_episodes} episodes as inline commands, "
                    "the raw limit interleaved")
            seeded = workload.seed(app, ctx.sizes.command_episodes, seed=workload.COMMANDS_SEED,
                                   between=between)
        finally:
            app.close()
        if limit.done == 0:  # fewer commands than one slice: the limit on its own
            limit.run(ctx.sizes.raw_seconds)
        first_visits = _first_visits(ctx, raw.SingleRowTransactions(connection, payloads))
        raw.drop_raw_table(connection)
    finally:
        connection.close()
    ctx.note("inline_commands", seeded.commands)
    ctx.note("command_seconds", round(seeded.seconds, 2))
    ctx.note("limit_transactions", limit.done)
    ctx.note("limit_seconds", round(limit.seconds, 2))
    ctx.note("limit_slices", between.slices)
    ctx.emit("commands", seeded.rate, "commands/s", limit.rate)
    if first_visits is not None:
        timed, first_limit = first_visits
        ctx.note("first_visit_commands", timed.commands)
        ctx.emit("commands.first_visit", timed.rate, "commands/s", first_limit.rate)


def _first_visits(ctx: Context, limit: raw.SingleRowTransactions
                  ) -> tuple[workload.Timed, raw.SingleRowTransactions] | None:
    """A session into each of up to FIRST_VISITS admitted episodes, each a fresh application's
    first command on it, the limit interleaved; None where no episode was admitted."""
    app = ProjectedEpisodes(ctx.main_url, clock=workload.bench_clock())
    try:
        admitted = workload.admitted_episodes(app, ("active", "finished"))
        admitted.pop(ctx.long_episode, None)  # (its 500 events would be a tenth of the figure)
        if not admitted:
            ctx.log("no admitted episode: commands.first_visit not measured")
            return None
        count = min(FIRST_VISITS, len(admitted))
        ctx.log(f"recording a session into {count} admitted episodes, each the first command of a "
                "fresh application on it, the raw limit interleaved")
        timed = workload.Timed(app, Interleaved(limit))
        workload.record_sessions(timed, admitted, count, 0, prefix="bench-first-visit")
    finally:
        app.close()
    if limit.done == 0:
        limit.run(ctx.sizes.raw_seconds)
    return timed, limit
