"""The episode of care: one aggregate, one append-only stream of events.

The aggregate decides: it checks a new event against the pathway and the clinical-date
rules, and only then appends it.  Nothing is ever updated or deleted; a correction is a
new event, accepted only if the corrected history is itself legal.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from episodes import rules
from episodes.errors import CorrectionRejected, NotFound
from episodes.events import (
    EpisodeEvent,
    EventAmended,
    EventVoided,
    MarkedEnteredInError,
    ReferralReceived,
    _CorrectionEvent,
)
from episodes.state import EpisodeState
from episodes.values import Envelope

# Fields a correction may never change: they identify the fact, not describe it.
IMMUTABLE_FIELDS = frozenset(
    {"originator_id", "originator_version", "timestamp", "originator_topic", "envelope", "patient_ref"}
)


class Episode(Aggregate):
    """An episode of care (FHIR ``EpisodeOfCare``).

    ``state`` is what the pathway needs; ``facts`` maps each version to the event that
    counts for it after corrections (voided facts are gone, amended ones replaced).
    """

    if TYPE_CHECKING:  # set by the events; annotations here would become __init__ arguments
        state: EpisodeState
        facts: dict[int, EpisodeEvent]
        command_ids: dict[str, int]

    @classmethod
    def refer(
        cls, *, id: UUID, timestamp: datetime, latest_date: date, **fields: Any
    ) -> Episode:
        candidate = ReferralReceived(
            originator_id=id,
            originator_version=cls.INITIAL_VERSION,
            timestamp=timestamp,
            originator_topic="",
            **fields,
        )
        rules.check(None, candidate, latest_date)
        return cls._create(ReferralReceived, id=id, timestamp=timestamp, **fields)

    def record(
        self,
        event_class: type[EpisodeEvent],
        *,
        timestamp: datetime,
        latest_date: date,
        **fields: Any,
    ) -> EpisodeEvent:
        """Check an event against the current state and, if it holds, append it."""
        event = event_class(
            originator_id=self.id,
            originator_version=self.version + 1,
            timestamp=timestamp,
            **fields,
        )
        rules.check(self.state, event, latest_date)
        if isinstance(event, _CorrectionEvent):
            self._check_correction(event, latest_date)
        event.mutate(self)
        self.pending_events.append(event)
        return event

    def _check_correction(self, correction: _CorrectionEvent, latest_date: date) -> None:
        target = self.facts.get(correction.target_version)
        if target is None:
            raise NotFound(
                f"version {correction.target_version} is not a fact that still counts in this "
                f"episode (versions 1-{self.version}; corrections and voided events cannot be corrected)"
            )
        if isinstance(correction, EventVoided):
            if isinstance(target, ReferralReceived):
                raise CorrectionRejected(
                    "the referral opens the episode and cannot be voided; "
                    "mark the whole episode entered-in-error instead"
                )
            if isinstance(target, MarkedEnteredInError):
                raise CorrectionRejected("an entered-in-error mark cannot be voided")
        if isinstance(correction, EventAmended):
            bad = sorted(set(correction.changes) - _amendable_fields(target))
            if bad:
                raise CorrectionRejected(
                    f"{type(target).__name__} has no amendable field {', '.join(bad)}; "
                    f"amendable: {', '.join(sorted(_amendable_fields(target)))}"
                )
            if not correction.changes:
                raise CorrectionRejected("an amendment needs at least one changed field")
        description = (
            f"voiding version {correction.target_version}"
            if isinstance(correction, EventVoided)
            else f"amending version {correction.target_version}"
        )
        rules.replay_checked(correction.corrected(self.facts).values(), latest_date, description)

    def fact(self, version: int) -> EpisodeEvent:
        return self.facts[version]


def _amendable_fields(event: EpisodeEvent) -> set[str]:
    return set(vars(event)) - IMMUTABLE_FIELDS


__all__ = ["Episode", "Envelope"]
