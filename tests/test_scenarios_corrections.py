"""Correcting the record, told as stories: amend, void, entered-in-error, and commands
submitted twice.  Nothing is ever deleted: a correction is a new event, and the record as it
stood before the correction can still be read.
"""

from __future__ import annotations

from datetime import date, timedelta
from uuid import UUID

import pytest

from episodes import (
    ActorRole,
    CorrectionRejected,
    Episodes,
    EpisodeStatus,
    InvalidCommand,
    NotFound,
    TransitionNotAllowed,
)
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
    return [(e.originator_version, type(e).__name__) for e in app.history(episode)]


def test_a_mis_recorded_session_is_amended_and_another_voided(app, clock, clinician):
    episode = admitted_episode(app, clinician, D("2026-02-02"))  # admitted 2026-02-04
    attend(app, episode, clinician, D("2026-02-04"), minutes=240)  # v4: the group ran 120 minutes
    attend(app, episode, clinician, D("2026-02-07"))  # v5: a Saturday, typed for Friday
    attend(app, episode, clinician, D("2026-02-06"))  # v6: the Friday session, recorded again
    attend(app, episode, clinician, D("2026-02-09"))  # v7
    before_corrections = NOW

    clock.advance(timedelta(days=1))
    amended = app.amend_event(episode, clinician, target_version=4, changes={"minutes": 120},
                              reason="the group ran 12:00-14:00; 240 was a typing error",
                              command_id="amend-v4")
    voided = app.void_event(episode, clinician, target_version=5,
                            reason="entered for the wrong day; the Friday session is version 6")
    assert (amended.version, amended.event) == (8, "EventAmended")
    assert (voided.version, voided.event) == (9, "EventVoided")

    # Check the facts after the corrections: version 4 counts 120 minutes, version 5 is gone.
    view = app.episode(episode)
    facts = {f.originator_version: f for f in view.facts}
    assert sorted(facts) == [1, 2, 3, 4, 6, 7]
    assert (facts[4].minutes, facts[4].effective_date) == (120, D("2026-02-04"))
    assert view.state.last_session_on == D("2026-02-09")
    assert view.status is EpisodeStatus.ACTIVE

    # Check nothing was deleted: the original events are still in the history, unchanged.
    assert stream(app, episode) == [
        (1, "ReferralReceived"), (2, "IntakeCompleted"), (3, "Admitted"),
        (4, "SessionAttended"), (5, "SessionAttended"), (6, "SessionAttended"),
        (7, "SessionAttended"), (8, "EventAmended"), (9, "EventVoided"),
    ]
    events = list(app.history(episode))
    assert events[3].minutes == 240
    assert events[4].effective_date == D("2026-02-07")
    amendment, void = events[7], events[8]
    assert (amendment.target_version, amendment.changes) == (4, {"minutes": 120})
    assert amendment.envelope.reason == "the group ran 12:00-14:00; 240 was a typing error"
    assert (amendment.envelope.actor_id, amendment.envelope.actor_role) == (
        "clin-ana", ActorRole.CLINICIAN)
    assert amendment.envelope.command_id == "amend-v4"
    assert amendment.timestamp == NOW + timedelta(days=1)
    assert void.target_version == 5
    assert void.envelope.reason == "entered for the wrong day; the Friday session is version 6"
    # A correction is dated the day it is made unless told otherwise (the clock's 2026-06-02).
    assert void.effective_date == D("2026-06-02")

    # Check the record as it stood before the corrections, by version and by recorded time.
    for earlier in (app.episode(episode, version=7),
                    app.episode(episode, recorded_at=before_corrections)):
        facts_then = {f.originator_version: f for f in earlier.facts}
        assert sorted(facts_then) == [1, 2, 3, 4, 5, 6, 7]
        assert facts_then[4].minutes == 240
        assert facts_then[5].effective_date == D("2026-02-07")

    # Check voiding the admission while sessions exist is refused, naming the version that
    # would break (the first session, version 4), and writes nothing.
    with pytest.raises(CorrectionRejected) as refused:
        app.void_event(episode, clinician, target_version=3, reason="admitted by mistake")
    assert "at version 4 (SessionAttended)" in str(refused.value)
    # Check an amendment that would date a session before the admission is refused the same way.
    with pytest.raises(CorrectionRejected) as refused:
        app.amend_event(episode, clinician, target_version=4,
                        changes={"effective_date": "2026-02-01"}, reason="wrong date")
    assert "at version 4 (SessionAttended)" in str(refused.value)
    # Check a voided event cannot be corrected again.
    with pytest.raises(NotFound):
        app.void_event(episode, clinician, target_version=5, reason="again")

    # Check an unknown field or an invalid value is refused with an error naming the field.
    with pytest.raises(InvalidCommand) as unknown:
        app.amend_event(episode, clinician, target_version=6, changes={"duration": 90},
                        reason="typo")
    assert "changes.duration" in unknown.value.errors
    for bad_minutes in (0, 900, "ninety"):  # 1-720 minutes (a 12-hour day) is the range
        with pytest.raises(InvalidCommand) as invalid:
            app.amend_event(episode, clinician, target_version=6,
                            changes={"minutes": bad_minutes}, reason="typo")
        assert list(invalid.value.errors) == ["changes.minutes"]
    # Check an amendment needs a reason.
    with pytest.raises(InvalidCommand) as no_reason:
        app.amend_event(episode, clinician, target_version=6, changes={"minutes": 150})
    assert "reason" in no_reason.value.errors

    # Check none of the refused corrections wrote anything.
    assert app.get(episode).version == 9
    assert len(list(app.history(episode))) == 9
    assert {f.originator_version: f for f in app.episode(episode).facts}[6].minutes == 180


def test_an_episode_entered_in_error_accepts_nothing_more(app, clinician):
    define_standard_program(app, clinician)
    # A referral filed under the wrong patient.
    episode = refer(app, clinician, D("2026-02-10"), patient_ref="Patient/2002")
    complete_intake(app, episode, clinician, D("2026-02-11"))

    with pytest.raises(InvalidCommand) as no_reason:
        app.mark_entered_in_error(episode, clinician)
    assert "reason" in no_reason.value.errors
    assert app.get(episode).version == 2

    receipt = app.mark_entered_in_error(
        episode, clinician, reason="filed under the wrong patient; see Patient/2020")
    assert (receipt.version, receipt.event) == (3, "MarkedEnteredInError")

    # Check the status; the mark is dated the day it was made (the fixed clock's 2026-06-01).
    state = app.episode(episode).state
    assert (state.status, state.status_since) == (EpisodeStatus.ENTERED_IN_ERROR, D("2026-06-01"))
    mark = list(app.history(episode))[-1]
    assert mark.envelope.reason == "filed under the wrong patient; see Patient/2020"

    # Check nothing more can be recorded: not an admission, a score, a session or a correction.
    attempts = [
        lambda: admit(app, episode, clinician, D("2026-02-12")),
        lambda: app.record_outcome(episode, clinician, effective_date="2026-02-12",
                                   instrument="PHQ-9", score=12),
        lambda: attend(app, episode, clinician, D("2026-02-12")),
        lambda: app.void_event(episode, clinician, target_version=2, reason="undo"),
        lambda: app.mark_entered_in_error(episode, clinician, reason="again"),
    ]
    for attempt in attempts:
        with pytest.raises(TransitionNotAllowed) as refused:
            attempt()
        assert "the episode is entered-in-error" in str(refused.value)
    assert stream(app, episode) == [
        (1, "ReferralReceived"), (2, "IntakeCompleted"), (3, "MarkedEnteredInError"),
    ]


def test_the_same_command_submitted_twice_is_recorded_once(app, clinician):
    define_standard_program(app, clinician)
    # The referral form is double-submitted (a retry after a timeout).
    fields = dict(patient_ref="Patient/3003", effective_date="2026-03-02", source="primary care",
                  direction="step-up", requested_level="2.1", command_id="referral-form-81")
    first = app.refer(clinician, **fields)
    second = app.refer(clinician, **fields)
    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.episode_id == first.episode_id
    assert (second.version, second.event) == (1, "ReferralReceived")
    episode = first.episode_id

    complete_intake(app, episode, clinician, D("2026-03-03"))
    admit(app, episode, clinician, D("2026-03-04"))
    # The attendance sheet is submitted twice with the same command id.
    recorded = attend(app, episode, clinician, D("2026-03-04"), command_id="sheet-0304-ana")
    again = attend(app, episode, clinician, D("2026-03-04"), command_id="sheet-0304-ana")
    assert (recorded.version, recorded.duplicate) == (4, False)
    assert (again.version, again.event, again.duplicate) == (4, "SessionAttended", True)
    assert again.recorded_at == recorded.recorded_at

    # Check the session is on the record once and the version did not move.
    assert app.get(episode).version == 4
    assert stream(app, episode) == [
        (1, "ReferralReceived"), (2, "IntakeCompleted"), (3, "Admitted"), (4, "SessionAttended"),
    ]
    # Check a different command id for the same day is a second session, as the clinic said.
    assert attend(app, episode, clinician, D("2026-03-04"), minutes=50, kind="individual",
                  command_id="sheet-0304-ind").version == 5
