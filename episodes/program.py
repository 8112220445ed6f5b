"""Programs are data the library's user defines, not code.

A program says what an episode is measured against: target length of stay (12 weeks by
default), days a week, the weekly-hours minimum (9 adult / 6 adolescent by default), the
level of care it delivers, its format and its clinics.  Programs are event-sourced too,
so a change of target is itself on the record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from episodes.values import Envelope
from episodes.vocabulary import IOP, AgeBand, LevelOfCare, ServiceFormat

DEFAULT_TARGET_WEEKS = 12


@dataclass(frozen=True)
class ProgramDefinition:
    """What a program is; ``minimum_weekly_hours`` defaults from the age band."""

    code: str  # short stable identifier, e.g. "iop-adult"; never a patient identifier
    name: str
    target_weeks: int = DEFAULT_TARGET_WEEKS
    days_per_week: int = 3
    age_band: AgeBand = AgeBand.ADULT
    minimum_weekly_hours: Decimal | None = None
    level_of_care: LevelOfCare = IOP
    format: ServiceFormat = ServiceFormat.IN_PERSON
    clinics: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.minimum_weekly_hours is None:
            object.__setattr__(
                self, "minimum_weekly_hours", Decimal(self.age_band.minimum_weekly_hours)
            )

    @property
    def target_days(self) -> int:
        return self.target_weeks * 7

    def as_fields(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in asdict(self)}


def program_id(code: str) -> UUID:
    """Programs are found by code: the id is derived from it (a code names no patient)."""
    return uuid5(NAMESPACE_URL, f"care-episodes:program:{code}")


class Program(Aggregate):
    if TYPE_CHECKING:  # set by the events; an annotation here would become an __init__ argument
        definition: ProgramDefinition

    class Defined(Aggregate.Created):
        definition: ProgramDefinition
        envelope: Envelope

        def apply(self, program: Program) -> None:
            program.definition = self.definition

    class Revised(Aggregate.Event):
        definition: ProgramDefinition
        envelope: Envelope

        def apply(self, program: Program) -> None:
            program.definition = self.definition
