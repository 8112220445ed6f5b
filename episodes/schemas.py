"""Input schemas: one marshmallow schema per command.

The same schemas serve the Python API, the web panel and any HTTP API, so a field error
reads the same everywhere.  ``load`` accepts raw strings (from a form or JSON) as well as
typed values (``date``, enum members, :class:`LevelOfCare`), and returns typed values.
"""

from __future__ import annotations

from typing import Any, ClassVar

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from episodes.fields import (
    Choice,
    Date,
    Key,
    LevelOfCareField,
    Mapping,
    ObjectList,
    OptionalText,
    Text,
    Uuid,
    WholeNumber,
)
from episodes.pathway import PATHWAY, Step
from episodes.values import CareTeamMember, Diagnosis
from episodes.vocabulary import (
    AgeBand,
    AuthorizationUnit,
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


class DiagnosisSchema(Schema):
    code = Text(required=True, max_length=20)
    category = Choice(DiagnosisCategory, required=True)
    # Optional: "" (the value object's own default) means no display text.
    display = Text(load_default="", validate=validate.Length(max=200))
    system = Text(load_default="http://hl7.org/fhir/sid/icd-10-cm")


class CareTeamMemberSchema(Schema):
    id = Text(required=True, max_length=64)
    role = Text(required=True, max_length=64)


class CommandSchema(Schema):
    """Fields every command has: who-independent parts of the envelope and the clinical date."""

    step: ClassVar[Step]
    creates_episode: ClassVar[bool] = False

    class Meta:
        unknown = RAISE

    # Validated on its own when the rest of an input repeats one loaded before
    # (episodes.validation_cache.VALIDATED_EVERY_TIME): no schema-level rule may read it.
    effective_date = Date(required=True)
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

    episode_id = Uuid(required=True)


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
    diagnoses = ObjectList(DiagnosisSchema, Diagnosis, required=True, validate=validate.Length(min=1))
    asam_ratings = Mapping(
        keys=Key(validate=validate.OneOf(["1", "2", "3", "4", "5", "6"])),
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
    care_team = ObjectList(CareTeamMemberSchema, CareTeamMember)
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
    start = Date(required=True)
    end = Date(required=True)
    next_review = Date(load_default=None, allow_none=True)
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
    expected_return = Date(load_default=None, allow_none=True)


@_command("resume")
class ResumeSchema(EpisodeCommandSchema):
    pass


@_command("discharge")
class DischargeSchema(EpisodeCommandSchema):
    discharge_type = Choice(DischargeType, required=True)
    aftercare_plan = OptionalText(max_length=2000)
    follow_up_date = Date(load_default=None, allow_none=True)
    referred_to = OptionalText(max_length=200)


class _CorrectionSchema(EpisodeCommandSchema):
    # A correction is dated the day it is made unless told otherwise.
    effective_date = Date(load_default=None)


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
