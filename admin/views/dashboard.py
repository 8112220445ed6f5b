"""The dashboard: census, alerts and length of stay against target.

Every figure is one bounded read-model query; each alert table shows at most ``ALERT_ROWS``
rows with the total count, and links to the full list where the list can filter it.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from flask import Blueprint, render_template
from sqlalchemy import select

from admin import charts
from admin.security import EVERYONE, roles
from admin.services import record_access, services
from projections import tables

bp = Blueprint("dashboard", __name__)

ALERT_ROWS = 20
BELOW_MINIMUM_WEEKS = 4  # the last four completed ISO weeks
EXPIRING_WITHIN_DAYS = 14


@bp.route("/")
@roles(*EVERYONE)
def index():  # noqa: ANN201
    svc = services()
    reads = svc.reads
    today = reads.today()
    programs = {p.code: p for p in svc.reads.programs()}

    below = reads.below_minimum(weeks=BELOW_MINIMUM_WEEKS)
    expiring = reads.authorizations_expiring(within_days=EXPIRING_WITHIN_DAYS)
    over_target = reads.episodes(over_target=True, status="active", sort="admitted_on",
                                 descending=False, page_size=ALERT_ROWS)
    misses = reads.miss_run_alerts()
    refs = patient_refs([w.episode_id for w in below[:ALERT_ROWS]]
                        + [m.episode_id for m in misses[:ALERT_ROWS]])
    listed = set(refs) | {x.authorization.episode_id for x in expiring[:ALERT_ROWS]} \
        | {row.episode_id for row in over_target.rows}
    record_access("read", detail=f"dashboard: {len(listed)} episodes in alerts")

    summary = reads.length_of_stay_summary()
    return render_template(
        "dashboard.html",
        today=today, programs=programs, census=reads.census(), lag=reads.lag(),
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
