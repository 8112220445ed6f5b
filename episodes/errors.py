"""Exceptions raised by the write side.

Every exception here means **nothing was written**.  Messages are meant for a person:
what was tried, in which state, and what would have been allowed.

    EpisodesError
    ├── InvalidCommand            input failed validation (field -> messages in ``.errors``)
    ├── RuleViolation             input was well formed but breaks a care-pathway rule
    │   ├── TransitionNotAllowed  the command is not allowed in the episode's current status
    │   ├── ClinicalDateError     a clinical date is out of order or in the future
    │   ├── ReasonRequired        corrections, discharges, holds, cancellations need a reason
    │   ├── LevelOfCareError      a step-down that goes up, a step-up that goes down, ...
    │   ├── IntakeRequired        admission before the intake assessment
    │   └── CorrectionRejected    the corrected history would break a rule
    ├── NotPermitted              the actor's role may not record anything
    ├── NotFound                  no such episode / program / event version
    │   ├── EpisodeNotFound
    │   └── ProgramNotFound
    ├── ConflictError             another writer changed the episode and the command no longer holds
    └── EncryptionKeyError        the events cannot be decrypted: a missing or wrong cipher key
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class EpisodesError(Exception):
    """Base class of every error this library raises on purpose."""


class InvalidCommand(EpisodesError):
    """The input did not pass its schema.  ``errors`` maps each field to its messages."""

    def __init__(self, command: str, errors: Mapping[str, Any]):
        self.command = command
        self.errors = dict(errors)
        details = "; ".join(f"{field}: {_flatten(msgs)}" for field, msgs in sorted(self.errors.items()))
        super().__init__(f"invalid {command.replace('_', ' ')}: {details}")


def _flatten(messages: Any) -> str:
    if isinstance(messages, Mapping):
        return ", ".join(f"{k}: {_flatten(v)}" for k, v in messages.items())
    if isinstance(messages, Sequence) and not isinstance(messages, str):
        return " ".join(_flatten(m) for m in messages)
    return str(messages).rstrip(".")


class RuleViolation(EpisodesError):
    """The command is well formed but the care pathway does not allow it."""


class TransitionNotAllowed(RuleViolation):
    def __init__(self, command: str, status: Any, allowed_in: Sequence[Any]):
        self.command = command
        self.status = status
        self.allowed_in = tuple(allowed_in)
        status_text = getattr(status, "value", status)
        allowed = ", ".join(getattr(s, "value", str(s)) for s in self.allowed_in) or "no status"
        super().__init__(
            f"cannot {command.replace('_', ' ')}: the episode is {status_text}; "
            f"{command.replace('_', ' ')} is allowed only when the episode is {allowed}"
        )


class ClinicalDateError(RuleViolation):
    """A clinical (effective) date breaks the order of the pathway or lies in the future."""


class ReasonRequired(RuleViolation):
    def __init__(self, command: str):
        self.command = command
        super().__init__(f"a reason is required to {command.replace('_', ' ')}")


class LevelOfCareError(RuleViolation):
    """A level-of-care change that contradicts its own kind (a step-down that goes up, ...)."""


class IntakeRequired(RuleViolation):
    """Admission needs a completed screening / intake assessment first."""


class CorrectionRejected(RuleViolation):
    """A void or amendment that would leave an illegal history."""


class NotPermitted(EpisodesError):
    """The actor's role may not do this (reviewers are read-only)."""


class NotFound(EpisodesError, LookupError):
    pass


class EpisodeNotFound(NotFound):
    def __init__(self, episode_id: Any):
        self.episode_id = episode_id
        super().__init__(f"no episode with id {episode_id}")


class ProgramNotFound(NotFound):
    def __init__(self, program: Any):
        self.program = program
        super().__init__(f"no program {program!r}; define it first with define_program")


class ConflictError(EpisodesError):
    """Another writer changed the episode first, and the command no longer holds
    against the new state (or kept conflicting after several retries)."""


class EncryptionKeyError(EpisodesError):
    """The stored events cannot be decrypted: no key is configured, or not the key they were
    written with, or the key itself is malformed.  Check ``$CARE_EPISODES_CIPHER_KEY``."""
