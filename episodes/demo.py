"""Synthetic but realistic demo data, recorded through the public API (so every rule applies).

Three programs modelled on real ones: a 6-week DBT program three days a week at four clinics,
an 8-week hybrid program with 12 group hours a week, and a standard 12-week program.
Episodes end in every status and every discharge type, with misses, holds, step-downs and
corrections.  The same seed gives the same episodes (dates are counted back from ``today``).
No real patient: references look like ``Patient/DEMO-0001``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import cycle
from uuid import UUID

from episodes.application import Episodes, Receipt
from episodes.values import Actor
from episodes.vocabulary import ActorRole, DischargeType, SessionKind

PROGRAMS = (
    dict(code="dbt-6wk", name="DBT skills IOP (6 weeks)", target_weeks=6, days_per_week=3,
         clinics=["north", "south", "east", "west"], format="in-person"),
    dict(code="hybrid-8wk", name="Hybrid IOP (8 weeks, 12 group hours)", target_weeks=8,
         days_per_week=4, minimum_weekly_hours="9", clinics=["central"], format="hybrid"),
    dict(code="iop-12wk", name="Standard adult IOP (12 weeks)", target_weeks=12, days_per_week=3,
         clinics=["north", "south"], format="in-person"),
)
GROUP_TOPICS = ("DBT distress tolerance", "CBT thought records", "Mindfulness",
                "Relapse prevention", "Emotion regulation", "Interpersonal effectiveness")
GROUP_MINUTES = 180  # a program day's group hours
GROUP_SPLITS = (1, 2, 3)  # the day's group sessions: 180, 90 or 60 minutes each
DISCHARGE_TYPES = [t for t in DischargeType]
# planned, declined, waitlisted then cancelled, waitlisted, entered in error: then the rest at random.
FIRST_FATES = (0.02, 0.07, 0.11, 0.15, 0.99)
CLINICIANS = [Actor(f"clin-{n}", ActorRole.CLINICIAN) for n in ("ana", "ben", "chi", "dev")]


@dataclass(frozen=True)
class DemoSummary:
    episode_ids: tuple[UUID, ...]
    statuses: Counter[str]  # how many episodes are in each status


def seed_demo(app: Episodes, *, episodes: int = 60, seed: int = 7, today: date | None = None,
              groups_per_day: int = 1) -> DemoSummary:
    """Record ``episodes`` synthetic episodes (again with the same seed: nothing new).

    ``groups_per_day``: each program day's three group hours recorded as one 180-minute group
    session (1, the default) or as that many sessions sharing the 180 minutes, on different
    topics (3: three one-hour groups, as many IOP days run; an episode then has about twice the
    events).  The draws differ, so the same seed gives other episodes with another value."""
    if groups_per_day not in GROUP_SPLITS:
        raise ValueError(f"groups_per_day must be 1, 2 or 3, not {groups_per_day!r}")
    rng = random.Random(seed)
    today = today or app.clock.now().date()
    admin = Actor("adm-demo", ActorRole.ADMIN)
    for program in PROGRAMS:
        app.define_program(admin, **program)
    statuses: Counter[str] = Counter()
    ids = []
    discharge_types = discharge_types_in_turn()
    for n in range(episodes):
        ids.append(_seed_episode(app, rng, n, seed, today, discharge_types, groups_per_day))
        statuses[app.episode(ids[-1]).status.value] += 1
    return DemoSummary(tuple(ids), statuses)


def discharge_types_in_turn() -> Iterator[DischargeType]:
    """The type of each planned discharge, in turn: every type appears whatever the date (how
    many episodes reach a planned discharge depends on the weekdays since their admission)."""
    return cycle(DISCHARGE_TYPES)


def _seed_episode(app: Episodes, rng: random.Random, n: int, seed: int, today: date,
                  discharge_types: Iterator[DischargeType], groups_per_day: int = 1) -> UUID:
    program = rng.choice(PROGRAMS)
    actor = rng.choice(CLINICIANS)
    counter = iter(range(10_000))

    episode: UUID | None = None

    def run(command: str, **data: object) -> Receipt:
        # Deterministic command ids: seeding the same database again records nothing twice.
        data["command_id"] = f"demo-{seed}-{n}-{next(counter)}"
        if command != "refer":
            data["episode_id"] = episode
        return app.execute(command, data, actor)

    referred = today - timedelta(days=rng.randint(3, 200))
    step_down = rng.random() < 0.2
    episode = run(
        "refer", patient_ref=f"Patient/DEMO-{n:04d}", effective_date=referred,
        source="inpatient unit" if step_down else rng.choice(["primary care", "self", "therapist"]),
        direction="step-down" if step_down else "step-up",
        requested_level="2.5" if step_down else "2.1",
    ).episode_id
    fate = rng.random()
    if n < len(FIRST_FATES):
        fate = FIRST_FATES[n]  # the first episodes cover every status, whatever the seed
    if fate < 0.05:
        return episode  # still planned
    intake_on = min(referred + timedelta(days=rng.randint(0, 5)), today)
    run("complete_intake", effective_date=intake_on, clinician=actor.id,
        diagnoses=[{"code": "F33.1", "category": "mental-health"}]
        + ([{"code": "F10.20", "category": "substance-use"}] if rng.random() < 0.4 else []),
        asam_ratings={str(d): rng.randint(0, 3) for d in range(1, 7)},
        recommended_level="2.5" if step_down else "2.1",
        phq9=rng.randint(10, 24), gad7=rng.randint(8, 18))
    if fate < 0.10:
        run("decline_referral", effective_date=intake_on, reason="needs residential care",
            referred_elsewhere="residential program")
        return episode
    if fate < 0.18:
        run("waitlist", effective_date=intake_on, program_code=program["code"])
        if fate < 0.13:
            run("cancel_referral", effective_date=intake_on + timedelta(days=1) if intake_on < today
                else intake_on, reason="patient withdrew")
        return episode
    admitted = min(intake_on + timedelta(days=rng.randint(1, 7)), today)
    run("admit", effective_date=admitted, program_code=program["code"],
        clinic=rng.choice(program["clinics"]), level_of_care="2.5" if step_down else None,
        payer=rng.choice(["Medicaid", "Medicare", "Commercial", "Self-pay"]))
    run("record_authorization", effective_date=admitted, payer="Medicaid", unit="days",
        authorized=program["target_weeks"] * program["days_per_week"], start=admitted,
        end=admitted + timedelta(weeks=program["target_weeks"]),
        next_review=admitted + timedelta(weeks=4))
    sessions = _sessions_and_exit(run, rng, program, admitted, today, step_down, discharge_types,
                                  groups_per_day)
    # Corrections happen: a session recorded with the wrong minutes, one on the wrong day.
    if len(sessions) > 3 and (n % 7 == 3 or rng.random() < 0.15):
        if groups_per_day == 1:
            minutes, early = 120, "an hour"
        else:  # (an hour early would leave a one-hour group empty)
            minutes, early = GROUP_MINUTES // groups_per_day - 30, "half an hour"
        run("amend_event", target_version=sessions[1].version, changes={"minutes": minutes},
            reason=f"the group ended {early} early; minutes corrected")
    if len(sessions) > 5 and (n % 11 == 5 or rng.random() < 0.08):
        run("void_event", target_version=sessions[4].version,
            reason="recorded on the wrong patient's episode")
    if fate > 0.985:
        run("mark_entered_in_error", reason="recorded for the wrong patient")
    return episode


def _groups_attended(run, rng: random.Random, program: dict, day: date, groups: int) -> list[Receipt]:
    """The day's group hours, attended: one session, or ``groups`` on different topics."""
    service_format = "virtual" if program["format"] == "hybrid" and rng.random() < 0.5 else "in-person"
    # One group draws its topic as the demo always has, so the default episodes stay the same.
    topics = [rng.choice(GROUP_TOPICS)] if groups == 1 else rng.sample(GROUP_TOPICS, groups)
    return [run("record_attendance", effective_date=day, kind="group", minutes=GROUP_MINUTES // groups,
                format=service_format, topic=topic) for topic in topics]


def _sessions_and_exit(run, rng: random.Random, program: dict, admitted: date, today: date,
                       step_down: bool, discharge_types: Iterator[DischargeType],
                       groups_per_day: int = 1) -> list[Receipt]:
    """Sessions until the planned exit or today; the attended ones' receipts."""
    target = admitted + timedelta(weeks=program["target_weeks"])
    planned_exit = min(target, admitted + timedelta(days=int(rng.triangular(7, 100, 60))))
    drop_out = rng.random() < 0.2
    session_days = {0: (0, 2, 4), 1: (0, 1, 2, 3)}[int(program["days_per_week"] == 4)]
    day, misses, last = admitted, 0, admitted  # last: the latest session or change of status
    on_hold_used = False
    attended: list[Receipt] = []
    while day <= min(planned_exit, today):
        if day.weekday() in session_days:
            if drop_out and day > admitted + timedelta(weeks=3):
                run("record_absence", effective_date=day, kind="group", minutes=180, excused=False)
                misses, last = misses + 1, day  # a missed session is a session on the record
                if misses >= 3:
                    run("discharge", effective_date=day, discharge_type="left-against-advice",
                        reason="three consecutive unexcused absences; did not respond to outreach")
                    return attended
            elif rng.random() < 0.08:
                run("record_absence", effective_date=day, kind="group", minutes=180,
                    excused=rng.random() < 0.5)
                last = day
            else:
                attended.extend(_groups_attended(run, rng, program, day, groups_per_day))
                last = day
                if day.weekday() == session_days[0] and rng.random() < 0.7:
                    run("record_attendance", effective_date=day, kind=SessionKind.INDIVIDUAL.value,
                        minutes=50, format="in-person", topic="individual therapy")
        if step_down and day == admitted + timedelta(weeks=2):
            run("change_level_of_care", effective_date=day, kind="step-down", to_level="2.1",
                reason="stabilised; PHP goals met")
            last = max(last, day)
        if not on_hold_used and rng.random() < 0.01 and day < today - timedelta(days=10):
            on_hold_used = True
            run("place_on_hold", effective_date=day, reason="short medical admission")
            day += timedelta(days=rng.randint(3, 9))
            run("resume", effective_date=day)
            last = day
        day += timedelta(days=1)
    if planned_exit >= today:
        # Still in care, some of them on hold now: from the day after their last session, or
        # from today when that session was today (on a session day every patient in care has
        # one, and the demo must still have patients on hold).
        if rng.random() < 0.25:
            run("place_on_hold", effective_date=min(last + timedelta(days=1), today),
                reason="hospital admission for a medical condition",
                expected_return=today + timedelta(days=7))
        return attended
    kind = next(discharge_types)
    discharged = max(planned_exit, last)
    run("discharge", effective_date=discharged, discharge_type=kind.value,
        reason=kind.value.replace("-", " "), aftercare_plan="weekly outpatient therapy",
        follow_up_date=discharged + timedelta(days=7))
    return attended
