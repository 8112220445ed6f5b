"""The read-model rows one whole stream ends with, derived in memory (for a rebuild).

Incremental projection (``projections.projector``) applies events one at a time and reads back
what it needs (the open periods, the corrected event).  A rebuild sees each stream whole, in
order: it folds the events once and keeps what it needs on the way, and writes the rows the
incremental path would have left behind, row for row: the same ``derive`` functions, the same
recorded-time stamps on the periods (``derive.RecordedPeriods``).
"""

from __future__ import annotations

from typing import Any

from episodes.program import Program
from projections import derive

Rows = dict[str, list[dict[str, Any]]]  # table name (as in ``projections.tables``) -> rows


def is_program_event(event: Any) -> bool:
    return isinstance(event, (Program.Defined, Program.Revised))


class EpisodeStream:
    """One episode's events, fed in version order with their notification ids."""

    def __init__(self) -> None:
        self.episode: Any = None
        self.last: Any = None
        self.audit: list[dict[str, Any]] = []
        self._types: list[str] = []  # the event type of each version, as first recorded
        self._timeline = derive.PeriodTimeline()
        self._periods: derive.RecordedPeriods | None = None

    def add(self, position: int, event: Any) -> None:
        episode = self.episode = event.mutate(self.episode)
        self.last = event
        correction, periods_may_change = _traits(event)
        target = None
        if correction:
            # The audit names the corrected event's category: its type when first recorded.
            target = self._types[event.target_version - 1]
        self._types.append(type(event).__name__)
        self.audit.append(derive.audit_row(position, event, episode.state.patient_ref, target))
        if periods_may_change:
            # Any other event leaves the periods as they are (derive.may_change_periods, on
            # which the projector relies too), so the timeline skips it: following a session
            # only to find the same period going on was a twentieth of a rebuild's CPU.
            self._timeline.follow(event, episode)
            if self._periods is None:
                self._periods = derive.RecordedPeriods(episode.id)
            self._periods.record(self._timeline.current(), event.timestamp)

    def rows(self) -> Rows:
        episode = self.episode
        facts = [episode.facts[v] for v in sorted(episode.facts)]
        return {
            "episodes": [derive.episode_row(episode, self.last.timestamp)],
            **derive.fact_rows(episode.id, facts),
            "periods": self._periods.rows if self._periods else [],
            "audit": self.audit,
        }


class ProgramStream:
    """One program's events: its last definition, and an audit row per event."""

    def __init__(self) -> None:
        self.program: Any = None
        self.audit: list[dict[str, Any]] = []

    def add(self, position: int, event: Any) -> None:
        self.program = event.mutate(self.program)
        self.audit.append(derive.audit_row(position, event, None, None))

    def rows(self) -> Rows:
        return {"programs": [derive.program_row(self.program)], "audit": self.audit}


_TRAITS: dict[type, tuple[bool, bool]] = {}


def _traits(event: Any) -> tuple[bool, bool]:
    """Is the event a correction (``derive.is_correction``), and may it change the periods
    (``derive.may_change_periods``)?  Both depend on its class alone: found once a class."""
    cls = type(event)
    try:
        return _TRAITS[cls]
    except KeyError:
        traits = _TRAITS[cls] = (derive.is_correction(event), derive.may_change_periods(event))
        return traits


def stream_for(first_event: Any) -> EpisodeStream | ProgramStream:
    return ProgramStream() if is_program_event(first_event) else EpisodeStream()
