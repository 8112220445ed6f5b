"""The write side with its read models updated in the same transaction (read your own writes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from episodes.application import Episodes
from episodes.clock import Clock
from episodes.writer import Appended
from projections.projector import Projector


class ProjectedEpisodes(Episodes):
    """:class:`episodes.Episodes` whose every command also updates the read models, atomically.

    If the read models cannot be updated, the command is not recorded either.
    """

    def __init__(
        self, url: str | None = None, *, clock: Clock | None = None, env: Mapping[str, str] | None = None
    ):
        super().__init__(url, clock=clock, env=env)
        self.projector = Projector(self)
        self.projector.create_tables()

    def _record(self, processing_event: Any) -> Any:
        with self.projector.forgetting_on_failure(), self.recorder.transaction(commit=True) as session:
            recordings = super()._record(processing_event)
            # The command's own episode is already folded: the projector need not replay it.
            self.projector.remember(processing_event.aggregates.values())
            # Everything after the position, ours included: events written by a writer that
            # does not project inline are caught up here too, never skipped.
            self.projector.apply_pending(session.connection())
        return recordings

    def _queue_inline(self, connection: Any, events: list[Any]) -> Any:
        return self.projector.queue_inline(connection, events)

    def _project_inline(self, connection: Any, appended: list[Appended], aggregate: Any, queued: Any) -> None:
        self.projector.project_own(connection, appended, aggregate, queued)

    def _discard(self, episode_id: UUID) -> None:
        super()._discard(episode_id)
        self.projector.forget()  # it may hold episodes folded in the rolled-back transaction
