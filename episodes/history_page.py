"""One page of an episode's history, read and decoded without the rest of the stream.

A long episode's page shows its latest entries (or those before a version), so decoding its
whole stream (most of a 500-event page's time) only to show a hundred of them is waste.  Here
one ``SELECT`` reads the page's events, and with them every correction of the stream and the
first and last versions; only the page's events and the corrections (and, if one points outside
what was read, its target, in a second ``SELECT``) are decoded.  The corrections are what the
timeline needs to say, of an event on the page, which later version voided or amended it, and
of an amendment, what it changed from the value before it.

Versions in a stream run 1, 2, 3 ... without gaps, so a page is a range of versions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields, is_dataclass
from functools import lru_cache
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic
from sqlalchemy import case, func, or_, select

from episodes.errors import EpisodeNotFound
from episodes.events import EpisodeEvent, ReferralReceived


@dataclass(frozen=True)
class HistoryPage:
    """Versions ``first``..``first + len(events) - 1`` of a stream whose last version is ``head``."""

    events: list[EpisodeEvent]  # the page, in recorded order
    related: list[EpisodeEvent]  # the page, every correction and every event one targets (recorded order)
    head: int  # the stream's last version: its number of events


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


@lru_cache(maxsize=1)
def correction_topics() -> frozenset[str]:
    """The topics of the events that point at an earlier one (``target_version``)."""
    return frozenset(get_topic(cls) for cls in _subclasses(EpisodeEvent) if is_dataclass(cls)
                     and "target_version" in {f.name for f in fields(cls)})


def read_page(
    app: Any, episode_id: UUID, connection: Any, mapper: Mapper[UUID] | None = None, *,
    size: int, before: int | None = None,
) -> HistoryPage:
    """The ``size`` latest events of the episode recorded before version ``before`` (the latest
    ``size`` when ``before`` is None or past the last version), decoded by ``mapper`` (the
    application's own by default), as :func:`episodes.history.read_history` would give them.
    :class:`EpisodeNotFound` when the stream is not an episode's."""
    table = app.recorder.events_record_cls.__table__
    version, topic = table.c.originator_version, table.c.topic
    of_episode = table.c.originator_id == episode_id
    head = select(func.max(version)).where(of_episode).scalar_subquery()
    # The page ends before ``before``, or after the last version when ``before`` is past it.
    upper = head + 1 if before is None else case((before <= head, before), else_=head + 1)
    statement = (
        select(version, topic, table.c.state)
        .where(of_episode, or_(
            (version >= upper - size) & (version < upper),
            topic.in_(sorted(correction_topics())),
            version == 1, version == head,  # is it an episode's stream; its last version
        ))
        .order_by(version)
    )
    rows = connection.execute(statement).all()
    if not rows or rows[0][0] != 1 or rows[0][1] != get_topic(ReferralReceived):
        raise EpisodeNotFound(episode_id)
    last = rows[-1][0]
    end = last + 1 if before is None or before > last else before
    start = max(1, end - size)
    to_event = (mapper or app.mapper).to_domain_event

    def decoded(found: Any) -> dict[int, EpisodeEvent]:
        return {v: to_event(StoredEvent(episode_id, v, t, bytes(state))) for v, t, state in found}

    corrections = correction_topics()
    events = decoded(row for row in rows if start <= row[0] < end or row[1] in corrections)
    targets = {getattr(e, "target_version", None) for e in events.values()} - {None} - events.keys()
    if targets:  # an event corrected outside the page: read it too
        events.update(decoded(connection.execute(
            select(version, topic, table.c.state)
            .where(of_episode, version.in_(sorted(targets))).order_by(version)).all()))
    return HistoryPage(events=[events[v] for v in range(start, end)],
                       related=[events[v] for v in sorted(events)], head=last)
