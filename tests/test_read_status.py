"""The status read model: day N of the stay against the program's target."""

from __future__ import annotations

from datetime import date

from tests.pathways import admitted_on, attend


def test_day_and_week_of_the_stay_against_a_twelve_week_target(reads, projected, clinician):
    episode = admitted_on(projected, clinician, date(2026, 2, 4))
    attend(projected, episode, clinician, date(2026, 2, 6))
    status = reads.status(episode, as_of=date(2026, 3, 5))
    # 2026-02-04 is day 1; 2026-03-05 is 24 + 5 = 29 days later: day 30, week (30 - 1) // 7 + 1 = 5.
    assert (status.day, status.week) == (30, 5)
    # Target 12 weeks = 84 days; 30 / 84 = 35.71...% -> 35.7; expected end = day 84 = 2026-04-28.
    assert (status.target_days, status.percent_of_target) == (84, 35.7)
    assert status.expected_end == date(2026, 4, 28)
    assert status.last_attended_on == date(2026, 2, 6)
    assert status.over_target is False


def test_recertification_is_due_on_day_sixty_itself(reads, projected, clinician):
    episode = admitted_on(projected, clinician, date(2026, 2, 4))
    # 2026-02-04 + 60 days = 2026-04-05; the next one is + 120 days = 2026-06-04.
    assert reads.status(episode, as_of=date(2026, 4, 4)).recertification_due == date(2026, 4, 5)
    assert reads.status(episode, as_of=date(2026, 4, 5)).recertification_due == date(2026, 4, 5)
    assert reads.status(episode, as_of=date(2026, 4, 6)).recertification_due == date(2026, 6, 4)


def test_a_same_day_stay_is_one_day(reads, projected, clinician):
    episode = admitted_on(projected, clinician, date(2026, 3, 2))
    projected.discharge(episode, clinician, effective_date="2026-03-02", discharge_type="transferred",
                        reason="needs residential care")
    status = reads.status(episode, as_of=date(2026, 5, 1))
    # Discharged the day of admission: day 1, and no recertification once discharged.
    assert (status.status, status.day, status.recertification_due) == ("finished", 1, None)


def test_over_target_after_day_84(reads, projected, clinician):
    episode = admitted_on(projected, clinician, date(2026, 1, 5))
    # 2026-01-05 + 84 days = 2026-03-30 is day 85: past the 84-day target.
    assert reads.status(episode, as_of=date(2026, 3, 29)).over_target is False
    assert reads.status(episode, as_of=date(2026, 3, 30)).over_target is True
