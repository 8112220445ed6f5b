"""Input schemas: one marshmallow schema per command.

The same schemas serve the Python API, the web panel and any HTTP API, so a field error
reads the same everywhere.  ``load`` accepts raw strings (from a form or JSON) as well as
typed values (``date``, enum members, :class:`LevelOfCare`), and returns typed values.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from episodes.pathway import PATHWAY, Step
from episodes.values import CareTeamMember, Diagnosis
from episodes.vocabulary import (
    AgeBand,
    AuthorizationUnit,
    CriteriaEdition,
    DiagnosisCategory,
    DischargeType,
    Instrument,
    LevelChangeKind,
    LevelOfCare,
    ReferralDirection,
    ServiceFormat,
    SessionKind,
)

MAX_SESSION_MINUTES = 12 * 60  # no single service runs longer than a 12-hour day


class Text(fields.String):
    """A string with surrounding white space removed; empty means missing."""

    def __init__(self, *, max_length: int = 200, **kwargs: Any):
        kwargs.setdefault("validate", validate.Length(min=1, max=max_length))
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip()


class OptionalText(Text):
    def __init__(self, **kwargs: Any):
        kwargs.setdefault("load_default", None)
        kwargs.setdefault("allow_none", True)
        super().__init__(**kwargs)

    def deserialize(self, value: Any, attr: Any = None, data: Any = None, **kwargs: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            value = None  # an empty form field means "not given"
        return super().deserialize(value, attr, data, **kwargs)


class WholeNumber(fields.Integer):
    """An integer, also from a form's text ("60"); never a rounded fraction or a boolean."""

    def __init__(self, **kwargs: Any):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,9}\s*", value):
            value = int(value)
        return super()._deserialize(value, attr, data, **kwargs)


def Choice(enum_class: type, **kwargs: Any) -> fields.Enum:  # noqa: N802 - reads as a field type
    return fields.Enum(enum_class, by_value=True, **kwargs)


class LevelOfCareField(fields.Field):
    """An ASAM level: ``"2.1"`` (4th edition), ``"asam-3:2.1"``, ``{"code", "edition"}``."""

    default_error_messages = {
        "invalid": "Not a level of care: give an ASAM code such as 2.1, or edition:code "
        "such as asam-3:2.5."
    }

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> LevelOfCare:
        if isinstance(value, LevelOfCare):
            return value
        try:
            if isinstance(value, dict):
                return LevelOfCare(str(value["code"]), CriteriaEdition(value.get("edition", "asam-4")))
            if isinstance(value, str):
                edition, _, code = value.strip().rpartition(":")
                return LevelOfCare(code, CriteriaEdition(edition) if edition else CriteriaEdition.ASAM_4)
        except (KeyError, ValueError) as e:
            raise ValidationError(f"{self.error_messages['invalid']} ({e})") from e
        raise self.make_error("invalid")

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else {"code": value.code, "edition": value.edition.value}


class DiagnosisSchema(Schema):
    code = Text(required=True, max_length=20)
    category = Choice(DiagnosisCategory, required=True)
    display = Text(load_default="", max_length=200)
    system = Text(load_default="http://hl7.org/fhir/sid/icd-10-cm")


class CareTeamMemberSchema(Schema):
    id = Text(required=True, max_length=64)
    role = Text(required=True, max_length=64)


class _ObjectList(fields.List):
    """A list of nested schemas turned into value objects (and a tuple)."""

    def __init__(self, schema: type[Schema], factory: type, **kwargs: Any):
        self._factory = factory
        if not kwargs.get("required"):
            kwargs.setdefault("load_default", ())
        super().__init__(fields.Nested(schema), **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> tuple[Any, ...]:
        raw = [vars(v) if isinstance(v, self._factory) else v for v in value or ()]
        return tuple(self._factory(**item) for item in super()._deserialize(raw, attr, data, **kwargs))


class CommandSchema(Schema):
    """Fields every command has: who-independent parts of the envelope and the clinical date."""

    step: ClassVar[Step]
    creates_episode: ClassVar[bool] = False

    class Meta:
        unknown = RAISE

    effective_date = fields.Date(required=True)
    reason = OptionalText(max_length=2000)
    command_id = OptionalText(max_length=100)
    correlation_id = OptionalText(max_length=100)

    @validates_schema(skip_on_field_errors=False)  # report it together with the other fields
    def _reason_when_required(self, data: dict[str, Any], **kwargs: Any) -> None:
        if kwargs.get("partial"):
            return  # amendments validate only the fields they change
        if self.step.reason_required and not data.get("reason"):
            raise ValidationError(
                f"Required to {self.step.command.replace('_', ' ')}: say why.", "reason"
            )


class EpisodeCommandSchema(CommandSchema):
    """A command about an existing episode."""

    episode_id = fields.UUID(required=True)


def _command(command: str) -> Any:
    def decorate(cls: type[CommandSchema]) -> type[CommandSchema]:
        cls.step = PATHWAY[command]
        cls.creates_episode = not issubclass(cls, EpisodeCommandSchema)
        SCHEMAS[command] = cls
        return cls

    return decorate


SCHEMAS: dict[str, type[CommandSchema]] = {}


@_command("refer")
class ReferSchema(CommandSchema):
    patient_ref = Text(required=True, max_length=64)
    source = Text(required=True, max_length=200)
    direction = Choice(ReferralDirection, required=True)
    requested_level = LevelOfCareField(required=True)
    referring_provider = OptionalText(max_length=200)


@_command("complete_intake")
class CompleteIntakeSchema(EpisodeCommandSchema):
    clinician = Text(required=True, max_length=64)
    diagnoses = _ObjectList(DiagnosisSchema, Diagnosis, required=True, validate=validate.Length(min=1))
    asam_ratings = fields.Dict(
        keys=fields.String(validate=validate.OneOf(["1", "2", "3", "4", "5", "6"])),
        values=WholeNumber(validate=validate.Range(0, 4)),
        required=True,
        validate=validate.Length(equal=6, error="Rate all six ASAM dimensions (1-6), each 0-4."),
    )
    recommended_level = LevelOfCareField(required=True)
    phq9 = WholeNumber(load_default=None, validate=validate.Range(0, 27))
    gad7 = WholeNumber(load_default=None, validate=validate.Range(0, 21))


@_command("waitlist")
class WaitlistSchema(EpisodeCommandSchema):
    program_code = OptionalText(max_length=64)


@_command("cancel_referral")
class CancelReferralSchema(EpisodeCommandSchema):
    pass


@_command("decline_referral")
class DeclineReferralSchema(EpisodeCommandSchema):
    referred_elsewhere = OptionalText(max_length=200)


@_command("admit")
class AdmitSchema(EpisodeCommandSchema):
    program_code = Text(required=True, max_length=64)
    clinic = Text(required=True, max_length=100)
    # Defaults come from the program definition when these are left out.
    level_of_care = LevelOfCareField(load_default=None, allow_none=True)
    format = Choice(ServiceFormat, load_default=None, allow_none=True)
    planned_days_per_week = WholeNumber(load_default=None, allow_none=True, validate=validate.Range(1, 7)
    )
    care_team = _ObjectList(CareTeamMemberSchema, CareTeamMember)
    payer = OptionalText(max_length=100)


class _SessionSchema(EpisodeCommandSchema):
    kind = Choice(SessionKind, required=True)
    minutes = WholeNumber(required=True, validate=validate.Range(1, MAX_SESSION_MINUTES)
    )


@_command("record_attendance")
class RecordAttendanceSchema(_SessionSchema):
    format = Choice(ServiceFormat, required=True)
    topic = OptionalText(max_length=200)
    facilitator = OptionalText(max_length=64)


@_command("record_absence")
class RecordAbsenceSchema(_SessionSchema):
    excused = fields.Boolean(load_default=False)


@_command("record_program_cancellation")
class RecordProgramCancellationSchema(_SessionSchema):
    pass


@_command("record_outcome")
class RecordOutcomeSchema(EpisodeCommandSchema):
    instrument = Choice(Instrument, required=True)
    score = WholeNumber(required=True, validate=validate.Range(min=0))

    @validates_schema
    def _score_in_range(self, data: dict[str, Any], **kwargs: Any) -> None:
        instrument, score = data.get("instrument"), data.get("score")
        if instrument and score is not None and score > instrument.max_score:
            raise ValidationError(
                f"A {instrument.value} score is 0-{instrument.max_score}.", "score"
            )


@_command("record_authorization")
class RecordAuthorizationSchema(EpisodeCommandSchema):
    payer = Text(required=True, max_length=100)
    unit = Choice(AuthorizationUnit, required=True)
    authorized = WholeNumber(required=True, validate=validate.Range(1, 1000))
    start = fields.Date(required=True)
    end = fields.Date(required=True)
    next_review = fields.Date(load_default=None, allow_none=True)
    reference = OptionalText(max_length=64)

    @validates_schema
    def _end_after_start(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("start") and data.get("end") and data["end"] < data["start"]:
            raise ValidationError("Must be on or after the start date.", "end")


@_command("change_level_of_care")
class ChangeLevelOfCareSchema(EpisodeCommandSchema):
    kind = Choice(LevelChangeKind, required=True)
    # Left out for a taper, which keeps the current level.
    to_level = LevelOfCareField(load_default=None, allow_none=True)


@_command("place_on_hold")
class PlaceOnHoldSchema(EpisodeCommandSchema):
    expected_return = fields.Date(load_default=None, allow_none=True)


@_command("resume")
class ResumeSchema(EpisodeCommandSchema):
    pass


@_command("discharge")
class DischargeSchema(EpisodeCommandSchema):
    discharge_type = Choice(DischargeType, required=True)
    aftercare_plan = OptionalText(max_length=2000)
    follow_up_date = fields.Date(load_default=None, allow_none=True)
    referred_to = OptionalText(max_length=200)


class _CorrectionSchema(EpisodeCommandSchema):
    # A correction is dated the day it is made unless told otherwise.
    effective_date = fields.Date(load_default=None)


@_command("void_event")
class VoidEventSchema(_CorrectionSchema):
    target_version = WholeNumber(required=True, validate=validate.Range(min=1))


@_command("amend_event")
class AmendEventSchema(_CorrectionSchema):
    target_version = WholeNumber(required=True, validate=validate.Range(min=1))
    # Validated against the amended event's own command schema by the application.
    changes = fields.Dict(keys=fields.String(), required=True, validate=validate.Length(min=1))


@_command("mark_entered_in_error")
class MarkEnteredInErrorSchema(_CorrectionSchema):
    pass


class DefineProgramSchema(Schema):
    class Meta:
        unknown = RAISE

    code = Text(
        required=True,
        max_length=64,
        validate=validate.Regexp(
            r"^[a-z0-9][a-z0-9-]*$", error="Use lower-case letters, digits and dashes."
        ),
    )
    name = Text(required=True, max_length=200)
    target_weeks = WholeNumber(load_default=12, validate=validate.Range(1, 104))
    days_per_week = WholeNumber(load_default=3, validate=validate.Range(1, 7))
    age_band = Choice(AgeBand, load_default=AgeBand.ADULT)
    minimum_weekly_hours = fields.Decimal(
        load_default=None, allow_none=True, places=1, validate=validate.Range(0, 60)
    )
    level_of_care = LevelOfCareField(load_default=LevelOfCare("2.1"))
    format = Choice(ServiceFormat, load_default=ServiceFormat.IN_PERSON)
    clinics = fields.List(Text(max_length=100), load_default=())
    command_id = OptionalText(max_length=100)
    correlation_id = OptionalText(max_length=100)
    reason = OptionalText(max_length=2000)
