"""Length of stay, told as stories: a stay with a hold, a same-day stay, an open episode kept
out of the averages, a stay across the new year, and a discharge that was recorded late and
then corrected, asked about as of days before and after.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from uuid import uuid4

import pytest

from episodes import EpisodeNotFound
from projections import ReadModels
from tests.pathways import (
    admit,
    admitted_episode,
    attend,
    complete_intake,
    define_standard_program,
    refer,
)

D = date.fromisoformat
TODAY = D("2026-06-01")  # the fixed clock's date



def end_of(clock, day: str) -> None:
    """The clinic records its day's work at 17:00 UTC that day."""
    clock.set(datetime.fromisoformat(day).replace(hour=17, tzinfo=timezone.utc))


def discharge(app, episode, actor, on: str, discharge_type: str = "completed"):
    return app.discharge(episode, actor, effective_date=on, discharge_type=discharge_type,
                         reason=f"discharge: {discharge_type}")


def stay_episode(app, actor, referred: str, admitted: str, discharged: str | None = None,
                 program: str = "iop-adult", clinic: str = "north",
                 discharge_type: str = "completed", patient: str = "Patient/1001"):
    episode = refer(app, actor, D(referred), patient_ref=patient)
    complete_intake(app, episode, actor, D(referred))
    admit(app, episode, actor, D(admitted), program_code=program, clinic=clinic)
    if discharged:
        discharge(app, episode, actor, discharged, discharge_type)
    return episode


def test_a_stay_with_a_hold_counts_calendar_active_and_treatment_days(any_projected, clinician):
    app = any_projected
    episode = admitted_episode(app, clinician, D("2026-02-02"))  # admitted 2026-02-04
    for day in ("2026-02-04", "2026-02-06", "2026-02-09"):
        attend(app, episode, clinician, D(day))
    attend(app, episode, clinician, D("2026-02-09"), minutes=50, kind="individual")  # same date
    app.place_on_hold(episode, clinician, effective_date="2026-02-13",
                      reason="short inpatient medical stay")
    attend(app, episode, clinician, D("2026-02-13"))  # the hold's first day may hold a session
    app.resume(episode, clinician, effective_date="2026-02-23")
    for day in ("2026-02-23", "2026-02-25"):
        attend(app, episode, clinician, D(day))
    app.record_absence(episode, clinician, effective_date="2026-02-27", kind="group", minutes=180)
    discharge(app, episode, clinician, "2026-03-06")

    stay = ReadModels(app).length_of_stay(episode, TODAY)

    # Check the dates and the calendar days: 2026-02-04 to 2026-03-06 is 24 days to the end of
    # February + 6 = 30 days apart, + 1 for the admission day = 31.
    assert (stay.referred_on, stay.admitted_on, stay.discharged_on) == (
        D("2026-02-02"), D("2026-02-04"), D("2026-03-06"))
    assert (stay.calendar_days, stay.censored, stay.discharge_type) == (31, False, "completed")
    # Check the hold: on hold at the end of 02-13 .. 02-22, resumed 02-23: 23 - 13 = 10 days;
    # active days 31 - 10 = 21.
    assert (stay.held_days, stay.active_days) == (10, 21)
    # Check treatment days: 02-04, 02-06, 02-09 (two sessions, one date), 02-13, 02-23, 02-25 = 6;
    # the missed group of 02-27 is not a treatment day.
    assert stay.treatment_days == 6
    # Check weeks and target: 31 / 7 = 4.43 -> 4.4 weeks; 31 / 84 * 100 = 36.90 -> 36.9 %.
    assert (stay.weeks, stay.target_days, stay.percent_of_target) == (4.4, 84, 36.9)
    # Check the referral-to-admission wait: 02-04 - 02-02 = 2 days; nothing corrected.
    assert (stay.wait_days, stay.corrected_since) == (2, False)

    # Check the same episode asked on a day inside the hold: open, so censored at 2026-02-18:
    # 02-04 .. 02-18 = 14 + 1 = 15 days, held 02-13 .. 02-18 = 18 - 13 + 1 = 6, active 9;
    # treatment days up to then: 02-04, 02-06, 02-09, 02-13 = 4.
    during = ReadModels(app).length_of_stay(episode, D("2026-02-18"), known_on=TODAY)
    assert (during.censored, during.discharged_on, during.discharge_type) == (True, None, None)
    assert (during.calendar_days, during.held_days, during.active_days) == (15, 6, 9)
    assert during.treatment_days == 4


def test_a_same_day_stay_is_one_day(projected, clinician):
    episode = admitted_episode(projected, clinician, D("2026-03-01"), D("2026-03-02"))
    discharge(projected, episode, clinician, "2026-03-02", "left-against-advice")

    stay = ReadModels(projected).length_of_stay(episode, TODAY)
    # Check admission and discharge on 2026-03-02: 0 days apart + 1 = 1 day, all of it active.
    assert (stay.calendar_days, stay.held_days, stay.active_days) == (1, 0, 1)
    # Check weeks: 1 / 7 = 0.14 -> 0.1; percent of the 84-day target: 1 / 84 * 100 = 1.19 -> 1.2.
    assert (stay.weeks, stay.percent_of_target, stay.censored) == (0.1, 1.2, False)


def test_a_stay_across_the_new_year(projected, clinician):
    episode = admitted_episode(projected, clinician, D("2025-12-17"), D("2025-12-20"))
    discharge(projected, episode, clinician, "2026-01-15")

    stay = ReadModels(projected).length_of_stay(episode, TODAY)
    # Check 2025-12-20 .. 2025-12-31 is 11 days apart, + 15 into January = 26, + 1 = 27 days.
    assert (stay.calendar_days, stay.weeks) == (27, 3.9)  # 27 / 7 = 3.86
    assert stay.wait_days == 3  # referred 2025-12-17


def test_a_referral_not_admitted_has_no_stay_and_an_unknown_one_is_not_found(
        projected, clinician):
    reads = ReadModels(projected)
    define_standard_program(projected, clinician)
    waiting = refer(projected, clinician, D("2026-05-04"))
    projected.waitlist(waiting, clinician, effective_date="2026-05-05")

    stay = reads.length_of_stay(waiting, TODAY)
    # Check the referral is on the record but there is no stay to measure.
    assert (stay.admitted_on, stay.calendar_days, stay.censored) == (None, None, False)
    with pytest.raises(EpisodeNotFound):
        reads.length_of_stay(uuid4(), TODAY)


def test_the_summary_per_program_and_discharge_type_keeps_open_episodes_out(
        any_projected, clinician):
    app = any_projected
    define_standard_program(app, clinician)  # iop-adult: 12 weeks = 84 days
    define_standard_program(app, clinician, code="dbt-6wk", name="DBT skills, 6 weeks",
                            target_weeks=6, clinics=["harbor"])  # 42 days
    # Adult IOP: a same-day drop-out, a 56-day and an 88-day completion, one still in care.
    stay_episode(app, clinician, "2026-01-02", "2026-01-05", "2026-01-05",
                 discharge_type="left-against-advice")  # 0 + 1 = 1
    stay_episode(app, clinician, "2026-01-01", "2026-01-05", "2026-03-01")  # 26 + 28 + 1 + 1 = 56
    stay_episode(app, clinician, "2026-01-20", "2026-02-02", "2026-04-30")  # 26 + 31 + 30 + 1 = 88
    stay_episode(app, clinician, "2026-02-28", "2026-03-02")  # open: 29 + 30 + 31 + 1 + 1 = 92
    # DBT: a 40-day completion and a 14-day drop-out.
    stay_episode(app, clinician, "2026-01-10", "2026-01-12", "2026-02-20", "dbt-6wk",
                 "harbor")  # 19 + 20 + 1 = 40
    stay_episode(app, clinician, "2026-02-02", "2026-02-09", "2026-02-22", "dbt-6wk", "harbor",
                 discharge_type="left-against-advice")  # 13 + 1 = 14
    # A referral still on the waitlist counts nowhere.
    waiting = refer(app, clinician, D("2026-05-01"))
    app.waitlist(waiting, clinician, effective_date="2026-05-02")

    summary = ReadModels(app).length_of_stay_summary(TODAY)

    # Check overall: discharged stays 1, 14, 40, 56, 88 -> median 40; mean 199 / 5 = 39.8;
    # weeks 40 / 7 = 5.71 -> 5.7 and 39.8 / 7 = 5.69 -> 5.7; the open stay is censored.
    overall = summary.overall
    assert (overall.count, overall.censored) == (5, 1)
    assert (overall.median_days, overall.mean_days) == (40.0, 39.8)
    assert (overall.median_weeks, overall.mean_weeks) == (5.7, 5.7)
    # Check the bins: 1 -> 0-2; 14 -> 2-4 (lower edge included); 40 -> 4-6; 56 -> 8-10; 88 -> 12+.
    assert overall.bins() == {
        "0-2": 1, "2-4": 1, "4-6": 1, "6-8": 0, "8-10": 1, "10-12": 0, "12+": 1}
    assert [name for name, _ in overall.distribution] == [
        "0-2", "2-4", "4-6", "6-8", "8-10", "10-12", "12+"]

    dbt, iop = summary.by_program
    # Check Adult IOP: 1, 56, 88 -> median 56; mean 145 / 3 = 48.33 -> 48.3; the open stay (92
    # days so far) is counted as censored and left out; 56 / 84 * 100 = 66.67 -> 66.7 % of target.
    assert (iop.key, iop.count, iop.censored) == ("iop-adult", 3, 1)
    assert (iop.median_days, iop.mean_days, iop.target_days) == (56.0, 48.3, 84)
    assert iop.median_percent_of_target == 66.7
    assert iop.bins() == {"0-2": 1, "2-4": 0, "4-6": 0, "6-8": 0, "8-10": 1, "10-12": 0, "12+": 1}
    # Check DBT: 14 and 40 -> median (14 + 40) / 2 = 27; mean 27; 27 / 42 * 100 = 64.29 -> 64.3.
    assert (dbt.key, dbt.count, dbt.censored) == ("dbt-6wk", 2, 0)
    assert (dbt.median_days, dbt.mean_days, dbt.median_percent_of_target) == (27.0, 27.0, 64.3)

    completed, left = summary.by_discharge_type
    # Check completed: 40, 56, 88 -> median 56, mean 184 / 3 = 61.33 -> 61.3.
    assert (completed.key, completed.count, completed.median_days, completed.mean_days) == (
        "completed", 3, 56.0, 61.3)
    # Check left against advice: 1 and 14 -> median 7.5, mean 7.5; no open episode has a type.
    assert (left.key, left.count, left.censored, left.median_days, left.mean_days) == (
        "left-against-advice", 2, 0, 7.5, 7.5)
    assert summary.corrected_since == 0

    # Check the referral-to-admission wait per program, open episodes included:
    # DBT 2 and 7 days -> median 4.5, mean 4.5; Adult IOP 3, 4, 13, 2 -> sorted 2, 3, 4, 13,
    # median (3 + 4) / 2 = 3.5, mean 22 / 4 = 5.5.
    dbt_wait, iop_wait = ReadModels(app).referral_to_admission_wait(TODAY)
    assert (dbt_wait.program_code, dbt_wait.count, dbt_wait.median_days, dbt_wait.mean_days) == (
        "dbt-6wk", 2, 4.5, 4.5)
    assert (iop_wait.program_code, iop_wait.count, iop_wait.median_days, iop_wait.mean_days) == (
        "iop-adult", 4, 3.5, 5.5)


def test_an_empty_record_has_an_empty_summary(projected):
    summary = ReadModels(projected).length_of_stay_summary(TODAY)
    # Check nothing is invented: no stays, no median, every bin empty.
    overall = summary.overall
    assert (overall.count, overall.median_days, overall.mean_days) == (0, None, None)
    assert set(overall.bins().values()) == {0}
    assert (summary.by_program, summary.by_discharge_type) == ((), ())


def test_a_late_discharge_and_its_correction_do_not_rewrite_earlier_answers(
        projected, clock, clinician):
    reads = ReadModels(projected)
    # The record is kept live: each day's work is recorded at 17:00 UTC that day.
    end_of(clock, "2026-02-02")
    define_standard_program(projected, clinician)
    episode = refer(projected, clinician, D("2026-02-02"))
    end_of(clock, "2026-02-03")
    complete_intake(projected, episode, clinician, D("2026-02-03"))
    end_of(clock, "2026-02-04")
    admit(projected, episode, clinician, D("2026-02-04"))
    attend(projected, episode, clinician, D("2026-02-04"))
    # The patient stops coming after 2026-03-06; the discharge is recorded on 2026-03-16,
    # dated 2026-03-13 ...
    end_of(clock, "2026-03-16")
    discharged = discharge(projected, episode, clinician, "2026-03-13", "left-against-advice")
    # ... and on 2026-03-20 amended: the last day in the program was 2026-03-06.
    end_of(clock, "2026-03-20")
    projected.amend_event(episode, clinician, target_version=discharged.version,
                          changes={"effective_date": "2026-03-06"},
                          reason="the last day in the program was Friday 2026-03-06")

    # Check as of 2026-03-14: the record then held no discharge, so the episode was open:
    # 02-04 .. 03-14 = 24 + 14 = 38 days apart + 1 = 39 days, censored; today's record differs.
    before = reads.length_of_stay_summary(D("2026-03-14"))
    assert (before.overall.count, before.overall.censored) == (0, 1)
    assert before.overall.median_days is None
    assert before.corrected_since == 1
    then = reads.length_of_stay(episode, D("2026-03-14"))
    assert (then.censored, then.calendar_days, then.corrected_since) == (True, 39, True)
    # Check the same date by today's knowledge: discharged 03-06, 24 + 6 + 1 = 31 days.
    known = reads.length_of_stay(episode, D("2026-03-14"), known_on=D("2026-03-20"))
    assert (known.censored, known.discharged_on, known.calendar_days) == (
        False, D("2026-03-06"), 31)

    # Check as of 2026-03-17: the late discharge is on the record, the amendment not yet:
    # discharged 03-13, 24 + 13 + 1 = 38 days.
    middle = reads.length_of_stay_summary(D("2026-03-17"))
    assert (middle.overall.count, middle.overall.censored) == (1, 0)
    assert middle.overall.median_days == 38.0
    assert middle.corrected_since == 1
    assert middle.by_discharge_type[0].key == "left-against-advice"

    # Check as of 2026-03-20, after the amendment: 31 days, and nothing corrected since.
    after = reads.length_of_stay_summary(D("2026-03-20"))
    assert (after.overall.count, after.overall.median_days, after.corrected_since) == (1, 31.0, 0)


def test_an_episode_entered_in_error_leaves_the_summary(projected, clock, clinician):
    reads = ReadModels(projected)
    episode = admitted_episode(projected, clinician, D("2026-02-02"))  # admitted 2026-02-04
    discharge(projected, episode, clinician, "2026-02-20")
    # Check it counts while the record holds it: 02-04 .. 02-20 = 16 + 1 = 17 days.
    assert reads.length_of_stay_summary(TODAY).overall.median_days == 17.0

    clock.set(datetime(2026, 6, 3, 12, tzinfo=timezone.utc))
    projected.mark_entered_in_error(episode, clinician, reason="recorded against the wrong patient")
    # Check the summary for 2026-06-01 as held then still counts it, but one episode was
    # corrected since; by the record of 2026-06-03 it is gone.
    then = reads.length_of_stay_summary(TODAY)
    assert (then.overall.count, then.corrected_since) == (1, 1)
    now = reads.length_of_stay_summary(TODAY, known_on=D("2026-06-03"))
    assert (now.overall.count, now.by_program) == (0, ())
