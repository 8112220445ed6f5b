"""The dashboard: census, alerts and length of stay against target.

Every figure is one bounded read-model query; each alert table shows at most ``ALERT_ROWS``
rows with the total count, and links to the full list where the list can filter it.

The figures are independent reads, so they run side by side, each on a connection of its own
(:func:`side_by_side`): SQLite and psycopg let other threads run while a query does, and at
100,000 episodes the slowest figures (the weeks below the minimum, the length of stay) are
each hundreds of milliseconds of SQL.  The page then takes about as long as its slowest
figure instead of the sum of all of them (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

from flask import Blueprint, render_template
from sqlalchemy import select

from admin import charts
from admin.security import EVERYONE, roles
from admin.services import record_access, services
from episodes.workers import is_in_memory
from projections import tables

bp = Blueprint("dashboard", __name__)

ALERT_ROWS = 20
BELOW_MINIMUM_WEEKS = 4  # the last four completed ISO weeks
EXPIRING_WITHIN_DAYS = 14
# Connections one dashboard view holds at once: the store's pool keeps 5 and opens up to 10
# more, so a few views at the same moment still find one without waiting.
FIGURE_THREADS = 4


@bp.route("/")
@roles(*EVERYONE)
def index():  # noqa: ANN201
    svc = services()
    reads = svc.reads
    today = reads.today()
    figures = side_by_side(reads.engine, {
        # The slowest first, so they start first.
        "below": lambda: reads.below_minimum(as_of=today, weeks=BELOW_MINIMUM_WEEKS),
        "summary": lambda: reads.length_of_stay_summary(as_of=today),
        "expiring": lambda: reads.authorizations_expiring(on=today, within_days=EXPIRING_WITHIN_DAYS),
        "census": lambda: reads.census(on=today),
        "over_target": lambda: reads.episodes(as_of=today, over_target=True, status="active",
                                              sort="admitted_on", descending=False,
                                              page_size=ALERT_ROWS),
        "misses": reads.miss_run_alerts,
        "programs": reads.programs,
        "lag": reads.lag,
    })
    programs = {p.code: p for p in figures["programs"]}
    below, expiring, misses = figures["below"], figures["expiring"], figures["misses"]
    over_target, summary = figures["over_target"], figures["summary"]
    refs = patient_refs([w.episode_id for w in below[:ALERT_ROWS]]
                        + [m.episode_id for m in misses[:ALERT_ROWS]])
    listed = set(refs) | {x.authorization.episode_id for x in expiring[:ALERT_ROWS]} \
        | {row.episode_id for row in over_target.rows}
    record_access("read", detail=f"dashboard: {len(listed)} episodes in alerts")

    return render_template(
        "dashboard.html",
        today=today, programs=programs, census=figures["census"], lag=figures["lag"],
        below=below[:ALERT_ROWS], below_total=len(below), weeks=BELOW_MINIMUM_WEEKS,
        expiring=expiring[:ALERT_ROWS], expiring_total=len(expiring),
        within_days=EXPIRING_WITHIN_DAYS,
        over_target=over_target, misses=misses[:ALERT_ROWS], misses_total=len(misses),
        refs=refs, limit=ALERT_ROWS, summary=summary,
        stay_chart=stay_chart(summary.by_program, programs),
        distribution_chart=charts.bar_chart(
            [charts.Bar(label, count, title=f"{label} weeks: {count} episodes")
             for label, count in summary.overall.distribution],
            title="Discharged episodes by length of stay in weeks", unit="episodes",
            height=180, bar_width=40, gap=14,
        ),
    )


def side_by_side(engine: Any, reads: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Each read's result, by name; the reads run in threads, each on a connection of its own,
    except on an in-memory SQLite database (one connection: a thread would open another, empty
    database).  A read that fails raises its error here, once the others have finished."""
    if is_in_memory(engine.url):
        return {name: read() for name, read in reads.items()}
    with ThreadPoolExecutor(FIGURE_THREADS, thread_name_prefix="care-episodes-dashboard") as pool:
        started = {name: pool.submit(read) for name, read in reads.items()}
        return {name: future.result() for name, future in started.items()}


def stay_chart(by_program: Iterable, programs: dict) -> str:  # noqa: ANN001
    rows = [
        charts.Stay(label=programs[f.key].name if f.key in programs else (f.key or "no program"),
                    median_days=f.median_days, target_days=f.target_days, count=f.count)
        for f in by_program
    ]
    return charts.stay_chart(rows, title="Median length of stay against the target, per program")


def patient_refs(episode_ids: list[UUID]) -> dict[UUID, str]:
    """The patient reference of each of a few episodes (the alert rows carry only the id)."""
    if not episode_ids:
        return {}
    e = tables.episodes
    with services().reads.connect() as connection:
        rows = connection.execute(
            select(e.c.episode_id, e.c.patient_ref).where(e.c.episode_id.in_(set(episode_ids)))
        ).all()
    return dict(rows)
