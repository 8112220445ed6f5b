"""Properties that hold for any input: the pathway against FHIR, the session schema, junk
input, and the ASAM levels of each criteria edition."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from episodes import (
    Actor,
    ActorRole,
    CriteriaEdition,
    Episodes,
    EpisodeStatus,
    FixedClock,
    InvalidCommand,
    LevelOfCare,
    ServiceFormat,
    SessionKind,
)
from episodes.pathway import FHIR_TRANSITIONS, STEPS
from episodes.schemas import SCHEMAS
from tests.pathways import admitted_episode

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CLINICIAN = Actor("clin-ana", ActorRole.CLINICIAN)

# ------------------------------------------------------------------ the pathway and FHIR

# The transition table national EpisodeOfCare profiles publish, written out by hand.
PUBLISHED_FHIR_TRANSITIONS = {
    "planned": {"active", "onhold", "waitlist", "cancelled", "entered-in-error"},
    "waitlist": {"planned", "active", "onhold", "cancelled", "entered-in-error"},
    "active": {"onhold", "finished", "cancelled", "entered-in-error"},
    "onhold": {"active", "finished", "cancelled", "entered-in-error"},
    "finished": {"entered-in-error"},
    "cancelled": {"entered-in-error"},
    "entered-in-error": set(),
}

STATUS_CHANGES = [
    (before, step.leads_to, step.command)
    for step in STEPS
    if step.leads_to is not None
    for before in step.allowed_in
    if before is not step.leads_to
]


def test_the_fhir_table_is_the_published_one():
    # Check the table the pathway is checked against is the published one, status by status.
    assert {
        before.value: {after.value for after in afters} for before, afters in FHIR_TRANSITIONS.items()
    } == PUBLISHED_FHIR_TRANSITIONS


@given(st.sampled_from(STATUS_CHANGES))
def test_every_status_change_the_pathway_makes_is_one_fhir_allows(change):
    before, after, command = change
    # Check e.g. admit (waitlist -> active) is in the published table.
    assert after.value in PUBLISHED_FHIR_TRANSITIONS[before.value], (
        f"{command} takes an episode from {before.value} to {after.value}"
    )


def test_the_pathway_makes_the_status_changes_of_a_care_episode():
    # Check the list the property draws from is not empty and holds the main road:
    # planned -> active (admit) -> onhold (hold) -> active (resume) -> finished (discharge).
    changes = {(before.value, after.value, command) for before, after, command in STATUS_CHANGES}
    assert {
        ("planned", "active", "admit"), ("active", "onhold", "place_on_hold"),
        ("onhold", "active", "resume"), ("onhold", "finished", "discharge"),
        ("active", "finished", "discharge"), ("finished", "entered-in-error", "mark_entered_in_error"),
    } <= changes
    # Check nothing leaves entered-in-error.
    assert not any(before is EpisodeStatus.ENTERED_IN_ERROR for before, _, _ in STATUS_CHANGES)


# ------------------------------------------------------------------ the session schema

SESSION_COMMANDS = ["record_attendance", "record_absence", "record_program_cancellation"]
KINDS = ["group", "individual", "family", "medication-management", "psychoeducation",
         "case-management"]
FORMATS = ["in-person", "hybrid", "virtual"]
NO_DIGITS = st.characters(exclude_categories=("Nd",))  # so no text is ever a date


@st.composite
def attendance_input(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A valid attendance as a form or a caller would send it, and the typed values expected."""
    episode_id = draw(st.uuids())
    day = draw(st.dates(date(2025, 1, 1), date(2026, 6, 2)))
    kind = draw(st.sampled_from(KINDS))
    service_format = draw(st.sampled_from(FORMATS))
    minutes = draw(st.integers(1, 720))  # 12 * 60: a 12-hour day
    topic = draw(st.none() | st.text(min_size=1, max_size=60).filter(str.strip))
    raw = {
        "episode_id": draw(st.sampled_from([episode_id, str(episode_id)])),
        "effective_date": draw(st.sampled_from([day, day.isoformat()])),
        "kind": draw(st.sampled_from([kind, SessionKind(kind)])),
        "format": draw(st.sampled_from([service_format, ServiceFormat(service_format)])),
        "minutes": minutes,
    }
    if topic is not None:
        raw["topic"] = topic
    expected = {
        "episode_id": episode_id, "effective_date": day, "kind": SessionKind(kind),
        "format": ServiceFormat(service_format), "minutes": minutes,
        "topic": topic.strip() if topic else None, "facilitator": None,
        "reason": None, "command_id": None, "correlation_id": None,
    }
    return raw, expected


@given(attendance_input())
def test_a_valid_session_loads_into_typed_values(case):
    raw, expected = case
    # Check raw strings and typed values load alike, into typed values.
    assert SCHEMAS["record_attendance"]().load(raw) == expected


@pytest.mark.parametrize("command", SESSION_COMMANDS)
@given(case=attendance_input(), minutes=st.integers(max_value=0) | st.integers(min_value=721))
def test_minutes_outside_one_to_720_are_refused_on_that_field(command, case, minutes):
    raw, _ = case
    raw = {**raw, "minutes": minutes}
    if command != "record_attendance":
        raw.pop("format")
        raw.pop("topic", None)
    with pytest.raises(ValidationError) as refused:
        SCHEMAS[command]().load(raw)
    # Check the only complaint is about the minutes.
    assert set(refused.value.messages_dict) == {"minutes"}


# ------------------------------------------------------------------ junk input

JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(NO_DIGITS, max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
ATTENDANCE_FIELDS = ["episode_id", "effective_date", "kind", "minutes", "format", "topic",
                     "facilitator", "reason", "command_id", "correlation_id"]


@pytest.fixture(scope="module")
def program_app(tmp_path_factory) -> Iterator[tuple[Episodes, UUID]]:
    """One application (SQLite file) with one admitted episode, for the junk to aim at."""
    url = f"sqlite:///{tmp_path_factory.mktemp('junk') / 'care-episodes.db'}"
    app = Episodes(url, clock=FixedClock(NOW))
    episode = admitted_episode(app, CLINICIAN, date(2026, 3, 2))  # admitted on 4 March
    yield app, episode
    app.close()


def _refused_without_writing(app: Episodes, episode: UUID, data: dict[str, Any]) -> InvalidCommand:
    last_notification = app.recorder.max_notification_id()
    version = app.get(episode).version
    with pytest.raises(InvalidCommand) as refused:  # any other exception fails the test
        app.execute("record_attendance", data, CLINICIAN)
    # Check nothing was written, to this episode or anywhere.
    assert app.get(episode).version == version
    assert app.recorder.max_notification_id() == last_notification
    return refused.value


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
          deadline=None)
@given(junk=st.dictionaries(st.sampled_from(ATTENDANCE_FIELDS) | st.text(max_size=12), JSON_VALUES,
                            max_size=8))
def test_junk_is_refused_as_invalid_and_writes_nothing(program_app, junk):
    app, episode = program_app
    # (No junk value is a date, so the effective date is always missing or wrong.)
    refused = _refused_without_writing(app, episode, junk)
    # Check the complaint names the effective date.
    assert "effective_date" in refused.errors


def _not_one_of(valid: list[str]):
    return JSON_VALUES.filter(lambda value: value not in valid)


SPOILERS = {
    "episode_id": JSON_VALUES.filter(lambda value: not (isinstance(value, str) and len(value) >= 32)),
    "effective_date": JSON_VALUES,  # no junk text has a digit, so none is a date
    "kind": _not_one_of(KINDS),
    "format": _not_one_of(FORMATS),
    "minutes": JSON_VALUES.filter(
        # (type(...) is int: True and False are JSON booleans, not minutes)
        lambda value: not (type(value) is int and 1 <= value <= 720)
    ),
}


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
          deadline=None)
@given(field=st.sampled_from(sorted(SPOILERS)), how=st.sampled_from(["replace", "drop", "extra"]),
       data=st.data())
def test_a_valid_session_with_one_spoiled_field_is_refused_on_it(program_app, field, how, data):
    app, episode = program_app
    valid = {"episode_id": str(episode), "effective_date": "2026-03-05", "kind": "group",
             "minutes": 180, "format": "in-person"}
    if how == "replace":
        spoiled = {**valid, field: data.draw(SPOILERS[field], label="junk")}
    elif how == "drop":
        spoiled = {k: v for k, v in valid.items() if k != field}
    else:
        field = data.draw(st.text(min_size=1, max_size=12).filter(
            lambda key: key not in ATTENDANCE_FIELDS), label="unknown field")
        spoiled = {**valid, field: data.draw(JSON_VALUES, label="junk")}
    refused = _refused_without_writing(app, episode, spoiled)
    # Check the complaint is about the spoiled field (the episode is admitted: the rest is fine).
    assert set(refused.errors) == {field}


# ------------------------------------------------------------------ levels of care

ASAM_3_CODES = {"0.5", "1", "2.1", "2.5", "3.1", "3.3", "3.5", "3.7", "4"}
ASAM_4_CODES = {"1.0", "1.5", "1.7", "2.1", "2.5", "2.7", "3.1", "3.5", "3.7", "4.0"}
NEAR_MISSES = ["2.10", " 2.1", "2.1 ", "02.1", "2", "2,1", "II.1", "", "1.00", "4.00", "0.50"]
CODES = st.sampled_from(sorted(ASAM_3_CODES | ASAM_4_CODES) + NEAR_MISSES) | st.text(max_size=5)


@given(edition=st.sampled_from(list(CriteriaEdition)), code=CODES)
def test_a_level_of_care_takes_exactly_the_codes_of_its_edition(edition, code):
    codes = {CriteriaEdition.ASAM_3: ASAM_3_CODES, CriteriaEdition.ASAM_4: ASAM_4_CODES}[edition]
    if code in codes:
        level = LevelOfCare(code, edition)
        # Check the level keeps its code and its edition.
        assert (level.code, level.edition) == (code, edition)
    else:
        # Check any other code is refused, e.g. "1" in the 4th edition (it says 1.0).
        with pytest.raises(ValueError):
            LevelOfCare(code, edition)


@given(edition=st.sampled_from(list(CriteriaEdition)), code=CODES)
def test_the_level_field_takes_exactly_the_codes_of_the_edition_it_names(edition, code):
    codes = {CriteriaEdition.ASAM_3: ASAM_3_CODES, CriteriaEdition.ASAM_4: ASAM_4_CODES}[edition]
    raw = {"episode_id": "6f1c1b1e-0000-4000-8000-000000000001", "effective_date": "2026-03-01",
           "kind": "step-up", "to_level": f"{edition.value}:{code}", "reason": "needs more support"}
    schema = SCHEMAS["change_level_of_care"]()
    if code.rstrip() in codes:  # the field trims white space around "edition:code"
        # Check "asam-3:2.5" loads as the 3rd-edition level 2.5.
        assert schema.load(raw)["to_level"] == LevelOfCare(code.rstrip(), edition)
    else:
        with pytest.raises(ValidationError) as refused:
            schema.load(raw)
        assert set(refused.value.messages_dict) == {"to_level"}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), days_back=st.integers(0, 400), groups=st.sampled_from((1, 2, 3)))
def test_the_demo_seeds_without_breaking_a_rule_for_any_seed_or_day(seed, days_back, groups):
    # The demo records through the public API, so every rule applies to it: it must never
    # ask for something the pathway refuses, whatever the seed and whatever today is.
    from datetime import datetime, timedelta, timezone

    from episodes import Episodes, FixedClock
    from episodes.demo import seed_demo

    now = datetime(2026, 6, 1, 12, tzinfo=timezone.utc) - timedelta(days=days_back)
    app = Episodes("sqlite://", clock=FixedClock(now))
    try:
        summary = seed_demo(app, episodes=12, seed=seed, groups_per_day=groups)
    finally:
        app.close()
    assert sum(summary.statuses.values()) == 12


class _Recording:
    """An application whose commands are also kept, as sent."""

    def __init__(self, app):
        self.app, self.commands = app, []

    def execute(self, command, data, actor):
        self.commands.append((command, dict(data)))
        return self.app.execute(command, data, actor)

    def __getattr__(self, name):
        return getattr(self.app, name)


@pytest.mark.parametrize("groups", [1, 2, 3])
def test_a_program_day_holds_three_group_hours_however_many_groups_record_them(groups):
    # The benchmark's workload records each day's groups as three one-hour sessions
    # (benchmarks/workload.py): more events, the same hours a day.
    from collections import defaultdict
    from datetime import datetime, timezone

    from episodes import Episodes, FixedClock
    from episodes.demo import seed_demo

    app = Episodes("sqlite://", clock=FixedClock(datetime(2026, 6, 1, 12, tzinfo=timezone.utc)))
    recording = _Recording(app)
    try:
        seed_demo(recording, episodes=30, seed=7, groups_per_day=groups)
    finally:
        app.close()
    days = defaultdict(list)  # (episode, day) -> the group sessions attended
    for command, data in recording.commands:
        if command == "record_attendance" and data["kind"] == "group":
            days[(data["episode_id"], data["effective_date"])].append(data)
    assert len(days) > 100
    # A corrected group (it ended early) is shorter than it was recorded, never empty.
    amended = [data["changes"]["minutes"] for command, data in recording.commands
               if command == "amend_event"]
    assert amended and all(0 < minutes < 180 // groups for minutes in amended)
    for sessions in days.values():
        assert len(sessions) == groups
        assert sum(s["minutes"] for s in sessions) == 180
        assert len({s["topic"] for s in sessions}) == groups  # each group its own topic


def test_the_demo_refuses_a_day_split_it_does_not_know():
    from episodes import Episodes
    from episodes.demo import seed_demo

    app = Episodes("sqlite://")
    try:
        with pytest.raises(ValueError, match="groups_per_day must be 1, 2 or 3, not 4"):
            seed_demo(app, episodes=1, groups_per_day=4)
        assert app.recorder.max_notification_id() in (None, 0)  # nothing recorded
    finally:
        app.close()


@pytest.mark.parametrize("weekday", range(7))
def test_the_demo_has_every_status_whatever_the_day_of_the_week(weekday):
    # Holds now start the day after the patient's last session: on a session day (every
    # patient in care has one today) the demo once had nobody on hold.
    from datetime import datetime, timedelta, timezone

    from episodes import Episodes, EpisodeStatus, FixedClock
    from episodes.demo import seed_demo

    monday = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)
    app = Episodes("sqlite://", clock=FixedClock(monday + timedelta(days=weekday)))
    try:
        summary = seed_demo(app, episodes=60, seed=7)
    finally:
        app.close()
    assert set(summary.statuses) == {status.value for status in EpisodeStatus}
