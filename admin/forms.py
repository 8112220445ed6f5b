"""Form descriptions built from the library's command schemas (``episodes.schemas.SCHEMAS``).

The panel never repeats the library's field rules: each field of a command's marshmallow
schema becomes a :class:`FieldSpec` (label, input kind, choices, required flag, help text),
the form posts plain strings, and the library validates them.  Field names are dotted
paths, the same as the keys of the library's errors once flattened (``diagnoses.0.code``),
so every message lands next to its own input.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, is_dataclass
from dataclasses import fields as dataclass_fields
from typing import Any

from marshmallow import Schema, fields, validate

from episodes.schemas import SCHEMAS, LevelOfCareField
from episodes.vocabulary import (
    ASAM_LEVEL_CODES,
    LEVEL_NAMES,
    CriteriaEdition,
    Instrument,
    LevelOfCare,
)

# The envelope and the stream id are not typed by a person: the view supplies them.
HIDDEN = frozenset({"episode_id", "command_id", "correlation_id"})
LONG_TEXT = 500  # texts allowed to be longer than this get a textarea
BLANK_ROWS = 1  # empty rows offered after the filled ones of a list (no script adds rows)
MIN_ROWS = 2

Choices = list[tuple[str | None, list[tuple[str, str]]]]  # (group label or None, [(value, label)])

LABELS = {
    "effective_date": "Date", "patient_ref": "Patient reference", "source": "Referral source",
    "direction": "Direction", "requested_level": "Requested level of care",
    "referring_provider": "Referring provider", "clinician": "Assessing clinician",
    "diagnoses": "Diagnoses", "asam_ratings": "ASAM dimension ratings",
    "recommended_level": "Recommended level of care", "phq9": "PHQ-9 baseline",
    "gad7": "GAD-7 baseline", "program_code": "Program", "referred_elsewhere": "Referred elsewhere to",
    "level_of_care": "Level of care", "format": "Format", "planned_days_per_week": "Planned days a week",
    "care_team": "Care team", "payer": "Payer", "kind": "Kind", "minutes": "Minutes",
    "topic": "Topic", "facilitator": "Facilitator", "excused": "Excused", "instrument": "Instrument",
    "score": "Score", "unit": "Unit", "authorized": "Authorized amount", "start": "From",
    "end": "To", "next_review": "Next review", "reference": "Authorization reference",
    "to_level": "New level of care", "expected_return": "Expected return",
    "discharge_type": "Discharge type", "aftercare_plan": "Aftercare plan",
    "follow_up_date": "Follow-up date", "referred_to": "Referred to",
    "target_version": "Event to correct", "reason": "Reason", "code": "Code",
    "category": "Category", "display": "Description", "system": "Code system", "id": "Staff id",
    "role": "Role",
}

HELP = {
    "effective_date": "The clinical date: when it happened, which may be before today for a late entry.",
    "patient_ref": "The patient's identifier in the record system, e.g. Patient/1001.",
    "requested_level": "ASAM level; 2.1 is intensive outpatient.",
    "clinician": "Staff id of the clinician who did the assessment.",
    "diagnoses": "One row per diagnosis (ICD-10-CM); empty rows are ignored.",
    "asam_ratings": "Risk rating of each of the six dimensions, 0 (none) to 4 (severe).",
    "program_code": "The program the patient is admitted to (or waits for).",
    "clinic": "One of the program's clinics.",
    "level_of_care": "Empty: the program's own level.",
    "format": "Empty: the program's own format.",
    "planned_days_per_week": "Empty: the program's own days a week.",
    "care_team": "One row per staff member; empty rows are ignored.",
    "to_level": "Leave empty for a taper, which keeps the current level.",
    "score": "; ".join(f"{i.value}: 0–{i.max_score}" for i in Instrument) + ".",
    "system": "Empty: ICD-10-CM.",
}
DATE_LABELS = {
    "refer": "Referral date", "complete_intake": "Intake date", "waitlist": "Waitlisted on",
    "cancel_referral": "Cancelled on", "decline_referral": "Declined on", "admit": "Admission date",
    "record_attendance": "Session date", "record_absence": "Session date",
    "record_program_cancellation": "Session date", "record_outcome": "Measured on",
    "record_authorization": "Recorded on", "change_level_of_care": "Changed on",
    "place_on_hold": "Hold starts", "resume": "Resumed on", "discharge": "Discharge date",
    "void_event": "Correction date", "amend_event": "Correction date",
    "mark_entered_in_error": "Correction date",
}
# ASAM Criteria dimensions (4th edition, 2023 names).
ASAM_DIMENSIONS = {
    "1": "Intoxication, withdrawal and addiction medications", "2": "Biomedical conditions",
    "3": "Psychiatric and cognitive conditions", "4": "Substance use-related risks",
    "5": "Recovery environment interactions", "6": "Person-centered considerations",
}
EDITION_LABELS = {CriteriaEdition.ASAM_4: "ASAM 4th edition (2023)",
                  CriteriaEdition.ASAM_3: "ASAM 3rd edition (2013)"}


@dataclass
class FieldSpec:
    """One input of a form.  ``kind``: text, textarea, date, number, select, checkbox,
    rows (a list of objects: ``columns`` are its sub-fields) or ratings (``keys`` x ``scale``)."""

    name: str  # dotted path: the form input's name and the key of its errors
    label: str
    kind: str
    required: bool = False
    help: str = ""
    choices: Choices = field(default_factory=list)
    columns: list[FieldSpec] = field(default_factory=list)
    keys: list[tuple[str, str]] = field(default_factory=list)  # ratings: (key, label)
    scale: list[str] = field(default_factory=list)  # ratings: the allowed scores

    @property
    def id(self) -> str:
        return "f-" + self.name.replace(".", "-")

    def rows(self, values: Mapping[str, str]) -> list[int]:
        """Row numbers to show: every filled row, then a blank one or two."""
        used = [int(k.split(".")[-2]) for k in values if k.startswith(self.name + ".")
                and k.count(".") == self.name.count(".") + 2 and k.split(".")[-2].isdigit()]
        return list(range(max(max(used, default=-1) + 1 + BLANK_ROWS, MIN_ROWS)))


def describe(command: str, *, choices: Mapping[str, Choices] | None = None) -> list[FieldSpec]:
    """The fields a person fills in for ``command``, in the schema's order, reason last."""
    schema = SCHEMAS[command]()
    specs = describe_schema(schema, choices=choices, skip=HIDDEN | {"changes"})
    for spec in specs:
        if spec.name == "effective_date":
            spec.label = DATE_LABELS.get(command, spec.label)
            if not spec.required:
                spec.help = "Empty: today."
        if spec.name == "reason":
            spec.required = schema.step.reason_required  # the schema's own check says so
            spec.label = "Reason" if spec.required else "Note"
    return sorted(specs, key=lambda s: s.name == "reason")


def describe_schema(schema: Schema, *, prefix: str = "", partial: bool = False,
                    choices: Mapping[str, Choices] | None = None,
                    skip: frozenset[str] = frozenset()) -> list[FieldSpec]:
    """One :class:`FieldSpec` per schema field (``partial``: nothing required, for amendments)."""
    return [
        describe_field(name, schema_field, prefix=prefix, partial=partial, choices=choices or {})
        for name, schema_field in schema.fields.items() if name not in skip
    ]


def describe_field(name: str, schema_field: fields.Field, *, prefix: str = "", partial: bool = False,
                   choices: Mapping[str, Choices]) -> FieldSpec:
    spec = FieldSpec(
        name=prefix + name, label=LABELS.get(name, name.replace("_", " ").capitalize()),
        kind="text", required=bool(schema_field.required) and not partial,
        help=HELP.get(name, ""),
    )
    if name in choices:
        spec.kind, spec.choices = "select", list(choices[name])
    elif isinstance(schema_field, fields.Enum):
        spec.kind = "select"
        spec.choices = [(None, [(str(m.value), str(m.value)) for m in schema_field.enum])]
    elif isinstance(schema_field, LevelOfCareField):
        spec.kind, spec.choices = "select", level_choices()
    elif isinstance(schema_field, fields.Boolean):
        spec.kind = "checkbox"
    elif isinstance(schema_field, fields.Date):
        spec.kind = "date"
    elif isinstance(schema_field, fields.Integer):
        spec.kind = "number"
        spec.help = spec.help or _range_text(schema_field)
    elif isinstance(schema_field, fields.List) and isinstance(schema_field.inner, fields.Nested):
        spec.kind = "rows"
        nested = schema_field.inner.schema
        spec.columns = describe_schema(nested, partial=partial, choices=choices)
        spec.required = not partial and (spec.required or _at_least_one(schema_field))
    elif isinstance(schema_field, fields.Dict):
        spec.kind = "ratings"
        spec.keys = [(k, ASAM_DIMENSIONS.get(k, k)) for k in _one_of(schema_field.key_field)]
        low, high = _bounds(schema_field.value_field)
        spec.scale = [str(n) for n in range(low or 0, (high or 0) + 1)]
    elif isinstance(schema_field, fields.String):
        longest = next((v.max for v in schema_field.validators if isinstance(v, validate.Length)), None)
        if longest and longest > LONG_TEXT:
            spec.kind = "textarea"
            spec.help = spec.help or f"Up to {longest} characters."
    return spec


def level_choices() -> Choices:
    """ASAM levels per edition: ``2.1`` (4th edition, the default) or ``asam-3:2.1``."""
    groups: Choices = []
    for edition in (CriteriaEdition.ASAM_4, CriteriaEdition.ASAM_3):
        prefix = "" if edition is CriteriaEdition.ASAM_4 else f"{edition.value}:"
        groups.append((EDITION_LABELS[edition], [
            (prefix + code, f"{code} — {LEVEL_NAMES[code]}") for code in ASAM_LEVEL_CODES[edition]
        ]))
    return groups


def _range_text(schema_field: fields.Field) -> str:
    low, high = _bounds(schema_field)
    if low is not None and high is not None:
        return f"{low}–{high}."
    return f"{low} or more." if low is not None else ""


def _bounds(schema_field: fields.Field) -> tuple[int | None, int | None]:
    for validator in schema_field.validators:
        if isinstance(validator, validate.Range):
            return validator.min, validator.max  # type: ignore[return-value]
    return None, None


def _one_of(schema_field: fields.Field) -> list[str]:
    for validator in schema_field.validators:
        if isinstance(validator, validate.OneOf):
            return [str(c) for c in validator.choices]
    return []


def _at_least_one(schema_field: fields.Field) -> bool:
    return any(isinstance(v, validate.Length) and (v.min or v.equal or 0) >= 1
               for v in schema_field.validators)


# ------------------------------------------------------------------ posted values


def normalize(specs: list[FieldSpec], form: Mapping[str, str]) -> dict[str, str]:
    """The posted values as a flat map, list rows renumbered without the empty ones
    (so row ``n`` of the page is item ``n`` of the payload and of its errors)."""
    flat: dict[str, str] = {}
    for spec in specs:
        if spec.kind == "rows":
            for i, row in enumerate(_posted_rows(spec, form)):
                flat.update({f"{spec.name}.{i}.{k}": v for k, v in row.items()})
        elif spec.kind == "ratings":
            flat.update({f"{spec.name}.{k}": form.get(f"{spec.name}.{k}", "") for k, _ in spec.keys})
        elif spec.kind == "checkbox":
            flat[spec.name] = "true" if form.get(spec.name) else ""
        else:
            flat[spec.name] = form.get(spec.name, "")
    return flat


def _posted_rows(spec: FieldSpec, form: Mapping[str, str]) -> list[dict[str, str]]:
    indexes = sorted({int(k.split(".")[-2]) for k in form if k.startswith(spec.name + ".")
                      and k.split(".")[-2].isdigit() and k.count(".") == spec.name.count(".") + 2})
    rows = []
    for i in indexes:
        row = {c.name: form.get(f"{spec.name}.{i}.{c.name}", "").strip() for c in spec.columns}
        if any(row.values()):
            rows.append({k: v for k, v in row.items() if v})
    return rows


def payload(specs: list[FieldSpec], flat: Mapping[str, str], *, prefix: str = "") -> dict[str, Any]:
    """The command's input from normalized values: empty fields are left out."""
    data: dict[str, Any] = {}
    for spec in specs:
        key = spec.name.removeprefix(prefix)
        if spec.kind == "rows":
            rows = _rows(spec, flat)
            if rows:
                data[key] = rows
        elif spec.kind == "ratings":
            ratings = _ratings(spec, flat)
            if ratings:
                data[key] = ratings
        elif flat.get(spec.name, "").strip():
            data[key] = flat[spec.name].strip()
    return data


def _rows(spec: FieldSpec, flat: Mapping[str, str]) -> list[dict[str, str]]:
    rows: dict[int, dict[str, str]] = {}
    for key, value in flat.items():
        if key.startswith(spec.name + ".") and value:
            index, column = key[len(spec.name) + 1:].split(".", 1)
            rows.setdefault(int(index), {})[column] = value
    return [rows[i] for i in sorted(rows)]


def _ratings(spec: FieldSpec, flat: Mapping[str, str]) -> dict[str, str]:
    return {k: flat[f"{spec.name}.{k}"] for k, _ in spec.keys if flat.get(f"{spec.name}.{k}", "")}


def changes(specs: list[FieldSpec], flat: Mapping[str, str], original: Mapping[str, str], *,
            prefix: str, posted: Mapping[str, str]) -> dict[str, Any]:
    """An amendment's ``changes``: the fields whose posted value differs from the original
    (a field emptied by the user becomes ``None``; a field not posted at all is unchanged)."""
    before, after = payload(specs, original, prefix=prefix), payload(specs, flat, prefix=prefix)
    changed: dict[str, Any] = {}
    for spec in specs:
        key = spec.name.removeprefix(prefix)
        if spec.kind != "checkbox" and not any(k == spec.name or k.startswith(spec.name + ".")
                                               for k in posted):
            continue
        if spec.kind == "checkbox":
            if bool(after.get(key)) != bool(before.get(key)):
                changed[key] = "true" if after.get(key) else "false"
        elif after.get(key) != before.get(key):
            changed[key] = after.get(key, [] if spec.kind == "rows" else None)
    return changed


def form_values(data: Mapping[str, Any], *, prefix: str = "") -> dict[str, str]:
    """Typed values (an event's fields) as the flat strings a form shows."""
    flat: dict[str, str] = {}
    for name, value in data.items():
        path = prefix + name
        if isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                item_fields = ({f.name: getattr(item, f.name) for f in dataclass_fields(item)}
                               if is_dataclass(item) else dict(item))
                flat.update(form_values(item_fields, prefix=f"{path}.{i}."))
        elif isinstance(value, Mapping):
            flat.update({f"{path}.{k}": _text(v) for k, v in value.items()})
        else:
            flat[path] = _text(value)
    return flat


def _text(value: Any) -> str:
    if value is None or value is False:
        return ""
    if value is True:
        return "true"
    if isinstance(value, LevelOfCare):
        return value.code if value.edition is CriteriaEdition.ASAM_4 else f"{value.edition.value}:{value.code}"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


# ------------------------------------------------------------------ errors


def flatten_errors(errors: Mapping[Any, Any], prefix: str = "") -> dict[str, list[str]]:
    """``{"diagnoses": {0: {"code": [...]}}}`` -> ``{"diagnoses.0.code": [...]}``.  A rating's
    ``key`` / ``value`` level is folded into the rating (``asam_ratings.3``)."""
    flat: dict[str, list[str]] = {}
    for key, messages in errors.items():
        path = f"{prefix}{key}"
        if isinstance(messages, Mapping):
            for inner, texts in flatten_errors(messages, path + ".").items():
                for suffix in (".key", ".value"):
                    inner = inner.removesuffix(suffix)
                flat.setdefault(inner, []).extend(texts)
        elif isinstance(messages, (list, tuple)):
            flat.setdefault(path, []).extend(str(m) for m in messages)
        else:
            flat.setdefault(path, []).append(str(messages))
    return flat


def placed(specs: list[FieldSpec], errors: Mapping[str, list[str]]) -> set[str]:
    """The error keys the form shows beside an input (the others go at the top)."""
    paths: set[str] = set()
    for spec in specs:
        paths.add(spec.name)
        if spec.kind == "ratings":
            paths.update(f"{spec.name}.{k}" for k, _ in spec.keys)
        if spec.kind == "rows":
            paths.update(k for k in errors if k.startswith(spec.name + ".")
                         and k.split(".")[-1] in {c.name for c in spec.columns})
    return paths & set(errors)
