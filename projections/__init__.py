"""care-episodes, the read side: read models derived from the episode events.

    from projections import ProjectedEpisodes, ReadModels
    app = ProjectedEpisodes("sqlite:///care-episodes.db")   # commands update read models inline
    reads = ReadModels(app)                                # typed queries
"""

from projections.inline import ProjectedEpisodes
from projections.projector import AlreadyApplied, Projector
from projections.queries.status import EpisodeStatus, StatusAsOf
from projections.reads import ReadModels

__all__ = [
    "AlreadyApplied", "EpisodeStatus", "ProjectedEpisodes", "Projector", "ReadModels", "StatusAsOf",
]
