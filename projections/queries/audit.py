"""Audit history: who recorded what, when, to which record, and why (table ``rm_audit``).

One row per event, in the order the event log recorded them (``position``).  Reading is
streamed: :func:`audit_log` returns an iterator over a server-side cursor (``yield_per``),
so an export of millions of rows holds one batch in memory at a time.  The panel pages by
keyset (``after_position`` + ``limit``), never by offset.

Time filters are on the *recorded* time (when the row was written), half-open:
``recorded_from <= recorded_at < recorded_to``.  A ``date`` means midnight UTC at its start.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import date, datetime, time, timezone
from typing import Any, TextIO
from uuid import UUID

from sqlalchemy import Connection, Select, select

from projections import tables

DEFAULT_YIELD_PER = 1_000  # rows fetched from the cursor at a time while streaming
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1_000
EXPORT_FORMATS = ("csv", "jsonl")


@dataclass(frozen=True)
class AuditEntry:
    """One audit row.  Column meanings: docs/projections.md (Audit history)."""

    position: int  # the event's place in the log: the order of the audit history
    recorded_at: datetime  # when it was recorded (UTC, timezone-aware)
    effective_date: date | None  # the clinical date it is about (None for program events)
    actor_id: str
    actor_role: str  # admin | clinician | system
    action: str  # create | update | correct | void
    event_type: str  # the event class, e.g. SessionAttended, EventAmended
    aggregate: str  # episode | program
    aggregate_id: UUID
    version: int  # the event's version within its aggregate
    patient_ref: str | None  # None for program events
    data_category: str  # what kind of information; a correction takes its target's category
    reason: str | None
    correlation_id: str
    command_id: str
    prior_version: int | None  # the version a correction targets, else the previous version


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(AuditEntry))


@dataclass(frozen=True)
class AuditPage:
    """One page of the audit history for the panel."""

    rows: tuple[AuditEntry, ...]
    next_after: int | None  # pass as ``after_position`` for the next page; None: this was the last


# ---------------------------------------------------------------------------- queries


def audit_statement(
    *,
    episode_id: UUID | None = None,
    actor_id: str | None = None,
    action: str | Collection[str] | None = None,
    event_type: str | Collection[str] | None = None,
    patient_ref: str | None = None,
    recorded_from: datetime | date | None = None,
    recorded_to: datetime | date | None = None,
    after_position: int | None = None,
    limit: int | None = None,
) -> Select[Any]:
    """The SELECT behind :func:`audit_log`: every filter given, in log order."""
    a = tables.audit
    statement = select(*(a.c[name] for name in COLUMNS)).order_by(a.c.position)
    if episode_id is not None:
        statement = statement.where(a.c.aggregate_id == episode_id)
    if actor_id is not None:
        statement = statement.where(a.c.actor_id == actor_id)
    if action is not None:
        statement = statement.where(a.c.action.in_(_names("action", action)))
    if event_type is not None:
        statement = statement.where(a.c.event_type.in_(_names("event_type", event_type)))
    if patient_ref is not None:  # the patient's episodes' rows (see tables.audit)
        e = tables.episodes
        statement = statement.where(
            a.c.aggregate_id.in_(select(e.c.episode_id).where(e.c.patient_ref == patient_ref)))
    if recorded_from is not None:
        statement = statement.where(a.c.recorded_at >= _utc("recorded_from", recorded_from))
    if recorded_to is not None:
        statement = statement.where(a.c.recorded_at < _utc("recorded_to", recorded_to))
    if after_position is not None:
        statement = statement.where(a.c.position > after_position)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        statement = statement.limit(limit)
    return statement


def audit_log(
    connection: Connection,
    *,
    episode_id: UUID | None = None,
    actor_id: str | None = None,
    action: str | Collection[str] | None = None,
    event_type: str | Collection[str] | None = None,
    patient_ref: str | None = None,
    recorded_from: datetime | date | None = None,
    recorded_to: datetime | date | None = None,
    after_position: int | None = None,
    limit: int | None = None,
    yield_per: int = DEFAULT_YIELD_PER,
) -> Iterator[AuditEntry]:
    """Audit rows matching every filter given, in log order, streamed ``yield_per`` at a time.

    ``action`` and ``event_type`` take one name or several.  The filters are checked now;
    the rows are read as the iterator is consumed, so the connection must stay open until then.
    """
    statement = _checked_statement(
        yield_per, episode_id=episode_id, actor_id=actor_id, action=action, event_type=event_type,
        patient_ref=patient_ref, recorded_from=recorded_from, recorded_to=recorded_to,
        after_position=after_position, limit=limit,
    )
    return _stream(connection, statement, yield_per)


def _checked_statement(yield_per: int, **filters: Any) -> Select[Any]:
    """The statement for the filters, every argument checked before any row is read."""
    if yield_per < 1:
        raise ValueError(f"yield_per must be at least 1, got {yield_per}")
    return audit_statement(**filters)


def _stream(connection: Connection, statement: Select[Any], yield_per: int) -> Iterator[AuditEntry]:
    # yield_per implies stream_results: a server-side cursor on PostgreSQL, fetchmany on SQLite.
    result = connection.execute(statement.execution_options(yield_per=yield_per))
    try:
        for row in result:
            yield _entry(row)
    finally:
        result.close()


def audit_page(
    connection: Connection, *, after_position: int | None = None, limit: int = DEFAULT_PAGE_SIZE,
    **filters: Any,
) -> AuditPage:
    """Up to ``limit`` rows after ``after_position`` (keyset paging on the log position)."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"a page holds 1 to {MAX_PAGE_SIZE} rows, not {limit}")
    # One row more than asked tells whether another page follows.
    rows = list(audit_log(connection, after_position=after_position, limit=limit + 1, **filters))
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(rows=tuple(rows), next_after=rows[-1].position if more else None)


def _entry(row: Any) -> AuditEntry:
    values = dict(row._mapping)
    values["recorded_at"] = _as_utc(values["recorded_at"])
    return AuditEntry(**values)


def _as_utc(value: datetime) -> datetime:
    # SQLite keeps no offset (the projector writes UTC); PostgreSQL answers in the session's zone.
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _utc(name: str, value: datetime | date) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware (recorded times are UTC)")
        return value.astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime.combine(value, time.min, tzinfo=timezone.utc)
    raise TypeError(f"{name} must be a datetime or a date, not {type(value).__name__}")


def _names(name: str, value: str | Collection[str]) -> list[str]:
    names = [value] if isinstance(value, str) else list(value)
    if not names:
        raise ValueError(f"{name} needs at least one name")
    return names


# ---------------------------------------------------------------------------- exports


def export_csv(rows: Iterable[AuditEntry], stream: TextIO) -> int:
    """Write a header and one line per row, as the rows come; returns the rows written.

    Times are ISO 8601 in UTC (``2026-06-01T12:50:00+00:00``), dates ISO 8601, an absent value
    an empty cell.  Open a file for it with ``newline=""`` (the csv module's own line ends).
    """
    writer = csv.writer(stream)
    writer.writerow(COLUMNS)
    written = 0
    for entry in rows:
        writer.writerow(["" if v is None else _text(v) for v in _values(entry)])
        written += 1
    return written


def export_jsonl(rows: Iterable[AuditEntry], stream: TextIO) -> int:
    """Write one JSON object per line (JSON Lines), as the rows come; returns the rows written.

    Keys are the column names; times and dates are ISO 8601 strings (times in UTC), ids
    strings, an absent value ``null``.
    """
    written = 0
    for entry in rows:
        record = {
            name: None if value is None else (value if isinstance(value, int) else _text(value))
            for name, value in zip(COLUMNS, _values(entry))
        }
        stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        written += 1
    return written


def _values(entry: AuditEntry) -> list[Any]:
    """The entry's values in column order.  Not ``dataclasses.astuple``: that deep-copies every
    value (ids, times) and was two thirds of an export's time; the values are all scalars."""
    return [getattr(entry, name) for name in COLUMNS]


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return _as_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


EXPORTERS = {"csv": export_csv, "jsonl": export_jsonl}


# ---------------------------------------------------------------------------- the mixin


class AuditQueries:
    """Mixed into :class:`projections.ReadModels`."""

    def audit(
        self,
        *,
        episode_id: UUID | None = None,
        actor_id: str | None = None,
        action: str | Collection[str] | None = None,
        event_type: str | Collection[str] | None = None,
        patient_ref: str | None = None,
        recorded_from: datetime | date | None = None,
        recorded_to: datetime | date | None = None,
        after_position: int | None = None,
        limit: int | None = None,
        yield_per: int = DEFAULT_YIELD_PER,
    ) -> Iterator[AuditEntry]:
        """The audit history, filtered, in log order, streamed (a connection stays open while
        the iterator is consumed; close it, or run it to the end)."""
        statement = _checked_statement(
            yield_per, episode_id=episode_id, actor_id=actor_id, action=action, event_type=event_type,
            patient_ref=patient_ref, recorded_from=recorded_from, recorded_to=recorded_to,
            after_position=after_position, limit=limit,
        )
        return self._audit_stream(statement, yield_per)

    def _audit_stream(self, statement: Select[Any], yield_per: int) -> Iterator[AuditEntry]:
        with self.connect() as connection:  # type: ignore[attr-defined]
            yield from _stream(connection, statement, yield_per)

    def audit_page(
        self, *, after_position: int | None = None, limit: int = DEFAULT_PAGE_SIZE, **filters: Any
    ) -> AuditPage:
        """One page for the panel: ``limit`` rows after ``after_position``, and where to go on."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            return audit_page(connection, after_position=after_position, limit=limit, **filters)

    def export_audit(
        self, stream: TextIO, format: str = "csv", **filters: Any  # noqa: A002 - the brief's name
    ) -> int:
        """Write the filtered audit history to a text stream as CSV or JSON Lines; rows written."""
        if format not in EXPORTERS:
            raise ValueError(f"unknown export format {format!r}; use one of {', '.join(EXPORTERS)}")
        rows = self.audit(**filters)
        try:
            return EXPORTERS[format](rows, stream)
        finally:
            rows.close()  # type: ignore[attr-defined]
