"""An episode as a FHIR R4 Bundle (JSON): EpisodeOfCare, referral, diagnoses, sessions, scores
and one Provenance per event.

The exporter reads the write side's public API only: ``Episodes.history(id)`` (every event,
corrections included), ``Episodes.episode(id)`` (the facts that count after corrections) and
``Episodes.program(code)``.  It needs no read-model table and no FHIR library: it builds plain
dicts.  Resource ids are UUIDs derived from the episode id, so exporting the same version of an
episode twice gives the same resources.  The mapping is documented in ``docs/compliance.md (FHIR export)``.

    bundle = export_episode(app, episode_id)     # a dict
    text = to_json(bundle)                       # its JSON
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid5

from episodes.application import Episodes
from episodes.errors import ProgramNotFound
from episodes.events import (
    Admitted,
    Discharged,
    EpisodeEvent,
    EventAmended,
    EventVoided,
    IntakeCompleted,
    MarkedEnteredInError,
    OutcomeMeasured,
    ReferralCancelled,
    ReferralDeclined,
    ReferralReceived,
    SessionAttended,
)
from episodes.history import EpisodeView
from episodes.program import ProgramDefinition
from episodes.state import EpisodeState
from episodes.values import Diagnosis
from episodes.vocabulary import (
    DiagnosisCategory,
    EpisodeStatus,
    Instrument,
    LevelOfCare,
    ServiceFormat,
)

# Standard systems
EPISODE_TYPE = "http://terminology.hl7.org/CodeSystem/episodeofcare-type"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
WORKFLOW_EPISODE = "http://hl7.org/fhir/StructureDefinition/workflow-episodeOfCare"

# Project-local systems and extensions (not published terminologies: see docs/compliance.md (FHIR export))
LOCAL = "https://care-episodes.example"
ASAM_LEVEL = f"{LOCAL}/CodeSystem/asam-level"
DISCHARGE_TYPE = f"{LOCAL}/CodeSystem/discharge-type"
DIAGNOSIS_CATEGORY = f"{LOCAL}/CodeSystem/diagnosis-category"
SESSION_KIND = f"{LOCAL}/CodeSystem/session-kind"
ACTOR_ROLE = f"{LOCAL}/CodeSystem/actor-role"
DISCHARGE_REASON = f"{LOCAL}/fhir/StructureDefinition/discharge-reason"
EVENT_VERSION = f"{LOCAL}/fhir/StructureDefinition/event-version"
CORRELATION_ID = f"{LOCAL}/fhir/StructureDefinition/correlation-id"
EPISODE_ID = f"{LOCAL}/episode-id"
EXPORT_ID = f"{LOCAL}/fhir-export"
PATIENT_REF = f"{LOCAL}/patient-ref"
USER_ID = f"{LOCAL}/user-id"

LOINC_DISPLAY = {
    Instrument.PHQ9: "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]",
    Instrument.GAD7: "Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]",
}
CATEGORY_DISPLAY = {
    DiagnosisCategory.MENTAL_HEALTH: "Mental health disorder",
    DiagnosisCategory.SUBSTANCE_USE: "Substance use disorder",
}
OPERATION_DISPLAY = {
    "CREATE": "create", "UPDATE": "revise", "DELETE": "remove", "NULLIFY": "nullify",
}
_OWN_RESOURCE = (SessionAttended, OutcomeMeasured)  # facts with a resource of their own
_FHIR_PATIENT_REFERENCE = re.compile(r"Patient/[A-Za-z0-9\-.]{1,64}")

Json = dict[str, Any]


def export_episode(app: Episodes, episode_id: UUID, *, exported_at: datetime | None = None) -> Json:
    """The episode as a FHIR R4 ``collection`` Bundle (a dict ready for ``json.dumps``).

    Raises :class:`episodes.EpisodeNotFound` for an unknown id.
    """
    events = list(app.history(episode_id))
    # Fold exactly the events read above, even if another writer appends meanwhile.
    view = app.episode(episode_id, version=events[-1].originator_version)
    program = _program(app, view.state.program_code)
    return _Exporter(episode_id, events, view, program).bundle(exported_at or app.clock.now())


def to_json(bundle: Json) -> str:
    return json.dumps(bundle, indent=2, ensure_ascii=False) + "\n"


def status_periods(facts: Iterable[EpisodeEvent]) -> list[tuple[EpisodeStatus, date, date | None]]:
    """(status, start, end) per status the facts went through, folded with the write side's own
    ``evolve``: the end of one period is the start of the next; the current one is open."""
    periods: list[tuple[EpisodeStatus, date, date | None]] = []
    state: EpisodeState | None = None
    for fact in facts:
        state = fact.evolve(state)  # type: ignore[arg-type]
        if not periods or periods[-1][0] is not state.status:
            if periods:
                periods[-1] = (periods[-1][0], periods[-1][1], state.status_since)
            periods.append((state.status, state.status_since, None))
    return periods


def _program(app: Episodes, code: str | None) -> ProgramDefinition | None:
    if code is None:
        return None
    try:
        return app.program(code)
    except ProgramNotFound:
        return None


class _Exporter:
    def __init__(self, episode_id: UUID, events: Sequence[EpisodeEvent], view: EpisodeView,
                 program: ProgramDefinition | None):
        self.id = episode_id
        self.events = events
        self.view = view
        self.state = view.state
        self.program = program
        self.facts = {f.originator_version: f for f in view.facts}
        # version -> the fields amendments changed in it (an amended score is "amended")
        self.amended: dict[int, set[str]] = {}
        for event in events:
            if isinstance(event, EventAmended):
                self.amended.setdefault(event.target_version, set()).update(event.changes)
        self.produced: dict[int, list[Json]] = {}  # version -> references to what it produced
        self.episode_ref = {"reference": self.url("EpisodeOfCare")}
        self.patient = _patient_reference(self.state.patient_ref)
        # An episode that should never have existed takes what it produced with it.
        self.in_error = self.state.status is EpisodeStatus.ENTERED_IN_ERROR

    # ------------------------------------------------------------------ ids and references

    def uuid(self, name: str) -> str:
        return str(self.id) if name == "EpisodeOfCare" else str(uuid5(self.id, name))

    def url(self, name: str) -> str:
        return f"urn:uuid:{self.uuid(name)}"

    def entry(self, name: str, resource: Json, *versions: int) -> Json:
        reference = {"reference": self.url(name)}
        for version in versions:  # the EpisodeOfCare comes first among an event's targets
            produced = self.produced.setdefault(version, [])
            produced.insert(0 if name == "EpisodeOfCare" else len(produced), reference)
        kind = resource.pop("resourceType")
        return {"fullUrl": self.url(name),
                "resource": {"resourceType": kind, "id": self.uuid(name), **resource}}

    # ------------------------------------------------------------------ the bundle

    def bundle(self, exported_at: datetime) -> Json:
        facts = list(self.facts.values())
        referral = facts[0]
        assert isinstance(referral, ReferralReceived)
        intake = next((f for f in facts if isinstance(f, IntakeCompleted)), None)
        conditions = self.conditions(intake) if intake else []
        service_request = self.service_request(referral)
        episode = self.episode_of_care(conditions)
        clinical = [
            *(self.encounter(f) for f in _in_clinical_order(facts)
              if isinstance(f, SessionAttended)),
            *self.observations(facts, intake),
        ]
        provenance = [self.provenance(event) for event in self.events]
        return {
            "resourceType": "Bundle",
            "id": str(uuid5(self.id, f"bundle:{self.view.version}")),
            "identifier": {"system": EXPORT_ID, "value": f"{self.id}/{self.view.version}"},
            "type": "collection",
            "timestamp": _instant(exported_at),
            "entry": [episode, service_request, *conditions, *clinical, *provenance],
        }

    def episode_of_care(self, conditions: list[Json]) -> Json:
        state = self.state
        resource: Json = {
            "resourceType": "EpisodeOfCare",
            "meta": {"versionId": str(self.view.version),
                     "lastUpdated": _instant(self.view.recorded_at)},
        }
        discharge = next((f for f in self.facts.values() if isinstance(f, Discharged)), None)
        if discharge is not None:
            resource["extension"] = [{
                "url": DISCHARGE_REASON,
                "valueCodeableConcept": _concept(
                    DISCHARGE_TYPE, discharge.discharge_type.value,
                    discharge.discharge_type.value.replace("-", " ").capitalize(),
                    text=discharge.envelope.reason,
                ),
            }]
        resource |= {
            "identifier": [{"system": EPISODE_ID, "value": str(self.id)}],
            "status": state.status.value,
            "statusHistory": [
                {"status": status.value, "period": _period(start, end)}
                for status, start, end in status_periods(self.facts.values())
            ],
            "type": self.episode_types(),
        }
        if conditions:
            resource["diagnosis"] = [{"condition": {"reference": c["fullUrl"]}} for c in conditions]
        resource["patient"] = self.patient
        if state.clinic or self.program:
            names = [f"{state.clinic} clinic" if state.clinic else None,
                     self.program.name if self.program else None]
            resource["managingOrganization"] = {"display": ", ".join(n for n in names if n)}
        resource["period"] = _period(state.admitted_on or state.referred_on, self.period_end())
        resource["referralRequest"] = [{"reference": self.url("ServiceRequest")}]
        # Every fact but a session or a score changes the episode itself.
        changed_by = [v for v, f in self.facts.items() if not isinstance(f, _OWN_RESOURCE)]
        return self.entry("EpisodeOfCare", resource, *changed_by)

    def period_end(self) -> date | None:
        if self.state.discharged_on is not None:
            return self.state.discharged_on
        if self.state.status is EpisodeStatus.CANCELLED:
            return self.state.status_since  # the referral was cancelled or declined that day
        return None

    def episode_types(self) -> list[Json]:
        types = []
        diagnoses = [d for f in self.facts.values() if isinstance(f, IntakeCompleted)
                     for d in f.diagnoses]
        if any(d.category is DiagnosisCategory.SUBSTANCE_USE for d in diagnoses):
            types.append(_concept(EPISODE_TYPE, "da", "Drug and alcohol rehabilitation"))
        state = self.state
        level = state.level_of_care or state.recommended_level or state.requested_level
        program = f"{self.program.name}: " if self.program else ""
        types.append({
            "coding": [_level_coding(level)],
            "text": f"{program}{_level_text(level)}",
        })
        return types

    def service_request(self, referral: ReferralReceived) -> Json:
        facts = self.facts.values()
        closing = (ReferralCancelled, ReferralDeclined)
        closed = next((f for f in facts if isinstance(f, closing)), None)
        if self.in_error:
            status = "entered-in-error"
        elif closed is not None:
            status = "revoked"
        elif self.state.admitted_on is not None:
            status = "completed"
        else:
            status = "active"
        level = referral.requested_level
        note = f"Source: {referral.source}. Direction: {referral.direction.value}."
        if isinstance(closed, ReferralDeclined) and closed.referred_elsewhere:
            note += f" Declined; referred elsewhere: {closed.referred_elsewhere}."
        resource: Json = {
            "resourceType": "ServiceRequest",
            "status": status,
            "intent": "order",
            "code": {"coding": [_level_coding(level)], "text": f"Referral to {_level_text(level)}"},
            "subject": self.patient,
            "authoredOn": referral.effective_date.isoformat(),
        }
        if referral.referring_provider:
            resource["requester"] = {"display": referral.referring_provider}
        resource["note"] = [{"text": note}]
        changed_by = [f.originator_version for f in facts
                      if isinstance(f, (Admitted, ReferralCancelled, ReferralDeclined))]
        return self.entry("ServiceRequest", resource, referral.originator_version, *changed_by)

    def conditions(self, intake: IntakeCompleted) -> list[Json]:
        return [self.condition(intake, n, d) for n, d in enumerate(intake.diagnoses, start=1)]

    def condition(self, intake: IntakeCompleted, n: int, diagnosis: Diagnosis) -> Json:
        coding = {"system": diagnosis.system, "code": diagnosis.code}
        if diagnosis.display:
            coding["display"] = diagnosis.display
        resource = {
            "resourceType": "Condition",
            "extension": [{"url": WORKFLOW_EPISODE, "valueReference": self.episode_ref}],
            "category": [
                _concept(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis"),
                _concept(DIAGNOSIS_CATEGORY, diagnosis.category.value,
                         CATEGORY_DISPLAY[diagnosis.category]),
            ],
            "code": {"coding": [coding], "text": diagnosis.display or diagnosis.code},
            "subject": self.patient,
            **({"verificationStatus": _concept(CONDITION_VERIFICATION, "entered-in-error",
                                               "Entered in Error")} if self.in_error else {}),
            "recordedDate": intake.effective_date.isoformat(),
            "asserter": _staff(intake.clinician),
        }
        return self.entry(f"Condition:{intake.originator_version}:{n}", resource,
                          intake.originator_version)

    def encounter(self, session: SessionAttended) -> Json:
        virtual = session.format is ServiceFormat.VIRTUAL
        kind = session.kind.value
        resource: Json = {
            "resourceType": "Encounter",
            "status": "entered-in-error" if self.in_error else "finished",
            "class": {"system": ACT_CODE, "code": "VR" if virtual else "AMB",
                      "display": "virtual" if virtual else "ambulatory"},
            "type": [{
                "coding": [{"system": SESSION_KIND, "code": kind,
                            "display": kind.replace("-", " ").capitalize()}],
                "text": f"{kind}: {session.topic}" if session.topic else kind,
            }],
            "subject": self.patient,
            "episodeOfCare": [self.episode_ref],
        }
        if session.facilitator:
            resource["participant"] = [{"individual": {"display": session.facilitator}}]
        resource["period"] = _period(session.effective_date, session.effective_date)
        resource["length"] = {"value": session.minutes, "unit": "min", "system": UCUM,
                              "code": "min"}
        version = session.originator_version
        return self.entry(f"Encounter:{version}", resource, version)

    def observations(self, facts: list[EpisodeEvent], intake: IntakeCompleted | None) -> list[Json]:
        scores: list[tuple[EpisodeEvent, Instrument, int, bool, str | None]] = []
        if intake is not None:
            changed = self.amended.get(intake.originator_version, set())
            for instrument, field in ((Instrument.PHQ9, "phq9"), (Instrument.GAD7, "gad7")):
                score = getattr(intake, field)
                if score is not None:
                    amended = bool(changed & {field, "effective_date"})
                    scores.append((intake, instrument, score, amended, "Intake baseline"))
        for fact in facts:
            if isinstance(fact, OutcomeMeasured):
                amended = fact.originator_version in self.amended
                scores.append((fact, fact.instrument, fact.score, amended, None))
        scores.sort(key=lambda s: (s[0].effective_date, s[0].originator_version))
        return [self.observation(*score) for score in scores]

    def observation(self, fact: EpisodeEvent, instrument: Instrument, score: int, amended: bool,
                    note: str | None) -> Json:
        resource: Json = {
            "resourceType": "Observation",
            "extension": [{"url": WORKFLOW_EPISODE, "valueReference": self.episode_ref}],
            "status": "entered-in-error" if self.in_error else "amended" if amended else "final",
            "category": [_concept(OBSERVATION_CATEGORY, "survey", "Survey")],
            "code": _concept(LOINC, instrument.loinc, LOINC_DISPLAY[instrument],
                             text=f"{instrument.value} total score"),
            "subject": self.patient,
            "effectiveDateTime": fact.effective_date.isoformat(),
            "valueInteger": score,
        }
        if note:
            resource["note"] = [{"text": note}]
        version = fact.originator_version
        return self.entry(f"Observation:{version}:{instrument.value}", resource, version)

    # ------------------------------------------------------------------ provenance

    def provenance(self, event: EpisodeEvent) -> Json:
        version = event.originator_version
        envelope = event.envelope
        entity: list[Json] = []
        if isinstance(event, (EventAmended, EventVoided)):
            operation = "UPDATE" if isinstance(event, EventAmended) else "DELETE"
            targets = self.produced.get(event.target_version) or [self.episode_ref]
            original = next(e for e in self.events if e.originator_version == event.target_version)
            entity.append({
                "role": "revision" if operation == "UPDATE" else "removal",
                "what": {"reference": self.url(f"Provenance:{event.target_version}"),
                         "display": f"version {event.target_version} "
                                    f"({type(original).__name__}) as first recorded"},
            })
        else:
            operation = "NULLIFY" if isinstance(event, MarkedEnteredInError) else "CREATE"
            targets = self.produced.get(version) if version in self.facts else None
            targets = targets or [self.episode_ref]
        extension = [{"url": EVENT_VERSION, "valuePositiveInt": version}]
        if envelope.correlation_id:
            extension.append({"url": CORRELATION_ID, "valueString": envelope.correlation_id})
        resource: Json = {
            "resourceType": "Provenance",
            "extension": extension,
            "target": targets,
            "occurredDateTime": event.effective_date.isoformat(),
            "recorded": _instant(event.timestamp),
        }
        if envelope.reason:
            resource["reason"] = [{"text": envelope.reason}]
        resource["activity"] = _concept(DATA_OPERATION, operation, OPERATION_DISPLAY[operation],
                                        text=type(event).__name__)
        resource["agent"] = [{
            "type": _concept(PARTICIPANT_TYPE, "enterer", "Enterer"),
            "role": [_concept(ACTOR_ROLE, envelope.actor_role.value,
                              envelope.actor_role.value.capitalize())],
            "who": _staff(envelope.actor_id),
        }]
        if entity:
            resource["entity"] = entity
        return self.entry(f"Provenance:{version}", resource)


# ---------------------------------------------------------------------- small builders


def _concept(system: str, code: str, display: str, *, text: str | None = None) -> Json:
    concept: Json = {"coding": [{"system": system, "code": code, "display": display}]}
    if text:
        concept["text"] = text
    return concept


def _level_coding(level: LevelOfCare) -> Json:
    # The ASAM edition is the code system's version: the 4th edition renamed the levels.
    return {"system": ASAM_LEVEL, "version": level.edition.value, "code": level.code,
            "display": level.name}


def _level_text(level: LevelOfCare) -> str:
    return f"ASAM level {level.code} ({level.edition.value}), {level.name}"


def _patient_reference(patient_ref: str) -> Json:
    if _FHIR_PATIENT_REFERENCE.fullmatch(patient_ref):
        return {"reference": patient_ref}
    return {"identifier": {"system": PATIENT_REF, "value": patient_ref}}


def _staff(user_id: str) -> Json:
    return {"identifier": {"system": USER_ID, "value": user_id}, "display": user_id}


def _period(start: date, end: date | None) -> Json:
    period = {"start": start.isoformat()}
    if end is not None:
        period["end"] = end.isoformat()
    return period


def _instant(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def _in_clinical_order(facts: Iterable[EpisodeEvent]) -> list[EpisodeEvent]:
    return sorted(facts, key=lambda f: (f.effective_date, f.originator_version))


__all__ = ["export_episode", "status_periods", "to_json"]
