"""Rules every event shares, and replaying a history with or without checking it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from episodes.errors import (
    ClinicalDateError,
    CorrectionRejected,
    ReasonRequired,
    RuleViolation,
    TransitionNotAllowed,
)
from episodes.events import EpisodeEvent, ReferralReceived
from episodes.pathway import Step
from episodes.state import EpisodeState


def check(state: EpisodeState | None, event: EpisodeEvent, latest_date: date) -> None:
    """Raise a :class:`RuleViolation` unless ``event`` may follow ``state``.

    ``latest_date`` is the latest clinical date the clock allows (today, plus the skew that
    lets a clinic ahead of UTC record its own today).
    """
    step = event.step()
    if state is None:
        if not isinstance(event, ReferralReceived):
            raise TransitionNotAllowed(step.command, "not yet referred", ())
    else:
        check_status(state, step)
    if step.reason_required and not (event.envelope.reason or "").strip():
        raise ReasonRequired(step.command)
    if event.effective_date > latest_date:
        raise ClinicalDateError(
            f"the {step.command.replace('_', ' ')} date ({event.effective_date}) is in the future"
        )
    if state is None:
        return
    if step.leads_to is not None and event.effective_date < state.status_since:
        raise ClinicalDateError(
            f"cannot {step.command.replace('_', ' ')} on {event.effective_date}: the episode "
            f"has been {state.status.value} since {state.status_since}, and a change of status "
            "cannot be dated before the current status began"
        )
    event.check(state)


def check_status(state: EpisodeState, step: Step) -> None:
    """The first question for any command: does the pathway allow it in this status?"""
    if state.status not in step.allowed_in:
        raise TransitionNotAllowed(step.command, state.status, step.allowed_in)


def replay(facts: Iterable[EpisodeEvent]) -> EpisodeState:
    """Fold recorded facts into a state, trusting that they were checked when recorded."""
    state: EpisodeState | None = None
    for fact in facts:
        state = fact.evolve(state)  # type: ignore[arg-type]
    assert state is not None, "an episode history starts with its referral"
    return state


def replay_checked(facts: Iterable[EpisodeEvent], latest_date: date, correction: str) -> EpisodeState:
    """Fold a candidate history, checking every fact as if it were recorded now in that order."""
    state: EpisodeState | None = None
    for fact in facts:
        try:
            check(state, fact, latest_date)
        except RuleViolation as broken:
            raise CorrectionRejected(
                f"{correction} would leave an illegal history: at version "
                f"{fact.originator_version} ({type(fact).__name__}), {broken}"
            ) from broken
        state = fact.evolve(state)  # type: ignore[arg-type]
    assert state is not None
    return state
