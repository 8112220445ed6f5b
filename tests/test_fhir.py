"""Exporting an episode as a FHIR R4 Bundle, told as one patient's episode.

A step-down from partial hospitalization: referral, intake, a wait for a place, admission at
PHP level 2.5, sessions in person, hybrid and virtual, a missed session, scores, a step-down
to IOP 2.1, a hold for an inpatient stay, the return, discharge, and a chart review after it
that amends two events, voids one and moves the start of the hold by a day.

Every resource is validated with the ``fhir.resources`` R4B models (R4B keeps R4's
EpisodeOfCare, Encounter, Observation, Provenance, ServiceRequest and Condition).
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from click.testing import CliRunner
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

from admin.cli import main
from episodes import EpisodeNotFound, Episodes
from projections.fhir import export_episode
from tests.pathways import (
    ALCOHOL_USE,
    ALL_DIMENSIONS_MODERATE,
    DEPRESSION,
    admitted_episode,
    attend,
    define_standard_program,
    refer,
)
from tests.test_layering import imported_top_level_names

D = date.fromisoformat
LOINC = "http://loinc.org"
ICD_10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
# The R4 value sets of the status elements the export fills (the models check only the syntax).
R4_STATUSES = {
    "EpisodeOfCare": {"planned", "waitlist", "active", "onhold", "finished", "cancelled",
                      "entered-in-error"},
    "Encounter": {"planned", "arrived", "triaged", "in-progress", "onleave", "finished",
                  "cancelled", "entered-in-error", "unknown"},
    "Observation": {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                    "entered-in-error", "unknown"},
    "ServiceRequest": {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error",
                       "unknown"},
}


def record_the_episode(app: Episodes, clock, clinician) -> UUID:
    define_standard_program(app, clinician)
    episode = refer(app, clinician, D("2026-01-05"), source="Lakeside PHP", direction="step-down",
                    requested_level="2.5", referring_provider="Dr. Okafor")           # v1
    app.complete_intake(episode, clinician, effective_date=D("2026-01-07"), clinician="clin-ana",
                        diagnoses=[DEPRESSION, ALCOHOL_USE], asam_ratings=ALL_DIMENSIONS_MODERATE,
                        recommended_level="2.5", phq9=18, gad7=13)                      # v2
    app.waitlist(episode, clinician, effective_date=D("2026-01-08"))                    # v3
    app.admit(episode, clinician, effective_date=D("2026-01-12"), program_code="iop-adult",
              clinic="north", level_of_care="2.5")                                     # v4
    attend(app, episode, clinician, D("2026-01-12"), minutes=180, topic="DBT distress tolerance",
           facilitator="clin-dee")                                                    # v5
    attend(app, episode, clinician, D("2026-01-14"), minutes=50, kind="individual",
           format="virtual")                                                          # v6
    attend(app, episode, clinician, D("2026-01-16"), minutes=240, format="hybrid")      # v7
    attend(app, episode, clinician, D("2026-01-17"), minutes=180)                       # v8
    app.record_absence(episode, clinician, effective_date=D("2026-01-19"), kind="group",
                       minutes=180)                                                   # v9
    app.record_outcome(episode, clinician, effective_date=D("2026-01-21"), instrument="PHQ-9",
                       score=14)                                                      # v10
    app.change_level_of_care(episode, clinician, effective_date=D("2026-01-26"), kind="step-down",
                             to_level="2.1", reason="stable enough for IOP")            # v11
    app.place_on_hold(episode, clinician, effective_date=D("2026-01-28"),
                      reason="inpatient stay for pneumonia")                           # v12
    app.resume(episode, clinician, effective_date=D("2026-02-04"))                      # v13
    attend(app, episode, clinician, D("2026-02-04"), minutes=60, kind="family",
           format="virtual")                                                          # v14
    app.record_outcome(episode, clinician, effective_date=D("2026-02-06"), instrument="GAD-7",
                       score=8)                                                       # v15
    app.record_outcome(episode, clinician, effective_date=D("2026-02-20"), instrument="PHQ-9",
                       score=7)                                                       # v16
    app.discharge(episode, clinician, effective_date=D("2026-02-27"), discharge_type="completed",
                  reason="treatment goals met; weekly therapy from March")              # v17
    clock.advance(timedelta(days=1))  # the chart review, the next day (2026-06-02)
    app.amend_event(episode, clinician, target_version=7, changes={"minutes": 120},
                    reason="the hybrid group ran 120 minutes")                         # v18
    app.void_event(episode, clinician, target_version=8,
                   reason="no group on Saturdays: entered for the wrong day")           # v19
    app.amend_event(episode, clinician, target_version=16, changes={"score": 6},
                    reason="item 9 was mis-added")                                     # v20
    app.amend_event(episode, clinician, target_version=12, changes={"effective_date": "2026-01-27"},
                    reason="the inpatient stay began on the 27th")                     # v21
    return episode


@pytest.fixture
def episode(app, clock, clinician) -> UUID:
    return record_the_episode(app, clock, clinician)


@pytest.fixture
def bundle(app, episode) -> dict:
    return export_episode(app, episode)


def resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def resolve(bundle: dict, reference: dict) -> dict:
    return next(e["resource"] for e in bundle["entry"] if e["fullUrl"] == reference["reference"])


def references(node: object) -> list[str]:
    """Every ``reference`` string anywhere in a JSON tree."""
    if isinstance(node, dict):
        own = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return own + [r for v in node.values() for r in references(v)]
    if isinstance(node, list):
        return [r for v in node for r in references(v)]
    return []


def test_every_exported_resource_is_valid_fhir(bundle):
    # Check the whole Bundle parses with the R4B models, and each entry on its own too.
    parsed = Bundle.model_validate(bundle)
    assert parsed.type == "collection"
    assert len(parsed.entry) == len(bundle["entry"])
    for entry in bundle["entry"]:
        resource = entry["resource"]
        model = get_fhir_model_class(resource["resourceType"])
        assert model.model_validate(resource).id == resource["id"]
        assert entry["fullUrl"] == f"urn:uuid:{resource['id']}"
        # Check each status is in its R4 value set (the models only check the syntax).
        if resource["resourceType"] in R4_STATUSES:
            assert resource["status"] in R4_STATUSES[resource["resourceType"]]
    # Check the bundle's make-up: 1 episode, 1 referral, 2 diagnoses, 4 encounters, 5 scores,
    # and one Provenance for each of the 21 events: 1 + 1 + 2 + 4 + 5 + 21 = 34.
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "EpisodeOfCare": 1, "ServiceRequest": 1, "Condition": 2, "Encounter": 4,
        "Observation": 5, "Provenance": 21,
    }
    assert len(kinds) == 34


def test_every_reference_inside_the_bundle_resolves(bundle):
    urls = {e["fullUrl"] for e in bundle["entry"]}
    internal = [r for r in references(bundle) if r.startswith("urn:uuid:")]
    assert internal and set(internal) <= urls
    # Check the only other reference is the patient's.
    assert {r for r in references(bundle) if not r.startswith("urn:uuid:")} == {"Patient/1001"}


def test_the_status_history_follows_the_corrected_facts(bundle):
    (episode,) = resources(bundle, "EpisodeOfCare")
    assert episode["status"] == "finished"
    # Check the periods, by hand from the stream: referral 01-05, waitlisted 01-08, admitted
    # 01-12, on hold 01-27 (recorded as 01-28, amended by v21), resumed 02-04, discharged 02-27.
    assert episode["statusHistory"] == [
        {"status": "planned", "period": {"start": "2026-01-05", "end": "2026-01-08"}},
        {"status": "waitlist", "period": {"start": "2026-01-08", "end": "2026-01-12"}},
        {"status": "active", "period": {"start": "2026-01-12", "end": "2026-01-27"}},
        {"status": "onhold", "period": {"start": "2026-01-27", "end": "2026-02-04"}},
        {"status": "active", "period": {"start": "2026-02-04", "end": "2026-02-27"}},
        {"status": "finished", "period": {"start": "2026-02-27"}},
    ]
    # Check the episode runs from the admission to the discharge.
    assert episode["period"] == {"start": "2026-01-12", "end": "2026-02-27"}
    assert episode["meta"]["versionId"] == "21"


def test_the_episode_names_its_program_level_diagnoses_referral_and_discharge(bundle):
    (episode,) = resources(bundle, "EpisodeOfCare")
    # Check the type: drug and alcohol rehabilitation (F10.20 is a substance-use diagnosis),
    # and the level after the step-down, 2.1, in the local ASAM system.
    assert episode["type"][0]["coding"] == [{
        "system": "http://terminology.hl7.org/CodeSystem/episodeofcare-type", "code": "da",
        "display": "Drug and alcohol rehabilitation"}]
    assert episode["type"][1]["coding"][0]["code"] == "2.1"
    assert episode["type"][1]["text"] == (
        "Adult IOP: ASAM level 2.1 (asam-4), Intensive outpatient (IOP)")
    assert episode["managingOrganization"] == {"display": "north clinic, Adult IOP"}
    assert episode["patient"] == {"reference": "Patient/1001"}
    # Check the diagnoses: the two intake diagnoses, ICD-10-CM, with their category.
    conditions = [resolve(bundle, d["condition"]) for d in episode["diagnosis"]]
    assert [c["code"]["coding"][0]["code"] for c in conditions] == ["F33.1", "F10.20"]
    assert {c["code"]["coding"][0]["system"] for c in conditions} == {ICD_10_CM}
    assert [c["category"][1]["coding"][0]["code"] for c in conditions] == [
        "mental-health", "substance-use"]
    assert {c["recordedDate"] for c in conditions} == {"2026-01-07"}
    # Check the referral: PHP 2.5 was requested on 01-05 by Dr. Okafor; it led to the admission.
    (referral_ref,) = episode["referralRequest"]
    referral = resolve(bundle, referral_ref)
    assert (referral["resourceType"], referral["status"], referral["intent"]) == (
        "ServiceRequest", "completed", "order")
    assert referral["authoredOn"] == "2026-01-05"
    assert referral["requester"] == {"display": "Dr. Okafor"}
    assert referral["code"]["coding"][0]["code"] == "2.5"
    assert referral["note"] == [{"text": "Source: Lakeside PHP. Direction: step-down."}]
    # Check the discharge reason extension: the discharge type coded, the reason as text.
    (extension,) = episode["extension"]
    assert extension["url"] == (
        "https://care-episodes.example/fhir/StructureDefinition/discharge-reason")
    assert extension["valueCodeableConcept"]["coding"][0]["code"] == "completed"
    assert extension["valueCodeableConcept"]["text"] == (
        "treatment goals met; weekly therapy from March")


def test_one_encounter_per_attended_session_after_corrections(bundle):
    encounters = resources(bundle, "Encounter")
    # Check: v5, v6, v7 (amended to 120 minutes) and v14; v8 was voided, v9 was missed.
    assert [(e["period"]["start"], e["class"]["code"], e["length"]["value"], e["type"][0]["text"])
            for e in encounters] == [
        ("2026-01-12", "AMB", 180, "group: DBT distress tolerance"),
        ("2026-01-14", "VR", 50, "individual"),
        ("2026-01-16", "AMB", 120, "group"),  # hybrid counts as ambulatory
        ("2026-02-04", "VR", 60, "family"),
    ]
    for encounter in encounters:
        assert encounter["status"] == "finished"
        assert encounter["period"]["start"] == encounter["period"]["end"]
        assert encounter["length"] | {"value": 0} == {
            "value": 0, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"}
        assert encounter["class"]["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
        assert resolve(bundle, encounter["episodeOfCare"][0])["resourceType"] == "EpisodeOfCare"
    assert encounters[0]["participant"] == [{"individual": {"display": "clin-dee"}}]
    # Check the minutes: 180 + 50 + 120 + 60 = 410 (the voided 180 and the original 240 are out).
    assert sum(e["length"]["value"] for e in encounters) == 410


def test_scores_are_loinc_observations_with_the_intake_baselines(bundle):
    observations = resources(bundle, "Observation")
    assert [(o["code"]["coding"][0]["code"], o["effectiveDateTime"], o["valueInteger"], o["status"])
            for o in observations] == [
        ("44261-6", "2026-01-07", 18, "final"),  # PHQ-9 baseline at intake
        ("70274-6", "2026-01-07", 13, "final"),  # GAD-7 baseline at intake
        ("44261-6", "2026-01-21", 14, "final"),
        ("70274-6", "2026-02-06", 8, "final"),
        ("44261-6", "2026-02-20", 6, "amended"),  # recorded as 7, amended by v20
    ]
    for observation in observations:
        assert observation["code"]["coding"][0]["system"] == LOINC
        assert observation["category"][0]["coding"][0]["code"] == "survey"
        assert observation["subject"] == {"reference": "Patient/1001"}
    assert [o.get("note") for o in observations[:3]] == [
        [{"text": "Intake baseline"}], [{"text": "Intake baseline"}], None]


def test_one_provenance_per_event_with_who_when_and_why(app, episode, bundle):
    provenance = resources(bundle, "Provenance")
    # Check one Provenance per event of the stream, corrections included, in stream order.
    assert [p["extension"][0]["valuePositiveInt"] for p in provenance] == list(range(1, 22))
    assert len(list(app.history(episode))) == 21
    for p in provenance:
        assert p["agent"][0]["who"]["identifier"]["value"] == "clin-ana"
        assert p["agent"][0]["role"][0]["coding"][0]["code"] == "clinician"
    # Check the recorded times: the episode was entered on 2026-06-01 12:00 UTC as late entries,
    # the corrections a day later; the clinical dates are the events' own.
    assert provenance[0]["recorded"] == "2026-06-01T12:00:00+00:00"
    assert provenance[0]["occurredDateTime"] == "2026-01-05"
    assert provenance[17]["recorded"] == "2026-06-02T12:00:00+00:00"
    assert provenance[17]["occurredDateTime"] == "2026-06-02"
    # Check the operations: facts are CREATE, amendments UPDATE, the void DELETE.
    operations = [p["activity"]["coding"][0]["code"] for p in provenance]
    assert operations == ["CREATE"] * 17 + ["UPDATE", "DELETE", "UPDATE", "UPDATE"]
    assert provenance[10]["activity"]["text"] == "LevelOfCareChanged"
    assert provenance[10]["reason"] == [{"text": "stable enough for IOP"}]

    # Check the targets: the session of v5 produced its Encounter; the discharge, the episode.
    assert resolve(bundle, provenance[4]["target"][0])["period"]["start"] == "2026-01-12"
    discharge = provenance[16]
    assert [resolve(bundle, t)["resourceType"] for t in discharge["target"]] == ["EpisodeOfCare"]
    # Check the amendment of v7 targets the corrected Encounter (120 minutes) and points to
    # the Provenance of v7 as the revised original.
    amend = provenance[17]
    assert resolve(bundle, amend["target"][0])["length"]["value"] == 120
    assert amend["reason"] == [{"text": "the hybrid group ran 120 minutes"}]
    assert amend["entity"][0]["role"] == "revision"
    assert resolve(bundle, amend["entity"][0]["what"])["extension"][0]["valuePositiveInt"] == 7
    # Check the void of v8: nothing of v8 is left to target but the episode; a removal entity.
    void = provenance[18]
    assert [resolve(bundle, t)["resourceType"] for t in void["target"]] == ["EpisodeOfCare"]
    assert void["entity"][0]["role"] == "removal"
    assert resolve(bundle, void["entity"][0]["what"])["extension"][0]["valuePositiveInt"] == 8
    assert void["reason"] == [{"text": "no group on Saturdays: entered for the wrong day"}]


def test_a_cancelled_referral_with_a_local_patient_id(app, clinician):
    define_standard_program(app, clinician)
    episode = refer(app, clinician, D("2026-03-02"), patient_ref="MRN-88412")
    app.cancel_referral(episode, clinician, effective_date=D("2026-03-09"),
                        reason="the patient moved out of state")
    bundle = export_episode(app, episode)
    Bundle.model_validate(bundle)
    (eoc,) = resources(bundle, "EpisodeOfCare")
    # Check: never admitted, so the period runs from the referral to the cancellation.
    assert eoc["status"] == "cancelled"
    assert eoc["period"] == {"start": "2026-03-02", "end": "2026-03-09"}
    assert eoc["statusHistory"] == [
        {"status": "planned", "period": {"start": "2026-03-02", "end": "2026-03-09"}},
        {"status": "cancelled", "period": {"start": "2026-03-09"}},
    ]
    # Check a patient id that is no FHIR reference goes out as an identifier.
    assert eoc["patient"] == {"identifier": {
        "system": "https://care-episodes.example/patient-ref", "value": "MRN-88412"}}
    assert "diagnosis" not in eoc and "managingOrganization" not in eoc and "extension" not in eoc
    assert resolve(bundle, eoc["referralRequest"][0])["status"] == "revoked"
    assert resources(bundle, "Encounter") == [] and resources(bundle, "Observation") == []


def test_an_episode_entered_in_error_takes_what_it_produced_with_it(app, clinician):
    episode = admitted_episode(app, clinician, D("2026-04-06"))  # intake 04-07, admitted 04-08
    attend(app, episode, clinician, D("2026-04-08"))
    app.mark_entered_in_error(episode, clinician, effective_date=D("2026-04-10"),
                              reason="recorded for the wrong patient")
    bundle = export_episode(app, episode)
    Bundle.model_validate(bundle)
    (eoc,) = resources(bundle, "EpisodeOfCare")
    assert eoc["status"] == "entered-in-error"
    assert eoc["statusHistory"][-2:] == [
        {"status": "active", "period": {"start": "2026-04-08", "end": "2026-04-10"}},
        {"status": "entered-in-error", "period": {"start": "2026-04-10"}},
    ]
    # Check every resource the episode produced is marked entered-in-error too.
    assert {e["status"] for e in resources(bundle, "Encounter")} == {"entered-in-error"}
    assert {o["status"] for o in resources(bundle, "Observation")} == {"entered-in-error"}
    assert resolve(bundle, eoc["referralRequest"][0])["status"] == "entered-in-error"
    assert {c["verificationStatus"]["coding"][0]["code"] for c in resources(bundle, "Condition")} == {
        "entered-in-error"}
    # Check the mark itself is a NULLIFY with its reason.
    mark = resources(bundle, "Provenance")[-1]
    assert mark["activity"]["coding"][0]["code"] == "NULLIFY"
    assert mark["reason"] == [{"text": "recorded for the wrong patient"}]


def test_the_same_version_exports_the_same_bundle(app, episode, bundle):
    assert export_episode(app, episode) == bundle


def test_an_unknown_episode_raises_not_found(app):
    with pytest.raises(EpisodeNotFound):
        export_episode(app, UUID(int=7))


def test_the_exporter_needs_no_fhir_library():
    module = Path(__file__).resolve().parent.parent / "projections" / "fhir.py"
    assert "fhir" not in imported_top_level_names(module)


def test_the_command_writes_the_bundle_to_a_file(app, episode, sqlite_url, tmp_path):
    output = tmp_path / "episode.fhir.json"
    result = CliRunner().invoke(main, ["--db", sqlite_url, "export-fhir", str(episode),
                                       "--output", str(output)])
    assert result.exit_code == 0, result.output
    written = json.loads(output.read_text(encoding="utf-8"))
    assert Bundle.model_validate(written).entry[0].resource.id == str(episode)
    # Check the file holds the same episode the library exports (34 resources).
    assert len(written["entry"]) == 34
    assert "34 resources" in result.stderr


def test_the_command_prints_to_stdout_and_fails_for_an_unknown_id(app, episode, sqlite_url):
    runner = CliRunner()
    printed = runner.invoke(main, ["--db", sqlite_url, "export-fhir", str(episode)])
    assert printed.exit_code == 0
    assert json.loads(printed.stdout)["type"] == "collection"
    unknown = runner.invoke(main, ["--db", sqlite_url, "export-fhir",
                                   "00000000-0000-0000-0000-000000000007"])
    assert unknown.exit_code == 1
    assert "no episode with id 00000000-0000-0000-0000-000000000007" in unknown.stderr


def test_a_command_line_export_is_in_the_access_log(tmp_path, clock, clinician):
    from click.testing import CliRunner

    from admin.cli import main
    from episodes import Episodes
    from episodes.access import AccessLog
    from tests.pathways import admitted_episode

    url = f"sqlite:///{tmp_path / 'fhir-access.db'}"
    app = Episodes(url, clock=clock)
    episode = admitted_episode(app, clinician, date(2026, 3, 2))
    result = CliRunner().invoke(main, ["--db", url, "export-fhir", str(episode)])
    assert result.exit_code == 0, result.output
    entries = list(AccessLog(app.recorder.datastore.engine).entries(episode_id=episode))
    assert [(e.action, e.actor_role, e.patient_ref) for e in entries] == [
        ("export", "system", "Patient/1001")]
    assert entries[0].actor_id.startswith("os:")
    app.close()
