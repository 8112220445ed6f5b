"""Episodes: the list and one episode's page.

The list's filters, search, sort and page are GET parameters, so a URL can be shared; a value
the page does not know answers 400 (never 500). The episode page shows where the episode
stands, its history (the latest entries of a long one, with links to the earlier ones), its
weekly hours, attendance, scores and authorizations, and can show the record as it stood at a
version, at the end of a day, or on a clinical date.
Every view of either page is written to the access log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from uuid import UUID

from flask import Blueprint, Response, abort, current_app, render_template, request, url_for
from flask_login import current_user
from markupsafe import escape

from admin import charts, timeline
from admin.security import EVERYONE, RECORDERS, roles
from admin.services import record_access, services
from episodes import PATHWAY, EpisodeNotFound, EpisodeStatus, NotFound, allowed_commands
from episodes.history import read_history
from episodes.history import view as view_of
from episodes.history_page import read_page
from episodes.vocabulary import ASAM_LEVEL_CODES
from projections.queries.attendance import DEFAULT_MISS_THRESHOLD as MISS_THRESHOLD
from projections.queries.figures import EpisodeFigures
from projections.queries.listing import SORTABLE, UnknownEpisode

bp = Blueprint("episodes", __name__, url_prefix="/episodes")

PAGE_SIZES = (25, 50, 100)
STATUSES = tuple(s.value for s in EpisodeStatus)
LEVELS = tuple(sorted({code for codes in ASAM_LEVEL_CODES.values() for code in codes}, key=float))
DATE_COLUMNS = {"referred_on", "admitted_on", "discharged_on", "recorded_at"}
MAX_TEXT = 64  # the longest program code, clinic or search text accepted
HISTORY_PAGE_SIZE = 100  # the most recent entries of a history a page shows (HISTORY_PAGE_SIZE)
WEEK_WORDS = {"meets": "meets the minimum", "below": "below the minimum", "taper": "taper week",
              "partial": "partial week (not judged)", "on-hold": "on hold (not judged)"}


# ---------------------------------------------------------------- query parameters


def _text(name: str) -> str | None:
    value = request.args.get(name, "").strip()
    if len(value) > MAX_TEXT:
        abort(400, description=f"{name} is longer than {MAX_TEXT} characters.")
    return value or None


def _choice(name: str, allowed: tuple[str, ...], default: str | None = None) -> str | None:
    value = request.args.get(name, "").strip()
    if not value:
        return default
    if value not in allowed:
        abort(400, description=f"{name} must be one of: {', '.join(allowed)}.")
    return value


def _integer(name: str, default: int | None = None, highest: int = 1_000_000) -> int | None:
    value = request.args.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or not 1 <= int(value) <= highest:
        abort(400, description=f"{name} must be a whole number from 1 to {highest}.")
    return int(value)


def _episode_id(name: str) -> UUID | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return UUID(value)
    except ValueError:
        abort(400, description=f"{name} must be an episode id.")


def _date(name: str) -> date | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        abort(400, description=f"{name} must be a date like 2026-05-31.")


# ---------------------------------------------------------------- the list


@bp.route("/")
@roles(*EVERYONE)
def index():  # noqa: ANN201
    svc = services()
    default_size = current_app.config.get("PAGE_SIZE", 50)
    args: dict[str, Any] = {
        "status": _choice("status", STATUSES),
        "program": _text("program"),
        "clinic": _text("clinic"),
        "level": _choice("level", LEVELS),
        "over_target": _choice("over_target", ("yes", "no")),
        "q": _text("q"),
        "sort": _choice("sort", SORTABLE, "referred_on"),
        "size": int(_choice("size", tuple(map(str, PAGE_SIZES)))
                    or (default_size if default_size in PAGE_SIZES else 50)),
        "page": _integer("page", 1),
        # Keyset paging: the page right after / before an episode, or the last page.
        "after": _episode_id("after"), "before": _episode_id("before"),
        "last": _choice("last", ("1",)),
    }
    if sum(args[k] is not None for k in ("after", "before", "last")) > 1:
        abort(400, description="Give only one of after, before and last.")
    args["dir"] = _choice("dir", ("asc", "desc"), "desc" if args["sort"] in DATE_COLUMNS else "asc")
    filters = {
        "status": args["status"], "program_code": args["program"], "clinic": args["clinic"],
        "level_code": args["level"], "search": args["q"],
        "over_target": None if args["over_target"] is None else args["over_target"] == "yes",
        "sort": args["sort"], "descending": args["dir"] == "desc", "page_size": args["size"],
    }
    with svc.reads.together(transaction=False):  # the page's reads on one connection
        try:
            page = svc.reads.episodes(page=args["page"], after=args["after"],
                                      before=args["before"], last=args["last"] is not None,
                                      **filters)
        except UnknownEpisode:
            abort(400, description="after / before must be the id of an episode in the list.")
        if not page.rows and page.total:
            # Past the end (a shared link, fewer episodes now): the last page.
            page = svc.reads.episodes(last=True, **filters)
        programs = svc.reads.programs()
    record_access("read", detail=f"episode list: {_query_text() or 'no filters'}")
    return render_template(
        "episodes/list.html", page=page, args=args, programs=programs,
        clinics=sorted({clinic for p in programs for clinic in p.clinics}),
        statuses=STATUSES, levels=LEVELS, page_sizes=PAGE_SIZES, miss_threshold=MISS_THRESHOLD,
        list_url=lambda **changes: _list_url(args, changes), sort_link=lambda c: _sort(args, c),
        pager=_pager(args, page),
    )


FIRST_PAGE = {"page": None, "after": None, "before": None, "last": None}


def _pager(args: dict[str, Any], page: Any) -> dict[str, str]:
    """The pager's links: by key from this page's first or last row (see
    projections.queries.listing), so a late page costs no more than the first."""
    links: dict[str, str] = {}
    if page.has_previous:
        links["first"] = _list_url(args, FIRST_PAGE)
        # Less than a page before this one (episodes came and went): the first page.
        links["previous"] = (links["first"] if page.position <= page.page_size
                             else _list_url(args, {**FIRST_PAGE, "before": page.first_id}))
    if page.has_next:
        links["next"] = _list_url(args, {**FIRST_PAGE, "after": page.last_id})
        links["last"] = _list_url(args, {**FIRST_PAGE, "last": "1"})
    return links


def _list_url(args: dict[str, Any], changes: dict[str, Any]) -> str:
    merged = {**args, **changes}
    defaults = {"page": 1, "size": current_app.config.get("PAGE_SIZE", 50), "sort": "referred_on"}
    if merged["dir"] == ("desc" if merged["sort"] in DATE_COLUMNS else "asc"):
        merged["dir"] = None  # the column's natural direction: keep the URL short
    return url_for("episodes.index", **{
        k: v for k, v in merged.items() if v not in (None, "") and defaults.get(k) != v
    })


def _sort(args: dict[str, Any], column: str) -> dict[str, str]:
    """The link and the ``aria-sort`` of a column header: a click sorts by it, again reverses."""
    natural = "desc" if column in DATE_COLUMNS else "asc"
    if args["sort"] == column:
        flipped = "asc" if args["dir"] == "desc" else "desc"
        state = "descending" if args["dir"] == "desc" else "ascending"
        return {"url": _list_url(args, {**FIRST_PAGE, "dir": flipped}), "aria": state,
                "arrow": "▼" if args["dir"] == "desc" else "▲"}
    return {"url": _list_url(args, {**FIRST_PAGE, "sort": column, "dir": natural}), "aria": "none",
            "arrow": ""}


def _query_text() -> str:
    """The page's query, for the access log (bounded: the parameters are checked first)."""
    return "&".join(f"{k}={v}" for k, v in request.args.items(multi=True) if v)[:500]


# ---------------------------------------------------------------- one episode


@dataclass(frozen=True)
class Heading:
    """What the page's title and heading name: the patient and the status (of the record as
    shown: today's, or as of a point)."""

    patient_ref: str
    status: EpisodeStatus


@bp.route("/<uuid:episode_id>")
@roles(*EVERYONE)
def show(episode_id: UUID):  # noqa: ANN201
    svc = services()
    as_of = {"version": _integer("version"), "recorded_on": _date("recorded_on"),
             "effective_on": _date("effective_on")}
    before, everything = _integer("before"), _choice("history", ("all",)) is not None
    if before is not None and everything:
        abort(400, description="Give only one of before and history.")
    size, asked = _history_page_size(), any(v is not None for v in as_of.values())
    # The page's reads share one connection, without a transaction (see ReadModels.together);
    # the access-log entry is written in its own transaction.
    with svc.reads.together(transaction=False) as connection:
        figures = page = None
        if not asked:
            figures = _figures(episode_id, None, with_status=True)
        if figures is not None and not everything:
            # Today's record, a page of its history: only that page is decoded (and the
            # corrections), and no fold is needed when the read models are at the stream's
            # last version, as their row then says what the fold would.
            try:
                page = read_page(svc.episodes, episode_id, connection, svc.history_mapper,
                                 size=size, before=before)
            except EpisodeNotFound:
                abort(404)
            if page.head != figures.status.version:  # they are behind: fold the stream
                page = None
        if page is not None:
            status = figures.status
            heading, latest_version = Heading(status.patient_ref, EpisodeStatus(status.status)), page.head
            patient_ref = status.patient_ref
            view, as_of_error, mode = None, None, None
            shown, related = page.events, page.related
            win = timeline.window(range(1, page.head + 1), size, before)
        else:
            try:  # read and decoded once
                events = read_history(svc.episodes, episode_id, connection, svc.history_mapper)
            except EpisodeNotFound:
                abort(404)
            current = view_of(events)
            view, as_of_error = current, None
            if asked:
                recorded_at = _end_of_day(as_of["recorded_on"]) if as_of["recorded_on"] else None
                try:  # as Episodes.episode does, from the events already read
                    view = view_of(events, version=as_of["version"], recorded_at=recorded_at,
                                   effective_on=as_of["effective_on"])
                except NotFound as not_found:
                    as_of_error = str(not_found)
            # "clinical": a clinical date by today's record, whose figures the read models can
            # give; "recorded": the record as it stood at a version or a day (with or without a
            # clinical date).
            mode = None if view is current else (
                "clinical" if not (as_of["version"] or as_of["recorded_on"]) else "recorded")
            if asked:  # else read above
                figures = (_figures(episode_id, as_of["effective_on"], with_status=mode is None)
                           if mode != "recorded" else None)
            heading, latest_version = Heading(view.state.patient_ref, view.state.status), current.version
            patient_ref = current.state.patient_ref
            related = _known(events, view, as_of) if mode else events
            win = (timeline.whole(len(related)) if everything else
                   timeline.window([e.originator_version for e in related], size, before))
            shown = related[win.start:win.end]
        query = _query_text()
        record_access("read", episode_id=episode_id, patient_ref=patient_ref,
                      detail=f"episode page: {query}" if query else "episode page")
        status = figures.status if figures else None
        read = {
            # The status card names the program from the status row; the state card (as of
            # a point, or before the read models caught up) looks it up.
            "programs": {} if status else {p.code: p for p in svc.reads.programs()},
            "status": status, "figures": figures,
            "hours_chart": hours_chart(figures.intensity) if figures else None,
            "then_and_now": (svc.reads.status_as_of(episode_id, as_of["effective_on"])
                             if mode == "clinical" else None),
        }
    on_page = {e.originator_version for e in shown}
    history_url = _history_url(episode_id, as_of)
    return render_template(
        "episodes/episode.html", episode_id=episode_id, view=view, heading=heading, mode=mode,
        as_of=as_of, as_of_error=as_of_error,
        timeline_rows=timeline.rows(shown, timeline.corrections(related),
                                    _row_link(on_page, history_url)),
        timeline_length=win.total, history_pager=_history_pager(win, [e.originator_version for e in shown], size,
                                     everything, history_url),
        latest_version=latest_version,
        progress=_progress(status), commands=_commands(heading.status) if mode is None else [],
        **read,
    )


def _history_page_size() -> int:
    """How many entries of the history a page shows (the most recent, by default)."""
    return int(current_app.config.get("HISTORY_PAGE_SIZE", HISTORY_PAGE_SIZE))


def _history_url(episode_id: UUID, as_of: dict[str, Any]) -> Callable[..., str]:
    """The address of a page of this history, in the same as-of view."""
    kept = {k: v.isoformat() if isinstance(v, date) else v for k, v in as_of.items() if v}
    return lambda **page: url_for("episodes.show", episode_id=episode_id, **kept, **page)


def _row_link(on_page: set[int], history_url: Callable[..., str]) -> Callable[[int], str]:
    """Where a correction's link to another event goes: its row on this page, or the page of
    the history that ends with it."""
    def link(version: int) -> str:
        if version in on_page:
            return f"#v{version}"
        return str(escape(history_url(before=version + 1))) + f"#v{version}"
    return link


def _history_pager(win: timeline.Window, shown: list[int], size: int, everything: bool,
                   history_url: Callable[..., str]) -> dict[str, Any] | None:
    """The links between the history's pages (``shown``: the versions on this one); None when
    every entry fits on one page."""
    if win.total <= size and not win.earlier and not win.has_later:
        return None
    if everything:
        return {"summary": f"All {win.total} entries.",
                "latest": history_url(), "latest_label": f"Only the latest {size}"}
    return {
        "summary": (f"Versions {shown[0]}–{shown[-1]}: {len(shown)} of {win.total} entries."
                    if shown else f"None of the {win.total} entries is before that version."),
        "earlier": history_url(before=win.earlier) if win.earlier else None,
        "later": (history_url(before=win.later) if win.later else history_url())
        if win.has_later else None,
        "latest": history_url() if win.has_later else None, "latest_label": "Latest",
        "all": history_url(history="all"), "total": win.total,
    }


@bp.route("/<uuid:episode_id>/fhir.json")
@roles(*EVERYONE)
def fhir(episode_id: UUID):  # noqa: ANN201
    """The episode as a FHIR R4 Bundle: a disclosure, so it is recorded as an export."""
    from projections.fhir import export_episode, to_json

    app = services().episodes
    try:
        bundle = export_episode(app, episode_id)
    except EpisodeNotFound:
        abort(404)
    record_access("export", episode_id=episode_id, patient_ref=app.episode(episode_id).state.patient_ref,
                  detail="FHIR R4 Bundle")
    return Response(to_json(bundle), mimetype="application/fhir+json", headers={
        "Content-Disposition": f"attachment; filename=episode-{episode_id}.fhir.json",
        "Cache-Control": "no-store",
    })


def _progress(status: Any) -> Any:
    if status is None or status.percent_of_target is None:
        return None
    return charts.progress(status.percent_of_target,
                           title=f"day {status.day} of {status.target_days}")


def _end_of_day(day: date) -> datetime:
    """The recorded-time cut-off for "as the record stood on ``day``": midnight UTC after it."""
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=timezone.utc)


def _known(events: list, view: Any, as_of: dict[str, Any]) -> list:
    """The events of the as-of view: recorded by its cut-off and, for a clinical date, dated on
    or before it (with the corrections of those events)."""
    known = [e for e in events if e.originator_version <= view.version]
    day = as_of["effective_on"]
    if day is None:
        return known
    kept = {e.originator_version for e in known
            if not hasattr(e, "target_version") and e.effective_date <= day}
    return [e for e in known if e.originator_version in kept
            or getattr(e, "target_version", None) in kept]


def _figures(episode_id: UUID, on: date | None, *, with_status: bool) -> EpisodeFigures | None:
    try:
        return services().reads.episode_figures(episode_id, on, with_status=with_status)
    except EpisodeNotFound:  # recorded, but the read models have not caught up yet
        return None


def hours_chart(intensity: Any) -> Any:
    minimum = intensity.minimum_weekly_hours
    bars = [
        charts.Bar(
            label=f"W{w.iso_week}", value=float(w.hours), kind=w.classification,
            title=f"{w.iso_year}-W{w.iso_week:02d} (from {w.week_start.isoformat()}): "
                  f"{w.hours} h, {WEEK_WORDS.get(w.classification, w.classification)}",
        )
        for w in intensity.weeks
    ]
    return charts.bar_chart(
        bars, title="Attended hours per ISO week against the program's minimum", unit="hours",
        threshold=float(minimum) if minimum is not None else None,
        threshold_label=f"minimum {float(minimum):g} h" if minimum is not None else "",
    )


def _commands(status: EpisodeStatus) -> list[dict[str, str]]:
    """Links to record what the pathway allows next: for admins and clinicians only."""
    if current_user.role not in RECORDERS:
        return []
    return [{"command": command, "label": command.replace("_", " ").capitalize(),
             "summary": PATHWAY[command].summary} for command in allowed_commands(status)]
