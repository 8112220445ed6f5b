"""Intensity read model: attended hours per ISO week against the program's weekly minimum.

Each story records sessions, then checks every week's hours and classification by hand:
180 minutes is a 3-hour group; the adult minimum is 9 hours (540 minutes), 6 for adolescents.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from projections import ReadModels, tables
from projections.queries.intensity import _Care, completed_weeks
from tests.pathways import (
    admitted_on,
    attend,
)

D = date.fromisoformat




def table(intensity) -> list[tuple]:
    """(iso year, iso week, minutes, classification) for every week."""
    return [(w.iso_year, w.iso_week, w.minutes, w.classification) for w in intensity.weeks]


def test_an_episode_across_the_new_year_with_partial_first_and_last_weeks(projected, clinician):
    reads = ReadModels(projected)
    # Admitted on Wednesday 2025-12-24 (ISO 2025-W52, Monday 12-22): in care Wed-Sun, 5 days.
    episode = admitted_on(projected, clinician, D("2025-12-24"))
    attend(projected, episode, clinician, D("2025-12-24"))
    # ISO 2026-W01 starts Monday 2025-12-29: two of its groups are dated in 2025.
    for day in ("2025-12-30", "2025-12-31", "2026-01-02"):
        attend(projected, episode, clinician, D(day))
    for day in ("2026-01-06", "2026-01-08"):  # 2026-W02: only two groups
        attend(projected, episode, clinician, D(day))
    attend(projected, episode, clinician, D("2026-01-12"))
    # Discharged on Wednesday 2026-01-14 (2026-W03): in care Mon-Wed, 3 days.
    projected.discharge(episode, clinician, effective_date="2026-01-14", discharge_type="completed",
                        reason="goals met")

    # Check the session of Tuesday 2025-12-30 is filed under week (2026, 1), not (2025, 53).
    s = tables.sessions
    with reads.connect() as connection:
        key = connection.execute(
            select(s.c.iso_year, s.c.iso_week)
            .where(s.c.episode_id == episode, s.c.session_date == D("2025-12-30"))
        ).one()
    assert tuple(key) == (2026, 1)

    intensity = reads.intensity(episode)
    # Check every week from the admission week to the discharge week, hand-summed:
    #   2025-W52: 1 x 180 = 180 min, 5 days in care -> partial (not judged)
    #   2026-W01: 3 x 180 = 540 min = 9 h >= 9 h     -> meets (12-30 and 12-31 count here)
    #   2026-W02: 2 x 180 = 360 min = 6 h <  9 h     -> below
    #   2026-W03: 1 x 180 = 180 min, 3 days in care  -> partial
    assert table(intensity) == [
        (2025, 52, 180, "partial"), (2026, 1, 540, "meets"), (2026, 2, 360, "below"),
        (2026, 3, 180, "partial"),
    ]
    assert [w.days_in_care for w in intensity.weeks] == [5, 7, 7, 3]
    assert [w.week_start for w in intensity.weeks] == [
        D("2025-12-22"), D("2025-12-29"), D("2026-01-05"), D("2026-01-12")]
    assert intensity.week(2026, 1).hours == Decimal("9.00")
    assert intensity.week(2026, 2).hours == Decimal("6.00")
    assert intensity.minimum_weekly_hours == Decimal(9)
    assert [w.key for w in intensity.below_weeks] == [(2026, 2)]
    # Check the discharge date, not today, ends the weeks.
    assert intensity.through == D("2026-01-14")


def test_taper_weeks_after_a_step_down_are_not_violations_for_two_weeks(projected, clinician):
    reads = ReadModels(projected)
    # Stepped down from partial hospitalization: admitted at 2.5 on Monday 2026-02-02 (W06).
    episode = admitted_on(projected, clinician, D("2026-02-02"), level_of_care="2.5")
    for n in range(5):  # W06: five PHP days of 4 hours
        attend(projected, episode, clinician, D("2026-02-02") + timedelta(days=n), minutes=240)
    projected.change_level_of_care(episode, clinician, effective_date="2026-02-09",
                                   kind="step-down", to_level="2.1",
                                   reason="stable: steps down to IOP")
    for day in ("2026-02-09", "2026-02-11", "2026-02-13"):  # W07: three groups at IOP
        attend(projected, episode, clinician, D(day))
    projected.change_level_of_care(episode, clinician, effective_date="2026-02-16", kind="taper",
                                   reason="tapering before discharge")
    for day in ("2026-02-16", "2026-02-18"):  # W08: taper week 1, two groups
        attend(projected, episode, clinician, D(day))
    attend(projected, episode, clinician, D("2026-02-25"))  # W09: taper week 2, one group
    attend(projected, episode, clinician, D("2026-03-04"))  # W10: taper week 3, one group
    attend(projected, episode, clinician, D("2026-03-11"))  # W11
    projected.discharge(episode, clinician, effective_date="2026-03-13",
                        discharge_type="stepped-down", reason="to weekly outpatient")

    intensity = reads.intensity(episode)
    # W06: 5 x 240 = 1200 min = 20 h -> meets;  W07: 3 x 180 = 540 = 9 h -> meets
    # W08: 2 x 180 = 360 = 6 h < 9, taper week 1 -> taper;  W09: 180 = 3 h, taper week 2 -> taper
    # W10: 180 = 3 h, taper week 3 (beyond the payer's two) -> below
    # W11: discharged Friday 03-13, in care Mon-Fri = 5 days -> partial
    assert table(intensity) == [
        (2026, 6, 1200, "meets"), (2026, 7, 540, "meets"), (2026, 8, 360, "taper"),
        (2026, 9, 180, "taper"), (2026, 10, 180, "below"), (2026, 11, 180, "partial"),
    ]
    assert [w.taper_week for w in intensity.weeks] == [None, None, 1, 2, 3, 4]
    # Check a taper allowance of None (no cap) excuses the third taper week too.
    uncapped = reads.intensity(episode, taper_allowance=None)
    assert uncapped.week(2026, 10).classification == "taper"

    # Check the dashboard: completed weeks as of Sunday 03-15 are W08-W11; only W10 is a violation.
    assert completed_weeks(D("2026-03-15"), 4) == [
        D("2026-02-16"), D("2026-02-23"), D("2026-03-02"), D("2026-03-09")]
    found = reads.below_minimum(as_of=D("2026-03-15"), weeks=4)
    assert [(b.episode_id, b.iso_year, b.iso_week, b.minutes, b.hours, b.minimum_weekly_hours)
            for b in found] == [(episode, 2026, 10, 180, Decimal("3.00"), Decimal(9))]


def test_a_hold_covering_a_whole_week_is_not_judged_but_a_part_week_hold_is(projected, clinician):
    reads = ReadModels(projected)
    episode = admitted_on(projected, clinician, D("2026-03-02"))  # Monday, W10
    for week in (0, 1):  # W10 and W11: Monday, Wednesday and Friday groups
        for offset in (0, 2, 4):
            day = D("2026-03-02") + timedelta(weeks=week, days=offset)
            attend(projected, episode, clinician, day)
    # On hold from Monday 03-16 to Monday 03-23: all of W12.
    projected.place_on_hold(episode, clinician, effective_date="2026-03-16",
                            reason="inpatient stay")
    projected.resume(episode, clinician, effective_date="2026-03-23")
    for offset in (0, 2, 4):  # W13: the resume day and two more groups
        attend(projected, episode, clinician, D("2026-03-23") + timedelta(days=offset))
    # W14: two groups, then on hold from Wednesday 04-01 to Monday 04-06.
    attend(projected, episode, clinician, D("2026-03-30"))
    attend(projected, episode, clinician, D("2026-03-31"))
    projected.place_on_hold(episode, clinician, effective_date="2026-04-01",
                            reason="family emergency")
    projected.resume(episode, clinician, effective_date="2026-04-06")

    # As of Sunday 04-12 the open episode's last week, W15, is complete and had no session.
    intensity = reads.intensity(episode, as_of=D("2026-04-12"))
    # W10, W11, W13: 3 x 180 = 540 = 9 h -> meets;  W12: on hold Mon-Sun (7 days) -> on-hold
    # W14: 2 x 180 = 360 < 540, on hold Wed-Sun (5 days) -> the hold explains it -> on-hold
    # W15: no session: 0 h -> below (a week without sessions still appears)
    assert table(intensity) == [
        (2026, 10, 540, "meets"), (2026, 11, 540, "meets"), (2026, 12, 0, "on-hold"),
        (2026, 13, 540, "meets"), (2026, 14, 360, "on-hold"), (2026, 15, 0, "below"),
    ]
    assert [w.days_on_hold for w in intensity.weeks] == [0, 0, 7, 0, 5, 0]
    # Check an as-of date mid-week leaves the open episode's last week partial (Mon-Wed: 3 days).
    midweek = reads.intensity(episode, as_of=D("2026-04-08"))
    assert table(midweek)[-1] == (2026, 15, 0, "partial")
    # Check an as-of date before the admission gives no weeks.
    assert reads.intensity(episode, as_of=D("2026-03-01")).weeks == ()


def test_voided_and_amended_sessions_count_as_corrected(projected, clinician):
    reads = ReadModels(projected)
    episode = admitted_on(projected, clinician, D("2026-04-06"))  # Monday, W15
    attend(projected, episode, clinician, D("2026-04-06"))
    attend(projected, episode, clinician, D("2026-04-08"))
    friday = attend(projected, episode, clinician, D("2026-04-10"))
    duplicate = attend(projected, episode, clinician, D("2026-04-11"))
    # Check before the corrections: 4 x 180 = 720 min = 12 h -> meets.
    assert table(reads.intensity(episode, as_of=D("2026-04-12"))) == [(2026, 15, 720, "meets")]

    projected.void_event(episode, clinician, target_version=duplicate.version,
                         reason="the Saturday entry duplicated Friday's group")
    # Check after the void: 3 x 180 = 540 min = 9 h -> meets, exactly the minimum.
    assert table(reads.intensity(episode, as_of=D("2026-04-12"))) == [(2026, 15, 540, "meets")]

    projected.amend_event(episode, clinician, target_version=friday.version,
                          changes={"minutes": 120}, reason="Friday's group ended early")
    # Check after the amendment: 180 + 180 + 120 = 480 min = 8 h < 9 h -> below.
    week = reads.intensity(episode, as_of=D("2026-04-12")).weeks[0]
    assert (week.minutes, week.hours, week.classification) == (480, Decimal("8.00"), "below")


def test_missed_and_cancelled_sessions_add_no_hours(projected, clinician):
    reads = ReadModels(projected)
    episode = admitted_on(projected, clinician, D("2026-04-13"))  # Monday, W16
    for day in ("2026-04-13", "2026-04-15", "2026-04-17"):
        attend(projected, episode, clinician, D(day))
    common = {"kind": "group", "minutes": 180}
    projected.record_absence(episode, clinician, effective_date="2026-04-14", **common)
    projected.record_absence(episode, clinician, effective_date="2026-04-16", excused=True,
                             **common)
    projected.record_program_cancellation(episode, clinician, effective_date="2026-04-18", **common)
    # Check only the three attended groups count: 3 x 180 = 540 min = 9 h -> meets.
    assert table(reads.intensity(episode, as_of=D("2026-04-19"))) == [(2026, 16, 540, "meets")]


def test_an_adolescent_program_is_judged_against_six_hours(projected, clinician):
    reads = ReadModels(projected)
    projected.define_program(clinician, code="iop-teen", name="Adolescent IOP",
                             age_band="adolescent")
    episode = admitted_on(projected, clinician, D("2026-05-04"), program_code="iop-teen")  # W19
    attend(projected, episode, clinician, D("2026-05-04"), minutes=240)
    attend(projected, episode, clinician, D("2026-05-06"), minutes=120)
    attend(projected, episode, clinician, D("2026-05-11"), minutes=240)
    attend(projected, episode, clinician, D("2026-05-13"), minutes=119)
    intensity = reads.intensity(episode, as_of=D("2026-05-17"))
    # W19: 240 + 120 = 360 min = 6 h >= 6 h -> meets;  W20: 240 + 119 = 359 min < 360 -> below
    assert intensity.minimum_weekly_hours == Decimal(6)
    assert table(intensity) == [(2026, 19, 360, "meets"), (2026, 20, 359, "below")]
    assert intensity.week(2026, 20).hours == Decimal("5.98")  # 359 / 60 = 5.983...


def test_the_dashboard_lists_violations_across_episodes_on_each_backend(any_projected, clinician):
    app = any_projected
    reads = ReadModels(app)
    # Three weeks to look at as of Sunday 2026-03-29: W11 (03-09), W12 (03-16), W13 (03-23).
    steady = admitted_on(app, clinician, D("2026-03-02"))
    for week in range(4):  # W10-W13: three groups each, 540 min -> meets every week
        for offset in (0, 2, 4):
            attend(app, steady, clinician, D("2026-03-02") + timedelta(weeks=week, days=offset))

    sparse = admitted_on(app, clinician, D("2026-03-02"))
    attend(app, sparse, clinician, D("2026-03-10"))  # W11: 180 min -> below
    attend(app, sparse, clinician, D("2026-03-17"), minutes=90)  # W12: 90 + 90 = 180 -> below
    attend(app, sparse, clinician, D("2026-03-19"), minutes=90)
    for offset in (0, 2, 4):  # W13: 540 -> meets
        attend(app, sparse, clinician, D("2026-03-23") + timedelta(days=offset))

    held = admitted_on(app, clinician, D("2026-03-02"))
    attend(app, held, clinician, D("2026-03-09"))  # W11: 180 -> below
    # On hold from Monday 03-16 on: W12 and W13 on hold.
    app.place_on_hold(held, clinician, effective_date="2026-03-16", reason="surgery")

    # Admitted Wednesday 03-18: W12 partial (Wed-Sun); W13 without a session -> below.
    late = admitted_on(app, clinician, D("2026-03-18"))

    wrong = admitted_on(app, clinician, D("2026-03-02"))  # below every week, but entered in error
    app.mark_entered_in_error(wrong, clinician, effective_date="2026-03-25",
                              reason="duplicate patient")

    found = reads.below_minimum(as_of=D("2026-03-29"), weeks=3)
    # Check the violations, by week then episode: sparse W11 (180) and W12 (180), held W11 (180),
    # late W13 (0).  Not steady (meets), not held W12/W13 (on hold), not late W12 (partial),
    # not the episode entered in error.
    expected = sorted([
        (sparse, 11, 180), (held, 11, 180), (sparse, 12, 180), (late, 13, 0),
    ], key=lambda r: (r[1], str(r[0])))
    assert sorted([(b.episode_id, b.iso_week, b.minutes) for b in found],
                  key=lambda r: (r[1], str(r[0]))) == expected
    assert {b.minimum_weekly_hours for b in found} == {Decimal(9)}
    assert [b.week_start for b in found if b.episode_id == late] == [D("2026-03-23")]
    # Check the dashboard agrees with each episode's own weeks.
    for episode in (steady, sparse, held, late):
        weeks = reads.intensity(episode, as_of=D("2026-03-29")).below_weeks
        own = {w.key for w in weeks if w.week_start >= D("2026-03-09")}
        assert own == {(b.iso_year, b.iso_week) for b in found if b.episode_id == episode}
    # Check a one-week look-back as of Wednesday 04-01 sees only W13 (the as-of week is unfinished).
    last_week = reads.below_minimum(as_of=D("2026-04-01"), weeks=1)
    assert [(b.episode_id, b.iso_week) for b in last_week] == [(late, 13)]


def record_mixed_episodes(app, actor, rng: random.Random, count: int, today: date):
    """``count`` episodes with every edge the dashboard meets: admissions and discharges on any
    weekday, weeks without sessions, holds (whole and part weeks, open at the end), tapers
    (more than one run, split by a step-up), an adolescent program, an episode in error."""
    app.define_program(actor, code="iop-teen", name="Adolescent IOP", target_weeks=12,
                       days_per_week=3, clinics=["north"], age_band="adolescent")
    episodes, in_error = [], set()
    for n in range(count):
        admitted = today - timedelta(days=rng.randint(0, 80))
        program = "iop-teen" if n % 5 == 4 else "iop-adult"
        episode = admitted_on(app, actor, admitted, program_code=program)
        episodes.append(episode)
        end = min(today, admitted + timedelta(days=rng.randint(0, 80)))
        on_hold, level = False, "2.1"
        day = admitted
        while day <= end:
            r = rng.random()
            if on_hold:
                if r < 0.25:
                    app.resume(episode, actor, effective_date=day)
                    on_hold = False
            elif r < 0.03:
                app.place_on_hold(episode, actor, effective_date=day, reason="medical admission")
                on_hold = True
            elif r < 0.07:
                app.change_level_of_care(episode, actor, effective_date=day, kind="taper",
                                         reason="tapering")
            elif r < 0.08 and level == "2.1":
                app.change_level_of_care(episode, actor, effective_date=day, kind="step-up",
                                         to_level="2.5", reason="needs more support")
                level = "2.5"
            elif day.weekday() != 6 and r < 0.55:
                attend(app, episode, actor, day, minutes=rng.choice((50, 90, 120, 180, 240)))
            day += timedelta(days=1)
        if end < today and rng.random() < 0.8:
            app.discharge(episode, actor, effective_date=end, discharge_type="completed",
                          reason="goals met")
        if n % 17 == 16:
            app.mark_entered_in_error(episode, actor, reason="wrong patient")
            in_error.add(episode)
    return episodes, in_error


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_dashboard_agrees_with_every_episodes_own_weeks(any_projected, clinician, data):
    # The episodes are recorded once per backend (hypothesis reuses the fixture's database).
    app = any_projected
    reads = ReadModels(app)
    today = D("2026-06-01")
    if not hasattr(app, "_mixed_episodes"):
        app._mixed_episodes = record_mixed_episodes(app, clinician, random.Random(11), 34, today)
    episodes, in_error = app._mixed_episodes
    as_of = data.draw(st.dates(today - timedelta(days=90), today), label="as_of")
    weeks = data.draw(st.integers(1, 6), label="weeks")
    allowance = data.draw(st.sampled_from((None, 0, 1, 2, 3)), label="taper_allowance")

    found = reads.below_minimum(as_of=as_of, weeks=weeks, taper_allowance=allowance)
    # Check against each episode's own weeks, classified one by one, in the window's weeks.
    window = set(completed_weeks(as_of, weeks))
    expected = sorted(
        (w.week_start, episode, w.iso_year, w.iso_week, w.minutes, w.hours, w.minimum_weekly_hours)
        for episode in episodes if episode not in in_error
        for w in reads.intensity(episode, as_of=as_of, taper_allowance=allowance).below_weeks
        if w.week_start in window
    )
    # Check the order too: by week, then episode.
    assert [(b.week_start, b.episode_id, b.iso_year, b.iso_week, b.minutes, b.hours,
             b.minimum_weekly_hours) for b in found] == expected
    assert {b.program_code for b in found} <= {"iop-adult", "iop-teen"}


_DAY0 = D("2026-01-05")  # a Monday
_days = st.integers(0, 60).map(lambda n: _DAY0 + timedelta(days=n))
_periods = st.lists(st.tuples(
    st.sampled_from(("onhold", "active")), st.booleans(), _days, st.none() | _days), max_size=5)


@settings(max_examples=300, deadline=None)
@given(admitted=_days, through=_days, periods=_periods, week=st.integers(0, 9))
def test_days_on_hold_and_taper_runs_count_every_day_once(admitted, through, periods, week):
    # Check the day counts, from merged ranges, against the rules day by day: a day is in care
    # between admission and ``through``, on hold in any on-hold period [valid_from, valid_to).
    care = _Care(admitted, through, periods)
    monday = _DAY0 + timedelta(weeks=week)
    week_days = (monday + timedelta(days=i) for i in range(7))
    days = [d for d in week_days if admitted <= d <= through]
    on_hold = sum(1 for d in days if any(
        status == "onhold" and f <= d and (t is None or d < t) for status, _, f, t in periods))
    assert care.days(monday) == (len(days), on_hold)
    # Check a taper run covers exactly the days of some tapering period within the stay.
    tapering = {d for _, taper, f, t in periods if taper for n in range(61)
                if admitted <= (d := _DAY0 + timedelta(days=n)) <= through and f <= d
                and (t is None or d < t)}
    assert {first + timedelta(days=i) for first, last in care.taper_runs
            for i in range((last - first).days + 1)} == tapering
