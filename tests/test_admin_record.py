"""Recording every command of the pathway through the panel's forms.

Each story seeds an episode in the right state with the library (tests/pathways.py), then
fills in the form the way a clinician would and checks the fact the library recorded.
Dates: referral 2 March 2026, intake 3 March, admission 4 March; "now" is 1 June 2026.
"""

from __future__ import annotations

from datetime import date

import pytest

from episodes import (
    AuthorizationUnit,
    CareTeamMember,
    CriteriaEdition,
    Diagnosis,
    DiagnosisCategory,
    DischargeType,
    EpisodeStatus,
    Instrument,
    LevelChangeKind,
    LevelOfCare,
    ReferralDirection,
    ServiceFormat,
    SessionKind,
)
from tests import pathways
from tests.panel import login
from tests.record_forms import CLINICIAN, episode_of, flashes, last_fact, submit

REFERRED, INTAKE, ADMITTED = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)


@pytest.fixture
def library(panel):
    return panel.extensions["care_episodes"].episodes


@pytest.fixture
def clinician_client(client):
    login(client, "clinician")
    return client


@pytest.fixture
def referred(library):
    pathways.define_standard_program(library, CLINICIAN)
    return pathways.refer(library, CLINICIAN, REFERRED)


@pytest.fixture
def assessed(library, referred):
    pathways.complete_intake(library, referred, CLINICIAN, INTAKE)
    return referred


@pytest.fixture
def admitted(library):
    return pathways.admitted_episode(library, CLINICIAN, REFERRED, ADMITTED)


def record(client, command, episode, changes):
    return submit(client, f"/record/{command}?episode_id={episode}", changes)


def test_a_referral_opens_a_new_episode(clinician_client, library):
    response = submit(clinician_client, "/record/refer", {
        "effective_date": "2026-03-02", "patient_ref": "Patient/2001", "source": "primary care",
        "direction": "step-down", "requested_level": "asam-3:2.5", "referring_provider": "Dr. Ames",
    })
    episode = episode_of(response)
    referral = last_fact(library, episode)
    # Check the form's strings arrived as the library's typed values.
    assert (referral.patient_ref, referral.source, referral.referring_provider) == \
        ("Patient/2001", "primary care", "Dr. Ames")
    assert referral.direction is ReferralDirection.STEP_DOWN
    assert referral.requested_level == LevelOfCare("2.5", CriteriaEdition.ASAM_3)
    assert referral.effective_date == REFERRED
    # Check the recorder sees what was recorded.
    assert flashes(clinician_client) == ["Recorded ReferralReceived (version 1)"]


def test_the_intake_records_diagnoses_asam_ratings_and_baselines(clinician_client, library, referred):
    response = record(clinician_client, "complete_intake", referred, {
        "effective_date": "2026-03-03",
        "diagnoses.0.code": "F33.1", "diagnoses.0.category": "mental-health",
        "diagnoses.0.display": "Major depressive disorder, recurrent, moderate",
        "diagnoses.1.code": "F10.20", "diagnoses.1.category": "substance-use",
        "asam_ratings.1": "1", "asam_ratings.2": "0", "asam_ratings.3": "2",
        "asam_ratings.4": "2", "asam_ratings.5": "3", "asam_ratings.6": "2",
        "recommended_level": "2.1", "phq9": "18", "gad7": "13",
    })
    assert episode_of(response) == referred
    intake = last_fact(library, referred)
    assert intake.diagnoses == (
        Diagnosis("F33.1", DiagnosisCategory.MENTAL_HEALTH, "Major depressive disorder, recurrent, moderate"),
        Diagnosis("F10.20", DiagnosisCategory.SUBSTANCE_USE),
    )
    assert intake.asam_ratings == {"1": 1, "2": 0, "3": 2, "4": 2, "5": 3, "6": 2}
    assert (intake.phq9, intake.gad7, intake.recommended_level) == (18, 13, LevelOfCare("2.1"))
    # Check the form prefilled the assessing clinician with the user who records it.
    assert intake.clinician == "clinician"


def test_waitlisting_names_the_program_the_patient_waits_for(clinician_client, library, assessed):
    response = record(clinician_client, "waitlist", assessed, {
        "effective_date": "2026-03-05", "program_code": "iop-adult",
    })
    episode_of(response)
    assert last_fact(library, assessed).program_code == "iop-adult"
    assert library.episode(assessed).status is EpisodeStatus.WAITLIST


def test_a_cancelled_referral_keeps_its_reason(clinician_client, library, referred):
    response = record(clinician_client, "cancel_referral", referred, {
        "effective_date": "2026-03-06", "reason": "Patient moved out of state",
    })
    episode_of(response)
    cancelled = last_fact(library, referred)
    assert type(cancelled).__name__ == "ReferralCancelled"
    assert cancelled.envelope.reason == "Patient moved out of state"
    assert library.episode(referred).status is EpisodeStatus.CANCELLED


def test_a_declined_referral_says_where_the_patient_went(clinician_client, library, referred):
    response = record(clinician_client, "decline_referral", referred, {
        "effective_date": "2026-03-06", "reason": "Needs residential care",
        "referred_elsewhere": "Riverside residential (3.5)",
    })
    episode_of(response)
    declined = last_fact(library, referred)
    assert (type(declined).__name__, declined.referred_elsewhere) == \
        ("ReferralDeclined", "Riverside residential (3.5)")


def test_admission_to_a_program_and_clinic_with_a_care_team(clinician_client, library, assessed):
    page = clinician_client.get(f"/record/admit?episode_id={assessed}").get_data(as_text=True)
    # Check the clinics are offered per program, from the program's definition.
    assert '<optgroup label="Adult IOP (iop-adult)">' in page
    assert '<option value="south">Adult IOP — south</option>' in page
    response = record(clinician_client, "admit", assessed, {
        "effective_date": "2026-03-04", "program_code": "iop-adult", "clinic": "south",
        "care_team.0.id": "clin-ana", "care_team.0.role": "primary therapist",
        "care_team.1.id": "dr-osei", "care_team.1.role": "psychiatrist", "payer": "Medicaid",
    })
    episode_of(response)
    admission = last_fact(library, assessed)
    assert (admission.program_code, admission.clinic, admission.payer) == ("iop-adult", "south", "Medicaid")
    assert admission.care_team == (CareTeamMember("clin-ana", "primary therapist"),
                                   CareTeamMember("dr-osei", "psychiatrist"))
    # Check the fields left empty took the program's defaults (3 days a week, in person, 2.1).
    assert (admission.planned_days_per_week, admission.format, admission.level_of_care) == \
        (3, ServiceFormat.IN_PERSON, LevelOfCare("2.1"))


def test_an_attended_session(clinician_client, library, admitted):
    response = record(clinician_client, "record_attendance", admitted, {
        "effective_date": "2026-03-05", "kind": "group", "minutes": "180", "format": "virtual",
        "topic": "DBT distress tolerance", "facilitator": "clin-ana",
    })
    assert flashes(clinician_client) == ["Recorded SessionAttended (version 4)"]
    session = last_fact(library, episode_of(response))
    assert (session.kind, session.minutes, session.format) == (SessionKind.GROUP, 180, ServiceFormat.VIRTUAL)
    assert (session.topic, session.facilitator) == ("DBT distress tolerance", "clin-ana")


def test_a_missed_session_ticked_as_excused(clinician_client, library, admitted):
    response = record(clinician_client, "record_absence", admitted, {
        "effective_date": "2026-03-06", "kind": "individual", "minutes": "50", "excused": "true",
    })
    missed = last_fact(library, episode_of(response))
    assert (type(missed).__name__, missed.kind, missed.minutes, missed.excused) == \
        ("SessionMissed", SessionKind.INDIVIDUAL, 50, True)


def test_a_missed_session_left_unticked_is_unexcused(clinician_client, library, admitted):
    response = record(clinician_client, "record_absence", admitted, {
        "effective_date": "2026-03-06", "kind": "group", "minutes": "180",
    })
    assert last_fact(library, episode_of(response)).excused is False


def test_a_session_the_program_cancelled(clinician_client, library, admitted):
    response = record(clinician_client, "record_program_cancellation", admitted, {
        "effective_date": "2026-03-09", "kind": "group", "minutes": "180", "reason": "Snow day",
    })
    cancelled = last_fact(library, episode_of(response))
    assert (type(cancelled).__name__, cancelled.minutes, cancelled.envelope.reason) == \
        ("SessionCancelledByProgram", 180, "Snow day")


def test_an_outcome_score(clinician_client, library, admitted):
    response = record(clinician_client, "record_outcome", admitted, {
        "effective_date": "2026-04-01", "instrument": "PHQ-9", "score": "9",
    })
    score = last_fact(library, episode_of(response))
    assert (score.instrument, score.score, score.effective_date) == (Instrument.PHQ9, 9, date(2026, 4, 1))


def test_a_payer_authorization(clinician_client, library, admitted):
    response = record(clinician_client, "record_authorization", admitted, {
        "effective_date": "2026-03-04", "payer": "Medicaid", "unit": "days", "authorized": "36",
        "start": "2026-03-04", "end": "2026-05-02", "next_review": "2026-04-15", "reference": "PA-7781",
    })
    authorization = last_fact(library, episode_of(response))
    assert (authorization.payer, authorization.unit, authorization.authorized) == \
        ("Medicaid", AuthorizationUnit.DAYS, 36)
    assert (authorization.start, authorization.end, authorization.next_review, authorization.reference) == \
        (date(2026, 3, 4), date(2026, 5, 2), date(2026, 4, 15), "PA-7781")


def test_a_step_down_from_partial_hospitalization(clinician_client, library, assessed):
    pathways.admit(library, assessed, CLINICIAN, ADMITTED, level_of_care="2.5")
    response = record(clinician_client, "change_level_of_care", assessed, {
        "effective_date": "2026-03-20", "kind": "step-down", "to_level": "2.1",
        "reason": "Stable for two weeks; PHP goals met",
    })
    change = last_fact(library, episode_of(response))
    assert (change.kind, change.from_level, change.to_level) == \
        (LevelChangeKind.STEP_DOWN, LevelOfCare("2.5"), LevelOfCare("2.1"))


def test_a_taper_needs_no_new_level(clinician_client, library, admitted):
    response = record(clinician_client, "change_level_of_care", admitted, {
        "effective_date": "2026-05-18", "kind": "taper", "reason": "Two weeks of tapering before discharge",
    })
    taper = last_fact(library, episode_of(response))
    # Check the taper kept the current level (2.1) and the episode is now tapering.
    assert (taper.kind, taper.to_level) == (LevelChangeKind.TAPER, LevelOfCare("2.1"))
    assert library.episode(admitted).state.tapering is True


def test_a_hold_and_the_return_from_it(clinician_client, library, admitted):
    held = record(clinician_client, "place_on_hold", admitted, {
        "effective_date": "2026-03-16", "reason": "Short inpatient stay", "expected_return": "2026-03-23",
    })
    assert last_fact(library, episode_of(held)).expected_return == date(2026, 3, 23)
    assert library.episode(admitted).status is EpisodeStatus.ONHOLD
    resumed = record(clinician_client, "resume", admitted, {"effective_date": "2026-03-24"})
    assert type(last_fact(library, episode_of(resumed))).__name__ == "Resumed"
    assert library.episode(admitted).status is EpisodeStatus.ACTIVE


def test_a_discharge_with_aftercare(clinician_client, library, admitted):
    response = record(clinician_client, "discharge", admitted, {
        "effective_date": "2026-05-27", "discharge_type": "completed", "reason": "Treatment goals met",
        "aftercare_plan": "Weekly outpatient therapy; alumni group on Thursdays",
        "follow_up_date": "2026-06-03", "referred_to": "Outpatient clinic north",
    })
    discharge = last_fact(library, episode_of(response))
    assert (discharge.discharge_type, discharge.follow_up_date) == (DischargeType.COMPLETED, date(2026, 6, 3))
    assert discharge.aftercare_plan == "Weekly outpatient therapy; alumni group on Thursdays"
    assert library.episode(admitted).status is EpisodeStatus.FINISHED


def test_voiding_a_session_chosen_from_the_episode_facts(clinician_client, library, admitted):
    pathways.attend(library, admitted, CLINICIAN, date(2026, 3, 5))  # version 4
    page = clinician_client.get(f"/record/void_event?episode_id={admitted}").get_data(as_text=True)
    # Check the facts are offered by version, type and clinical date.
    assert '<option value="4">Version 4 · SessionAttended · 2026-03-05</option>' in page
    response = record(clinician_client, "void_event", admitted, {
        "target_version": "4", "reason": "Recorded for the wrong patient",
    })
    void = list(library.history(episode_of(response)))[-1]
    assert (type(void).__name__, void.target_version) == ("EventVoided", 4)
    # Check the voided session no longer counts; the correction is dated today (1 June).
    assert [f.originator_version for f in library.episode(admitted).facts] == [1, 2, 3]
    assert void.effective_date == date(2026, 6, 1)


def test_amending_a_session_changes_only_the_fields_edited(clinician_client, library, admitted):
    pathways.attend(library, admitted, CLINICIAN, date(2026, 3, 5), minutes=180, topic="CBT")  # version 4
    # Step one: choose the event; step two shows its fields with their current values.
    chooser = clinician_client.get(f"/record/amend_event?episode_id={admitted}").get_data(as_text=True)
    assert 'name="target_version"' in chooser
    path = f"/record/amend_event?episode_id={admitted}&target_version=4"
    page = clinician_client.get(path).get_data(as_text=True)
    assert 'value="180" id="f-changes-minutes"' in page
    response = submit(clinician_client, path, {"changes.minutes": "90", "reason": "Left at half time"})
    amendment = list(library.history(episode_of(response)))[-1]
    # Check only the edited field is in the amendment, and the session now counts 90 minutes.
    assert (type(amendment).__name__, amendment.target_version, amendment.changes) == \
        ("EventAmended", 4, {"minutes": 90})
    assert library.episode(admitted).facts[-1].minutes == 90
    assert library.episode(admitted).facts[-1].topic == "CBT"


def test_amending_an_intake_diagnosis_row(clinician_client, library, assessed):
    path = f"/record/amend_event?episode_id={assessed}&target_version=2"
    response = submit(clinician_client, path, {
        "changes.diagnoses.1.code": "F10.10", "changes.diagnoses.1.display": "Alcohol use disorder, mild",
        "reason": "Severity corrected after collateral information",
    })
    episode_of(response)
    intake = library.episode(assessed).facts[1]
    assert intake.diagnoses[1] == Diagnosis("F10.10", DiagnosisCategory.SUBSTANCE_USE, "Alcohol use disorder, mild")
    # Check the untouched first diagnosis and the ratings stayed as they were.
    assert intake.diagnoses[0].code == "F33.1"
    assert intake.asam_ratings == {"1": 2, "2": 2, "3": 2, "4": 2, "5": 2, "6": 2}


def test_marking_an_episode_entered_in_error(clinician_client, library, referred):
    response = record(clinician_client, "mark_entered_in_error", referred, {
        "reason": "Duplicate of an episode opened the same day",
    })
    episode_of(response)
    assert library.episode(referred).status is EpisodeStatus.ENTERED_IN_ERROR
