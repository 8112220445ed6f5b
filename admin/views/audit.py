"""Audit: the global, filterable log, the access log, one episode's history, exports and
integrity status (admins and reviewers).

Every page here shows patients' references, so every view is itself put in the access log
(``read``), and every export too (``export``, with its filters in ``detail``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import islice
from typing import Any
from uuid import UUID

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from admin.security import REVIEWERS, roles
from admin.services import record_access, services
from episodes.access import ACTIONS as ACCESS_ACTIONS
from episodes.errors import EpisodeNotFound
from projections.derive import DATA_CATEGORIES
from projections.queries.audit import EXPORTERS

bp = Blueprint("audit", __name__, url_prefix="/audit")

AUDIT_ACTIONS = ("create", "update", "correct", "void")
EVENT_TYPES = tuple(sorted({*DATA_CATEGORIES, "EventAmended", "EventVoided"}))
EXPORT_BATCH = 500  # rows rendered per chunk of a streamed export
MIMETYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


@dataclass
class Filters:
    """The filters of a page as typed (to show again) and as query keywords."""

    values: dict[str, str] = field(default_factory=dict)  # the non-empty GET parameters
    query: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.values.items()) or "no filters"


def _uuid(filters: Filters, name: str, key: str) -> None:
    try:
        filters.query[key] = UUID(filters.values[name])
    except ValueError:
        filters.errors[name] = "Not an episode id: give the id shown on the episode's page."


def audit_filters(args: Mapping[str, str]) -> Filters:
    """Episode, actor, action, event type and recorded dates (``to`` is inclusive here)."""
    names = ("episode", "actor", "action", "event_type", "from", "to")
    filters = Filters(values={n: args[n].strip() for n in names if args.get(n, "").strip()})
    values, query = filters.values, filters.query
    if "episode" in values:
        _uuid(filters, "episode", "episode_id")
    if "actor" in values:
        query["actor_id"] = values["actor"][:64]
    for name, allowed in (("action", AUDIT_ACTIONS), ("event_type", EVENT_TYPES)):
        if name in values:
            if values[name] in allowed:
                query[name] = values[name]
            else:
                filters.errors[name] = f"Choose one of {', '.join(allowed)}."
    days: dict[str, date] = {}
    for name in ("from", "to"):
        if name in values:
            try:
                days[name] = date.fromisoformat(values[name])
            except ValueError:
                filters.errors[name] = "Not a date (YYYY-MM-DD)."
    if "from" in days and "to" in days and days["to"] < days["from"]:
        filters.errors["to"] = "The end comes before the start."
    if "from" in days:
        query["recorded_from"] = days["from"]
    if "to" in days:  # the query's end is exclusive: up to the start of the next day
        query["recorded_to"] = days["to"] + timedelta(days=1)
    return filters


def access_filters(args: Mapping[str, str]) -> Filters:
    names = ("episode", "actor", "action")
    filters = Filters(values={n: args[n].strip() for n in names if args.get(n, "").strip()})
    if "episode" in filters.values:
        _uuid(filters, "episode", "episode_id")
    if "actor" in filters.values:
        filters.query["actor_id"] = filters.values["actor"][:64]
    if "action" in filters.values:
        if filters.values["action"] in ACCESS_ACTIONS:
            filters.query["action"] = filters.values["action"]
        else:
            filters.errors["action"] = f"Choose one of {', '.join(ACCESS_ACTIONS)}."
    return filters


def _after(name: str = "after") -> int | None:
    value = request.args.get(name, "")
    if not value:
        return None
    if not value.isdigit():
        abort(400, f"{name} must be a whole number.")
    return int(value)


def _page_size() -> int:
    return int(current_app.config.get("PAGE_SIZE", 50))


def _access_page(after_id: int | None, **query: Any) -> tuple[list, int | None]:
    """A page of the access log, newest first, and the ``after`` of the next one."""
    size = _page_size()
    entries = list(services().access.entries(after_id=after_id, limit=size + 1, newest_first=True,
                                             **query))
    more = len(entries) > size
    entries = entries[:size]
    return entries, entries[-1].id if more else None


def _patient_ref(episode_id: UUID) -> str | None:
    try:
        return services().reads.status(episode_id).patient_ref
    except EpisodeNotFound:
        return None


def episode_page_url() -> Callable[[UUID], str] | None:
    """The episode's own page, if the episodes area has one (``/episodes/<id>``)."""
    for rule in current_app.url_map.iter_rules():
        match = re.fullmatch(r"/episodes/<(?:uuid:)?(\w+)>/?", rule.rule)
        if match and rule.endpoint.startswith("episodes.") and "GET" in (rule.methods or ()):
            endpoint, argument = rule.endpoint, match.group(1)
            return lambda episode_id: url_for(endpoint, **{argument: episode_id})
    return None


def _integrity() -> dict[str, int]:
    episodes = services().episodes
    events = int(episodes.recorder.max_notification_id() or 0)
    return {"events": events, "lag": services().reads.lag()}


# ---------------------------------------------------------------------------- pages


@bp.route("/")
@roles(*REVIEWERS)
def index():  # noqa: ANN201
    filters = audit_filters(request.args)
    after = _after()
    page = None
    if not filters.errors:
        page = services().reads.audit_page(after_position=after, limit=_page_size(),
                                           **filters.query)
        record_access("read", episode_id=filters.query.get("episode_id"),
                      detail=f"audit log: {filters.describe()}")
    return render_template(
        "audit/index.html", tab="events", filters=filters, page=page, after=after,
        actions=AUDIT_ACTIONS, event_types=EVENT_TYPES, integrity=_integrity(),
        episode_url=episode_page_url(),
    ), 400 if filters.errors else 200


@bp.route("/access")
@roles(*REVIEWERS)
def access():  # noqa: ANN201
    filters = access_filters(request.args)
    after = _after()
    entries, next_after = [], None
    if not filters.errors:
        record_access("read", episode_id=filters.query.get("episode_id"),
                      detail=f"access log: {filters.describe()}")
        entries, next_after = _access_page(after, **filters.query)
    return render_template(
        "audit/access.html", tab="access", filters=filters, entries=entries, after=after,
        next_after=next_after, actions=ACCESS_ACTIONS, episode_url=episode_page_url(),
    ), 400 if filters.errors else 200


@bp.route("/episodes/<uuid:episode_id>")
@roles(*REVIEWERS)
def episode(episode_id: UUID):  # noqa: ANN201
    patient_ref = _patient_ref(episode_id)
    if patient_ref is None:
        abort(404)
    after, access_after = _after(), _after("access_after")
    # This view is a read of the episode's record: it is the first line of its own access log.
    record_access("read", episode_id=episode_id, patient_ref=patient_ref, detail="audit history")
    page = services().reads.audit_page(episode_id=episode_id, after_position=after,
                                       limit=_page_size())
    entries, next_access = _access_page(access_after, episode_id=episode_id)
    return render_template(
        "audit/episode.html", episode_id=episode_id, patient_ref=patient_ref, page=page,
        after=after, entries=entries, access_after=access_after, next_access=next_access,
        episode_url=episode_page_url(),
    )


# ---------------------------------------------------------------------------- exports


@bp.route("/export.csv")
@roles(*REVIEWERS)
def export_csv():  # noqa: ANN201
    return _export("csv")


@bp.route("/export.jsonl")
@roles(*REVIEWERS)
def export_jsonl():  # noqa: ANN201
    return _export("jsonl")


def _export(format: str) -> Response:  # noqa: A002 - the query module's own word
    filters = audit_filters(request.args)
    if filters.errors:
        abort(400, "; ".join(f"{name}: {message}" for name, message in filters.errors.items()))
    episode_id = filters.query.get("episode_id")
    record_access("export", episode_id=episode_id,
                  patient_ref=_patient_ref(episode_id) if episode_id else None,
                  detail=f"audit export {format}: {filters.describe()}")
    reads = services().reads
    filename = f"audit-{reads.today().isoformat()}.{format}"
    response = Response(stream_with_context(_stream(reads, format, filters.query)),
                        mimetype=MIMETYPES[format])
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _render(format: str, rows: list) -> str:  # noqa: A002
    buffer = io.StringIO()
    EXPORTERS[format](rows, buffer)
    return buffer.getvalue()


def _stream(reads: Any, format: str, query: dict[str, Any]) -> Iterator[str]:  # noqa: A002
    """The export in chunks, as the cursor gives rows: bounded memory for any size."""
    header = _render(format, [])  # CSV: the header line; JSON Lines: nothing
    yield header
    rows = reads.audit(**query)
    try:
        while batch := list(islice(rows, EXPORT_BATCH)):
            yield _render(format, batch)[len(header):]
    finally:
        rows.close()
