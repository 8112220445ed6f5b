"""An episode's figures read together (``ReadModels.episode_figures``, what the episode page
shows) are the figures read one by one; the miss run counted in SQL follows clinical order;
and a block of plain reads can run without a transaction."""

from __future__ import annotations

import random
from datetime import date, timedelta
from uuid import uuid4

import pytest

from episodes import EpisodeNotFound
from projections import ReadModels
from projections.queries.attendance import miss_run
from tests.pathways import admitted_on, attend

D = date.fromisoformat


def one_by_one(reads: ReadModels, episode, on: date | None) -> dict:
    return {
        "intensity": reads.intensity(episode, as_of=on),
        "attendance": reads.attendance(episode, as_of=on),
        "scores": reads.outcome_scores(episode), "utilization": reads.utilization(episode, on=on),
    }


def together(reads: ReadModels, episode, on: date | None) -> dict:
    figures = reads.episode_figures(episode, on, with_status=False)
    assert figures.status is None
    return {"intensity": figures.intensity, "attendance": figures.attendance,
            "scores": figures.scores, "utilization": figures.utilization}


def test_the_figures_read_together_are_the_figures_read_one_by_one(any_projected, clinician):
    app, reads = any_projected, ReadModels(any_projected)
    episode = admitted_on(app, clinician, D("2026-03-02"))
    for day in ("2026-03-02", "2026-03-04", "2026-03-06", "2026-03-09", "2026-03-11"):
        attend(app, episode, clinician, D(day))
    app.record_absence(episode, clinician, effective_date="2026-03-13", kind="group", minutes=180)
    app.record_absence(episode, clinician, effective_date="2026-03-16", kind="group", minutes=180,
                       excused=True)
    app.place_on_hold(episode, clinician, effective_date="2026-03-18", reason="inpatient stay")
    app.resume(episode, clinician, effective_date="2026-03-25")
    attend(app, episode, clinician, D("2026-03-25"), kind="individual", minutes=50)
    app.change_level_of_care(episode, clinician, effective_date="2026-04-06", kind="taper",
                             reason="tapering before discharge")
    app.record_absence(episode, clinician, effective_date="2026-04-08", kind="group", minutes=180)
    app.record_outcome(episode, clinician, effective_date="2026-04-01", instrument="PHQ-9", score=8)
    app.record_authorization(episode, clinician, effective_date=D("2026-03-02"), payer="Medicaid",
                             unit="sessions", authorized=6, start=D("2026-03-02"),
                             end=D("2026-03-31"), next_review=D("2026-03-20"))
    untouched = admitted_on(app, clinician, D("2026-05-04"))  # nothing since its admission

    for subject in (episode, untouched):
        figures = reads.episode_figures(subject)
        assert figures.status == reads.status(subject)
        # Check today (None) and past clinical dates: mid-stay, during the hold, before admission.
        for on in (None, D("2026-03-12"), D("2026-03-20"), D("2026-02-01")):
            assert together(reads, subject, on) == one_by_one(reads, subject, on), (subject, on)
    # Check the figures are not empty, so the comparison above compared something.
    figures = reads.episode_figures(episode)
    assert figures.attendance.total.missed == 2 and figures.attendance.consecutive_misses == 1
    # W10 3 groups: 9 h; W11 2 groups, a miss: 6 h; W12 and W13 partly on hold, under 9 h.
    assert [w.classification for w in figures.intensity.weeks][:4] == [
        "meets", "below", "on-hold", "on-hold"]
    assert figures.scores.phq9.latest == 8 and figures.utilization.authorizations[0].used == 6

    with pytest.raises(EpisodeNotFound):
        reads.episode_figures(uuid4())


@pytest.mark.parametrize("seed", range(6))
def test_the_miss_run_counted_in_sql_follows_clinical_order(projected, clinician, seed):
    """Sessions recorded in a shuffled order, several on a day: the run and the last attended
    day are those of the sessions sorted by date, then by the order recorded."""
    rng = random.Random(seed)
    reads = ReadModels(projected)
    admitted = D("2026-03-02")
    episode = admitted_on(projected, clinician, admitted)
    days = [admitted + timedelta(days=rng.randrange(15)) for _ in range(18)]  # days repeat
    recorded = []  # (day, order recorded, outcome)
    for order, day in enumerate(days):
        outcome = rng.choice(("attended", "missed", "missed", "excused", "cancelled"))
        if outcome == "attended":
            attend(projected, episode, clinician, day)
        elif outcome == "cancelled":
            projected.record_program_cancellation(episode, clinician, effective_date=day,
                                                   kind="group", minutes=180)
        else:
            projected.record_absence(episode, clinician, effective_date=day, kind="group",
                                     minutes=180, excused=outcome == "excused")
        recorded.append((day, order, outcome))
    for as_of in (admitted + timedelta(days=5), admitted + timedelta(days=10), None):
        counted = [r for r in recorded if as_of is None or r[0] <= as_of]
        latest_first = [outcome for _, _, outcome in sorted(counted, reverse=True)]
        attendance = reads.attendance(episode, as_of=as_of)
        assert attendance.consecutive_misses == miss_run(latest_first), (seed, as_of)
        attended = [day for day, _, outcome in counted if outcome == "attended"]
        assert attendance.last_attended_on == max(attended, default=None), (seed, as_of)


def test_plain_reads_run_without_a_transaction_on_postgresql(any_projected, database_url):
    """On PostgreSQL ``together(transaction=False)`` reads in autocommit (no BEGIN and ROLLBACK
    round trips), and the pooled connection goes back to transactions afterwards."""
    reads = ReadModels(any_projected)
    postgres = database_url.startswith("postgresql")

    def autocommit(connection) -> bool:
        dbapi = connection.connection.dbapi_connection
        return bool(dbapi.autocommit) if postgres else dbapi.isolation_level is None

    with reads.together(transaction=False) as connection:
        assert autocommit(connection) is postgres
        assert reads.programs() == []  # the block's queries run on it
    with reads.together() as connection:
        assert autocommit(connection) is False
    with reads.engine.connect() as connection:
        assert autocommit(connection) is False
