"""What the write side knows about an episode: just enough to enforce the pathway.

``EpisodeState`` is a frozen value.  Events produce a new one (``evolve``); nothing mutates it.
Figures people read (length of stay, hours, attendance) live in ``projections``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from episodes.vocabulary import DischargeType, EpisodeStatus, LevelOfCare


@dataclass(frozen=True)
class Hold:
    """A pause in treatment.  Sessions may fall on the first and the last day, not between."""

    start: date
    end: date | None = None

    def excludes(self, day: date) -> bool:
        return self.start < day and (self.end is None or day < self.end)


@dataclass(frozen=True)
class EpisodeState:
    patient_ref: str
    status: EpisodeStatus
    status_since: date  # clinical date the current status began
    referred_on: date
    requested_level: LevelOfCare
    intake_on: date | None = None
    recommended_level: LevelOfCare | None = None
    program_code: str | None = None
    clinic: str | None = None
    admitted_on: date | None = None
    level_of_care: LevelOfCare | None = None
    level_since: date | None = None
    tapering: bool = False
    holds: tuple[Hold, ...] = ()
    last_session_on: date | None = None
    discharged_on: date | None = None
    discharge_type: DischargeType | None = None

    def with_status(self, status: EpisodeStatus, since: date) -> EpisodeState:
        return self._with(status=status, status_since=since)

    def active_on(self, day: date) -> bool:
        """Was the patient in treatment on ``day`` (admitted, not yet discharged, not on hold)?"""
        if self.admitted_on is None or day < self.admitted_on:
            return False
        if self.discharged_on is not None and day > self.discharged_on:
            return False
        return not any(hold.excludes(day) for hold in self.holds)

    def with_session_on(self, day: date) -> EpisodeState:
        if self.last_session_on is not None and self.last_session_on >= day:
            return self
        return self._with(last_session_on=day)

    def _with(self, **changes: object) -> EpisodeState:
        # dataclasses.replace re-runs __init__ with every field (about 7 us); a session is
        # folded on every load and rebuild, so copy the fields instead (about 1 us).  Same
        # value: the fields are all set, none is derived in __post_init__.
        changed = object.__new__(EpisodeState)
        changed.__dict__.update(self.__dict__, **changes)
        return changed
