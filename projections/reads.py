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
from projections.queries.figures import FigureQueries
from projections.queries.intensity import IntensityQueries
from projections.queries.listing import ListingQueries
from projections.queries.outcomes import OutcomeQueries
from projections.queries.programs import ProgramQueries
from projections.queries.status import StatusQueries
from projections.queries.stay import StayQueries
from projections.queries.utilization import UtilizationQueries


def plain_reads(engine: Engine) -> Engine:
    """``engine`` for a block of plain reads, without BEGIN and ROLLBACK (a round trip each on
    PostgreSQL, where it runs in autocommit): at PostgreSQL's default READ COMMITTED level each
    statement sees its own snapshot in a transaction or not.  Unchanged elsewhere: SQLite's
    driver begins no transaction for a read.  Not for a streamed result, whose server-side
    cursor needs a transaction."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


class ReadModels(
    StatusQueries, ListingQueries, StayQueries, CensusQueries, IntensityQueries, AttendanceQueries,
    OutcomeQueries, UtilizationQueries, AuditQueries, ProgramQueries, FigureQueries,
):
    def __init__(self, app: Episodes):
        self.app = app
        self.engine: Engine = app.recorder.datastore.engine  # type: ignore[attr-defined]
        self._plain_reads = plain_reads(self.engine)
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
    def together(self, *, transaction: bool = True) -> Iterator[Connection]:
        """Run every query of the block on one connection (a page's figures): one checkout and
        one transaction instead of one each, which on PostgreSQL saves a BEGIN and a ROLLBACK
        round trip per query method; with ``transaction=False``, no transaction at all (see
        :func:`plain_reads`: for plain reads, not a streamed result).  Nothing is kept after
        the block."""
        if self._shared.get() is not None:
            yield self._shared.get()
            return
        with (self.engine if transaction else self._plain_reads).connect() as connection:
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
