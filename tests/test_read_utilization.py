"""Utilization read model, told as the utilization reviewer's week: what each payer
authorized, what was used of it, which authorizations run out soon, who is in care without
one, and when the next review and the Medicare recertification fall due.  Expected figures
are worked out by hand in the comments."""

from __future__ import annotations

from datetime import date, timedelta
from uuid import UUID

import pytest

from episodes import EpisodeNotFound
from projections import ReadModels
from projections.queries.utilization import UnauthorizedEpisode
from tests.pathways import admit, attend, complete_intake, define_standard_program, refer

D = date.fromisoformat



def in_care(app, actor, patient: str, admitted: date, program: str = "iop-adult") -> UUID:
    """Referral two days before the admission, intake the day before."""
    episode = refer(app, actor, admitted - timedelta(days=2), patient_ref=patient)
    complete_intake(app, episode, actor, admitted - timedelta(days=1))
    admit(app, episode, actor, admitted, program_code=program)
    return episode


def authorize(app, actor, episode: UUID, unit: str, authorized: int, start: str, end: str,
              next_review: str | None = None) -> int:
    return app.record_authorization(
        episode, actor, effective_date=D(start), payer="Medicaid", unit=unit, authorized=authorized,
        start=D(start), end=D(end), next_review=next_review and D(next_review),
    ).version


def test_authorized_used_remaining_and_over_by(projected, clinician):
    app, reads = projected, ReadModels(projected)
    define_standard_program(app, clinician)
    episode = in_care(app, clinician, "Patient/1001", D("2026-02-04"))
    days = authorize(app, clinician, episode, "days", 3, "2026-02-04", "2026-02-10", "2026-02-09")
    sessions = authorize(app, clinician, episode, "sessions", 10, "2026-02-11", "2026-02-28",
                         "2026-02-25")
    units = authorize(app, clinician, episode, "units", 2, "2026-02-11", "2026-02-28")
    march = authorize(app, clinician, episode, "days", 5, "2026-03-01", "2026-03-31", "2026-03-20")
    # First week: two sessions on the admission day, then the 5th, a miss on the 6th, 9th, 10th.
    attend(app, episode, clinician, D("2026-02-04"))
    attend(app, episode, clinician, D("2026-02-04"), minutes=50, kind="individual")
    attend(app, episode, clinician, D("2026-02-05"))
    app.record_absence(episode, clinician, effective_date=D("2026-02-06"), kind="group", minutes=180)
    attend(app, episode, clinician, D("2026-02-09"))
    attend(app, episode, clinician, D("2026-02-10"))
    # Then: attended the 11th, excused on the 12th, the program cancelled the 13th, two on the 16th.
    attend(app, episode, clinician, D("2026-02-11"))
    app.record_absence(episode, clinician, effective_date=D("2026-02-12"), kind="group", minutes=180,
                       excused=True)
    app.record_program_cancellation(episode, clinician, effective_date=D("2026-02-13"), kind="group",
                                    minutes=180)
    attend(app, episode, clinician, D("2026-02-16"))
    attend(app, episode, clinician, D("2026-02-16"), minutes=50, kind="individual")
    # The March authorization belonged to another patient: it is voided.
    app.void_event(episode, clinician, target_version=march, reason="entered on the wrong episode")

    uses = {u.version: u for u in reads.authorization_use(episode)}

    # Check the voided authorization is gone.
    assert sorted(uses) == [days, sessions, units]
    # Check days: attended on 02-04 (twice: one day), 05, 09, 10 = 4 days of 3 -> over by 1.
    assert (uses[days].used, uses[days].remaining, uses[days].over_by) == (4, 0, 1)
    # Check sessions: attended 02-11 (1) + 02-16 (2) = 3 of 10; the miss, the excused absence and
    # the program's cancellation use nothing -> 7 remaining.
    assert (uses[sessions].used, uses[sessions].remaining, uses[sessions].over_by) == (3, 7, 0)
    # Check units: one unit per attended session, the same 3, of 2 -> over by 1.
    assert (uses[units].used, uses[units].remaining, uses[units].over_by) == (3, 0, 1)

    mid_february = reads.utilization(episode, on=D("2026-02-20"))
    # Check 02-20 is covered (by the sessions and units authorizations); the next review on or
    # after it is 02-25 (02-09 has passed); recertification: 02-04 + 60 days = 24 to Feb 28
    # + 31 in March + 5 = 2026-04-05.
    assert mid_february.authorized_on is True
    assert mid_february.next_review_on == D("2026-02-25")
    assert mid_february.recertification_due == D("2026-04-05")
    assert [u.version for u in mid_february.authorizations] == [days, sessions, units]
    # Check March is uncovered now that its authorization is void, with no review ahead.
    march_5 = reads.utilization(episode, on=D("2026-03-05"))
    assert (march_5.authorized_on, march_5.next_review_on) == (False, None)


def test_an_episode_across_the_new_year_and_its_recertification_dates(projected, clinician):
    app, reads = projected, ReadModels(projected)
    define_standard_program(app, clinician)
    episode = in_care(app, clinician, "Patient/1001", D("2025-12-15"))
    authorize(app, clinician, episode, "days", 20, "2025-12-15", "2026-01-15")
    for day in ("2025-12-29", "2025-12-31", "2026-01-02", "2026-01-05", "2026-01-16"):
        attend(app, episode, clinician, D(day))
    app.discharge(episode, clinician, effective_date=D("2026-03-01"), discharge_type="completed",
                  reason="program completed")

    # Check the use counts both years: 12-29, 12-31, 01-02, 01-05 = 4 of 20 (01-16 is after the end).
    (use,) = reads.authorization_use(episode)
    assert (use.used, use.remaining, use.over_by) == (4, 16, 0)

    def due(on: str) -> date | None:
        return reads.utilization(episode, on=D(on)).recertification_due

    # Check recertification every 60 days from the admission: 2025-12-15 + 60 = 16 days to Dec 31
    # + 31 in January + 13 = 2026-02-13; then + 60 = 15 to Feb 28 + 31 + 14 = 2026-04-14.
    assert due("2025-12-15") == D("2026-02-13")  # from the admission day
    assert due("2026-02-13") == D("2026-02-13")  # day 60 itself: due that day
    assert due("2026-02-14") == D("2026-04-14")
    # Check none once discharged (the discharge day included: not in care at the end of it),
    # nor before the admission.
    assert due("2026-03-01") is None
    assert due("2025-12-14") is None
    with pytest.raises(EpisodeNotFound):
        reads.utilization(UUID(int=7))
    with pytest.raises(EpisodeNotFound):
        reads.authorization_use(UUID(int=7))


def test_expiring_authorizations_and_episodes_in_care_without_one(any_projected, clinician):
    app, reads = any_projected, ReadModels(any_projected)
    define_standard_program(app, clinician)
    define_standard_program(app, clinician, code="iop-teen", name="Teen IOP", age_band="adolescent",
                            clinics=["north"])
    admitted = D("2026-03-02")
    x1 = in_care(app, clinician, "Patient/X1", admitted)
    authorize(app, clinician, x1, "days", 10, "2026-03-02", "2026-03-16")  # ends on the day asked
    for day in ("2026-03-02", "2026-03-04"):
        attend(app, x1, clinician, D(day))
    x2 = in_care(app, clinician, "Patient/X2", admitted)
    x2_march = authorize(app, clinician, x2, "days", 12, "2026-03-02", "2026-03-30")  # 14 days left
    authorize(app, clinician, x2, "days", 12, "2026-03-31", "2026-04-30")  # already renewed
    x3 = in_care(app, clinician, "Patient/X3", admitted)
    authorize(app, clinician, x3, "days", 12, "2026-03-02", "2026-03-31")  # 15 days left: not yet
    x4 = in_care(app, clinician, "Patient/X4", admitted)
    authorize(app, clinician, x4, "days", 6, "2026-03-02", "2026-03-15")  # lapsed the day before
    x5 = in_care(app, clinician, "Patient/X5", admitted)
    authorize(app, clinician, x5, "sessions", 12, "2026-03-02", "2026-03-20")
    app.place_on_hold(x5, clinician, effective_date=D("2026-03-10"), reason="short inpatient stay")
    x6 = in_care(app, clinician, "Patient/X6", admitted)
    authorize(app, clinician, x6, "days", 12, "2026-03-02", "2026-03-20")
    app.discharge(x6, clinician, effective_date=D("2026-03-12"), discharge_type="transferred",
                  reason="moved out of the area")
    x7 = in_care(app, clinician, "Patient/X7", admitted)  # no authorization at all
    x8 = in_care(app, clinician, "Patient/X8", admitted)
    authorize(app, clinician, x8, "days", 12, "2026-03-20", "2026-04-20")  # starts later
    x9 = refer(app, clinician, D("2026-03-02"), patient_ref="Patient/X9")  # a referral, not in care
    authorize(app, clinician, x9, "days", 12, "2026-03-02", "2026-03-20")
    x10 = in_care(app, clinician, "Patient/X10", admitted, program="iop-teen")  # none either

    expiring = reads.authorizations_expiring(within_days=14, on=D("2026-03-16"))

    # Check ends 03-16..03-30 of episodes in care on 03-16: X1 (0 days left), X5 (on hold, 4), X2
    # (14); not X3 (15 days), X4 (ended 03-15), X6 (discharged), X8 (04-20) nor X9 (not admitted).
    assert [(x.patient_ref, x.status, x.days_left, x.renewed) for x in expiring] == [
        ("Patient/X1", "active", 0, False),
        ("Patient/X5", "onhold", 4, False),
        ("Patient/X2", "active", 14, True),  # 03-31..04-30 follows it
    ]
    # Check the use comes along: X1 attended 2 days of 10 -> 8 remaining.
    assert (expiring[0].authorization.used, expiring[0].authorization.remaining) == (2, 8)
    assert expiring[2].authorization.version == x2_march

    missing = reads.in_care_without_authorization(on=D("2026-03-16"))

    # Check X4 lapsed (last covered 03-15), X7 never had one, X8's starts 03-20, X10 (teen) has none;
    # X1's ends that day and still covers it.
    assert missing == (
        UnauthorizedEpisode(x10, "Patient/X10", "active", "iop-teen", "north", None, None),
        UnauthorizedEpisode(x4, "Patient/X4", "active", "iop-adult", "north", D("2026-03-15"), None),
        UnauthorizedEpisode(x7, "Patient/X7", "active", "iop-adult", "north", None, None),
        UnauthorizedEpisode(x8, "Patient/X8", "active", "iop-adult", "north", None, D("2026-03-20")),
    )
    # Check one program only, and an earlier day: on 03-10 X6 was still in care, and covered.
    adult = reads.in_care_without_authorization(on=D("2026-03-10"), program_code="iop-adult")
    assert [m.patient_ref for m in adult] == ["Patient/X7", "Patient/X8"]
