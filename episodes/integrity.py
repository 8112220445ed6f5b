"""Tamper evidence: a hash chain per stream, stream heads, and checkpoints.

* Every event's envelope holds ``previous_hash``: the SHA-256 of the event before it in its
  stream (``GENESIS`` for the first).  The digest covers the event's topic, stream id, version
  and its canonical stored form *before* encryption (the exact JSON the store was given), so it
  is the same with or without a cipher key; a modified ciphertext fails AES-GCM's own check.
* ``care_episodes_heads`` holds each stream's head (version and digest), written in the same
  transaction as the events, so removing the newest events or a whole stream is noticed.
* A checkpoint copies every head with one digest over all of them, and can be exported, so a
  reviewer keeps a copy outside the database: even someone who rewrites the heads table
  cannot rewrite history before the checkpoint unseen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

GENESIS = "0" * 64

metadata = MetaData()
heads = Table(
    "care_episodes_heads",
    metadata,
    Column("stream_id", Uuid, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    sqlite_with_rowid=False,  # read and written by key on every command: one b-tree, not two
)
checkpoints = Table(
    "care_episodes_checkpoints",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("streams", Integer, nullable=False),
    Column("events", BigInteger, nullable=False),
    Column("access_entries", BigInteger, nullable=False),
    Column("access_head", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
)
checkpoint_heads = Table(
    "care_episodes_checkpoint_heads",
    metadata,
    Column("checkpoint_id", BigInteger().with_variant(Integer, "sqlite"),
           ForeignKey("care_episodes_checkpoints.id"), primary_key=True),
    Column("stream_id", Uuid, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
)


def digest(topic: str, stream_id: UUID, version: int, plaintext: bytes) -> str:
    # The topic, the stream id and the version, each followed by a separator no part contains,
    # then the payload: hashed as one string and the payload (the same bytes as part by part).
    h = hashlib.sha256(f"{topic}\x1f{stream_id}\x1f{version}\x1f".encode())
    h.update(plaintext)
    return h.hexdigest()


def plaintext(mapper: Mapper[Any], stored: StoredEvent) -> bytes:
    """The exact bytes the transcoder produced: decrypted and decompressed if need be."""
    from episodes import encryption  # a wrong key is named as such, not taken for tampering

    return encryption.plaintext(mapper, stored)


def stored_digest(mapper: Mapper[Any], stored: StoredEvent) -> str:
    return digest(stored.topic, UUID(str(stored.originator_id)), stored.originator_version,
                  plaintext(mapper, stored))


def encode(mapper: Mapper[Any], event: Any) -> tuple[StoredEvent, str]:
    """The stored form of a domain event (as ``mapper.to_stored_event`` gives it) and its
    digest, transcoding the event once: the plaintext feeds the digest and, compressed and
    encrypted when configured, becomes the stored state."""
    state = dict(vars(event))
    originator_id = state.pop("originator_id")
    originator_version = state.pop("originator_version")
    class_version = getattr(type(event), "class_version", 1)
    if class_version > 1:
        state["class_version"] = class_version
    topic = get_topic(type(event))
    plaintext = mapper.transcoder.encode(state)
    stored_state = plaintext
    if mapper.compressor:
        stored_state = mapper.compressor.compress(stored_state)
    if mapper.cipher:
        stored_state = mapper.cipher.encrypt(stored_state)
    stored = StoredEvent(originator_id, originator_version, topic, stored_state)
    return stored, digest(topic, originator_id, originator_version, plaintext)


def event_digest(mapper: Mapper[Any], event: Any) -> str:
    """The digest of a domain event as it is (or will be) stored, without touching the store."""
    return encode(mapper, event)[1]


def heads_digest(rows: Iterable[tuple[UUID, int, str]], access_head: str) -> str:
    """One digest over every stream head (sorted by stream id) and the access log's head."""
    h = hashlib.sha256()
    for stream_id, version, head in sorted(rows, key=lambda r: str(r[0])):
        h.update(f"{stream_id}:{version}:{head}\n".encode())
    h.update(f"access:{access_head}\n".encode())
    return h.hexdigest()


def move_head(dialect: str) -> Insert:
    """The statement that sets a stream's head (``stream_id``, ``version``, ``digest``): an
    upsert, so a stream recorded before the heads table existed gets its row on its next event."""
    upsert = (sqlite_insert if dialect == "sqlite" else postgresql_insert)(heads)
    return upsert.on_conflict_do_update(
        index_elements=[heads.c.stream_id],
        set_={"version": upsert.excluded.version, "digest": upsert.excluded.digest},
    )


def advance_heads(session: Session, mapper: Mapper[Any], events: Iterable[Any]) -> None:
    """Move each stream's head to its newest saved event, in the saving transaction."""
    newest: dict[UUID, Any] = {}
    for event in events:
        newest[event.originator_id] = event
    statement = move_head(session.get_bind().dialect.name)
    for stream_id, event in newest.items():
        session.execute(statement, {"stream_id": stream_id, "version": event.originator_version,
                                    "digest": event_digest(mapper, event)})


@dataclass(frozen=True)
class Checkpoint:
    id: int
    created_at: datetime
    streams: int
    events: int
    access_entries: int
    access_head: str
    digest: str
