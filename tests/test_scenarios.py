"""Care pathways told as stories, end to end through the public API (SQLite application).

Each test follows one patient through a pathway and checks what the record says at the end:
status and since when, level of care, holds, discharge, and the event stream itself.
Corrections and idempotency live in test_scenarios_corrections.py.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from episodes import (
    IOP,
    PHP,
    ActorRole,
    ClinicalDateError,
    DischargeType,
    Episodes,
    EpisodeStatus,
    InvalidCommand,
    LevelChangeKind,
    LevelOfCare,
    LevelOfCareError,
    ProgramDefinition,
    ServiceFormat,
    SessionKind,
    TransitionNotAllowed,
)
from episodes.state import Hold
from tests.conftest import NOW
from tests.pathways import (
    admit,
    admitted_episode,
    attend,
    complete_intake,
    define_standard_program,
    refer,
)

D = date.fromisoformat


def stream(app: Episodes, episode: UUID) -> list[tuple[int, str]]:
    """(version, event type name) for every recorded event, corrections included."""
    return [(e.originator_version, type(e).__name__) for e in app.history(episode)]


def test_a_completed_twelve_week_stay(app, clinician):
    define_standard_program(app, clinician)
    # A therapist refers a patient up from weekly outpatient therapy.
    episode = refer(app, clinician, D("2026-01-05"), source="outpatient therapist",
                    direction="step-up", referring_provider="Dr. Okafor")
    # Intake finds a dual diagnosis: recurrent depression and alcohol use disorder.
    complete_intake(app, episode, clinician, D("2026-01-07"), phq9=18)
    admit(app, episode, clinician, D("2026-01-12"))  # a Monday
    app.record_authorization(episode, clinician, effective_date="2026-01-12", payer="Medicaid",
                             unit="days", authorized=36, start="2026-01-12", end="2026-04-03",
                             next_review="2026-02-20", reference="PA-77812")
    app.record_outcome(episode, clinician, effective_date="2026-01-12", instrument="PHQ-9",
                       score=18)

    # Check the admission opened the active period at level 2.1.
    state = app.episode(episode).state
    assert (state.status, state.status_since) == (EpisodeStatus.ACTIVE, D("2026-01-12"))
    assert (state.level_of_care, state.level_since) == (IOP, D("2026-01-12"))

    # Twelve weeks: groups Monday, Wednesday and Friday, individual therapy on Tuesday.
    for week in range(12):
        monday = D("2026-01-12") + timedelta(weeks=week)
        if week == 6:  # midpoint measure
            app.record_outcome(episode, clinician, effective_date=monday, instrument="PHQ-9",
                               score=11)
        attend(app, episode, clinician, monday, topic="CBT skills")
        attend(app, episode, clinician, monday + timedelta(days=1), minutes=50, kind="individual")
        attend(app, episode, clinician, monday + timedelta(days=2), topic="relapse prevention")
        attend(app, episode, clinician, monday + timedelta(days=4), topic="mindfulness")

    # The last Friday is 2026-01-12 + 11 weeks + 4 days = 2026-04-03.
    app.record_outcome(episode, clinician, effective_date="2026-04-03", instrument="PHQ-9", score=6)
    receipt = app.discharge(
        episode, clinician, effective_date="2026-04-03", discharge_type="completed",
        reason="completed the 12-week program; treatment goals met",
        aftercare_plan="weekly outpatient therapy; AA meetings twice a week",
        follow_up_date="2026-04-17", command_id="discharge-1001",
    )

    # Check the count: referral + intake + admission + authorization + baseline PHQ-9 (5),
    # 12 weeks x (3 groups + 1 individual) = 48 sessions, midpoint and end PHQ-9 (2),
    # and the discharge (1): 5 + 48 + 2 + 1 = 56.
    assert (receipt.version, receipt.event) == (56, "Discharged")
    events = list(app.history(episode))
    assert [e.originator_version for e in events] == list(range(1, 57))
    assert Counter(type(e).__name__ for e in events) == {
        "ReferralReceived": 1, "IntakeCompleted": 1, "Admitted": 1, "AuthorizationRecorded": 1,
        "OutcomeMeasured": 3, "SessionAttended": 48, "Discharged": 1,
    }
    assert [name for _, name in stream(app, episode)[:6]] == [
        "ReferralReceived", "IntakeCompleted", "Admitted", "AuthorizationRecorded",
        "OutcomeMeasured", "SessionAttended",
    ]
    sessions = [e for e in events if type(e).__name__ == "SessionAttended"]
    assert Counter(s.kind for s in sessions) == {SessionKind.GROUP: 36, SessionKind.INDIVIDUAL: 12}
    # Check the PHQ-9 fell from 18 at baseline to 11 at the midpoint and 6 at the end.
    scores = [(e.effective_date, e.score) for e in events if type(e).__name__ == "OutcomeMeasured"]
    assert scores == [(D("2026-01-12"), 18), (D("2026-02-23"), 11), (D("2026-04-03"), 6)]
    intake = events[1]
    assert [d.code for d in intake.diagnoses] == ["F33.1", "F10.20"]

    # Check the final state.
    view = app.episode(episode)
    state = view.state
    assert view.version == 56
    assert (state.status, state.status_since) == (EpisodeStatus.FINISHED, D("2026-04-03"))
    assert (state.referred_on, state.intake_on, state.admitted_on) == (
        D("2026-01-05"), D("2026-01-07"), D("2026-01-12"))
    assert (state.discharged_on, state.discharge_type) == (D("2026-04-03"), DischargeType.COMPLETED)
    assert (state.level_of_care, state.tapering, state.holds) == (IOP, False, ())
    assert state.last_session_on == D("2026-04-03")
    assert (state.program_code, state.clinic) == ("iop-adult", "north")

    # Check the discharge carries the aftercare plan and its envelope says who and why.
    discharge = events[-1]
    assert discharge.aftercare_plan == "weekly outpatient therapy; AA meetings twice a week"
    assert discharge.follow_up_date == D("2026-04-17")
    assert discharge.envelope.actor_id == "clin-ana"
    assert discharge.envelope.actor_role is ActorRole.CLINICIAN
    assert discharge.envelope.reason == "completed the 12-week program; treatment goals met"
    assert discharge.envelope.command_id == "discharge-1001"
    assert discharge.timestamp == NOW


def test_a_six_week_dbt_program_is_defined_and_completed(app, admin_actor, clinician):
    app.define_program(admin_actor, code="dbt-6wk", name="DBT skills IOP", target_weeks=6,
                       days_per_week=3, format="hybrid",
                       clinics=["east", "west", "harbor", "ridge"])

    # Check the definition reads back as given, with the adult 9-hour minimum by default.
    program = app.program("dbt-6wk")
    assert program == ProgramDefinition(
        code="dbt-6wk", name="DBT skills IOP", target_weeks=6, days_per_week=3,
        minimum_weekly_hours=Decimal("9"), level_of_care=IOP, format=ServiceFormat.HYBRID,
        clinics=("east", "west", "harbor", "ridge"),
    )
    assert program.target_days == 42  # 6 weeks x 7 days
    assert [p.code for p in app.programs()] == ["dbt-6wk"]

    episode = refer(app, clinician, D("2026-02-02"), direction="new")
    complete_intake(app, episode, clinician, D("2026-02-04"),
                    diagnoses=[{"code": "F60.3", "category": "mental-health"}])
    # Check a clinic the program does not run at is refused, naming the field.
    with pytest.raises(InvalidCommand) as refused:
        admit(app, episode, clinician, D("2026-02-09"), program_code="dbt-6wk", clinic="downtown")
    assert "clinic" in refused.value.errors
    app.admit(episode, clinician, effective_date="2026-02-09", program_code="dbt-6wk",
              clinic="harbor", care_team=[{"id": "th-12", "role": "primary therapist"}])

    # Check the admission took its level, format and days a week from the program.
    admitted = list(app.history(episode))[2]
    assert (admitted.level_of_care, admitted.format, admitted.planned_days_per_week) == (
        IOP, ServiceFormat.HYBRID, 3)

    topics = ["mindfulness", "distress tolerance", "emotion regulation"]
    for week in range(6):
        monday = D("2026-02-09") + timedelta(weeks=week)
        for day, topic in zip((0, 2, 4), topics):
            attend(app, episode, clinician, monday + timedelta(days=day), topic=f"DBT {topic}",
                   format="hybrid")
        attend(app, episode, clinician, monday + timedelta(days=3), minutes=50, kind="individual")
    # The last Friday is 2026-02-09 + 5 weeks + 4 days = 2026-03-20.
    receipt = app.discharge(episode, clinician, effective_date="2026-03-20",
                            discharge_type="completed", reason="completed the DBT program",
                            aftercare_plan="DBT graduate group monthly",
                            follow_up_date="2026-04-03")

    # Check the count: referral, intake, admission (3) + 6 weeks x (3 groups + 1 individual)
    # = 24 sessions + the discharge (1): 3 + 24 + 1 = 28.
    assert receipt.version == 28
    state = app.episode(episode).state
    assert (state.status, state.status_since) == (EpisodeStatus.FINISHED, D("2026-03-20"))
    assert (state.program_code, state.clinic) == ("dbt-6wk", "harbor")
    assert state.discharge_type is DischargeType.COMPLETED


def test_step_down_from_php_into_iop_then_taper(app, admin_actor, clinician):
    app.define_program(admin_actor, code="php-adult", name="Adult partial hospitalization",
                       level_of_care="2.5", days_per_week=5, clinics=["north"])
    # Discharged from an inpatient unit, the patient steps down into partial hospitalization.
    episode = refer(app, clinician, D("2026-02-16"), source="County Hospital inpatient unit",
                    direction="step-down", requested_level="2.5")
    complete_intake(app, episode, clinician, D("2026-02-17"), recommended_level="2.5")
    admit(app, episode, clinician, D("2026-02-18"), program_code="php-adult")
    for day in ("2026-02-18", "2026-02-19", "2026-02-20"):
        attend(app, episode, clinician, D(day), minutes=300)
    # Check the admission is at PHP (2.5), from the program.
    state = app.episode(episode).state
    assert (state.level_of_care, state.level_since) == (PHP, D("2026-02-18"))

    # Check a step-down needs a level to step down to.
    with pytest.raises(InvalidCommand) as refused:
        app.change_level_of_care(episode, clinician, effective_date="2026-02-23",
                                 kind="step-down", reason="stable")
    assert "to_level" in refused.value.errors

    app.change_level_of_care(episode, clinician, effective_date="2026-02-23", kind="step-down",
                             to_level="2.1", reason="stable for a week; ready for IOP hours")
    # Check the level and level_since moved, while the status (active since admission) did not.
    state = app.episode(episode).state
    assert (state.level_of_care, state.level_since, state.tapering) == (IOP, D("2026-02-23"), False)
    assert (state.status, state.status_since) == (EpisodeStatus.ACTIVE, D("2026-02-18"))

    for day in ("2026-02-23", "2026-02-25", "2026-02-27"):
        attend(app, episode, clinician, D(day))
    # Check a level change cannot be dated before the current level began.
    with pytest.raises(ClinicalDateError):
        app.change_level_of_care(episode, clinician, effective_date="2026-02-20", kind="taper",
                                 reason="back-dated taper")

    # A taper keeps the level (no to_level) and marks the episode as tapering.
    app.change_level_of_care(episode, clinician, effective_date="2026-03-02", kind="taper",
                             reason="two weeks below 9 hours before discharge")
    state = app.episode(episode).state
    assert (state.level_of_care, state.level_since, state.tapering) == (IOP, D("2026-03-02"), True)

    attend(app, episode, clinician, D("2026-03-04"))
    app.discharge(episode, clinician, effective_date="2026-03-06", discharge_type="stepped-down",
                  referred_to="weekly outpatient therapy", reason="goals met at IOP",
                  follow_up_date="2026-03-13")

    state = app.episode(episode).state
    assert (state.status, state.status_since) == (EpisodeStatus.FINISHED, D("2026-03-06"))
    assert (state.discharge_type, state.level_of_care) == (DischargeType.STEPPED_DOWN, IOP)
    events = list(app.history(episode))
    assert stream(app, episode) == [
        (1, "ReferralReceived"), (2, "IntakeCompleted"), (3, "Admitted"),
        (4, "SessionAttended"), (5, "SessionAttended"), (6, "SessionAttended"),
        (7, "LevelOfCareChanged"),
        (8, "SessionAttended"), (9, "SessionAttended"), (10, "SessionAttended"),
        (11, "LevelOfCareChanged"), (12, "SessionAttended"), (13, "Discharged"),
    ]
    step_down, taper = events[6], events[10]
    assert (step_down.kind, step_down.from_level, step_down.to_level) == (
        LevelChangeKind.STEP_DOWN, PHP, IOP)
    assert step_down.envelope.reason == "stable for a week; ready for IOP hours"
    assert (taper.kind, taper.from_level, taper.to_level) == (LevelChangeKind.TAPER, IOP, IOP)
    assert events[-1].referred_to == "weekly outpatient therapy"


def test_step_up_from_iop_to_php(app, clinician):
    episode = admitted_episode(app, clinician, D("2026-03-02"))  # admitted 2026-03-04
    for day in ("2026-03-04", "2026-03-06", "2026-03-09"):
        attend(app, episode, clinician, D(day))
    app.record_outcome(episode, clinician, effective_date="2026-03-09", instrument="PHQ-9",
                       score=22)
    version = app.get(episode).version
    assert version == 7  # referral, intake, admission, 3 sessions, 1 outcome

    # Check a "step-up" that goes down (2.1 -> 1.5), or stays level, is refused and writes nothing.
    for wrong_level in ("1.5", "2.1"):
        with pytest.raises(LevelOfCareError) as refused:
            app.change_level_of_care(episode, clinician, effective_date="2026-03-10",
                                     kind="step-up", to_level=wrong_level, reason="worse")
        assert "step-up cannot go from 2.1" in str(refused.value)
    assert app.get(episode).version == version
    assert len(list(app.history(episode))) == 7

    app.change_level_of_care(episode, clinician, effective_date="2026-03-10", kind="step-up",
                             to_level="2.5", reason="PHQ-9 rose to 22; needs daily structure")
    state = app.episode(episode).state
    assert (state.level_of_care, state.level_since) == (PHP, D("2026-03-10"))
    assert (state.status, state.status_since) == (EpisodeStatus.ACTIVE, D("2026-03-04"))

    for day in ("2026-03-10", "2026-03-11", "2026-03-12"):
        attend(app, episode, clinician, D(day), minutes=300)
    app.discharge(episode, clinician, effective_date="2026-03-13", discharge_type="stepped-up",
                  referred_to="inpatient psychiatric unit (level 4)",
                  reason="continued deterioration despite PHP hours")

    state = app.episode(episode).state
    assert (state.status, state.status_since) == (EpisodeStatus.FINISHED, D("2026-03-13"))
    assert (state.discharge_type, state.level_of_care) == (DischargeType.STEPPED_UP, PHP)
    names = [name for _, name in stream(app, episode)]
    assert names[7:] == ["LevelOfCareChanged", "SessionAttended", "SessionAttended",
                         "SessionAttended", "Discharged"]
    step_up = list(app.history(episode))[7]
    assert (step_up.kind, step_up.from_level, step_up.to_level) == (
        LevelChangeKind.STEP_UP, IOP, LevelOfCare("2.5"))


def test_dropout_then_late_documentation(app, clock, clinician):
    episode = admitted_episode(app, clinician, D("2026-04-01"))  # admitted 2026-04-03
    for day in ("2026-04-06", "2026-04-08", "2026-04-10"):
        attend(app, episode, clinician, D(day))
    # Three scheduled groups in a row missed, none excused.
    for day in ("2026-04-13", "2026-04-15", "2026-04-17"):
        app.record_absence(episode, clinician, effective_date=day, kind="group", minutes=180)
    app.discharge(episode, clinician, effective_date="2026-04-24",
                  discharge_type="left-against-advice",
                  reason="stopped attending after 2026-04-10; three outreach calls unanswered")

    state = app.episode(episode).state
    assert (state.status, state.status_since) == (EpisodeStatus.FINISHED, D("2026-04-24"))
    assert state.discharge_type is DischargeType.LEFT_AGAINST_ADVICE
    assert state.last_session_on == D("2026-04-17")

    # Check a session dated after the discharge is refused and nothing is written.
    with pytest.raises(ClinicalDateError) as refused:
        attend(app, episode, clinician, D("2026-04-27"))
    assert "after the discharge (2026-04-24)" in str(refused.value)
    assert app.get(episode).version == 10

    # Two days later, an individual session from before the dropout is documented late.
    clock.advance(timedelta(days=2))
    late = attend(app, episode, clinician, D("2026-04-09"), minutes=50, kind="individual")
    assert (late.version, late.recorded_at) == (11, NOW + timedelta(days=2))

    # Check the late entry changes neither the status nor the discharge.
    state = app.episode(episode).state
    assert (state.status, state.discharged_on) == (EpisodeStatus.FINISHED, D("2026-04-24"))
    assert state.last_session_on == D("2026-04-17")
    assert stream(app, episode) == [
        (1, "ReferralReceived"), (2, "IntakeCompleted"), (3, "Admitted"),
        (4, "SessionAttended"), (5, "SessionAttended"), (6, "SessionAttended"),
        (7, "SessionMissed"), (8, "SessionMissed"), (9, "SessionMissed"),
        (10, "Discharged"), (11, "SessionAttended"),
    ]
    events = list(app.history(episode))
    assert [e.excused for e in events[6:9]] == [False, False, False]
    assert events[-1].effective_date == D("2026-04-09")


def test_referral_declined_and_referral_cancelled_from_the_waitlist(app, clinician):
    define_standard_program(app, clinician)
    episode = refer(app, clinician, D("2026-05-04"), source="emergency department",
                    direction="new")
    complete_intake(app, episode, clinician, D("2026-05-05"), recommended_level="3.7",
                    asam_ratings={"1": 4, "2": 3, "3": 2, "4": 2, "5": 3, "6": 2})
    app.decline_referral(episode, clinician, effective_date="2026-05-06",
                         reason="withdrawal risk needs medically managed care",
                         referred_elsewhere="residential withdrawal management (level 3.7)")

    state = app.episode(episode).state
    assert (state.status, state.status_since) == (EpisodeStatus.CANCELLED, D("2026-05-06"))
    assert state.admitted_on is None
    declined = list(app.history(episode))[-1]
    assert declined.referred_elsewhere == "residential withdrawal management (level 3.7)"
    assert declined.envelope.reason == "withdrawal risk needs medically managed care"

    # Check admitting a declined referral is refused, naming the status and where it is allowed.
    with pytest.raises(TransitionNotAllowed) as refused:
        admit(app, episode, clinician, D("2026-05-07"))
    assert str(refused.value) == (
        "cannot admit: the episode is cancelled; "
        "admit is allowed only when the episode is planned, waitlist"
    )
    assert refused.value.status is EpisodeStatus.CANCELLED
    assert app.get(episode).version == 3

    # Another patient is accepted but waitlisted, then withdraws.
    other = refer(app, clinician, D("2026-05-11"), patient_ref="Patient/1002")
    app.waitlist(other, clinician, effective_date="2026-05-12", program_code="iop-adult")
    assert app.episode(other).state.status_since == D("2026-05-12")
    assert app.episode(other).status is EpisodeStatus.WAITLIST
    with pytest.raises(InvalidCommand) as no_reason:
        app.cancel_referral(other, clinician, effective_date="2026-05-20")
    assert "reason" in no_reason.value.errors
    app.cancel_referral(other, clinician, effective_date="2026-05-20",
                        reason="patient chose a program closer to home")

    state = app.episode(other).state
    assert (state.status, state.status_since) == (EpisodeStatus.CANCELLED, D("2026-05-20"))
    assert stream(app, other) == [
        (1, "ReferralReceived"), (2, "Waitlisted"), (3, "ReferralCancelled"),
    ]


def test_on_hold_and_resume(app, clinician):
    episode = admitted_episode(app, clinician, D("2026-03-02"))  # admitted 2026-03-04
    for day in ("2026-03-06", "2026-03-09", "2026-03-11"):
        attend(app, episode, clinician, D(day))

    # Check a hold needs a reason: missing or blank, it is refused before anything is written.
    for blank in ({}, {"reason": "   "}):
        with pytest.raises(InvalidCommand) as refused:
            app.place_on_hold(episode, clinician, effective_date="2026-03-13", **blank)
        assert "reason" in refused.value.errors
    assert app.get(episode).version == 6

    app.place_on_hold(episode, clinician, effective_date="2026-03-13",
                      reason="inpatient medical admission (pneumonia)",
                      expected_return="2026-03-23")
    state = app.episode(episode).state
    assert (state.status, state.status_since) == (EpisodeStatus.ONHOLD, D("2026-03-13"))
    assert state.holds == (Hold(D("2026-03-13")),)

    # Check the morning group on the hold's first day may still be recorded; a day inside may not.
    attend(app, episode, clinician, D("2026-03-13"))
    with pytest.raises(ClinicalDateError) as refused:
        attend(app, episode, clinician, D("2026-03-16"))
    assert "on hold (2026-03-13 to now)" in str(refused.value)

    app.resume(episode, clinician, effective_date="2026-03-23")
    attend(app, episode, clinician, D("2026-03-23"))  # the resume day is a treatment day
    with pytest.raises(ClinicalDateError) as refused:
        attend(app, episode, clinician, D("2026-03-18"))
    assert "on hold (2026-03-13 to 2026-03-23)" in str(refused.value)

    # Check the current state: active again, the hold closed on the resume day.
    state = app.episode(episode).state
    assert (state.status, state.status_since) == (EpisodeStatus.ACTIVE, D("2026-03-23"))
    assert state.holds == (Hold(D("2026-03-13"), D("2026-03-23")),)
    assert state.last_session_on == D("2026-03-23")

    # Check the record as it stood on a day inside the hold.
    on_the_18th = app.episode(episode, effective_on=D("2026-03-18"))
    assert (on_the_18th.status, on_the_18th.state.status_since) == (
        EpisodeStatus.ONHOLD, D("2026-03-13"))
    assert on_the_18th.state.holds == (Hold(D("2026-03-13")),)
    assert app.episode(episode, effective_on=D("2026-03-23")).status is EpisodeStatus.ACTIVE

    assert stream(app, episode) == [
        (1, "ReferralReceived"), (2, "IntakeCompleted"), (3, "Admitted"),
        (4, "SessionAttended"), (5, "SessionAttended"), (6, "SessionAttended"),
        (7, "PlacedOnHold"), (8, "SessionAttended"), (9, "Resumed"), (10, "SessionAttended"),
    ]
    hold = list(app.history(episode))[6]
    assert hold.expected_return == D("2026-03-23")
    assert hold.envelope.reason == "inpatient medical admission (pneumonia)"
