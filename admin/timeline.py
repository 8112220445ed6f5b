"""An episode's history as the episode page shows it: one entry per event, then its table rows.

The rows are written here rather than by a Jinja macro: a 500-event history is some 10,000
values, and a macro call per row with an escape per value made up a third of the page's time.
Every text that comes from the record is still escaped (``markupsafe.escape``); numbers and
dates are formatted, not escaped, as they cannot hold markup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from functools import lru_cache
from typing import Any

from markupsafe import Markup, escape

HIDDEN = {"originator_id", "originator_version", "originator_topic", "timestamp", "envelope",
          "effective_date", "target_version", "changes"}
EVENT_WORDS = {"SessionCancelledByProgram": "Session cancelled by the program",
               "EventVoided": "Correction: event voided",
               "EventAmended": "Correction: event amended",
               "MarkedEnteredInError": "Marked entered in error"}


@dataclass
class Entry:
    """One event of the history as the page shows it."""

    version: int
    recorded_at: datetime
    effective_date: date
    event_type: str
    words: str
    actor_id: str
    actor_role: str
    reason: str | None
    fields: list[tuple[str, str]]
    target_version: int | None = None  # a correction: the version it corrects
    changes: list[tuple[str, str, str]] = field(default_factory=list)  # field, before, after
    voided_by: int | None = None
    amended_by: list[int] = field(default_factory=list)


def timeline(events: list) -> list[Entry]:
    """Every event in recorded order; corrections point at their target, and the corrected
    events say which later version voided or amended them."""
    entries: dict[int, Entry] = {}
    values: dict[int, dict[str, Any]] = {}  # each event's fields as amended so far
    for event in events:
        name, version = type(event).__name__, event.originator_version
        own = {k: v for k, v in vars(event).items() if k not in HIDDEN}
        values[version] = {**own, "effective_date": event.effective_date}
        entry = Entry(
            version=version, recorded_at=event.timestamp, effective_date=event.effective_date,
            event_type=name, words=_words(name),
            actor_id=event.envelope.actor_id, actor_role=event.envelope.actor_role.value,
            reason=event.envelope.reason,
            fields=[(_label(k), in_words(v)) for k, v in own.items() if v not in (None, (), {})],
            target_version=getattr(event, "target_version", None),
        )
        target = entries.get(entry.target_version or 0)
        if name == "EventVoided" and target:
            target.voided_by = version
        elif name == "EventAmended" and target:
            target.amended_by.append(version)
            before = values[target.version]
            entry.changes = [(_label(k), in_words(before.get(k)), in_words(v))
                             for k, v in event.changes.items()]
            before.update(event.changes)
        entries[version] = entry
    return list(entries.values())


@lru_cache(maxsize=256)
def _words(name: str) -> str:
    """An event type in words (a few dozen types: computed once each)."""
    return EVENT_WORDS.get(name) or re.sub(r"(?<!^)([A-Z])", r" \1", name).capitalize()


@lru_cache(maxsize=256)
def _label(name: str) -> str:
    return name.replace("_", " ")


@lru_cache(maxsize=8192)
def _escaped(text: str) -> str:
    """``markupsafe.escape`` as a plain string; a history repeats most of its values (actors,
    kinds, topics, minutes), so each distinct one is escaped once."""
    return str(escape(text))


def in_words(value: Any) -> str:
    """A field value in words: codes for enums and levels, lists joined, dicts as pairs."""
    if value is None:
        return "—"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return ", ".join(f"{k}: {in_words(v)}" for k, v in value.items())
    if isinstance(value, (tuple, list)):
        return "; ".join(in_words(v) for v in value)
    if hasattr(value, "code") and hasattr(value, "category"):  # a diagnosis
        return f"{value.code} {value.display or in_words(value.category)}".strip()
    if hasattr(value, "code") and hasattr(value, "edition"):  # a level of care
        return f"{value.code} ({value.edition.value})"
    if hasattr(value, "id") and hasattr(value, "role"):  # a care team member
        return f"{value.id} ({value.role})"
    return str(value)


def rows(entries: list[Entry]) -> Markup:
    """The ``<tr>`` of each entry, as the history table of the episode page shows them."""
    return Markup("".join(map(_row, entries)))


def _row(e: Entry) -> str:
    classes = ("correction" if e.target_version else "") + (" voided" if e.voided_by else "") \
        + (" amended" if e.amended_by else "") \
        + (" in-error" if e.event_type == "MarkedEnteredInError" else "")
    event = f"<strong>{_escaped(e.words)}</strong>"
    if e.target_version:
        event += f'<br>of <a href="#v{e.target_version}">version {e.target_version}</a>'
    if e.voided_by:
        event += (f'<br><span class="badge cancelled">voided</span> by '
                  f'<a href="#v{e.voided_by}">v{e.voided_by}</a>')
    for v in e.amended_by:
        event += f'<br><span class="badge onhold">amended</span> by <a href="#v{v}">v{v}</a>'
    details = "".join([f'<span class="field">{_escaped(name)}: <del>{_escaped(before)}</del> → '
                       f'<ins>{_escaped(after)}</ins></span>' for name, before, after in e.changes]
                      + [f'<span class="field"><span class="muted">{_escaped(name)}:</span> '
                         f'{_escaped(value)}</span>' for name, value in e.fields])
    return (
        f'<tr id="v{e.version}" class="{classes}">'
        f'<td class="num">{e.version}</td>'
        f'<td class="when">{e.recorded_at.strftime("%Y-%m-%d %H:%M")}</td>'
        f'<td class="when">{e.effective_date.isoformat()}</td>'
        f'<td>{event}</td>'
        f'<td>{_escaped(e.actor_id)} <span class="muted">{_escaped(e.actor_role)}</span></td>'
        f'<td>{_escaped(e.reason or "")}</td>'
        f'<td class="details">{details}</td></tr>\n'
    )
