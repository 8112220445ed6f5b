"""Outcomes read model, told as the quarter's review: how episodes ended, who came back
within 30 days, and how PHQ-9 / GAD-7 scores moved.  Every expected figure is worked out
by hand in a comment."""

from __future__ import annotations

from datetime import date, timedelta
from uuid import UUID

import pytest

from episodes import EpisodeNotFound
from projections import ReadModels
from projections.queries.outcomes import DischargeCount, Readmission
from tests.pathways import admit, complete_intake, define_standard_program, refer

D = date.fromisoformat



def programs(app, actor) -> None:
    define_standard_program(app, actor)  # iop-adult
    define_standard_program(app, actor, code="iop-teen", name="Teen IOP", age_band="adolescent",
                            clinics=["north"])


def stay(app, actor, patient: str, admitted: date, discharged: date | None = None,
         discharge_type: str = "completed", program: str = "iop-adult",
         phq9: int | None = 18, gad7: int | None = 13) -> UUID:
    """Referral two days before the admission, intake (with baselines) the day before."""
    episode = refer(app, actor, admitted - timedelta(days=2), patient_ref=patient)
    complete_intake(app, episode, actor, admitted - timedelta(days=1), phq9=phq9, gad7=gad7)
    admit(app, episode, actor, admitted, program_code=program)
    if discharged is not None:
        app.discharge(episode, actor, effective_date=discharged, discharge_type=discharge_type,
                      reason="discharge planned with the patient")
    return episode


def measure(app, actor, episode: UUID, on: str, instrument: str, score: int) -> int:
    return app.record_outcome(episode, actor, effective_date=D(on), instrument=instrument,
                              score=score).version


# ---------------------------------------------------------------- discharge mix


def test_march_discharge_mix_and_completion_rates(projected, clinician):
    app, reads = projected, ReadModels(projected)
    programs(app, clinician)
    stay(app, clinician, "Patient/1", D("2026-02-02"), D("2026-03-02"), "completed")
    stay(app, clinician, "Patient/2", D("2026-02-02"), D("2026-03-31"), "completed")  # last day
    stay(app, clinician, "Patient/3", D("2026-02-02"), D("2026-03-10"), "transferred")
    stay(app, clinician, "Patient/4", D("2026-02-02"), D("2026-03-15"), "stepped-down")
    stay(app, clinician, "Patient/5", D("2026-02-02"), D("2026-03-20"), "left-against-advice")
    stay(app, clinician, "Patient/6", D("2026-02-02"), D("2026-03-25"), "stepped-up",
         program="iop-teen")
    # Outside the period, or not a discharge that counts:
    stay(app, clinician, "Patient/7", D("2026-02-02"), D("2026-04-01"), "completed")
    stay(app, clinician, "Patient/8", D("2026-02-02"), D("2026-02-28"), "completed")
    stay(app, clinician, "Patient/9", D("2026-02-02"))  # still in care
    wrong = stay(app, clinician, "Patient/10", D("2026-02-02"), D("2026-03-05"), "completed")
    app.mark_entered_in_error(wrong, clinician, reason="recorded under the wrong patient")

    mix = reads.discharge_mix(D("2026-03-01"), D("2026-03-31"))

    # Check the six March discharges (patients 1-6) by type, every type listed in vocabulary order.
    assert mix.discharges == 6
    assert mix.by_type == (
        DischargeCount("completed", 2, 33.3),  # 2 / 6 = 33.3%
        DischargeCount("transferred", 1, 16.7),  # 1 / 6
        DischargeCount("stepped-down", 1, 16.7),
        DischargeCount("stepped-up", 1, 16.7),
        DischargeCount("left-against-advice", 1, 16.7),
        DischargeCount("administrative", 0, 0.0),
        DischargeCount("benefits-ended", 0, 0.0),
        DischargeCount("not-progressing", 0, 0.0),
        DischargeCount("other", 0, 0.0),
    )
    # Check completion 2 / 6 = 33.3%; a step-down is a transfer: (2 + 1 + 1) / 6 = 66.7%.
    assert (mix.completed, mix.transferred) == (2, 2)
    assert mix.completion_percent == 33.3
    assert mix.positive_outcome_percent == 66.7

    # Check one program: the adult program had 5 of them (patient 6 was in the teen program).
    adult = reads.discharge_mix(D("2026-03-01"), D("2026-03-31"), program_code="iop-adult")
    assert adult.discharges == 5
    assert adult.completion_percent == 40.0  # 2 / 5
    assert adult.positive_outcome_percent == 80.0  # (2 + 2) / 5

    # Check an empty period has no rates rather than a division by zero.
    empty = reads.discharge_mix(D("2026-01-01"), D("2026-01-31"))
    assert empty.discharges == 0
    assert (empty.completion_percent, empty.positive_outcome_percent) == (None, None)


# ---------------------------------------------------------------- 30-day readmission


def test_readmissions_within_30_days_across_the_new_year(any_projected, clinician):
    app, reads = any_projected, ReadModels(any_projected)
    programs(app, clinician)
    # A: discharged 2026-01-10, back on 2026-02-09: 21 days to Jan 31 + 9 = day 30 -> counts.
    a = stay(app, clinician, "Patient/A", D("2025-12-01"), D("2026-01-10"))
    a_again = stay(app, clinician, "Patient/A", D("2026-02-09"))
    # B: discharged 2026-01-12, back on 2026-02-12: 19 days to Jan 31 + 12 = day 31 -> does not.
    stay(app, clinician, "Patient/B", D("2025-12-01"), D("2026-01-12"))
    stay(app, clinician, "Patient/B", D("2026-02-12"))
    # C: a planned step-down on 2026-01-15, then back on 2026-01-25 (day 10): excluded entirely.
    stay(app, clinician, "Patient/C", D("2025-12-01"), D("2026-01-15"), "stepped-down")
    stay(app, clinician, "Patient/C", D("2026-01-25"))
    # D: left against advice 2025-12-20, back 2026-01-19: 11 days to Dec 31 + 19 = day 30 -> counts.
    d = stay(app, clinician, "Patient/D", D("2025-11-03"), D("2025-12-20"), "left-against-advice")
    d_again = stay(app, clinician, "Patient/D", D("2026-01-19"))
    # E: completed 2026-01-20; referred again 2026-01-25 but never admitted -> not readmitted.
    stay(app, clinician, "Patient/E", D("2025-12-01"), D("2026-01-20"))
    refer(app, clinician, D("2026-01-25"), patient_ref="Patient/E")
    # F: transferred 2026-01-05 and admitted to a new episode the same day: day 0 -> not counted.
    stay(app, clinician, "Patient/F", D("2025-12-01"), D("2026-01-05"), "transferred")
    stay(app, clinician, "Patient/F", D("2026-01-05"))

    rate = reads.readmission_rate(D("2025-12-01"), D("2026-01-31"))

    # Check eligible discharges A, B, D, E, F = 5 (C's step-down left out); readmitted A and D.
    assert (rate.eligible, rate.excluded_step_downs, rate.readmitted) == (5, 1, 2)
    assert rate.percent == 40.0  # 2 / 5
    assert rate.window_days == 30
    assert rate.final_on == D("2026-03-02")  # Jan 31 + 30 days
    # Check the readmissions, in discharge order, each with its day in the window.
    assert rate.readmissions == (
        Readmission(d, "Patient/D", D("2025-12-20"), "left-against-advice",
                    d_again, D("2026-01-19"), 30),
        Readmission(a, "Patient/A", D("2026-01-10"), "completed", a_again, D("2026-02-09"), 30),
    )

    # Check the period is by discharge date: January alone has A, B, E, F eligible (D was in December).
    january = reads.readmission_rate(D("2026-01-01"), D("2026-01-31"))
    assert (january.eligible, january.readmitted, january.percent) == (4, 1, 25.0)  # 1 / 4


# ---------------------------------------------------------------- PHQ-9 / GAD-7 per episode


def test_an_amended_score_changes_the_episode_response(projected, clinician):
    app, reads = projected, ReadModels(projected)
    programs(app, clinician)
    episode = stay(app, clinician, "Patient/1001", D("2026-02-04"))  # intake 02-03: PHQ-9 18, GAD-7 13
    measure(app, clinician, episode, "2026-03-04", "PHQ-9", 12)
    typo = measure(app, clinician, episode, "2026-04-01", "PHQ-9", 10)  # the form said 8
    measure(app, clinician, episode, "2026-04-01", "GAD-7", 9)

    # Check before the correction: 18 -> 10 is a 44% drop (2 * 10 = 20 > 18): no response yet.
    before = reads.outcome_scores(episode).phq9
    assert (before.latest, before.change, before.response) == (10, -8, False)

    app.amend_event(episode, clinician, target_version=typo, changes={"score": 8},
                    reason="score transcribed wrongly from the paper form")
    scores = reads.outcome_scores(episode)

    # Check PHQ-9: baseline is the intake's 18, latest the amended 8: change -10; 2 * 8 = 16 <= 18
    # is a 50%+ drop (55.6%) -> response; 8 is not below 5 -> no remission.
    phq9 = scores.phq9
    assert (phq9.measurements, phq9.baseline_on, phq9.baseline) == (3, D("2026-02-03"), 18)
    assert (phq9.latest_on, phq9.latest, phq9.change) == (D("2026-04-01"), 8, -10)
    assert (phq9.response, phq9.remission) == (True, False)
    # Check GAD-7 by the same rule: 13 -> 9, change -4; 2 * 9 = 18 > 13 (a 30.8% drop): no response.
    gad7 = scores.gad7
    assert (gad7.measurements, gad7.baseline, gad7.latest, gad7.change) == (2, 13, 9, -4)
    assert (gad7.response, gad7.remission) == (False, False)


def test_a_single_measurement_has_no_change_and_an_unknown_episode_is_not_found(projected, clinician):
    app, reads = projected, ReadModels(projected)
    programs(app, clinician)
    episode = stay(app, clinician, "Patient/1002", D("2026-02-04"), gad7=None)  # PHQ-9 18 only

    scores = reads.outcome_scores(episode)

    # Check the baseline alone: latest is the baseline, and no change, response or remission yet.
    assert (scores.phq9.measurements, scores.phq9.baseline, scores.phq9.latest) == (1, 18, 18)
    assert (scores.phq9.change, scores.phq9.response, scores.phq9.remission) == (None, None, None)
    assert scores.gad7 is None  # never measured
    with pytest.raises(EpisodeNotFound):
        reads.outcome_scores(UUID(int=7))


def test_same_day_measurements_count_in_the_order_they_were_recorded(projected, clinician):
    app, reads = projected, ReadModels(projected)
    programs(app, clinician)
    episode = stay(app, clinician, "Patient/1003", D("2026-02-04"))  # intake 02-03: PHQ-9 18
    measure(app, clinician, episode, "2026-02-03", "PHQ-9", 17)  # same day as the intake, after it
    measure(app, clinician, episode, "2026-03-02", "PHQ-9", 14)
    measure(app, clinician, episode, "2026-03-02", "PHQ-9", 9)  # re-administered later that day

    phq9 = reads.outcome_scores(episode).phq9

    # Check the baseline is the intake's 18 (recorded first on 02-03) and the latest the 9
    # (recorded last on 03-02): change 9 - 18 = -9; 2 * 9 = 18 <= 18 is a 50% drop -> response.
    assert (phq9.measurements, phq9.baseline, phq9.latest, phq9.change) == (4, 18, 9, -9)
    assert phq9.response is True


# ---------------------------------------------------------------- summary per program


def test_outcome_summary_per_program(any_projected, clinician):
    app, reads = any_projected, ReadModels(any_projected)
    programs(app, clinician)
    # Adult program (intakes carry GAD-7 13 each):
    e1 = stay(app, clinician, "Patient/E1", D("2026-02-04"), phq9=18)
    measure(app, clinician, e1, "2026-03-30", "PHQ-9", 8)  # -10; 16 <= 18 response; not < 5
    measure(app, clinician, e1, "2026-03-30", "GAD-7", 6)  # -7; 12 <= 13 response; not < 5
    e2 = stay(app, clinician, "Patient/E2", D("2026-02-04"), phq9=20)
    measure(app, clinician, e2, "2026-03-30", "PHQ-9", 4)  # -16; response; 4 < 5 remission
    e3 = stay(app, clinician, "Patient/E3", D("2026-02-04"), phq9=12)
    measure(app, clinician, e3, "2026-03-30", "PHQ-9", 7)  # -5; 14 > 12 no response
    stay(app, clinician, "Patient/E4", D("2026-02-04"), phq9=15)  # baseline only
    e5 = stay(app, clinician, "Patient/E5", D("2026-02-04"), phq9=10)
    measure(app, clinician, e5, "2026-03-30", "PHQ-9", 5)  # -5; exactly 50%: response; 5 is not < 5
    # Teen program:
    t1 = stay(app, clinician, "Patient/T1", D("2026-02-04"), program="iop-teen", phq9=9)
    measure(app, clinician, t1, "2026-03-30", "PHQ-9", 3)  # -6; 6 <= 9 response; remission
    t2 = stay(app, clinician, "Patient/T2", D("2026-02-04"), program="iop-teen", phq9=0)
    measure(app, clinician, t2, "2026-03-30", "PHQ-9", 0)  # 0; a baseline of 0 cannot drop; remission
    # A referral never admitted does not count, whatever its scores.
    n1 = refer(app, clinician, D("2026-02-02"), patient_ref="Patient/N1")
    complete_intake(app, n1, clinician, D("2026-02-03"), phq9=20)
    measure(app, clinician, n1, "2026-03-30", "PHQ-9", 2)

    adult, teen = reads.outcome_summary("PHQ-9")

    # Check adults: measured E1-E5 = 5; followed up E1, E2, E3, E5 = 4;
    # mean change (-10 - 16 - 5 - 5) / 4 = -9.0; response E1, E2, E5 = 3 / 4; remission E2 = 1 / 4.
    assert (adult.program_code, adult.instrument) == ("iop-adult", "PHQ-9")
    assert (adult.episodes_measured, adult.with_follow_up, adult.mean_change) == (5, 4, -9.0)
    assert (adult.response_percent, adult.remission_percent) == (75.0, 25.0)
    # Check teens: 2 followed up; mean (-6 + 0) / 2 = -3.0; response T1 = 1 / 2; remission 2 / 2.
    assert (teen.program_code, teen.episodes_measured, teen.with_follow_up) == ("iop-teen", 2, 2)
    assert (teen.mean_change, teen.response_percent, teen.remission_percent) == (-3.0, 50.0, 100.0)

    # Check GAD-7 for adults: 5 intakes measured, only E1 followed up: -7, response, no remission.
    (gad,) = reads.outcome_summary("GAD-7", program_code="iop-adult")
    assert (gad.episodes_measured, gad.with_follow_up, gad.mean_change) == (5, 1, -7.0)
    assert (gad.response_percent, gad.remission_percent) == (100.0, 0.0)

    # Check a discharge-date range: only E1 and E2, discharged in April, count.
    for episode, day in ((e1, "2026-04-10"), (e2, "2026-04-20")):
        app.discharge(episode, clinician, effective_date=D(day), discharge_type="completed",
                      reason="program completed")
    (april,) = reads.outcome_summary("PHQ-9", discharged_from=D("2026-04-01"),
                                     discharged_to=D("2026-04-30"))
    # mean (-10 - 16) / 2 = -13.0; response 2 / 2; remission E2 = 1 / 2.
    assert (april.program_code, april.with_follow_up, april.mean_change) == ("iop-adult", 2, -13.0)
    assert (april.response_percent, april.remission_percent) == (100.0, 50.0)
