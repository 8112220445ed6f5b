"""The typed query API of the read side: ``ReadModels``.

    reads = ReadModels(app)            # an Episodes / ProjectedEpisodes application
    reads.status(episode_id)           # EpisodeStatus: status, level, day N of target, ...

Each read model contributes its methods from its own module in ``projections.queries``.
Dates are clinical dates; "today" comes from the application's clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date

from sqlalchemy import Connection, Engine

from episodes.application import Episodes
from episodes.clock import Clock, SystemClock
from projections.projector import Projector
from projections.queries.attendance import AttendanceQueries
from projections.queries.audit import AuditQueries
from projections.queries.census import CensusQueries
from projections.queries.intensity import IntensityQueries
from projections.queries.listing import ListingQueries
from projections.queries.outcomes import OutcomeQueries
from projections.queries.programs import ProgramQueries
from projections.queries.status import StatusQueries
from projections.queries.stay import StayQueries
from projections.queries.utilization import UtilizationQueries


class ReadModels(
    StatusQueries, ListingQueries, StayQueries, CensusQueries, IntensityQueries, AttendanceQueries,
    OutcomeQueries, UtilizationQueries, AuditQueries, ProgramQueries,
):
    def __init__(self, app: Episodes):
        self.app = app
        self.engine: Engine = app.recorder.datastore.engine  # type: ignore[attr-defined]
        self.clock: Clock = getattr(app, "clock", None) or SystemClock()
        self._projector = getattr(app, "projector", None) or Projector(app)
        # The connection of the current together() block, per thread / context.
        self._shared: ContextVar[Connection | None] = ContextVar(f"reads-{id(self)}", default=None)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        shared = self._shared.get()
        if shared is not None:  # inside together(): the block's one connection
            yield shared
            return
        with self.engine.connect() as connection:
            yield connection

    @contextmanager
    def together(self) -> Iterator[Connection]:
        """Run every query of the block on one connection (a page's figures): one checkout and
        one transaction instead of one each, which on PostgreSQL saves a BEGIN and a ROLLBACK
        round trip per query method.  Nothing is kept after the block."""
        if self._shared.get() is not None:
            yield self._shared.get()
            return
        with self.engine.connect() as connection:
            token = self._shared.set(connection)
            try:
                yield connection
            finally:
                self._shared.reset(token)

    def today(self) -> date:
        return self.clock.now().date()

    def lag(self) -> int:
        """Events recorded but not yet applied to the read models (0 when inline)."""
        return self._projector.lag()
