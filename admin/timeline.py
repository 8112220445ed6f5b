"""An episode's history as the episode page shows it: a table row per event.

The rows are written here rather than by a Jinja macro: a 500-event history is some 10,000
values, and a macro call per row with an escape per value made up a third of the page's time.
Every text that comes from the record is still escaped (``markupsafe.escape``); numbers and
dates are formatted, not escaped, as they cannot hold markup.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from functools import lru_cache
from typing import Any

from markupsafe import Markup, escape

HIDDEN = {"originator_id", "originator_version", "originator_topic", "timestamp", "envelope",
          "effective_date", "target_version", "changes"}
NOT_SHOWN = (None, (), {})  # fields without a value
EVENT_WORDS = {"SessionCancelledByProgram": "Session cancelled by the program",
               "EventVoided": "Correction: event voided",
               "EventAmended": "Correction: event amended",
               "MarkedEnteredInError": "Marked entered in error"}


@dataclass
class Corrections:
    """What the corrections among a history's events say, by version."""

    voided_by: dict[int, int] = field(default_factory=dict)  # voided version -> the voiding one
    amended_by: dict[int, list[int]] = field(default_factory=dict)  # amended -> its amendments
    # An amendment's version -> what it changed: (field, before, after).
    changes: dict[int, list[tuple[str, str, str]]] = field(default_factory=dict)


def corrections(events: list) -> Corrections:
    """Which events (in recorded order) later ones voided or amended, and what each amendment
    changed from the fields as recorded or amended before it."""
    found = Corrections()
    seen: dict[int, Any] = {}
    amended: dict[int, dict[str, Any]] = {}  # an amended event's fields, as amended so far
    for event in events:
        target = seen.get(getattr(event, "target_version", None) or 0)
        seen[event.originator_version] = event
        if target is None:  # not a correction (or one of an event not among these)
            continue
        name, version = type(event).__name__, event.originator_version
        corrected = target.originator_version
        if name == "EventVoided":
            found.voided_by[corrected] = version
        elif name == "EventAmended":
            found.amended_by.setdefault(corrected, []).append(version)
            before = amended.get(corrected)
            if before is None:  # its first amendment: the fields as recorded
                before = amended[corrected] = {
                    **{k: v for k, v in vars(target).items() if k not in HIDDEN},
                    "effective_date": target.effective_date}
            found.changes[version] = [(_label(k), in_words(before.get(k)), in_words(v))
                                      for k, v in event.changes.items()]
            before.update(event.changes)
    return found


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


@lru_cache(maxsize=8192)
def _field(name: str, words: str) -> str:
    """A field of an event, as its row shows it; most fields of a history repeat (kind, minutes,
    format, topic), so each distinct one is written once."""
    return (f'<span class="field"><span class="muted">{escape(_label(name))}:</span> '
            f'{escape(words)}</span>')


def in_words(value: Any) -> str:
    """A field value in words: codes for enums and levels, lists joined, dicts as pairs."""
    words = _WORDING.get(type(value))
    if words is None:  # a type not seen yet: decided once (a history holds a few dozen)
        words = _WORDING[type(value)] = _wording(type(value))
    return words(value)


def _wording(cls: type) -> Callable[[Any], str]:
    """How :func:`in_words` words a value of ``cls``."""
    if cls is type(None):
        return lambda _: "—"
    if issubclass(cls, Enum):
        return lambda member: str(member.value)
    if issubclass(cls, bool):
        return lambda flag: "yes" if flag else "no"
    if issubclass(cls, date):
        return cls.isoformat
    if issubclass(cls, dict):
        return lambda pairs: ", ".join(f"{k}: {in_words(v)}" for k, v in pairs.items())
    if issubclass(cls, (tuple, list)):
        return lambda items: "; ".join(map(in_words, items))
    if cls in (str, int, float):
        return str
    return _value_object_words


def _value_object_words(value: Any) -> str:
    if hasattr(value, "code") and hasattr(value, "category"):  # a diagnosis
        return f"{value.code} {value.display or in_words(value.category)}".strip()
    if hasattr(value, "code") and hasattr(value, "edition"):  # a level of care
        return f"{value.code} ({value.edition.value})"
    if hasattr(value, "id") and hasattr(value, "role"):  # a care team member
        return f"{value.id} ({value.role})"
    return str(value)


_WORDING: dict[type, Callable[[Any], str]] = {}


def anchor(version: int) -> str:
    """The link to an event's row on the same page."""
    return f"#v{version}"


def rows(events: list, found: Corrections | None = None,
         link: Callable[[int], str] = anchor) -> Markup:
    """The ``<tr>`` of each event (in recorded order), as the history table of the episode page
    shows them: corrections point at their target, and the corrected events say which later
    version voided or amended them.  ``found``: the corrections of a longer list than the rows
    shown (a page of the history); ``link``: the address of another event's row (on the page,
    or on the page that shows it)."""
    found = corrections(events) if found is None else found
    return Markup("".join([_row(event, found, link) for event in events]))


def _row(e: Any, found: Corrections, link: Callable[[int], str]) -> str:
    name, version, envelope = type(e).__name__, e.originator_version, e.envelope
    target_version = getattr(e, "target_version", None)
    voided_by, amended_by = found.voided_by.get(version), found.amended_by.get(version, ())
    classes = ("correction" if target_version else "") + (" voided" if voided_by else "") \
        + (" amended" if amended_by else "") \
        + (" in-error" if name == "MarkedEnteredInError" else "")
    event = f"<strong>{_escaped(_words(name))}</strong>"
    if target_version:
        event += f'<br>of <a href="{link(target_version)}">version {target_version}</a>'
    if voided_by:
        event += (f'<br><span class="badge cancelled">voided</span> by '
                  f'<a href="{link(voided_by)}">v{voided_by}</a>')
    for v in amended_by:
        event += f'<br><span class="badge onhold">amended</span> by <a href="{link(v)}">v{v}</a>'
    details = "".join(
        [f'<span class="field">{_escaped(changed)}: <del>{_escaped(before)}</del> → '
         f'<ins>{_escaped(after)}</ins></span>'
         for changed, before, after in found.changes.get(version, ())]
        + [_field(k, in_words(v)) for k, v in vars(e).items()
           if k not in HIDDEN and v not in NOT_SHOWN])
    return (
        f'<tr id="v{version}" class="{classes}">'
        f'<td class="num">{version}</td>'
        f'<td class="when">{e.timestamp.isoformat(" ", "minutes")[:16]}</td>'
        f'<td class="when">{e.effective_date.isoformat()}</td>'
        f'<td>{event}</td>'
        f'<td>{_escaped(envelope.actor_id)} '
        f'<span class="muted">{_escaped(envelope.actor_role.value)}</span></td>'
        f'<td>{_escaped(envelope.reason or "")}</td>'
        f'<td class="details">{details}</td></tr>\n'
    )


# ---------------------------------------------------------------- pages of a long history


@dataclass(frozen=True)
class Window:
    """Which entries of a history (in recorded order) a page shows: ``[start, end)`` by index,
    the latest ``size`` of those recorded before a version; and where its neighbours begin, as
    the ``before`` version of their page (keyset paging: a link stays right as entries come)."""

    start: int
    end: int
    total: int  # entries in the whole history
    earlier: int | None  # ``before`` of the page of earlier entries; None: none earlier
    later: int | None  # ``before`` of the page of later entries; None: the latest page
    has_later: bool  # entries after this page


def window(versions: Sequence[int], size: int, before: int | None = None) -> Window:
    """The page of ``size`` entries ending before version ``before`` (the latest page when
    None or past the end) of a history whose entries have these ``versions`` (ascending: a
    ``range`` for a whole stream, a list for an as-of view that leaves some out)."""
    total = len(versions)
    end = total if before is None else bisect_left(versions, before)
    start = max(0, end - size)
    return Window(start=start, end=end, total=total,
                  earlier=versions[start] if start > 0 else None,
                  later=versions[end + size] if total - end > size else None,
                  has_later=end < total)


def whole(total: int) -> Window:
    """Every entry on one page."""
    return Window(start=0, end=total, total=total, earlier=None, later=None, has_later=False)
