"""Bad input gets an error naming the field and the rule, and nothing is written."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from episodes import InvalidCommand, NotPermitted, ReasonRequired
from episodes.pathway import STEPS
from episodes.schemas import SCHEMAS
from tests.pathways import admitted_episode


def event_count(app, episode) -> int:
    return len(list(app.history(episode)))


def test_every_pathway_command_has_a_schema():
    assert sorted(SCHEMAS) == sorted(step.command for step in STEPS)


def test_field_errors_name_the_field_and_the_rule(app, clinician):
    episode = admitted_episode(app, clinician, date(2026, 3, 2))
    before = event_count(app, episode)
    with pytest.raises(InvalidCommand) as refused:
        app.record_attendance(
            episode, clinician, effective_date="2026-02-30", kind="yoga", minutes=0,
            format="in-person", colour="blue",
        )
    errors = refused.value.errors
    assert errors["effective_date"] == ["Not a valid date."]
    assert errors["kind"][0].startswith("Must be one of: group, individual")
    assert errors["minutes"] == ["Must be greater than or equal to 1 and less than or equal to 720."]
    assert errors["colour"] == ["Unknown field."]
    # Check the message a person reads names each field.
    message = str(refused.value)
    assert message.startswith("invalid record attendance: ")
    for field in ("effective_date", "kind", "minutes", "colour"):
        assert field in message
    assert event_count(app, episode) == before


def test_missing_required_fields_are_named(app, clinician):
    with pytest.raises(InvalidCommand) as refused:
        app.refer(clinician, effective_date="2026-03-02")
    assert set(refused.value.errors) == {"patient_ref", "source", "direction", "requested_level"}
    assert refused.value.errors["patient_ref"] == ["Missing data for required field."]


def test_blank_text_counts_as_missing(app, clinician):
    with pytest.raises(InvalidCommand) as refused:
        app.refer(
            clinician, patient_ref="   ", effective_date="2026-03-02", source="self",
            direction="new", requested_level="2.1",
        )
    assert "patient_ref" in refused.value.errors


@pytest.mark.parametrize("step", [s for s in STEPS if s.reason_required], ids=lambda s: s.command)
def test_commands_that_need_a_reason_say_so_on_the_reason_field(app, clinician, step):
    episode = admitted_episode(app, clinician, date(2026, 3, 2))
    with pytest.raises(InvalidCommand) as refused:
        app.execute(step.command, {"episode_id": episode, "effective_date": "2026-03-10"}, clinician)
    assert refused.value.errors["reason"] == [f"Required to {step.command.replace('_', ' ')}: say why."]


def test_a_blank_reason_is_no_reason(app, clinician):
    episode = admitted_episode(app, clinician, date(2026, 3, 2))
    with pytest.raises(InvalidCommand) as refused:
        app.place_on_hold(episode, clinician, effective_date="2026-03-10", reason="  ")
    assert "reason" in refused.value.errors


def test_the_domain_also_refuses_a_missing_reason(app, clinician):
    # The schema is the first guard; the episode itself is the last one.
    from episodes.events import PlacedOnHold
    from episodes.values import Envelope

    episode_id = admitted_episode(app, clinician, date(2026, 3, 2))
    episode = app.get(episode_id)
    with pytest.raises(ReasonRequired, match="a reason is required to place on hold"):
        episode.record(
            PlacedOnHold, timestamp=app.clock.now(), latest_date=date(2026, 6, 1),
            effective_date=date(2026, 3, 10),
            envelope=Envelope(clinician.id, clinician.role, "cmd-1", "cmd-1", None),
        )


def test_reviewers_cannot_record(app, clinician, reviewer):
    episode = admitted_episode(app, clinician, date(2026, 3, 2))
    before = event_count(app, episode)
    with pytest.raises(NotPermitted, match="rev-cy acts as reviewer"):
        app.record_attendance(
            episode, reviewer, effective_date="2026-03-05", kind="group", minutes=60, format="virtual"
        )
    assert event_count(app, episode) == before


def test_an_unknown_command_is_refused(app, clinician):
    with pytest.raises(InvalidCommand, match="Unknown command"):
        app.execute("teleport", {}, clinician)


def test_score_out_of_range_for_its_instrument(app, clinician):
    episode = admitted_episode(app, clinician, date(2026, 3, 2))
    with pytest.raises(InvalidCommand) as refused:
        app.record_outcome(episode, clinician, effective_date="2026-03-05", instrument="GAD-7", score=22)
    # GAD-7 has 7 items scored 0-3: at most 7 * 3 = 21.
    assert refused.value.errors["score"] == ["A GAD-7 score is 0-21."]


def test_authorization_end_before_start(app, clinician):
    episode = admitted_episode(app, clinician, date(2026, 3, 2))
    with pytest.raises(InvalidCommand) as refused:
        app.record_authorization(
            episode, clinician, effective_date="2026-03-04", payer="Medicaid", unit="days",
            authorized=20, start="2026-03-04", end="2026-03-01",
        )
    assert refused.value.errors["end"] == ["Must be on or after the start date."]


def test_admission_to_an_unknown_program_or_clinic_names_the_field(app, clinician):
    from tests.pathways import complete_intake, define_standard_program, refer

    define_standard_program(app, clinician)
    episode = refer(app, clinician, date(2026, 3, 2))
    complete_intake(app, episode, clinician, date(2026, 3, 3))
    with pytest.raises(InvalidCommand) as unknown_program:
        app.admit(episode, clinician, effective_date="2026-03-04", program_code="php-x", clinic="north")
    assert "no program 'php-x'" in unknown_program.value.errors["program_code"][0]
    with pytest.raises(InvalidCommand) as unknown_clinic:
        app.admit(episode, clinician, effective_date="2026-03-04", program_code="iop-adult", clinic="moon")
    assert unknown_clinic.value.errors["clinic"] == ["Adult IOP runs at north, south; not at moon."]
    assert app.episode(episode).version == 2


def test_a_level_of_care_names_its_edition(app, clinician):
    with pytest.raises(InvalidCommand) as refused:
        app.refer(
            clinician, patient_ref="Patient/9", effective_date="2026-03-02", source="self",
            direction="new", requested_level="asam-3:1.5",
        )
    # 1.5 exists only in the 4th edition.
    assert "requested_level" in refused.value.errors
    assert "1.5" in refused.value.errors["requested_level"][0]


def test_program_definitions_are_validated(app, admin_actor):
    with pytest.raises(InvalidCommand) as refused:
        app.define_program(admin_actor, code="Adult IOP!", name="", target_weeks=0, days_per_week=8)
    assert set(refused.value.errors) == {"code", "name", "target_weeks", "days_per_week"}
    assert app.programs() == []


def test_whole_numbers_may_come_as_form_text_but_never_rounded(app, clinician):
    episode = admitted_episode(app, clinician, date(2026, 3, 2))
    receipt = app.record_attendance(
        episode, clinician, effective_date="2026-03-05", kind="group", minutes=" 90 ", format="virtual"
    )
    assert app.episode(episode).facts[-1].minutes == 90
    for bad in ("90.5", 90.5, True, "ninety"):
        with pytest.raises(InvalidCommand) as refused:
            app.record_attendance(
                episode, clinician, effective_date="2026-03-06", kind="group", minutes=bad,
                format="virtual",
            )
        assert refused.value.errors == {"minutes": ["Not a valid integer."]}
    assert app.episode(episode).version == receipt.version


def test_a_diagnosis_may_come_as_the_value_object_and_its_display_is_optional(app, clinician):
    from episodes.values import Diagnosis
    from episodes.vocabulary import DiagnosisCategory
    from tests.pathways import complete_intake, refer

    episode = refer(app, clinician, date(2026, 3, 2))
    coded = Diagnosis("F33.1", DiagnosisCategory.MENTAL_HEALTH)  # display left at its default, ""
    typed = {"code": "F10.20", "category": "substance-use", "display": "  "}  # a blank form field
    complete_intake(app, episode, clinician, date(2026, 3, 3), diagnoses=[coded, typed])
    intake = list(app.history(episode))[-1]
    assert intake.diagnoses == (coded, Diagnosis("F10.20", DiagnosisCategory.SUBSTANCE_USE, ""))
    with pytest.raises(InvalidCommand) as refused:
        complete_intake(app, episode, clinician, date(2026, 3, 3),
                        diagnoses=[{"code": "F33.1", "category": "mental-health", "display": "x" * 201}])
    assert refused.value.errors["diagnoses"] == {0: {"display": ["Longer than maximum length 200."]}}


@pytest.mark.parametrize("given", [5, 0, False, "", "ab", {}, {"code": "F33.1", "category": "mental-health"}])
def test_a_list_of_diagnoses_or_care_team_members_must_be_a_list(app, clinician, given):
    from tests.pathways import complete_intake, refer

    episode = refer(app, clinician, date(2026, 3, 2))
    with pytest.raises(InvalidCommand) as refused:
        complete_intake(app, episode, clinician, date(2026, 3, 3), diagnoses=given)
    assert refused.value.errors["diagnoses"] == ["Not a valid list."]
    with pytest.raises(InvalidCommand) as refused:
        app.admit(episode, clinician, effective_date="2026-03-04", program_code="iop-adult",
                  clinic="north", care_team=given)
    assert refused.value.errors["care_team"] == ["Not a valid list."]
    assert event_count(app, episode) == 1


def test_whole_numbers_from_text_are_ascii_digits(app, clinician):
    episode = admitted_episode(app, clinician, date(2026, 3, 2))
    with pytest.raises(InvalidCommand) as refused:
        app.record_attendance(episode, clinician, effective_date="2026-03-05", kind="group",
                              minutes=" \u0664\u0665 ", format="in-person")  # Arabic-Indic 45
    assert refused.value.errors["minutes"] == ["Not a valid integer."]


# ---------------------------------------------------------------- repeated inputs, loaded once

ATTENDANCE_VALUES = {
    "episode_id": ["3b1f0d2e-5c1a-4c55-9d0e-8f7a6b5c4d3e", "not-a-uuid", None, ""],
    "command_id": ["c-1", "c-2", "", None, 7],
    "kind": ["group", "individual", "karaoke", None],
    "minutes": [180, "180", 0, -5, "3.5", None],
    "format": ["in-person", "telehealth", "carrier pigeon"],
    "effective_date": ["2026-03-02", date(2026, 3, 2), "2026-02-30", 20260302],
    "topic": ["DBT distress tolerance", "", None],
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({}, optional={name: st.sampled_from(values)
                                                    for name, values in ATTENDANCE_VALUES.items()}),
                min_size=1, max_size=6))
def test_the_command_path_loads_every_input_as_its_schema_does(inputs):
    """Repeated inputs are validated once (episodes.command_input.CommandLoader): whatever the
    order and the repeats, each load gives the schema's own values, or its own errors."""
    from marshmallow import ValidationError

    from episodes.command_input import CommandLoader, schema_for

    loader, schema = CommandLoader("record_attendance"), schema_for("record_attendance")
    for data in inputs + inputs:  # every input a second time: answered from memory if valid
        try:
            expected: object = dict(schema.load(dict(data)))
        except ValidationError as invalid:
            expected = invalid.normalized_messages()
        try:
            loaded: object = loader.load(data)
        except ValidationError as invalid:
            loaded = invalid.normalized_messages()
        assert loaded == expected


def test_the_same_session_on_another_day_is_answered_from_memory():
    # A clinic records the same session every day: only the date (and the ids) change.
    from episodes.command_input import CommandLoader

    loader = CommandLoader("record_attendance")
    session = {"kind": "group", "minutes": 180, "format": "in-person", "topic": "DBT skills"}
    days = [date(2026, 3, day) for day in range(2, 7)]
    loaded = [loader.load({**session, "effective_date": day.isoformat(), "command_id": f"c-{n}",
                           "episode_id": "3b1f0d2e-5c1a-4c55-9d0e-8f7a6b5c4d3e"})
              for n, day in enumerate(days)]
    assert [values["effective_date"] for values in loaded] == days
    assert [values["command_id"] for values in loaded] == [f"c-{n}" for n in range(5)]
    assert loader.cached.hits == 4  # the first day loaded by the schema, the rest from memory
    with pytest.raises(ValidationError) as refused:  # a repeat's date still checked
        loader.load({**session, "effective_date": "2026-02-30",
                     "episode_id": "3b1f0d2e-5c1a-4c55-9d0e-8f7a6b5c4d3e"})
    assert refused.value.messages == {"effective_date": ["Not a valid date."]}


def test_a_repeated_input_still_has_its_episode_and_command_ids_checked(app, clinician):
    episode = admitted_episode(app, clinician, date(2026, 3, 2))
    session = {"kind": "group", "minutes": 180, "format": "in-person", "effective_date": "2026-03-09"}
    app.record_attendance(episode, clinician, command_id="first", **session)
    with pytest.raises(InvalidCommand) as refused:
        app.execute("record_attendance", {**session, "episode_id": "not-a-uuid", "command_id": "x" * 101},
                    clinician)
    assert set(refused.value.errors) == {"episode_id", "command_id"}
