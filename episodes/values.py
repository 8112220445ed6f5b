"""Small immutable value objects carried inside events."""

from __future__ import annotations

from dataclasses import dataclass

from episodes.vocabulary import ActorRole, DiagnosisCategory


@dataclass(frozen=True)
class Actor:
    """Who does something: a user id (never a name) and the role they act in."""

    id: str
    role: ActorRole

    def __post_init__(self) -> None:
        if not self.id or not self.id.strip():
            raise ValueError("an actor needs a non-empty id")


@dataclass(frozen=True)
class Envelope:
    """Who recorded an event, why, and as part of which request.

    The recorded time is the event's own ``timestamp`` (UTC, from the application's clock);
    the clinical time is the event's ``effective_date``.
    """

    actor_id: str
    actor_role: ActorRole
    command_id: str  # client-supplied: the same command id is recorded once
    correlation_id: str  # ties together everything one request or job did
    reason: str | None = None
    # SHA-256 of the event before this one in its stream (episodes.integrity): the hash chain.
    previous_hash: str | None = None


@dataclass(frozen=True)
class Diagnosis:
    """A coded diagnosis, e.g. ICD-10-CM ``F33.1`` or ``F10.20``."""

    code: str
    category: DiagnosisCategory
    display: str = ""
    system: str = "http://hl7.org/fhir/sid/icd-10-cm"


@dataclass(frozen=True)
class CareTeamMember:
    """A member of the episode's care team: a staff id and their function."""

    id: str
    role: str  # e.g. "primary therapist", "psychiatrist", "case manager"
