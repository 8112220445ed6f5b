"""care-episodes, the write side: episodes of care as append-only event streams.

    from episodes import Episodes, Actor, ActorRole
    app = Episodes("sqlite:///care-episodes.db")
"""

from episodes.application import Episodes, Receipt
from episodes.clock import Clock, FixedClock, SystemClock
from episodes.episode import Episode
from episodes.errors import (
    ClinicalDateError,
    ConflictError,
    CorrectionRejected,
    EncryptionKeyError,
    EpisodeNotFound,
    EpisodesError,
    IntakeRequired,
    InvalidCommand,
    LevelOfCareError,
    NotFound,
    NotPermitted,
    ProgramNotFound,
    ReasonRequired,
    RuleViolation,
    TransitionNotAllowed,
)
from episodes.history import EpisodeView
from episodes.importing import (
    EpisodeHistory,
    ImportCommand,
    ImportRejected,
    ImportSummary,
    import_episodes,
    read_json_lines,
)
from episodes.pathway import PATHWAY, allowed_commands
from episodes.program import ProgramDefinition
from episodes.state import EpisodeState
from episodes.values import Actor, CareTeamMember, Diagnosis, Envelope
from episodes.vocabulary import (
    IOP,
    PHP,
    ActorRole,
    AgeBand,
    AuthorizationUnit,
    CriteriaEdition,
    DiagnosisCategory,
    DischargeType,
    EpisodeStatus,
    Instrument,
    LevelChangeKind,
    LevelOfCare,
    ReferralDirection,
    ServiceFormat,
    SessionKind,
)

__all__ = [
    "IOP", "PHP", "PATHWAY", "Actor", "ActorRole", "AgeBand", "AuthorizationUnit", "CareTeamMember",
    "ClinicalDateError", "Clock", "ConflictError", "CorrectionRejected", "CriteriaEdition", "Diagnosis",
    "DiagnosisCategory", "DischargeType", "EncryptionKeyError", "Envelope", "Episode", "EpisodeHistory",
    "EpisodeNotFound", "EpisodeState", "EpisodeStatus", "EpisodeView", "Episodes", "EpisodesError",
    "FixedClock", "ImportCommand", "ImportRejected", "ImportSummary", "Instrument", "IntakeRequired",
    "InvalidCommand", "LevelChangeKind", "LevelOfCare", "LevelOfCareError",
    "NotFound", "NotPermitted", "ProgramDefinition", "ProgramNotFound", "ReasonRequired", "Receipt",
    "ReferralDirection", "RuleViolation", "ServiceFormat", "SessionKind", "SystemClock",
    "TransitionNotAllowed", "allowed_commands", "import_episodes", "read_json_lines",
]
