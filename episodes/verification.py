"""Checking the record: ``verify`` walks every stream, the heads, the checkpoints and the access log.

It names the first thing wrong, in words a reviewer can act on:

* modified  - an event's content no longer matches the hash the next event recorded for it
              (or, for the newest event, the hash in the stream's head or a checkpoint);
* inserted  - an event or a stream the software did not write (no head covers it);
* deleted   - a version missing inside a stream;
* reordered - events that do not chain in version order;
* truncated - the newest events gone: the head or a checkpoint names a later version;
* removed   - a whole stream gone while its head or a checkpoint still names it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from sqlalchemy import func, insert, select

from episodes import integrity
from episodes.access import CHAINED_FIELDS, access, entry_digest
from episodes.integrity import GENESIS, Checkpoint, checkpoint_heads, checkpoints, heads

SCAN_BATCH = 1000


@dataclass(frozen=True)
class Problem:
    what: str
    stream_id: UUID | None = None
    version: int | None = None

    def __str__(self) -> str:
        where = f"stream {self.stream_id}" if self.stream_id else "access log"
        at = f" version {self.version}" if self.version is not None else ""
        return f"{where}{at}: {self.what}"


@dataclass
class Report:
    streams: int = 0
    events: int = 0
    checkpoints: int = 0
    access_entries: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.intact:
            return (f"intact: {self.streams} streams, {self.events} events, "
                    f"{self.access_entries} access entries and {self.checkpoints} checkpoints verified")
        return f"BROKEN: {self.problems[0]}" + (
            f" (and {len(self.problems) - 1} more problems)" if len(self.problems) > 1 else "")


def verify(app: Any, exported_checkpoint: dict[str, Any] | None = None) -> Report:
    """Verify everything; ``exported_checkpoint`` is a checkpoint kept outside the database."""
    report = Report()
    engine = app.recorder.datastore.engine
    with engine.connect() as connection:
        recorded_heads = {r.stream_id: (r.version, r.digest) for r in connection.execute(select(heads))}
        latest = connection.execute(select(checkpoints).order_by(checkpoints.c.id.desc()).limit(1)).first()
        report.checkpoints = connection.execute(select(func.count()).select_from(checkpoints)).scalar_one()
        pinned: dict[UUID, tuple[int, str]] = {}
        if latest is not None:
            pinned = {r.stream_id: (r.version, r.digest) for r in connection.execute(
                select(checkpoint_heads).where(checkpoint_heads.c.checkpoint_id == latest.id))}
            _check_checkpoint_digest(report, latest, pinned)
    outside = _exported(exported_checkpoint) if exported_checkpoint else {}
    seen: set[UUID] = set()
    for stream_id, stored in _streams(app):
        seen.add(stream_id)
        report.streams += 1
        report.events += len(stored)
        digests = _walk_stream(app, report, stream_id, stored)
        if digests is None:
            continue
        _check_head(report, stream_id, digests, recorded_heads.get(stream_id), "head")
        for name, pins in (("latest checkpoint", pinned), ("exported checkpoint", outside)):
            if stream_id in pins:
                _check_pin(report, stream_id, digests, pins[stream_id], name)
    for name, known in (("head", recorded_heads), ("latest checkpoint", pinned),
                        ("exported checkpoint", outside)):
        for stream_id in sorted(set(known) - seen, key=str):
            report.problems.append(Problem(
                f"removed: the stream is gone, but its {name} names version {known[stream_id][0]}",
                stream_id))
    _verify_access_log(app, report, latest, exported_checkpoint)
    return report


def _streams(app: Any) -> Iterator[tuple[UUID, list[StoredEvent]]]:
    """Every stream's events in version order, one stream at a time (bounded memory)."""
    table = app.recorder.events_record_cls.__table__
    statement = select(table.c.originator_id, table.c.originator_version, table.c.topic, table.c.state) \
        .order_by(table.c.originator_id, table.c.originator_version)
    with app.recorder.datastore.engine.connect() as connection:
        rows = connection.execution_options(yield_per=SCAN_BATCH).execute(statement)
        current: UUID | None = None
        batch: list[StoredEvent] = []
        for originator_id, version, topic, state in rows:
            stream_id = UUID(str(originator_id))
            if stream_id != current and batch:
                yield current, batch  # type: ignore[misc]
                batch = []
            current = stream_id
            # A tampered row may hold text where the store wrote bytes: read it as it is.
            raw = state.encode() if isinstance(state, str) else bytes(state)
            batch.append(StoredEvent(stream_id, version, topic, raw))
        if batch:
            yield current, batch  # type: ignore[misc]


def _walk_stream(app: Any, report: Report, stream_id: UUID, stored: list[StoredEvent]) -> dict[int, str] | None:
    """Check versions and the chain; the digests by version, or None if the stream is broken."""
    previous = GENESIS
    digests: dict[int, str] = {}
    for expected, event in enumerate(stored, start=1):
        if event.originator_version != expected:
            report.problems.append(Problem(
                f"deleted: versions {expected} to {event.originator_version - 1} are missing",
                stream_id, expected))
            return None
        try:
            clear = integrity.plaintext(app.mapper, event)
            recorded_previous = app.mapper.transcoder.decode(clear)["envelope"].previous_hash
        except Exception as unreadable:  # noqa: BLE001 - any decoding failure is the finding
            report.problems.append(Problem(
                f"modified: the event cannot be read ({type(unreadable).__name__}); its stored "
                "bytes were changed, or the cipher key is wrong", stream_id, expected))
            return None
        if recorded_previous != previous:
            what = ("modified: the first event does not start a chain" if expected == 1 else
                    f"modified, inserted or reordered: it does not chain to version {expected - 1} "
                    f"(version {expected - 1} was changed, or these events were not written in this order)")
            report.problems.append(Problem(what, stream_id, expected))
            return None
        previous = integrity.digest(event.topic, stream_id, expected, clear)
        digests[expected] = previous
    return digests


def _check_head(report: Report, stream_id: UUID, digests: dict[int, str],
                head: tuple[int, str] | None, name: str) -> None:
    newest = max(digests)
    if head is None:
        report.problems.append(Problem(
            "inserted: the software never recorded a head for this stream", stream_id, 1))
    elif head[0] > newest:
        report.problems.append(Problem(
            f"truncated: the {name} names version {head[0]}, the stream ends at {newest}",
            stream_id, newest + 1))
    elif head[0] < newest:
        report.problems.append(Problem(
            f"inserted: versions {head[0] + 1} to {newest} were not recorded by the software",
            stream_id, head[0] + 1))
    elif head[1] != digests[newest]:
        report.problems.append(Problem(
            f"modified: the newest event does not match its {name}", stream_id, newest))


def _check_pin(report: Report, stream_id: UUID, digests: dict[int, str], pin: tuple[int, str],
               name: str) -> None:
    version, expected = pin
    if version not in digests:
        report.problems.append(Problem(
            f"truncated: the {name} names version {version}, the stream ends at {max(digests)}",
            stream_id, max(digests) + 1))
    elif digests[version] != expected:
        report.problems.append(Problem(
            f"modified: the event does not match the {name}", stream_id, version))


def _check_checkpoint_digest(report: Report, latest: Any, pinned: dict[UUID, tuple[int, str]]) -> None:
    rows = [(stream_id, version, head) for stream_id, (version, head) in pinned.items()]
    if integrity.heads_digest(rows, latest.access_head) != latest.digest:
        report.problems.append(Problem(
            f"modified: checkpoint {latest.id}'s stream heads no longer match its digest"))


def _exported(document: dict[str, Any]) -> dict[UUID, tuple[int, str]]:
    pins = {UUID(h["stream_id"]): (int(h["version"]), h["digest"]) for h in document["heads"]}
    rows = [(stream_id, version, head) for stream_id, (version, head) in pins.items()]
    if integrity.heads_digest(rows, document["access_head"]) != document["digest"]:
        raise ValueError("the exported checkpoint does not match its own digest: it was altered")
    return pins


def _verify_access_log(app: Any, report: Report, latest: Any, exported: dict[str, Any] | None) -> None:
    previous, position = GENESIS, 0
    engine = app.recorder.datastore.engine
    with engine.connect() as connection:
        rows = connection.execution_options(yield_per=SCAN_BATCH).execute(select(access).order_by(access.c.id))
        for row in rows:
            position += 1
            fields = {name: getattr(row, name) for name in CHAINED_FIELDS}
            if row.previous_hash != previous or entry_digest(fields, row.previous_hash) != row.digest:
                report.problems.append(Problem(
                    f"access entry {row.id} (number {position}) was modified, inserted or follows a "
                    "deleted entry: it does not chain to the one before"))
                rows.close()  # a server-side cursor on PostgreSQL: close it, do not leak it
                return
            previous = row.digest
    report.access_entries = position
    for name, count, head in (
        ("latest checkpoint", getattr(latest, "access_entries", None), getattr(latest, "access_head", None)),
        ("exported checkpoint", exported and exported["access_entries"], exported and exported["access_head"]),
    ):
        if count is not None and count > position:
            report.problems.append(Problem(
                f"truncated: the {name} counted {count} access entries, the log has {position}"))


def take_checkpoint(app: Any) -> Checkpoint:
    """Copy every stream head and the access log's head into a new checkpoint."""
    engine = app.recorder.datastore.engine
    with engine.begin() as connection:
        rows = [(r.stream_id, r.version, r.digest) for r in connection.execute(select(heads))]
        access_entries = connection.execute(select(func.count()).select_from(access)).scalar_one()
        access_head = connection.execute(
            select(access.c.digest).order_by(access.c.id.desc()).limit(1)).scalar_one_or_none() or GENESIS
        values = {
            "created_at": app.clock.now(), "streams": len(rows), "events": sum(v for _, v, _ in rows),
            "access_entries": access_entries, "access_head": access_head,
            "digest": integrity.heads_digest(rows, access_head),
        }
        checkpoint_id = connection.execute(insert(checkpoints).values(**values)).inserted_primary_key[0]
        if rows:
            connection.execute(insert(checkpoint_heads), [
                {"checkpoint_id": checkpoint_id, "stream_id": s, "version": v, "digest": d}
                for s, v, d in rows])
    return Checkpoint(id=checkpoint_id, **values)


def export_checkpoint(app: Any, checkpoint_id: int | None = None) -> dict[str, Any]:
    """A checkpoint as a JSON-able document, for a reviewer to keep outside the database."""
    with app.recorder.datastore.engine.connect() as connection:
        statement = select(checkpoints).order_by(checkpoints.c.id.desc()).limit(1)
        if checkpoint_id is not None:
            statement = select(checkpoints).where(checkpoints.c.id == checkpoint_id)
        row = connection.execute(statement).first()
        if row is None:
            raise LookupError("no checkpoint yet: take one with care-episodes checkpoint")
        pins = connection.execute(select(checkpoint_heads).where(
            checkpoint_heads.c.checkpoint_id == row.id).order_by(checkpoint_heads.c.stream_id)).all()
    return {
        "format": "care-episodes checkpoint 1",
        "id": row.id, "created_at": row.created_at.isoformat(), "streams": row.streams,
        "events": row.events, "access_entries": row.access_entries, "access_head": row.access_head,
        "digest": row.digest,
        "heads": [{"stream_id": str(p.stream_id), "version": p.version, "digest": p.digest} for p in pins],
    }


def load_exported(text: str) -> dict[str, Any]:
    document = json.loads(text)
    if document.get("format") != "care-episodes checkpoint 1":
        raise ValueError("not a care-episodes checkpoint file")
    return document
