"""Every figure of one episode at once, as its page shows them: status, weekly hours,
attendance, scores and authorizations.

Asked one by one, each figure reads (or checks) the episode's ``rm_episodes`` row first: five
reads of one row, each a round trip on PostgreSQL.  Here the row is read once and each figure
is computed from it, by the same functions as :meth:`ReadModels.status`,
:meth:`~ReadModels.intensity`, :meth:`~ReadModels.attendance`,
:meth:`~ReadModels.outcome_scores` and :meth:`~ReadModels.utilization`, so the figures are
the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from uuid import UUID

from projections.queries.attendance import EpisodeAttendance, attendance_of
from projections.queries.common import episode_row
from projections.queries.intensity import EpisodeIntensity, intensity_of
from projections.queries.outcomes import EpisodeScores, scores_of
from projections.queries.status import EpisodeStatus, status_of
from projections.queries.utilization import EpisodeUtilization, utilization_of


@dataclass(frozen=True)
class EpisodeFigures:
    status: EpisodeStatus | None  # today's; None when not asked for
    intensity: EpisodeIntensity
    attendance: EpisodeAttendance
    scores: EpisodeScores
    utilization: EpisodeUtilization


class FigureQueries:
    """Mixed into :class:`projections.ReadModels`."""

    def episode_figures(
        self, episode_id: UUID, on: date | None = None, *, with_status: bool = True,
    ) -> EpisodeFigures:
        """The episode's figures on clinical date ``on`` (today by default), and its status
        today (unless ``with_status`` is false), from one read of its row."""
        today = self.today()  # type: ignore[attr-defined]
        on = on or today
        with self.connect() as connection:  # type: ignore[attr-defined]
            row = episode_row(connection, episode_id)
            return EpisodeFigures(
                status=status_of(row, today) if with_status else None,
                intensity=intensity_of(connection, row, on),
                attendance=attendance_of(connection, episode_id, on),
                scores=scores_of(connection, episode_id),
                utilization=utilization_of(connection, row, on),
            )
