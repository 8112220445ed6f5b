"""The programs' streams, found by an index that holds their first events only.

A program's stream id is a hash of its code (:func:`episodes.program.program_id`), so the
programs cannot be listed from the ids: they are the streams whose first event is a
``Program.Defined``.  Found by the events' topic, that was a read of the whole event log:
0.8–1.9 s at 100,000 episodes (4.8 million events) on SQLite, 0.5–2.1 s on PostgreSQL, for
every ``Episodes.programs()`` and every ``import_episodes`` call (docs/performance.md).

A **partial index** of the events table holds the rows of that one topic, and nothing else:
SQLite and PostgreSQL test its condition on each event inserted and write nothing for any
other topic, so a command's append costs no page more (``benchmarks.statement_floor`` counts
the pages a command writes, by index).  The programs are then read from the index, a few
rows.  The topic is written into the index's condition and into the query as the same
literal: a planner uses a partial index only where the query's condition is the index's own.

The index is created when an application opens a database without it, a database of an
earlier version included: once, a read of the whole log (PostgreSQL holds off writers of the
events table meanwhile, as any ``CREATE INDEX`` does).
"""

from __future__ import annotations

import re
from uuid import UUID

from eventsourcing.utils import get_topic
from sqlalchemy import Select, Table, inspect, literal_column, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from episodes.program import Program
from episodes.storage import EVENTS_TABLE

INDEX_NAME = f"{EVENTS_TABLE}_programs"
DEFINED_TOPIC = get_topic(Program.Defined)
if not re.fullmatch(r"[\w.:]+", DEFINED_TOPIC):  # written into SQL as a literal, below
    raise RuntimeError(f"unexpected topic {DEFINED_TOPIC!r}")
_DEFINED = f"'{DEFINED_TOPIC}'"
# The driver's own SQL: no parameters to find in it (the topic holds a colon).
_CREATE = (f"CREATE INDEX IF NOT EXISTS {INDEX_NAME} ON {EVENTS_TABLE} (originator_id) "
           f"WHERE topic = {_DEFINED}")


def exists(connection: Connection) -> bool:
    """Does the database hold the index?"""
    return inspect(connection).has_index(EVENTS_TABLE, INDEX_NAME)


def create_program_index(engine: Engine) -> None:
    """Create the index where it is missing.  Looked up first: on PostgreSQL even ``CREATE
    INDEX IF NOT EXISTS`` would wait for the events table's writers.  Two processes creating
    it at once: the loser's error is dropped once the index is there."""
    with engine.connect() as connection:
        if exists(connection):
            return
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(_CREATE)
    except DBAPIError:
        with engine.connect() as connection:
            if not exists(connection):
                raise


def program_stream_ids(connection: Connection, events: Table) -> list[UUID]:
    """The stream id of every program defined, read from the index (``events``: the event
    store's table)."""
    return list(connection.execute(programs_query(events)).scalars())


def programs_query(events: Table) -> Select:
    """The programs' stream ids, on the index's own condition (the topic as a literal)."""
    return select(events.c.originator_id).where(events.c.topic == literal_column(_DEFINED))
