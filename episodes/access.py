"""The access log: who read or exported which patient's record, and who tried to log in.

Reads are part of the audit trail (HIPAA 164.312(b); ONC 170.315(d)(2): "the action(s) ...
including view, print, export").  They are not events of an episode, so they live in their own
append-only table beside the event store.  The library offers no way to change or delete an
entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    insert,
    select,
    text,
)

from episodes import driver
from episodes.clock import Clock, SystemClock
from episodes.integrity import GENESIS

metadata = MetaData()

ACCESS_TABLE = "care_episodes_access"
access = Table(
    ACCESS_TABLE,
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("actor_id", String(64), nullable=False),
    Column("actor_role", String(16), nullable=False),
    Column("action", String(24), nullable=False),  # read | export | login | logout | ...
    Column("outcome", String(16), nullable=False),  # success | failure | denied
    Column("episode_id", Uuid),
    Column("patient_ref", String(64)),
    Column("detail", Text),  # which page, which export and filters
    Column("client_address", String(64)),
    Column("correlation_id", String(100)),
    # The access log is hash-chained like the events: each entry's digest covers its fields and
    # the digest of the entry before it (episodes.integrity), so a removed entry is noticed.
    Column("previous_hash", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Index("care_episodes_access_episode", "episode_id", "id"),
    Index("care_episodes_access_actor", "actor_id", "id"),
)

ACTIONS = ("read", "export", "login", "logout", "user-admin")
OUTCOMES = ("success", "failure", "denied")


@dataclass(frozen=True)
class AccessEntry:
    id: int
    recorded_at: datetime
    actor_id: str
    actor_role: str
    action: str
    outcome: str
    episode_id: UUID | None
    patient_ref: str | None
    detail: str | None
    client_address: str | None
    correlation_id: str | None
    previous_hash: str
    digest: str


def entry_digest(fields: Mapping[str, Any], previous_hash: str) -> str:
    """SHA-256 over an entry's fields in a fixed order, and the previous entry's digest."""
    canonical = {name: _canonical(fields[name]) for name in CHAINED_FIELDS}
    canonical["previous_hash"] = previous_hash
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


CHAINED_FIELDS = ("recorded_at", "actor_id", "actor_role", "action", "outcome", "episode_id",
                  "patient_ref", "detail", "client_address", "correlation_id")


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        # SQLite gives stored times back without a zone; they were written in UTC.
        aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return aware.astimezone(timezone.utc).isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


class AccessLog:
    def __init__(self, engine: Engine, clock: Clock | None = None):
        self.engine = engine
        self.clock = clock or SystemClock()
        metadata.create_all(engine)
        # Every page view appends an entry: its statements go through the driver
        # (episodes/driver.py), on PostgreSQL in two round trips instead of five.
        dialect = engine.dialect
        # One writer at a time, as each entry chains to the one before.  (SQLite: the
        # transaction holds the database's write lock from its start.)
        self._lock = driver.Prepared(
            text(f"LOCK TABLE {ACCESS_TABLE} IN SHARE ROW EXCLUSIVE MODE"), dialect
        ) if dialect.name == "postgresql" else None
        self._last_digest = driver.Prepared(select(access.c.digest).order_by(access.c.id.desc()).limit(1), dialect)
        self._insert = driver.Prepared(insert(access), dialect, [*CHAINED_FIELDS, "previous_hash", "digest"])
        driver.enable(engine)

    def record(
        self,
        *,
        actor_id: str,
        actor_role: str,
        action: str,
        outcome: str = "success",
        episode_id: UUID | None = None,
        patient_ref: str | None = None,
        detail: str | None = None,
        client_address: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown access action {action!r}; one of {', '.join(ACTIONS)}")
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown access outcome {outcome!r}; one of {', '.join(OUTCOMES)}")
        fields = {
            "recorded_at": self.clock.now(), "actor_id": actor_id, "actor_role": actor_role,
            "action": action, "outcome": outcome, "episode_id": episode_id,
            "patient_ref": patient_ref, "detail": detail, "client_address": client_address,
            "correlation_id": correlation_id,
        }
        with driver.transaction(self.engine) as connection:
            if self._lock is not None:
                driver.execute(connection, self._lock)
            last = driver.fetch_one(connection, driver.execute(connection, self._last_digest))
            previous = last[0] if last else GENESIS
            driver.execute(connection, self._insert, {
                **fields, "previous_hash": previous, "digest": entry_digest(fields, previous),
            })

    def entries(
        self,
        *,
        episode_id: UUID | None = None,
        actor_id: str | None = None,
        action: str | None = None,
        after_id: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[AccessEntry]:
        statement = select(access)
        for column, value in ((access.c.episode_id, episode_id), (access.c.actor_id, actor_id),
                              (access.c.action, action)):
            if value is not None:
                statement = statement.where(column == value)
        if after_id is not None:
            statement = statement.where(access.c.id < after_id if newest_first else access.c.id > after_id)
        statement = statement.order_by(access.c.id.desc() if newest_first else access.c.id)
        if limit is not None:
            statement = statement.limit(limit)
        with self.engine.connect() as connection:
            for row in connection.execute(statement):
                yield AccessEntry(**row._mapping)
