"""The care pathway: which command is allowed in which status, and where it leads.

This table is the single source of truth.  The aggregate enforces it, ``docs/events.md``
is generated from it (and a test keeps the two equal), and the stateful property test
drives random commands against it.

Status changes follow FHIR ``EpisodeOfCare`` as profiled by national eHealth guides:

    planned  -> active, onhold, waitlist, cancelled
    waitlist -> planned, active, onhold, cancelled
    active   -> onhold, finished, cancelled
    onhold   -> active, finished, cancelled
    any      -> entered-in-error;  finished and cancelled are terminal

The pathway uses a subset of those transitions (it never puts a referral on hold, for
instance); a test checks that every status change it makes is one FHIR allows.
"""

from __future__ import annotations

from dataclasses import dataclass

from episodes.vocabulary import EpisodeStatus

PLANNED = EpisodeStatus.PLANNED
WAITLIST = EpisodeStatus.WAITLIST
ACTIVE = EpisodeStatus.ACTIVE
ONHOLD = EpisodeStatus.ONHOLD
FINISHED = EpisodeStatus.FINISHED
CANCELLED = EpisodeStatus.CANCELLED
ENTERED_IN_ERROR = EpisodeStatus.ENTERED_IN_ERROR

FHIR_TRANSITIONS: dict[EpisodeStatus, frozenset[EpisodeStatus]] = {
    PLANNED: frozenset({ACTIVE, ONHOLD, WAITLIST, CANCELLED, ENTERED_IN_ERROR}),
    WAITLIST: frozenset({PLANNED, ACTIVE, ONHOLD, CANCELLED, ENTERED_IN_ERROR}),
    ACTIVE: frozenset({ONHOLD, FINISHED, CANCELLED, ENTERED_IN_ERROR}),
    ONHOLD: frozenset({ACTIVE, FINISHED, CANCELLED, ENTERED_IN_ERROR}),
    FINISHED: frozenset({ENTERED_IN_ERROR}),
    CANCELLED: frozenset({ENTERED_IN_ERROR}),
    ENTERED_IN_ERROR: frozenset(),
}

REFERRAL_OPEN = (PLANNED, WAITLIST)
IN_CARE = (ACTIVE, ONHOLD)
# Late entries are normal: a session or a score may be recorded after a hold or a discharge,
# as long as its date falls on a day the episode was active (see EpisodeState.active_on).
SESSION_RECORDABLE = (ACTIVE, ONHOLD, FINISHED)
MEASURABLE = (PLANNED, WAITLIST, ACTIVE, ONHOLD, FINISHED)
CORRECTABLE = (PLANNED, WAITLIST, ACTIVE, ONHOLD, FINISHED, CANCELLED)


@dataclass(frozen=True)
class Step:
    """One command of the pathway."""

    command: str  # the use case, a verb: the application method of the same name
    event: str  # the event it records, in the past tense
    allowed_in: tuple[EpisodeStatus, ...]  # empty: the command creates the episode
    leads_to: EpisodeStatus | None  # None: the status does not change
    reason_required: bool
    summary: str


STEPS: tuple[Step, ...] = (
    Step("refer", "ReferralReceived", (), PLANNED, False,
         "A referral arrives (new, step-up or step-down) and opens the episode."),
    Step("complete_intake", "IntakeCompleted", REFERRAL_OPEN, None, False,
         "Screening / intake assessment: diagnoses, ASAM dimensions, recommended level, baselines."),
    Step("waitlist", "Waitlisted", (PLANNED,), WAITLIST, False,
         "Accepted but no place yet."),
    Step("cancel_referral", "ReferralCancelled", REFERRAL_OPEN, CANCELLED, True,
         "The referral is withdrawn (by the patient or the referrer)."),
    Step("decline_referral", "ReferralDeclined", REFERRAL_OPEN, CANCELLED, True,
         "The program declines the referral (e.g. another level of care fits better)."),
    Step("admit", "Admitted", REFERRAL_OPEN, ACTIVE, False,
         "Enrolment in a program: level of care, clinic, format, care team, payer."),
    Step("record_attendance", "SessionAttended", SESSION_RECORDABLE, None, False,
         "A session the patient attended, with its kind and minutes."),
    Step("record_absence", "SessionMissed", SESSION_RECORDABLE, None, False,
         "A scheduled session the patient missed, excused or not."),
    Step("record_program_cancellation", "SessionCancelledByProgram", SESSION_RECORDABLE, None,
         False, "A session the program itself cancelled (not counted against attendance)."),
    Step("record_outcome", "OutcomeMeasured", MEASURABLE, None, False,
         "A standardised score (PHQ-9, GAD-7)."),
    Step("record_authorization", "AuthorizationRecorded", MEASURABLE, None, False,
         "A payer authorization: days or units for a date range, next review."),
    Step("change_level_of_care", "LevelOfCareChanged", (ACTIVE,), None, True,
         "Step-down, step-up or taper while in care."),
    Step("place_on_hold", "PlacedOnHold", (ACTIVE,), ONHOLD, True,
         "Treatment pauses (illness, travel, a short inpatient stay)."),
    Step("resume", "Resumed", (ONHOLD,), ACTIVE, False,
         "Treatment resumes after a hold."),
    Step("discharge", "Discharged", IN_CARE, FINISHED, True,
         "The episode ends: discharge type, reason, aftercare plan and follow-up date."),
    Step("void_event", "EventVoided", CORRECTABLE, None, True,
         "An earlier event is declared void; the rest of the history must stay legal."),
    Step("amend_event", "EventAmended", CORRECTABLE, None, True,
         "Fields of an earlier event are corrected; the corrected history must stay legal."),
    Step("mark_entered_in_error", "MarkedEnteredInError", CORRECTABLE, ENTERED_IN_ERROR, True,
         "The whole episode should never have existed (wrong patient, duplicate)."),
)

PATHWAY: dict[str, Step] = {step.command: step for step in STEPS}
STEP_BY_EVENT: dict[str, Step] = {step.event: step for step in STEPS}


def allowed_commands(status: EpisodeStatus | None) -> list[str]:
    """The commands the pathway accepts in ``status`` (``None``: no episode yet)."""
    if status is None:
        return [s.command for s in STEPS if not s.allowed_in]
    return [s.command for s in STEPS if status in s.allowed_in]
