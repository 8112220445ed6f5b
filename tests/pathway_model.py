"""The model the stateful pathway test checks the application against, and its helpers.

The model knows the transition table (``episodes.pathway.PATHWAY``) and nothing else of
``episodes``: no rules, no state, no events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from episodes import Actor, ActorRole, Episode, Episodes, EpisodeStatus
from episodes.pathway import PATHWAY
from tests.pathways import ALCOHOL_USE, ALL_DIMENSIONS_MODERATE, DEPRESSION

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TODAY = date(2026, 6, 1)
LATEST = date(2026, 6, 2)  # 12:00 UTC + 14 h 05 min of skew = 02:05 the next day
ACTOR = Actor("clin-ana", ActorRole.CLINICIAN)

FHIR_STATUS_CODES = {
    "planned", "waitlist", "active", "onhold", "finished", "cancelled", "entered-in-error",
}
TERMINAL = {EpisodeStatus.FINISHED, EpisodeStatus.CANCELLED, EpisodeStatus.ENTERED_IN_ERROR}


@dataclass
class Fact:
    """What the model keeps of a fact that still counts: the command that made it, its date."""

    command: str
    on: date


class PathwayModel:
    """The status of an episode, re-derived from the transition table alone."""

    def __init__(self) -> None:
        self.facts: dict[int, Fact] = {}  # versions that still count
        self.version = 0

    def status(self) -> EpisodeStatus | None:
        status = None
        for version in sorted(self.facts):
            leads_to = PATHWAY[self.facts[version].command].leads_to
            if leads_to is not None:
                status = leads_to
        return status

    def status_since(self) -> date | None:
        """The date of the last fact that changed the status."""
        since = None
        for version in sorted(self.facts):
            if PATHWAY[self.facts[version].command].leads_to is not None:
                since = self.facts[version].on
        return since

    def date_of(self, command: str) -> date | None:
        return next((f.on for v, f in sorted(self.facts.items()) if f.command == command), None)

    def active_on(self, day: date) -> bool:
        """In treatment that day: admitted, not yet discharged, not strictly inside a hold
        (the day a hold starts and the day treatment resumes both count)."""
        admitted, discharged = self.date_of("admit"), self.date_of("discharge")
        if admitted is None or day < admitted or (discharged is not None and day > discharged):
            return False
        holds: list[list[date | None]] = []
        for version in sorted(self.facts):
            fact = self.facts[version]
            if fact.command == "place_on_hold":
                holds.append([fact.on, None])
            elif fact.command in ("resume", "discharge") and holds and holds[-1][1] is None:
                holds[-1][1] = fact.on
        return not any(start < day and (end is None or day < end) for start, end in holds)

    def history_is_legal(self) -> bool:
        """Every fact that counts was allowed in the status the facts before it left."""
        status = None
        for version in sorted(self.facts):
            step = PATHWAY[self.facts[version].command]
            if status is None and step.allowed_in:
                return False
            if status is not None and status not in step.allowed_in:
                return False
            status = step.leads_to or status
        return True

    def dates(self) -> list[date]:
        return [fact.on for fact in self.facts.values()]


def intake_fields(recommended_level: str) -> dict[str, Any]:
    return {
        "clinician": ACTOR.id, "diagnoses": [DEPRESSION, ALCOHOL_USE],
        "asam_ratings": ALL_DIMENSIONS_MODERATE, "recommended_level": recommended_level, "phq9": 18,
    }


def keep_the_last_saved_episode(app: Episodes) -> dict[str, Episode]:
    """Keep the last episode ``app`` saved: the aggregate as the command left it in memory.

    (The instance's ``save`` is wrapped rather than the class subclassed: a subclass of
    ``Episodes`` gets its own ``name`` and so its own tables.)"""
    kept: dict[str, Episode] = {}
    save = app.save

    def save_and_keep(*objs: Any, **kwargs: Any) -> Any:
        recordings = save(*objs, **kwargs)
        for obj in objs:
            if isinstance(obj, Episode):
                kept["episode"] = obj
        return recordings

    app.save = save_and_keep  # type: ignore[method-assign]
    return kept
