"""The census, told through one March at three clinics: who was in treatment at the end of each
day, the admissions and discharges, the average daily census, and the waitlist; and how a hold
recorded two days late and an amended step-down change the answers for days already past.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from uuid import UUID

from projections import ReadModels
from projections.queries.census import CensusCount
from tests.pathways import admit, attend, complete_intake, define_standard_program, refer

D = date.fromisoformat



@dataclass
class March:
    p1: UUID  # Adult IOP, north: on hold 03-10 (recorded 03-12) to 03-13, discharged 03-20
    p2: UUID  # Adult IOP, south: admitted 03-04, still in care
    p3: UUID  # Adult IOP, north: admitted and discharged on 03-05
    p4: UUID  # DBT, harbor: admitted 03-09, discharged 03-27
    p5: UUID  # PHP, north: admitted 03-03 at 2.5, stepped down to 2.1 on 03-11, amended to 03-09
    w1: UUID  # referred 02-20, waitlisted 02-25, still waiting
    w2: UUID  # referred 03-01, waitlisted 03-03, admitted to DBT at harbor 03-12


def record_march(app, clock, actor) -> March:
    """Each day's work is recorded at 17:00 UTC that day, so the record can be read as it
    stood at the end of any day."""

    def day(iso: str) -> date:
        clock.set(datetime.fromisoformat(iso).replace(hour=17, tzinfo=timezone.utc))
        return D(iso)

    def discharge(episode: UUID, on: date, kind: str) -> None:
        app.discharge(episode, actor, effective_date=on, discharge_type=kind, reason=kind)

    on = day("2026-02-20")
    define_standard_program(app, actor)  # iop-adult at north and south, 12 weeks
    define_standard_program(app, actor, code="dbt-6wk", name="DBT skills", target_weeks=6,
                            clinics=["harbor"])
    app.define_program(actor, code="php-adult", name="Adult partial hospitalization",
                       level_of_care="2.5", days_per_week=5, clinics=["north"])
    w1 = refer(app, actor, on, patient_ref="Patient/W1")
    app.waitlist(w1, actor, effective_date=day("2026-02-25"))
    on = day("2026-02-26")
    p1 = refer(app, actor, on, patient_ref="Patient/P1")
    p5 = refer(app, actor, on, patient_ref="Patient/P5", direction="step-down",
               requested_level="2.5")
    on = day("2026-02-27")
    complete_intake(app, p1, actor, on)
    complete_intake(app, p5, actor, on, recommended_level="2.5")
    p2 = refer(app, actor, on, patient_ref="Patient/P2")
    w2 = refer(app, actor, day("2026-03-01"), patient_ref="Patient/W2")
    on = day("2026-03-02")
    admit(app, p1, actor, on)
    attend(app, p1, actor, on)
    complete_intake(app, p2, actor, on)
    complete_intake(app, w2, actor, on)
    p3 = refer(app, actor, on, patient_ref="Patient/P3")
    on = day("2026-03-03")
    admit(app, p5, actor, on, program_code="php-adult")
    app.waitlist(w2, actor, effective_date=on)
    complete_intake(app, p3, actor, on)
    on = day("2026-03-04")
    admit(app, p2, actor, on, clinic="south")
    attend(app, p1, actor, on)
    p4 = refer(app, actor, on, patient_ref="Patient/P4")
    on = day("2026-03-05")
    admit(app, p3, actor, on)
    discharge(p3, on, "left-against-advice")  # walked out after the first group
    complete_intake(app, p4, actor, on)
    attend(app, p1, actor, day("2026-03-06"))
    admit(app, p4, actor, day("2026-03-09"), program_code="dbt-6wk", clinic="harbor")
    on = day("2026-03-11")
    step_down = app.change_level_of_care(p5, actor, effective_date=on, kind="step-down",
                                         to_level="2.1", reason="stable; IOP hours are enough")
    on = day("2026-03-12")
    # P1 has been in hospital since 03-10: the hold is recorded today, back-dated.
    app.place_on_hold(p1, actor, effective_date=on - timedelta(days=2), reason="medical admission")
    admit(app, w2, actor, on, program_code="dbt-6wk", clinic="harbor")
    app.resume(p1, actor, effective_date=day("2026-03-13"))
    # The step-down was decided on 03-09, not 03-11: amended a week later.
    day("2026-03-18")
    app.amend_event(p5, actor, target_version=step_down.version,
                    changes={"effective_date": "2026-03-09"}, reason="the team met on 03-09")
    discharge(p1, day("2026-03-20"), "completed")
    discharge(p4, day("2026-03-27"), "completed")
    day("2026-03-31")
    return March(p1, p2, p3, p4, p5, w1, w2)


def test_the_census_on_a_day_as_recorded_then_and_as_known_now(any_projected, clock, clinician):
    record_march(any_projected, clock, clinician)
    reads = ReadModels(any_projected)

    census = reads.census(D("2026-03-10"))
    # Check the end of 03-10 as the record stood then: P1 (its hold not yet recorded), P2, P4,
    # P5 = 4 active; P3 left on 03-05, W2 was still waiting.  By today's record P1 was on hold
    # (onhold does not count): 3.
    assert (census.then, census.now) == (4, 3)
    assert census.by_program == (
        CensusCount("dbt-6wk", 1, 1), CensusCount("iop-adult", 2, 1),
        CensusCount("php-adult", 1, 1))
    assert census.by_clinic == (
        CensusCount("harbor", 1, 1), CensusCount("north", 2, 1), CensusCount("south", 1, 1))
    # Check the level: then P1, P2, P4 at 2.1 and P5 still at 2.5; now P5's step-down is dated
    # 03-09, so P2, P4, P5 are at 2.1 and nobody at 2.5.
    assert census.by_level == (CensusCount("2.1", 3, 3), CensusCount("2.5", 1, 0))
    assert [c.key for c in census.by_level if c.corrected_since] == ["2.5"]

    # Check 03-13 (the hold known by then): P1 resumed, P2, P4, P5 and W2 (admitted 03-12)
    # = 5 on either record, all at 2.1 (P5 stepped down on 03-11 then, on 03-09 now).
    later = reads.census(D("2026-03-13"))
    assert (later.then, later.now) == (5, 5)
    assert later.by_level == (CensusCount("2.1", 5, 5),)
    assert not any(c.corrected_since for c in later.by_program + later.by_clinic)


def test_admissions_discharges_and_the_end_of_day_census_per_day(projected, clock, clinician):
    record_march(projected, clock, clinician)
    flows = ReadModels(projected).admissions_and_discharges(D("2026-03-01"), D("2026-03-14"))

    # Check by today's record, day by day (census = active at the end of the day):
    # 03-02 P1 in (1); 03-03 P5 (2); 03-04 P2 (3); 03-05 P3 in and out: still 3;
    # 03-09 P4 (4); 03-10 P1 on hold (3); 03-11 nothing changes (P5's level is no status);
    # 03-12 W2 admitted (4); 03-13 P1 resumes (5).
    assert [(f.day.day, f.admissions, f.discharges, f.census) for f in flows] == [
        (1, 0, 0, 0), (2, 1, 0, 1), (3, 1, 0, 2), (4, 1, 0, 3), (5, 1, 1, 3), (6, 0, 0, 3),
        (7, 0, 0, 3), (8, 0, 0, 3), (9, 1, 0, 4), (10, 0, 0, 3), (11, 0, 0, 3), (12, 1, 0, 4),
        (13, 0, 0, 5), (14, 0, 0, 5),
    ]
    # Check one program, starting mid-stream: Adult IOP from 03-18, P1 and P2 in care (2);
    # 03-20 P1 discharged (1).
    iop = ReadModels(projected).admissions_and_discharges(D("2026-03-18"), D("2026-03-21"), "iop-adult")
    assert [(f.day.day, f.admissions, f.discharges, f.census) for f in iop] == [
        (18, 0, 0, 2), (19, 0, 0, 2), (20, 0, 1, 1), (21, 0, 0, 1)]
    # Check as the record stood at the end of 03-10 (the hold not yet known): 4 on 03-10.
    then = ReadModels(projected).admissions_and_discharges(D("2026-03-10"), D("2026-03-10"),
                                                       known_on=D("2026-03-10"))
    assert [(f.admissions, f.discharges, f.census) for f in then] == [(0, 0, 4)]


def test_average_daily_census_counts_patient_days_at_the_end_of_each_day(
        any_projected, clock, clinician):
    record_march(any_projected, clock, clinician)
    reads = ReadModels(any_projected)

    # Check March (31 days) by today's record, patient-days per episode:
    # P1 active 03-02..03-09 (8) + 03-13..03-19 (7) = 15; P2 03-04..03-31 = 28; P3 0 (out the
    # same day); P4 03-09..03-26 = 18; P5 03-03..03-31 = 29; W2 03-12..03-31 = 20.
    # 15 + 28 + 0 + 18 + 29 + 20 = 110; 110 / 31 = 3.548 -> 3.55.
    adc = reads.average_daily_census(D("2026-03-01"), D("2026-03-31"))
    assert (adc.days, adc.patient_days, adc.average, adc.program_code) == (31, 110, 3.55, None)
    # Check per program: Adult IOP 15 + 28 + 0 = 43 -> 1.39; DBT 18 + 20 = 38 -> 1.23;
    # PHP 29 -> 0.94 (the step-down keeps P5 in the PHP program).
    by_program = reads.average_daily_census_by_program(D("2026-03-01"), D("2026-03-31"))
    assert [(a.program_code, a.patient_days, a.average) for a in by_program] == [
        ("dbt-6wk", 38, 1.23), ("iop-adult", 43, 1.39), ("php-adult", 29, 0.94)]
    # Check the same-day stay on 03-05: P3 was admitted and discharged, but at the end of the
    # day only P1 and P2 were active in Adult IOP: 2 patient-days / 1 day.
    one_day = reads.average_daily_census(D("2026-03-05"), D("2026-03-05"), "iop-adult")
    assert (one_day.patient_days, one_day.average) == (2, 2.0)
    # Check the first fortnight equals the sum of the end-of-day census above:
    # 0+1+2+3+3+3+3+3+4+3+3+4+5+5 = 42 -> 42 / 14 = 3.0.
    fortnight = reads.average_daily_census(D("2026-03-01"), D("2026-03-14"))
    assert (fortnight.patient_days, fortnight.average) == (42, 3.0)
    # Check as the record stood at the end of 03-11 (no hold known yet): P1 active
    # 03-02..03-11 = 10 instead of 8; 03-01..03-11 total then 10 + P2 8 + P4 3 + P5 9 = 30.
    then = reads.average_daily_census(D("2026-03-01"), D("2026-03-11"), known_on=D("2026-03-11"))
    assert (then.days, then.patient_days, then.average) == (11, 30, 2.73)  # 30 / 11 = 2.727


def test_the_waitlist_shows_days_waiting_and_the_referral_date(projected, clock, clinician):
    march = record_march(projected, clock, clinician)
    reads = ReadModels(projected)

    # Check 03-10: W1 waitlisted 02-25, 3 + 10 = 13 days waiting (referred 02-20: 18 days);
    # W2 waitlisted 03-03: 7 days (referred 03-01: 9 days).  Longest wait first.
    waiting = reads.waitlist(D("2026-03-10"))
    assert [(w.episode_id, w.referred_on, w.waitlisted_on, w.days_waiting, w.days_since_referral)
            for w in waiting] == [
        (march.w1, D("2026-02-20"), D("2026-02-25"), 13, 18),
        (march.w2, D("2026-03-01"), D("2026-03-03"), 7, 9),
    ]
    assert waiting[0].patient_ref == "Patient/W1"
    # Check 03-12: W2 was admitted that day; W1 waits on, 3 + 12 = 15 days.
    later = reads.waitlist(D("2026-03-12"))
    assert [(w.episode_id, w.days_waiting) for w in later] == [(march.w1, 15)]
    # Check a day before any waitlist: 02-24.
    assert reads.waitlist(D("2026-02-24")) == ()


def test_an_episode_entered_in_error_leaves_the_census_from_then_on(projected, clock, clinician):
    clock.set(datetime(2026, 3, 2, 17, tzinfo=timezone.utc))
    define_standard_program(projected, clinician)
    episode = refer(projected, clinician, D("2026-03-02"))
    complete_intake(projected, episode, clinician, D("2026-03-02"))
    admit(projected, episode, clinician, D("2026-03-02"))
    clock.set(datetime(2026, 3, 9, 17, tzinfo=timezone.utc))
    projected.mark_entered_in_error(episode, clinician, effective_date="2026-03-09",
                                    reason="a duplicate of another referral")
    reads = ReadModels(projected)

    # Check 03-04: the record then held one active episode; today's record holds none.
    census = reads.census(D("2026-03-04"))
    assert (census.then, census.now) == (1, 0)
    assert census.by_program == (CensusCount("iop-adult", 1, 0),)
    # Check it contributes no patient-days by today's record, 3 (03-02..03-04) as held on 03-04.
    assert reads.average_daily_census(D("2026-03-01"), D("2026-03-04")).patient_days == 0
    assert reads.average_daily_census(D("2026-03-01"), D("2026-03-04"),
                                      known_on=D("2026-03-04")).patient_days == 3
    flows = reads.admissions_and_discharges(D("2026-03-02"), D("2026-03-02"))
    assert [(f.admissions, f.census) for f in flows] == [(0, 0)]
