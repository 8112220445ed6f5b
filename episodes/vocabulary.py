"""The domain's words, named as FHIR and clinicians name them.

Every enum here is a plain :class:`enum.Enum` (not ``StrEnum``) on purpose: the event
store's JSON transcoder would store a ``str`` subclass as a bare string and give it back
as ``str``, losing the type.  Plain enums go through a registered transcoding instead
(see :mod:`episodes.transcodings`) and come back as themselves.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EpisodeStatus(enum.Enum):
    """FHIR R4 ``EpisodeOfCare.status`` (value set ``episode-of-care-status``)."""

    PLANNED = "planned"
    WAITLIST = "waitlist"
    ACTIVE = "active"
    ONHOLD = "onhold"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    ENTERED_IN_ERROR = "entered-in-error"


class ReferralDirection(enum.Enum):
    """Where the patient comes from, relative to IOP intensity."""

    NEW = "new"  # first contact with this level of care
    STEP_UP = "step-up"  # from a lower level, e.g. weekly outpatient
    STEP_DOWN = "step-down"  # from a higher level, e.g. PHP, residential, inpatient


class CriteriaEdition(enum.Enum):
    """Edition of The ASAM Criteria a level-of-care code belongs to."""

    ASAM_3 = "asam-3"  # 3rd edition, 2013
    ASAM_4 = "asam-4"  # 4th edition, 2023: renames levels and dimensions


# ASAM level codes per edition.  The 4th edition renamed levels (1.0 / 1.5 / 1.7 ...), so a level
# is always stored together with its edition.
ASAM_LEVEL_CODES: dict[CriteriaEdition, tuple[str, ...]] = {
    CriteriaEdition.ASAM_3: ("0.5", "1", "2.1", "2.5", "3.1", "3.3", "3.5", "3.7", "4"),
    CriteriaEdition.ASAM_4: ("1.0", "1.5", "1.7", "2.1", "2.5", "2.7", "3.1", "3.5", "3.7", "4.0"),
}

LEVEL_NAMES: dict[str, str] = {
    "0.5": "Early intervention",
    "1": "Outpatient",
    "1.0": "Long-term remission monitoring",
    "1.5": "Outpatient therapy",
    "1.7": "Medically managed outpatient",
    "2.1": "Intensive outpatient (IOP)",
    "2.5": "Partial hospitalization / high-intensity outpatient (PHP)",
    "2.7": "Medically managed intensive outpatient",
    "3.1": "Clinically managed low-intensity residential",
    "3.3": "Clinically managed population-specific high-intensity residential",
    "3.5": "Clinically managed high-intensity residential",
    "3.7": "Medically managed residential",
    "4": "Medically managed intensive inpatient",
    "4.0": "Medically managed intensive inpatient",
}


@dataclass(frozen=True, order=False)
class LevelOfCare:
    """An ASAM level of care: a code within a criteria edition, e.g. ``2.1`` (IOP)."""

    code: str
    edition: CriteriaEdition = CriteriaEdition.ASAM_4

    def __post_init__(self) -> None:
        allowed = ASAM_LEVEL_CODES[self.edition]
        if self.code not in allowed:
            raise ValueError(
                f"level of care {self.code!r} is not an {self.edition.value} level; "
                f"allowed: {', '.join(allowed)}"
            )

    @property
    def intensity(self) -> float:
        """Numeric rank used to tell a step-up from a step-down (higher is more intensive)."""
        return float(self.code)

    @property
    def name(self) -> str:
        return LEVEL_NAMES[self.code]

    def __str__(self) -> str:
        return f"{self.code} ({self.edition.value})"


IOP = LevelOfCare("2.1")
PHP = LevelOfCare("2.5")


class ServiceFormat(enum.Enum):
    """How a program or a session is delivered."""

    IN_PERSON = "in-person"
    HYBRID = "hybrid"
    VIRTUAL = "virtual"


class SessionKind(enum.Enum):
    """Kinds of service delivered inside an IOP episode."""

    GROUP = "group"
    INDIVIDUAL = "individual"
    FAMILY = "family"
    MEDICATION_MANAGEMENT = "medication-management"
    PSYCHOEDUCATION = "psychoeducation"
    CASE_MANAGEMENT = "case-management"


class LevelChangeKind(enum.Enum):
    """How the level of care changes while an episode is active."""

    STEP_DOWN = "step-down"  # to a less intensive level (e.g. PHP 2.5 -> IOP 2.1)
    STEP_UP = "step-up"  # to a more intensive level (e.g. IOP 2.1 -> PHP 2.5)
    TAPER = "taper"  # same level, fewer hours for a week or two before discharge


class DischargeType(enum.Enum):
    """Why an episode ended.  FHIR has no element for this: exports use an extension."""

    COMPLETED = "completed"
    TRANSFERRED = "transferred"
    STEPPED_DOWN = "stepped-down"
    STEPPED_UP = "stepped-up"
    LEFT_AGAINST_ADVICE = "left-against-advice"  # includes dropping out
    ADMINISTRATIVE = "administrative"
    BENEFITS_ENDED = "benefits-ended"
    NOT_PROGRESSING = "not-progressing"
    OTHER = "other"


class DiagnosisCategory(enum.Enum):
    """Mental health and substance use disorders often occur together (dual diagnosis)."""

    MENTAL_HEALTH = "mental-health"
    SUBSTANCE_USE = "substance-use"


class Instrument(enum.Enum):
    """Standardised outcome measures with their LOINC codes and score ranges."""

    PHQ9 = "PHQ-9"
    GAD7 = "GAD-7"

    @property
    def loinc(self) -> str:
        return {"PHQ-9": "44261-6", "GAD-7": "70274-6"}[self.value]

    @property
    def max_score(self) -> int:
        return {"PHQ-9": 27, "GAD-7": 21}[self.value]


class AuthorizationUnit(enum.Enum):
    """What a payer authorizes: treatment days, billing units or sessions."""

    DAYS = "days"
    UNITS = "units"
    SESSIONS = "sessions"


class AgeBand(enum.Enum):
    """Population a program serves; sets the ASAM weekly-hours minimum by default."""

    ADULT = "adult"
    ADOLESCENT = "adolescent"

    @property
    def minimum_weekly_hours(self) -> int:
        # ASAM level 2.1: at least 9 hours a week for adults, at least 6 for adolescents.
        return {"adult": 9, "adolescent": 6}[self.value]


class ActorRole(enum.Enum):
    """Who acted.  Reviewers read and audit; they never record clinical facts."""

    ADMIN = "admin"
    CLINICIAN = "clinician"
    REVIEWER = "reviewer"
    SYSTEM = "system"  # imports, migrations, scheduled jobs

    @property
    def can_record(self) -> bool:
        return self is not ActorRole.REVIEWER
