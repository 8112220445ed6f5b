"""Reading an episode as the record stood at a version, at a recorded time, or on a clinical date."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent
from sqlalchemy import select

from episodes.errors import EpisodeNotFound, NotFound
from episodes.events import EpisodeEvent
from episodes.rules import replay
from episodes.state import EpisodeState


@dataclass(frozen=True)
class EpisodeView:
    """An episode as of some point: its state and the facts that counted then."""

    id: UUID
    version: int  # the last event taken into account
    recorded_at: datetime  # when that event was recorded
    state: EpisodeState
    facts: tuple[EpisodeEvent, ...]  # after corrections, in version order

    @property
    def status(self):  # noqa: ANN201 - EpisodeStatus, re-exported for convenience
        return self.state.status


def view(
    events: Sequence[EpisodeEvent],
    *,
    version: int | None = None,
    recorded_at: datetime | None = None,
    effective_on: date | None = None,
) -> EpisodeView:
    """Fold the stream up to a version and/or recorded time, then (optionally) keep only the
    facts dated on or before ``effective_on``: what the record says about that clinical date."""
    known = [
        e for e in events
        if (version is None or e.originator_version <= version)
        and (recorded_at is None or e.timestamp <= recorded_at)
    ]
    if not known:
        raise NotFound("the episode had not been recorded yet at that point")
    episode = None
    for event in known:
        episode = event.mutate(episode)
    assert episode is not None
    facts = tuple(episode.facts[v] for v in sorted(episode.facts))
    state = episode.state
    if effective_on is not None:
        facts = tuple(f for f in facts if f.effective_date <= effective_on)
        if not facts or facts[0].originator_version != 1:
            raise NotFound(f"the episode had not begun on {effective_on}")
        state = replay(facts)
    return EpisodeView(
        id=episode.id, version=episode.version, recorded_at=known[-1].timestamp,
        state=state, facts=facts,
    )


def read_history(
    app: Any, episode_id: UUID, connection: Any = None, mapper: Mapper[UUID] | None = None,
) -> list[EpisodeEvent]:
    """Every event of the episode in recorded order, as ``Episodes.history`` gives them, read
    with one plain SELECT of the stream (no ORM object per row: at 500 events those were half
    the read) and decoded by the application's own mapper (so decryption and the hash-chain
    envelope are as the store wrote them), or by ``mapper``, one that decodes the same
    payloads to the same events (the panel's faster decoder, built once)."""
    recorder = app.recorder
    table = recorder.events_record_cls.__table__
    statement = (select(table.c.originator_version, table.c.topic, table.c.state)
                 .where(table.c.originator_id == episode_id)
                 .order_by(table.c.originator_version))
    if connection is not None:  # the caller's (a page reading everything on one connection)
        rows = connection.execute(statement).all()
    else:
        with recorder.datastore.engine.connect() as own:
            rows = own.execute(statement).all()
    to_event = (mapper or app.mapper).to_domain_event
    events = [to_event(StoredEvent(episode_id, version, topic, bytes(state)))
              for version, topic, state in rows]
    if not events or type(events[0]).__name__ != "ReferralReceived":
        raise EpisodeNotFound(episode_id)
    return events
