"""The storage contract: what every backend (SQLite file, PostgreSQL) must keep.

Each test runs once per backend through the ``any_app`` / ``database_url`` fixtures.  The
concurrency half of the contract is in ``test_storage_concurrency.py``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from uuid import NAMESPACE_DNS, NAMESPACE_OID, NAMESPACE_URL, NAMESPACE_X500, UUID, uuid3, uuid5

import pytest
import sqlalchemy
from sqlalchemy import text

from episodes import (
    ActorRole,
    CareTeamMember,
    ClinicalDateError,
    CriteriaEdition,
    Diagnosis,
    DiagnosisCategory,
    DischargeType,
    Envelope,
    Episodes,
    EpisodeStatus,
    EpisodeView,
    Instrument,
    InvalidCommand,
    LevelOfCare,
    NotFound,
    NotPermitted,
    ReferralDirection,
    ServiceFormat,
    TransitionNotAllowed,
)
from episodes.events import CORRECTION_EVENTS, FACT_EVENTS
from episodes.integrity import GENESIS
from episodes.state import Hold
from tests.pathways import (
    DEPRESSION,
    admitted_episode,
    attend,
    complete_intake,
    count_event_rows,
    define_standard_program,
    refer,
)

EVENTS_TABLE = "care_episodes_events"
INTEGRITY_TABLES = [
    "care_episodes_access", "care_episodes_checkpoint_heads", "care_episodes_checkpoints",
    "care_episodes_heads",
]



count_rows = count_event_rows  # raw SQL, not through the library


def record_every_kind_of_event(app: Episodes, actor) -> UUID:
    """One episode whose stream holds every fact type and both corrections.

    A cancellation and a decline are both terminal, so each is voided before the story goes on.
    """
    define_standard_program(app, actor)
    episode = refer(
        app, actor, date(2026, 1, 5), requested_level="asam-3:2.1", referring_provider="Dr Osei"
    )  # v1
    complete_intake(app, episode, actor, date(2026, 1, 6))  # v2
    app.waitlist(episode, actor, effective_date=date(2026, 1, 7), program_code="iop-adult")  # v3
    app.cancel_referral(
        episode, actor, effective_date=date(2026, 1, 8), reason="Patient moved away"
    )  # v4
    app.void_event(
        episode, actor, target_version=4, reason="Cancellation entered on the wrong episode"
    )  # v5
    app.decline_referral(
        episode, actor, effective_date=date(2026, 1, 9), reason="PHP fits better",
        referred_elsewhere="Riverside PHP",
    )  # v6
    app.void_event(
        episode, actor, target_version=6, reason="Decline reversed after case review"
    )  # v7
    app.admit(
        episode, actor, effective_date=date(2026, 1, 12), program_code="iop-adult", clinic="north",
        payer="Medicaid",
        care_team=[
            {"id": "clin-ana", "role": "primary therapist"},
            {"id": "doc-li", "role": "psychiatrist"},
        ],
    )  # v8
    attend(
        app, episode, actor, date(2026, 1, 12), topic="DBT distress tolerance",
        facilitator="clin-ana",
    )  # v9
    app.record_absence(
        episode, actor, effective_date=date(2026, 1, 14), kind="group", minutes=180, excused=True
    )  # v10
    app.record_program_cancellation(
        episode, actor, effective_date=date(2026, 1, 16), kind="group", minutes=180
    )  # v11
    app.record_outcome(
        episode, actor, effective_date=date(2026, 1, 19), instrument="PHQ-9", score=14
    )  # v12
    app.record_authorization(
        episode, actor, effective_date=date(2026, 1, 12), payer="Medicaid", unit="days",
        authorized=20, start=date(2026, 1, 12), end=date(2026, 2, 27),
        next_review=date(2026, 2, 13), reference="PA-7731",
    )  # v13
    app.place_on_hold(
        episode, actor, effective_date=date(2026, 1, 26), reason="Short inpatient stay",
        expected_return=date(2026, 2, 2),
    )  # v14
    app.resume(episode, actor, effective_date=date(2026, 2, 2))  # v15
    app.change_level_of_care(
        episode, actor, effective_date=date(2026, 3, 23), kind="taper",
        reason="Tapering before discharge",
    )  # v16
    app.amend_event(
        episode, actor, target_version=9, reason="The session was virtual and ended early",
        changes={"minutes": 150, "format": "virtual"},
    )  # v17
    app.discharge(
        episode, actor, effective_date=date(2026, 4, 3), discharge_type="completed",
        reason="Treatment goals met", aftercare_plan="Weekly outpatient therapy",
        follow_up_date=date(2026, 4, 17), referred_to="North outpatient clinic",
    )  # v18
    app.mark_entered_in_error(episode, actor, reason="Recorded under the wrong patient")  # v19
    return episode


STORY = [
    "ReferralReceived", "IntakeCompleted", "Waitlisted", "ReferralCancelled", "EventVoided",
    "ReferralDeclined", "EventVoided", "Admitted", "SessionAttended", "SessionMissed",
    "SessionCancelledByProgram", "OutcomeMeasured", "AuthorizationRecorded", "PlacedOnHold",
    "Resumed", "LevelOfCareChanged", "EventAmended", "Discharged", "MarkedEnteredInError",
]


def test_every_event_type_reads_back_equal_and_typed_in_another_instance(
    any_app, other_app, clinician
):
    episode = record_every_kind_of_event(any_app, clinician)

    written = list(any_app.history(episode))
    read_back = list(other_app.history(episode))

    # Check the story covers every event type there is, and the other instance sees it all.
    assert [type(e).__name__ for e in read_back] == STORY
    assert {type(e) for e in read_back} == set(FACT_EVENTS) | set(CORRECTION_EVENTS)
    assert [e.originator_version for e in read_back] == list(range(1, 20))
    assert read_back == written
    assert other_app.episode(episode).state == any_app.episode(episode).state

    events = {e.originator_version: e for e in read_back}
    referral, intake, admission, session = events[1], events[2], events[8], events[9]
    # Check enums, dates, value objects and tuples come back as themselves, not as JSON.
    assert referral.direction is ReferralDirection.STEP_UP
    assert referral.requested_level == LevelOfCare("2.1", CriteriaEdition.ASAM_3)
    assert type(referral.effective_date) is date and referral.effective_date == date(2026, 1, 5)
    assert referral.timestamp == datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
    assert referral.envelope == Envelope(
        "clin-ana", ActorRole.CLINICIAN, referral.envelope.command_id, referral.envelope.command_id,
        previous_hash=GENESIS,  # the first event of a stream starts the hash chain
    )
    assert type(intake.diagnoses) is tuple
    assert intake.diagnoses[0] == Diagnosis(
        "F33.1", DiagnosisCategory.MENTAL_HEALTH, "Major depressive disorder, recurrent, moderate"
    )
    assert intake.asam_ratings == {"1": 2, "2": 2, "3": 2, "4": 2, "5": 2, "6": 2}
    assert admission.care_team == (
        CareTeamMember("clin-ana", "primary therapist"), CareTeamMember("doc-li", "psychiatrist"),
    )
    assert admission.level_of_care == LevelOfCare("2.1")
    assert admission.format is ServiceFormat.IN_PERSON
    assert session.format is ServiceFormat.IN_PERSON and session.topic == "DBT distress tolerance"
    assert events[10].excused is True
    assert events[12].instrument is Instrument.PHQ9 and events[12].score == 14
    assert (events[13].start, events[13].end, events[13].next_review) == (
        date(2026, 1, 12), date(2026, 2, 27), date(2026, 2, 13),
    )
    assert events[14].expected_return == date(2026, 2, 2)
    assert events[16].from_level == events[16].to_level == LevelOfCare("2.1")
    # Check the amendment's changes keep their types inside the dict.
    assert events[17].changes == {"minutes": 150, "format": ServiceFormat.VIRTUAL}
    assert events[18].discharge_type is DischargeType.COMPLETED
    assert events[19].envelope.reason == "Recorded under the wrong patient"

    state = other_app.episode(episode).state
    # Check the folded state: the voids undid the cancellation and decline, the hold is closed.
    assert state.status is EpisodeStatus.ENTERED_IN_ERROR
    assert state.holds == (Hold(date(2026, 1, 26), date(2026, 2, 2)),)
    assert state.tapering is True
    assert state.discharge_type is DischargeType.COMPLETED
    assert (state.admitted_on, state.discharged_on) == (date(2026, 1, 12), date(2026, 4, 3))


def test_an_amended_list_of_diagnoses_comes_back_as_a_tuple(any_app, other_app, clinician):
    define_standard_program(any_app, clinician)
    episode = refer(any_app, clinician, date(2026, 3, 2))
    complete_intake(any_app, episode, clinician, date(2026, 3, 3))
    any_app.amend_event(
        episode, clinician, target_version=2, reason="Alcohol use disorder ruled out",
        changes={"diagnoses": [DEPRESSION]},
    )

    amended_intake = other_app.episode(episode).facts[1]
    # Check the amendment took: only the depression is left.
    assert tuple(amended_intake.diagnoses) == (
        Diagnosis(
            "F33.1", DiagnosisCategory.MENTAL_HEALTH,
            "Major depressive disorder, recurrent, moderate",
        ),
    )
    # Check the amended field has the type an unamended intake has: a tuple, not a JSON list.
    assert type(amended_intake.diagnoses) is tuple


def test_the_events_table_has_a_fixed_name(any_app, database_url, clock):
    tables = sorted(sqlalchemy.inspect(any_app.recorder.datastore.engine).get_table_names())
    # Check the event table is named after the application's fixed name, not after a class;
    # the others hold the access log, the hash chain's stream heads and the checkpoints.
    assert tables == sorted([EVENTS_TABLE, *INTEGRITY_TABLES])

    class AuditedEpisodes(Episodes):  # a subclass, as an integrator might write
        pass

    subclassed = AuditedEpisodes(database_url, clock=clock)
    try:
        tables = sorted(sqlalchemy.inspect(subclassed.recorder.datastore.engine).get_table_names())
    finally:
        subclassed.close()
    # Check a subclass does not start an empty table named after itself beside the real one.
    assert tables == sorted([EVENTS_TABLE, *INTEGRITY_TABLES])


def test_stream_ids_carry_no_patient_identifier(any_app, clinician):
    patient = "Patient/mrn-48213"
    define_standard_program(any_app, clinician)
    first = refer(any_app, clinician, date(2026, 1, 5), patient_ref=patient)
    second = refer(any_app, clinician, date(2026, 4, 6), patient_ref=patient)  # readmission

    # Check two episodes of one patient are two streams, neither derived from the patient.
    assert first != second
    namespaces = (NAMESPACE_URL, NAMESPACE_DNS, NAMESPACE_OID, NAMESPACE_X500)
    derived = {make(namespace, patient) for make in (uuid3, uuid5) for namespace in namespaces}
    assert first not in derived and second not in derived
    assert patient not in str(first) and patient not in str(second)

    with any_app.recorder.datastore.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT originator_id, topic FROM {EVENTS_TABLE}")).all()
    # Check the raw columns: 1 program + 2 referrals = 3 rows, the patient in none of them.
    assert len(rows) == 3
    assert sorted(topic for _, topic in rows) == [
        "episodes.events:ReferralReceived", "episodes.events:ReferralReceived",
        "episodes.program:Program.Defined",
    ]
    for originator_id, topic in rows:
        assert patient not in _as_text(originator_id)
        assert patient not in topic
    # Check the patient is still on the record, in the payload.
    assert any_app.episode(first).state.patient_ref == patient


def _as_text(value: object) -> str:
    if isinstance(value, (bytes, memoryview)):  # SQLite stores a UUID as 16 raw bytes
        raw = bytes(value)
        return f"{raw.hex()} {raw.decode('latin-1')}"
    return str(value)


def test_a_refused_command_writes_nothing(any_app, clinician, reviewer):
    episode = admitted_episode(any_app, clinician, date(2026, 3, 2))  # admitted on 2026-03-04
    referral = refer(any_app, clinician, date(2026, 3, 9), patient_ref="Patient/2002")
    complete_intake(any_app, referral, clinician, date(2026, 3, 10))
    rows = count_rows(any_app)
    # 1 program + 3 events + 2 events = 6 rows.
    assert rows == 6

    with pytest.raises(InvalidCommand):  # no session lasts 0 minutes
        attend(any_app, episode, clinician, date(2026, 3, 5), minutes=0)
    assert count_rows(any_app) == rows

    with pytest.raises(TransitionNotAllowed):  # an active episode cannot resume
        any_app.resume(episode, clinician, effective_date=date(2026, 3, 5))
    assert count_rows(any_app) == rows

    with pytest.raises(ClinicalDateError):  # a session before the admission
        attend(any_app, episode, clinician, date(2026, 3, 3))
    assert count_rows(any_app) == rows

    with pytest.raises(NotPermitted):  # reviewers read, they do not record
        attend(any_app, episode, reviewer, date(2026, 3, 5))
    assert count_rows(any_app) == rows

    with pytest.raises(InvalidCommand) as unknown:
        any_app.admit(
            referral, clinician, effective_date=date(2026, 3, 11), program_code="iop-teen",
            clinic="north",
        )
    assert "program_code" in unknown.value.errors
    assert count_rows(any_app) == rows
    # Check the refused commands left both episodes where they were.
    assert any_app.episode(episode).version == 3
    assert any_app.episode(referral).status is EpisodeStatus.PLANNED


def test_reads_as_of_a_version_a_recorded_time_and_a_clinical_date(
    any_app, clinician, clock
):
    define_standard_program(any_app, clinician)
    referred_at = clock.now()  # 2026-06-01 12:00 UTC
    episode = refer(any_app, clinician, date(2026, 3, 2))  # v1 at 12:00
    clock.advance(timedelta(hours=1))
    complete_intake(any_app, episode, clinician, date(2026, 3, 3))  # v2 at 13:00
    clock.advance(timedelta(hours=1))
    any_app.admit(
        episode, clinician, effective_date=date(2026, 3, 4), program_code="iop-adult",
        clinic="north",
    )  # v3 at 14:00
    clock.advance(timedelta(days=1))
    attend(any_app, episode, clinician, date(2026, 3, 5))  # v4 on 2 June 14:00
    any_app.place_on_hold(
        episode, clinician, effective_date=date(2026, 3, 9), reason="Flu"
    )  # v5, same recorded time

    at_v3 = any_app.episode(episode, version=3)
    # Check version 3 is the admission, before any session.
    assert (at_v3.version, at_v3.status) == (3, EpisodeStatus.ACTIVE)
    assert at_v3.state.last_session_on is None
    assert at_v3.recorded_at == referred_at + timedelta(hours=2)

    half_past_one = referred_at + timedelta(hours=1, minutes=30)
    at_1330 = any_app.episode(episode, recorded_at=half_past_one)
    # Check at 13:30 only the referral and the intake were recorded.
    assert (at_1330.version, at_1330.status) == (2, EpisodeStatus.PLANNED)
    assert at_1330.state.intake_on == date(2026, 3, 3)
    # Check a recorded time includes what was recorded at that very instant.
    assert any_app.episode(episode, recorded_at=referred_at).version == 1

    # Check clinical dates: planned on 3 March, active on 4 March, on hold from 9 March.
    def on(day: date) -> EpisodeView:
        return any_app.episode(episode, effective_on=day)

    assert on(date(2026, 3, 3)).status is EpisodeStatus.PLANNED
    assert on(date(2026, 3, 4)).state.admitted_on == date(2026, 3, 4)
    assert on(date(2026, 3, 8)).status is EpisodeStatus.ACTIVE
    assert on(date(2026, 3, 10)).status is EpisodeStatus.ONHOLD
    # Check as of 13:30 the record did not yet know of the admission dated 4 March.
    known_then = any_app.episode(
        episode, recorded_at=half_past_one, effective_on=date(2026, 3, 4)
    )
    assert known_then.status is EpisodeStatus.PLANNED

    # Check nothing is known before the referral, by version, recorded time or clinical date.
    with pytest.raises(NotFound):
        any_app.episode(episode, version=0)
    with pytest.raises(NotFound):
        any_app.episode(episode, recorded_at=referred_at - timedelta(minutes=1))
    with pytest.raises(NotFound):
        any_app.episode(episode, effective_on=date(2026, 3, 1))


def test_a_command_id_is_recorded_once_across_instances(any_app, other_app, clinician):
    referral = {
        "patient_ref": "Patient/1001", "effective_date": date(2026, 3, 2),
        "source": "primary care", "direction": "step-up", "requested_level": "2.1",
        "command_id": "referral-7f3a",
    }
    define_standard_program(any_app, clinician)
    first = any_app.refer(clinician, **referral)
    again = other_app.refer(clinician, **referral)
    # Check the repeated referral found the same episode and wrote nothing.
    assert (again.episode_id, again.version, again.duplicate) == (first.episode_id, 1, True)

    episode = first.episode_id
    complete_intake(any_app, episode, clinician, date(2026, 3, 3))
    any_app.admit(
        episode, clinician, effective_date=date(2026, 3, 4), program_code="iop-adult",
        clinic="north",
    )
    session = {"on": date(2026, 3, 5), "command_id": "session-2026-03-05"}
    recorded = attend(any_app, episode, clinician, **session)
    repeated = attend(other_app, episode, clinician, **session)

    # Check the second instance answered with the first one's receipt, marked duplicate.
    assert (recorded.version, recorded.duplicate) == (4, False)
    assert (repeated.version, repeated.event, repeated.duplicate) == (4, "SessionAttended", True)
    assert [type(e).__name__ for e in other_app.history(episode)] == [
        "ReferralReceived", "IntakeCompleted", "Admitted", "SessionAttended",
    ]

