"""The record forms refuse what the library refuses, say why beside the field, and write nothing;
reviewers cannot record; a double submit records once; a whole episode can be kept with them."""

from __future__ import annotations

import re
from datetime import date

import pytest

from admin import forms
from episodes import ConflictError, EpisodeStatus
from episodes.schemas import SCHEMAS
from tests import pathways
from tests.panel import csrf_token, login
from tests.record_forms import CLINICIAN, episode_of, events_in, flashes, read_form, submit

REFERRED, ADMITTED = date(2026, 3, 2), date(2026, 3, 4)
EPISODE_COMMANDS = sorted(set(SCHEMAS) - {"refer"})


@pytest.fixture
def library(panel):
    return panel.extensions["care_episodes"].episodes


@pytest.fixture
def admitted(library):
    return pathways.admitted_episode(library, CLINICIAN, REFERRED, ADMITTED)  # versions 1-3


def as_role(client, role):
    login(client, role)
    return client


def field_block(html: str, input_id: str) -> str:
    """The form field (label, input, messages, hint) that holds the input ``input_id``."""
    start = html.index(f'id="{input_id}"')
    begin = html.rindex('<div class="field', 0, start)
    return html[begin:html.index("</div>", start)]


def test_a_validation_error_is_shown_beside_its_field_and_nothing_is_written(client, library, admitted):
    as_role(client, "clinician")
    before = pathways.count_event_rows(library)
    response = submit(client, f"/record/record_attendance?episode_id={admitted}", {
        "effective_date": "2026-03-05", "kind": "group", "minutes": "0", "format": "in-person",
        "topic": "Relapse prevention",
    })
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    # Check the library's message sits in the minutes field, marked on the input itself.
    minutes = field_block(html, "f-minutes")
    assert "Must be greater than or equal to 1 and less than or equal to 720." in minutes
    assert 'aria-invalid="true"' in minutes
    assert "Must be greater" not in field_block(html, "f-topic")
    # Check what was typed is kept, and nothing reached the event store.
    assert 'value="0" id="f-minutes"' in html and 'value="Relapse prevention"' in html
    assert pathways.count_event_rows(library) == before


def test_an_error_in_a_list_row_is_shown_in_that_row(client, library):
    as_role(client, "clinician")
    pathways.define_standard_program(library, CLINICIAN)
    episode = pathways.refer(library, CLINICIAN, REFERRED)
    response = submit(client, f"/record/complete_intake?episode_id={episode}", {
        "effective_date": "2026-03-03", "diagnoses.0.code": "F33.1", "diagnoses.0.category": "",
        "asam_ratings.1": "2", "recommended_level": "2.1",
    })
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    # Check the row's missing category is flagged in row 1, and the ratings say all six are needed.
    cell = html[html.index('id="f-diagnoses-0-category"'):html.index("</td>", html.index('id="f-diagnoses-0-category"'))]
    assert "Missing data for required field." in cell
    assert "Rate all six ASAM dimensions (1-6), each 0-4." in html
    assert events_in(library, episode) == ["ReferralReceived"]


def test_an_intake_without_any_diagnosis_is_refused(client, library):
    # An intake assessment records at least one diagnosis: the schema validates length >= 1,
    # but the field is optional with an empty default, so leaving every row empty slips through.
    as_role(client, "clinician")
    pathways.define_standard_program(library, CLINICIAN)
    episode = pathways.refer(library, CLINICIAN, REFERRED)
    ratings = {f"asam_ratings.{d}": "2" for d in range(1, 7)}
    response = submit(client, f"/record/complete_intake?episode_id={episode}", {
        "effective_date": "2026-03-03", "recommended_level": "2.1", **ratings,
    })
    assert response.status_code == 422
    assert events_in(library, episode) == ["ReferralReceived"]


def test_a_rule_violation_is_shown_at_the_top(client, library, admitted):
    as_role(client, "clinician")
    before = pathways.count_event_rows(library)
    response = submit(client, f"/record/record_attendance?episode_id={admitted}", {
        "effective_date": "2026-03-01", "kind": "group", "minutes": "180", "format": "in-person",
    })
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "No session can be recorded on 2026-03-01: before the admission (2026-03-04)." in html
    assert 'class="flash error record-problems"' in html
    assert pathways.count_event_rows(library) == before


def test_a_command_the_status_does_not_allow(client, library, admitted):
    as_role(client, "clinician")
    page = client.get(f"/record/resume?episode_id={admitted}")
    html = page.get_data(as_text=True)
    # Check the page names the status and where resume is allowed, in the library's words.
    assert "Cannot resume: the episode is active; resume is allowed only when the episode is onhold." in html
    assert f'href="/record/place_on_hold?episode_id={admitted}"' in html
    assert 'name="command_id"' not in html  # no form to fill in
    # Check a post anyway is refused with the same message and writes nothing.
    before = pathways.count_event_rows(library)
    posted = client.post(f"/record/resume?episode_id={admitted}", data={
        "csrf_token": csrf_token(client, "/record/refer"), "effective_date": "2026-03-10",
        "command_id": "resume-anyway",
    })
    assert posted.status_code == 422
    assert "the episode is active; resume is allowed only when the episode is onhold" in posted.get_data(as_text=True)
    assert pathways.count_event_rows(library) == before


def test_unknown_commands_and_episodes_are_not_found(client, library, admitted):
    as_role(client, "clinician")
    assert client.get(f"/record/teleport?episode_id={admitted}").status_code == 404
    assert client.get("/record/discharge?episode_id=not-a-uuid").status_code == 404
    assert client.get("/record/discharge").status_code == 404
    assert client.get("/record/discharge?episode_id=00000000-0000-4000-8000-000000000000").status_code == 404


def test_voiding_a_version_that_is_no_fact_is_not_found(client, library, admitted):
    as_role(client, "clinician")
    response = submit(client, f"/record/void_event?episode_id={admitted}", {
        "target_version": "9", "reason": "Wrong patient",
    })
    assert response.status_code == 404
    assert "Version 9 is not a fact that still counts in this episode" in response.get_data(as_text=True)
    assert events_in(library, admitted) == ["ReferralReceived", "IntakeCompleted", "Admitted"]


def test_a_conflict_is_reported_with_409(client, library, admitted, monkeypatch):
    as_role(client, "clinician")

    def conflicting(*args, **kwargs):
        raise ConflictError("another user changed this episode while you were working")

    form = client.get(f"/record/place_on_hold?episode_id={admitted}").get_data(as_text=True)
    monkeypatch.setattr(library, "execute", conflicting)
    values = read_form(form).values | {"reason": "Travel"}
    response = client.post(f"/record/place_on_hold?episode_id={admitted}", data=values)
    assert response.status_code == 409
    assert "Another user changed this episode while you were working." in response.get_data(as_text=True)


def test_an_amendment_error_is_shown_beside_the_amended_field(client, library, admitted):
    as_role(client, "clinician")
    pathways.attend(library, admitted, CLINICIAN, date(2026, 3, 5))  # version 4
    response = submit(client, f"/record/amend_event?episode_id={admitted}&target_version=4", {
        "changes.minutes": "0", "reason": "Typo",
    })
    assert response.status_code == 422
    block = field_block(response.get_data(as_text=True), "f-changes-minutes")
    assert "Must be greater than or equal to 1 and less than or equal to 720." in block
    assert len(events_in(library, admitted)) == 4


def test_reviewers_can_open_no_record_form_and_post_nothing(client, library, admitted):
    as_role(client, "reviewer")
    token = csrf_token(client, "/login")
    before = pathways.count_event_rows(library)
    paths = ["/record/refer"] + [f"/record/{c}?episode_id={admitted}" for c in EPISODE_COMMANDS]
    for path in paths:
        assert client.get(path).status_code == 403, path
        posted = client.post(path, data={
            "csrf_token": token, "effective_date": "2026-05-01", "reason": "x", "patient_ref": "Patient/9",
            "source": "self", "direction": "new", "requested_level": "2.1", "target_version": "3",
        })
        assert posted.status_code == 403, path
    # Check 18 routes (refer + 17 episode commands) were tried and nothing was written.
    assert len(paths) == 18
    assert pathways.count_event_rows(library) == before


def test_admins_and_clinicians_may_open_every_form(client, library, admitted):
    for role in ("admin", "clinician"):
        as_role(client, role)
        assert client.get("/record/refer").status_code == 200
        assert client.get(f"/record/record_outcome?episode_id={admitted}").status_code == 200
        client.post("/logout", data={"csrf_token": csrf_token(client, "/record/refer")})


def test_a_post_without_the_csrf_token_is_refused(client, library, admitted):
    as_role(client, "clinician")
    values = read_form(client.get(f"/record/place_on_hold?episode_id={admitted}").get_data(as_text=True)).values
    del values["csrf_token"]
    before = pathways.count_event_rows(library)
    response = client.post(f"/record/place_on_hold?episode_id={admitted}", data=values | {"reason": "Travel"})
    assert response.status_code == 400
    assert pathways.count_event_rows(library) == before


def test_a_double_submit_records_once(client, library, admitted):
    as_role(client, "clinician")
    path = f"/record/record_attendance?episode_id={admitted}"
    values = read_form(client.get(path).get_data(as_text=True)).values | {
        "effective_date": "2026-03-05", "kind": "group", "minutes": "180", "format": "in-person",
    }
    first = client.post(path, data=values)
    assert flashes(client) == ["Recorded SessionAttended (version 4)"]
    second = client.post(path, data=values)
    # Check both answers lead to the episode, the second says so, and one session was recorded.
    assert episode_of(first) == episode_of(second) == admitted
    assert flashes(client) == ["Recorded SessionAttended (version 4)",
                               "Already recorded SessionAttended (version 4); nothing new was written."]
    assert events_in(library, admitted).count("SessionAttended") == 1


def test_every_render_carries_a_fresh_command_id(client, admitted):
    as_role(client, "clinician")
    ids = {read_form(client.get(f"/record/record_outcome?episode_id={admitted}").get_data(as_text=True))
           .values["command_id"] for _ in range(3)}
    assert len(ids) == 3


def test_opening_a_record_form_is_a_read_in_the_access_log(client, panel, admitted):
    as_role(client, "clinician")
    client.get(f"/record/discharge?episode_id={admitted}")
    reads = list(panel.extensions["care_episodes"].access.entries(episode_id=admitted, action="read"))
    assert [(r.actor_id, r.patient_ref, r.detail) for r in reads] == \
        [("clinician", "Patient/1001", "record form discharge")]


def test_a_whole_episode_through_the_forms(client, library):
    as_role(client, "admin")
    pathways.define_standard_program(library, CLINICIAN)
    steps = [
        ("complete_intake", {"effective_date": "2026-03-03", "diagnoses.0.code": "F33.1",
                             "diagnoses.0.category": "mental-health", "recommended_level": "2.1",
                             **{f"asam_ratings.{d}": "2" for d in range(1, 7)}, "phq9": "18"}),
        ("admit", {"effective_date": "2026-03-04", "program_code": "iop-adult", "clinic": "north"}),
        ("record_attendance", {"effective_date": "2026-03-04", "kind": "group", "minutes": "180",
                               "format": "in-person"}),
        ("record_absence", {"effective_date": "2026-03-06", "kind": "group", "minutes": "180"}),
        ("record_outcome", {"effective_date": "2026-05-20", "instrument": "PHQ-9", "score": "6"}),
        ("discharge", {"effective_date": "2026-05-27", "discharge_type": "completed",
                       "reason": "Goals met", "follow_up_date": "2026-06-10"}),
    ]
    episode = episode_of(submit(client, "/record/refer", {
        "effective_date": "2026-03-02", "patient_ref": "Patient/3003", "source": "self",
        "direction": "new", "requested_level": "2.1",
    }))
    for command, values in steps:
        episode_of(submit(client, f"/record/{command}?episode_id={episode}", values))
    assert events_in(library, episode) == [
        "ReferralReceived", "IntakeCompleted", "Admitted", "SessionAttended", "SessionMissed",
        "OutcomeMeasured", "Discharged",
    ]
    state = library.episode(episode).state
    assert (state.status, state.discharged_on) == (EpisodeStatus.FINISHED, date(2026, 5, 27))


def test_the_forms_follow_the_schemas():
    attendance = {s.name: s for s in forms.describe("record_attendance")}
    assert list(attendance) == ["effective_date", "kind", "minutes", "format", "topic", "facilitator", "reason"]
    assert (attendance["effective_date"].kind, attendance["effective_date"].required) == ("date", True)
    assert attendance["kind"].choices == [(None, [(v, v) for v in (
        "group", "individual", "family", "medication-management", "psychoeducation", "case-management")])]
    assert (attendance["minutes"].kind, attendance["minutes"].help) == ("number", "1–720.")
    assert (attendance["reason"].kind, attendance["reason"].required) == ("textarea", False)
    assert forms.describe("discharge")[-1].required is True  # a discharge needs a reason
    intake = {s.name: s for s in forms.describe("complete_intake")}
    assert [c.name for c in intake["diagnoses"].columns] == ["code", "category", "display", "system"]
    assert [k for k, _ in intake["asam_ratings"].keys] == ["1", "2", "3", "4", "5", "6"]
    assert intake["asam_ratings"].scale == ["0", "1", "2", "3", "4"]
    # Check a correction's date may be left out (it defaults to the day it is made).
    assert forms.describe("void_event")[0].required is False
    assert not any(s.name in ("episode_id", "command_id") for s in forms.describe("admit"))


def test_nested_errors_flatten_to_the_names_of_the_inputs():
    errors = {"diagnoses": {1: {"code": ["Missing data for required field."]}},
              "asam_ratings": {"3": {"value": ["Not a valid integer."]}}, "minutes": ["Too many."]}
    assert forms.flatten_errors(errors) == {
        "diagnoses.1.code": ["Missing data for required field."],
        "asam_ratings.3": ["Not a valid integer."], "minutes": ["Too many."],
    }
    assert re.fullmatch(r"f-diagnoses-1-code", forms.FieldSpec("diagnoses.1.code", "Code", "text").id)


def test_a_referral_submitted_twice_opens_one_episode(client, library):
    as_role(client, "clinician")
    values = read_form(client.get("/record/refer").get_data(as_text=True)).values | {
        "effective_date": "2026-05-29", "patient_ref": "Patient/4004", "source": "emergency department",
        "direction": "step-down", "requested_level": "2.1",
    }
    first, second = client.post("/record/refer", data=values), client.post("/record/refer", data=values)
    # Check the second post finds the episode the first opened (its id comes from the command id).
    assert episode_of(first) == episode_of(second)
    assert events_in(library, episode_of(first)) == ["ReferralReceived"]
    assert flashes(client)[-1] == "Already recorded ReferralReceived (version 1); nothing new was written."
