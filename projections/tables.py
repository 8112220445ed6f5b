"""Read-model tables, in the same database as the events.

Every table name is fixed here (prefix ``rm_``) so a class rename never orphans data.
All of them can be dropped and rebuilt from the events (``care-episodes rebuild``).

Columns that carry personal data are marked ``info={"personal": True}``; ``docs/projections.md``
lists them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    Uuid,
)

metadata = MetaData()
PERSONAL = {"personal": True}

# On SQLite, a table keyed by anything but one INTEGER column is two b-trees: the rows by a
# hidden rowid, and the key in an index of its own.  ``sqlite_with_rowid=False`` keeps the rows
# in the key's b-tree (one b-tree to look up and to write: a page less in the WAL for every
# row an inline command inserts).  Other databases ignore it.
KEYED = {"sqlite_with_rowid": False}

# Where the projection stands in the event log: one row per projection name.
tracking = Table(
    "rm_tracking",
    metadata,
    Column("projection", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),  # last notification id applied
    **KEYED,
)

programs = Table(
    "rm_programs",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("target_weeks", Integer, nullable=False),
    Column("days_per_week", Integer, nullable=False),
    Column("minimum_weekly_hours", Numeric(4, 1), nullable=False),
    Column("age_band", String(16), nullable=False),
    Column("level_code", String(8), nullable=False),
    Column("level_edition", String(8), nullable=False),
    Column("format", String(16), nullable=False),
    Column("clinics", Text, nullable=False),  # comma-separated
)

# One row per episode: what the status page and the episode list read.
episodes = Table(
    "rm_episodes",
    metadata,
    Column("episode_id", Uuid, primary_key=True),
    Column("patient_ref", String(64), nullable=False, info=PERSONAL),
    Column("status", String(20), nullable=False),
    Column("status_since", Date, nullable=False),
    Column("referred_on", Date, nullable=False),
    Column("referral_direction", String(16), nullable=False),
    Column("program_code", String(64)),
    Column("clinic", String(100)),
    Column("level_code", String(8)),
    Column("level_edition", String(8)),
    Column("tapering", Boolean, nullable=False, default=False),
    Column("admitted_on", Date),
    Column("discharged_on", Date),
    Column("discharge_type", String(24)),
    Column("last_attended_on", Date),
    Column("attended", Integer, nullable=False, default=0),
    Column("missed", Integer, nullable=False, default=0),  # unexcused and excused together
    Column("excused", Integer, nullable=False, default=0),
    Column("cancelled_by_program", Integer, nullable=False, default=0),
    Column("consecutive_misses", Integer, nullable=False, default=0),
    Column("attended_minutes", Integer, nullable=False, default=0),
    Column("next_review_on", Date),
    Column("authorized_until", Date),
    Column("version", Integer, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Index("rm_episodes_status_program", "status", "program_code", "clinic"),
    # The list's order: (sort column, episode id) for the columns the panel sorts by, so a
    # page is read from its boundary by index, in either direction (projections.queries.listing),
    # and the default order within one status.  ``recorded_at`` (which every command changes)
    # has none: indexing it would cost every command an index update (and, on PostgreSQL, the
    # HOT update of the row).  ``clinic`` has none either: SQLite then chose it for a clinic
    # filter and sorted every match (86 ms at 100,000 episodes, 24 ms without it); a clinic
    # filter is more common than a sort by clinic, which sorts the matching rows instead.
    Index("rm_episodes_by_referred", "referred_on", "episode_id"),
    Index("rm_episodes_by_status_referred", "status", "referred_on", "episode_id"),
    Index("rm_episodes_by_admitted", "admitted_on", "episode_id"),
    Index("rm_episodes_by_discharged", "discharged_on", "episode_id"),
    Index("rm_episodes_by_status", "status", "episode_id"),
    Index("rm_episodes_by_program", "program_code", "episode_id"),
    Index("rm_episodes_by_patient", "patient_ref", "episode_id"),  # also the search by patient
    **KEYED,
)

# Status and level of care over clinical time, versioned over recorded time (bitemporal):
# a correction closes the rows it changes (recorded_to) and adds new ones, so a question
# "as of" a past date gets the answer the record held then.
periods = Table(
    "rm_periods",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("episode_id", Uuid, nullable=False),
    Column("status", String(20), nullable=False),
    Column("level_code", String(8)),
    Column("tapering", Boolean, nullable=False),
    Column("program_code", String(64)),
    Column("clinic", String(100)),
    Column("valid_from", Date, nullable=False),  # clinical date the period began
    Column("valid_to", Date),  # exclusive; NULL while it lasts
    Column("recorded_from", DateTime(timezone=True), nullable=False),
    Column("recorded_to", DateTime(timezone=True)),  # NULL while the record holds it
    Index("rm_periods_episode", "episode_id", "recorded_to"),
    Index("rm_periods_valid", "valid_from", "valid_to"),
)

sessions = Table(
    "rm_sessions",
    metadata,
    Column("episode_id", Uuid, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("session_date", Date, nullable=False),
    Column("iso_year", Integer, nullable=False),
    Column("iso_week", Integer, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),  # attended | missed | excused | cancelled
    Column("minutes", Integer, nullable=False),
    Column("format", String(16)),
    Column("topic", String(200)),
    Column("facilitator", String(64)),
    # No index by (episode, date): an episode's sessions are found by the key's first column,
    # and a date range over every episode could not use it anyway.
    **KEYED,
)

outcomes = Table(
    "rm_outcomes",
    metadata,
    Column("episode_id", Uuid, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("instrument", String(16), primary_key=True),
    Column("measured_on", Date, nullable=False),
    Column("score", Integer, nullable=False, info=PERSONAL),
    **KEYED,
)

authorizations = Table(
    "rm_authorizations",
    metadata,
    Column("episode_id", Uuid, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("payer", String(100), nullable=False),
    Column("unit", String(16), nullable=False),
    Column("authorized", Integer, nullable=False),
    Column("start_on", Date, nullable=False),
    Column("end_on", Date, nullable=False),
    Column("next_review_on", Date),
    Column("reference", String(64)),
    **KEYED,
)

# One row per event, never changed: the audit history.
audit = Table(
    "rm_audit",
    metadata,
    # notification id: the log's order; on SQLite the rowid itself (a BIGINT key would be a
    # second b-tree to write on every event)
    Column("position", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("effective_date", Date),
    Column("actor_id", String(64), nullable=False),
    Column("actor_role", String(16), nullable=False),
    Column("action", String(16), nullable=False),  # create | update | correct | void | ...
    Column("event_type", String(64), nullable=False),
    Column("aggregate", String(16), nullable=False),  # episode | program
    Column("aggregate_id", Uuid, nullable=False),
    Column("version", Integer, nullable=False),
    Column("patient_ref", String(64), info=PERSONAL),
    Column("data_category", String(32), nullable=False),
    Column("reason", Text, info=PERSONAL),
    Column("correlation_id", String(100), nullable=False),
    Column("command_id", String(100), nullable=False),
    Column("prior_version", Integer),  # the version this one follows or corrects
    # (filter, position): a filtered audit read is in log order straight from the index.  With
    # (aggregate_id, version) PostgreSQL streamed an episode's export by walking the whole log
    # in position order, filtering as it went (0.76 s at 100,000 episodes).
    Index("rm_audit_aggregate", "aggregate_id", "position"),
    Index("rm_audit_actor", "actor_id", "position"),
    Index("rm_audit_recorded", "recorded_at"),
    # No index by patient: a patient's rows are their episodes' rows (an episode's patient is
    # set by its referral and can never be corrected), found through rm_episodes_by_patient and
    # rm_audit_aggregate (0.16 ms a report at 100,000 episodes, SQLite).  A fourth index here
    # cost every command 1.3 of its 16.4 pages written (benchmarks.statement_floor).
)

READ_MODELS = (programs, episodes, periods, sessions, outcomes, authorizations, audit)

# A SQLite rebuild's audit rows as its passes write them, stream by stream (projections.rebuild).
# rm_audit's rows are stored in position order (the position is the rowid), and the events of
# one stream lie all over the log wherever a clinic records day by day, so rows written stream
# by stream would land on every page of the table, over and over: a 10,000-episode log whose
# episodes were recorded side by side wrote 284,000 pages to the write-ahead log in its rebuild
# against 61,000 for the same events imported episode by episode (docs/performance.md).
# Appended here instead (no key: the rowid follows the writes), then moved into rm_audit in
# position order once every pass is done, and dropped.  Only a rebuild creates it.  (Where a
# page's rows lie together in the log, as an imported episode's do, the pass writes them
# straight into rm_audit: projections.stream_pass.audit_in_place.)
rebuild_metadata = MetaData()
audit_staging = Table(
    "rm_audit_staging",
    rebuild_metadata,
    *(Column(column.name, column.type, nullable=column.nullable, info=column.info)
      for column in audit.columns),
)

# The columns a query filters, joins, orders or groups a table by (projections/queries): the
# ones whose values' statistics a plan uses (of the others, the planner takes a default width
# where it sizes a sort).  Where a table is listed, the PostgreSQL rebuild's closing ANALYZE
# gathers these alone (autovacuum, where it runs, analyses every column some time later).  The
# audit log's nine others (its reasons, command and correlation ids, ...) cost 55 of the
# 90 ms its ANALYZE took at 1,000 episodes, the longest step after the pass; the episodes
# and the sessions are grouped and counted by most of their columns, so they are not listed.
# tests/test_rebuild_tables.py checks the audit queries, and the length-of-stay queries that join the
# audit log (the only other module that reads it), against this list.
PLANNED_COLUMNS: dict[str, tuple[str, ...]] = {
    audit.name: ("position", "recorded_at", "aggregate_id", "version", "actor_id", "action",
                 "event_type"),
}
