"""The episode row's counts kept between commands (``derive.Tally``) equal a recount.

A command adds its session to the counts the projector kept, unless the session is dated
before one already counted (or a correction changed the facts): then it recounts.  Whatever
the order sessions are entered in, the row must be the one a recount from every fact gives.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from episodes import Actor, ActorRole, FixedClock
from projections import ProjectedEpisodes, derive, tables
from tests.pathways import admitted_on

CLINICIAN = Actor("clin-ana", ActorRole.CLINICIAN)
ADMITTED = date(2026, 3, 2)

sessions = st.lists(
    st.tuples(
        st.sampled_from(["attended", "missed", "excused", "cancelled", "authorization"]),
        st.integers(min_value=0, max_value=40),  # days after the admission, in any order
    ),
    min_size=1, max_size=12,
)


def record(app: ProjectedEpisodes, episode, what: str, day: int, n: int) -> None:
    on = ADMITTED + timedelta(days=day)
    common = {"effective_date": on, "command_id": f"tally-{n}"}
    if what == "attended":
        app.record_attendance(episode, CLINICIAN, kind="group", minutes=60 + day, format="in-person", **common)
    elif what in ("missed", "excused"):
        app.record_absence(episode, CLINICIAN, kind="group", minutes=180, excused=what == "excused", **common)
    elif what == "cancelled":
        app.record_program_cancellation(episode, CLINICIAN, kind="group", minutes=180, **common)
    else:
        app.record_authorization(episode, CLINICIAN, payer="Medicaid", unit="days", authorized=10,
                                 start=ADMITTED, end=on, next_review=on - timedelta(days=1), **common)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=sessions)
def test_the_kept_counts_equal_a_recount_in_any_entry_order(tmp_path_factory, entries):
    url = f"sqlite:///{tmp_path_factory.mktemp('tally') / 'tally.db'}"
    app = ProjectedEpisodes(url, clock=FixedClock(datetime(2026, 6, 1, 12, tzinfo=UTC)))
    try:
        episode = admitted_on(app, CLINICIAN, ADMITTED)
        for n, (what, day) in enumerate(entries):
            record(app, episode, what, day, n)
        with app.projector.engine.connect() as connection:
            row = connection.execute(
                select(tables.episodes).where(tables.episodes.c.episode_id == episode)).one()
        expected = derive.Tally.of(app.get(episode).facts.values())
        # Check the row as projected command by command against a recount of every fact.
        assert (row.attended, row.missed, row.excused, row.cancelled_by_program) == (
            expected.attended, expected.missed, expected.excused, expected.cancelled_by_program)
        assert row.consecutive_misses == expected.consecutive_misses
        assert row.attended_minutes == expected.attended_minutes
        assert row.last_attended_on == expected.last_attended_on
        latest = expected.authorization
        assert row.authorized_until == (latest.end if latest else None)
        assert row.attended == sum(1 for what, _ in entries if what == "attended")
    finally:
        app.close()
