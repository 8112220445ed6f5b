"""4. Panel: median and 95th-percentile time of the panel's pages, through the Flask test
client of ``admin.create_app`` (logged in; every view also writes its access-log entry):

* ``panel.list``: the episode list, filtered and paged: finished episodes, the second page as
  the panel's "Next" link asks for it (by key: the page after the first page's last row), or
  the first page when there is no second;
* ``panel.episode``: the episode page of the longest demo episode;
* ``panel.episode_long``: the episode page of the long episode;
* ``panel.audit_export``: the CSV audit export of the long episode.

Limit: the same rows read with one raw SQL query through the driver (the list's page of
``rm_episodes``, read by key as the panel reads it; the episode's events; the episode's
``rm_audit`` rows).
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from benchmarks import workload
from benchmarks.backends import Raw, raw_connect
from benchmarks.context import Context
from benchmarks.figures import median, percentile
from benchmarks.raw import EVENTS_TABLE, query_latencies

USER, PASSWORD = "bench-reviewer", "bench-password-1"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
LIST_STATUS, PAGE_SIZE = "finished", 50
NEXT_LINK = re.compile(r'<a href="([^"]*)" rel="next">')
WARMUP = 2

LIST_COLUMNS = ("SELECT episode_id, patient_ref, status, program_code, clinic, level_code,"
                " referred_on, admitted_on, discharged_on, discharge_type, attended,"
                " consecutive_misses FROM rm_episodes")
LIST_FIRST_SQL = (f"{LIST_COLUMNS} WHERE status = ?"
                  " ORDER BY referred_on DESC, episode_id DESC LIMIT ?")
LIST_NEXT_SQL = (f"{LIST_COLUMNS} WHERE status = ? AND (referred_on, episode_id) < (?, ?)"
                 " ORDER BY referred_on DESC, episode_id DESC LIMIT ?")
BOUNDARY_SQL = "SELECT referred_on FROM rm_episodes WHERE episode_id = ?"
EVENTS_SQL = (f"SELECT originator_version, topic, state FROM {EVENTS_TABLE}"
              " WHERE originator_id = ? ORDER BY originator_version")
AUDIT_SQL = ("SELECT position, recorded_at, effective_date, actor_id, actor_role, action,"
             " event_type, aggregate, aggregate_id, version, patient_ref, data_category, reason,"
             " correlation_id, command_id, prior_version FROM rm_audit WHERE aggregate_id = ?"
             " ORDER BY position")


def create_panel(url: str, clock: Any = None) -> Any:
    """The panel's Flask app on ``url`` (``clock``: the benchmarks' fixed one by default), with
    one reviewer (who may open every page measured), added when missing."""
    from admin import create_app

    app = create_app({
        "DATABASE_URL": url, "SECRET_KEY": "benchmark", "CLOCK": clock or workload.bench_clock(),
        "SESSION_COOKIE_SECURE": False, "REMEMBER_COOKIE_SECURE": False,
    })
    users = app.extensions["care_episodes"].users
    if users.get(USER) is None:
        users.add(USER, "reviewer", PASSWORD)
    return app


def log_in(client: Any) -> None:
    token = TOKEN.search(client.get("/login").get_data(as_text=True))
    assert token, "no CSRF token on the login page"
    response = client.post("/login", data={"username": USER, "password": PASSWORD,
                                           "csrf_token": token.group(1)})
    if response.status_code != 302:
        raise RuntimeError(f"could not log in to the panel ({response.status_code})")


def page_latencies(client: Any, path: str, repeats: int) -> tuple[list[float], int]:
    """Milliseconds per request (the whole body read, a streamed export too); body bytes."""
    samples, size = [], 0
    for n in range(WARMUP + repeats):
        start = time.perf_counter()
        response = client.get(path)
        size = len(response.get_data())
        elapsed = (time.perf_counter() - start) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}")
        if n >= WARMUP:
            samples.append(elapsed)
    return samples, size


def list_page(client: Any) -> tuple[str, str, Callable[[Raw], tuple]]:
    """The list's page measured: the one the first page's "Next" link opens (the first page
    itself when all fit on it), with its raw query and that query's parameters."""
    first = f"/episodes/?status={LIST_STATUS}"
    found = NEXT_LINK.search(client.get(first).get_data(as_text=True))
    if found is None:
        return first, LIST_FIRST_SQL, lambda raw: (LIST_STATUS, PAGE_SIZE)
    path = html.unescape(found.group(1))
    after = UUID(re.search(r"after=([0-9a-f-]+)", path).group(1))

    def params(raw: Raw) -> tuple:
        referred_on = raw.execute(BOUNDARY_SQL, (raw.row_id(after),)).fetchone()[0]
        return LIST_STATUS, referred_on, raw.row_id(after), PAGE_SIZE

    return path, LIST_NEXT_SQL, params


def run(ctx: Context) -> None:
    assert ctx.long_episode and ctx.typical_episode
    long_id, typical_id = ctx.long_episode, ctx.typical_episode
    app = create_panel(ctx.main_url)
    client = app.test_client()
    log_in(client)
    list_path, list_sql, list_params = list_page(client)
    # (figure, page, raw query, the raw query's parameters for a raw connection)
    pages: list[tuple[str, str, str, Callable[[Raw], tuple]]] = [
        ("panel.list", list_path, list_sql, list_params),
        ("panel.episode", f"/episodes/{typical_id}", EVENTS_SQL,
         lambda raw: (raw.stream_id(typical_id),)),
        ("panel.episode_long", f"/episodes/{long_id}", EVENTS_SQL,
         lambda raw: (raw.stream_id(long_id),)),
        ("panel.audit_export", f"/audit/export.csv?episode={long_id}", AUDIT_SQL,
         lambda raw: (raw.row_id(long_id),)),
    ]
    raw = raw_connect(ctx.main_url)
    try:
        for name, path, sql, params in pages:
            samples, size = page_latencies(client, path, ctx.sizes.repeats)
            limits, rows = query_latencies(raw, sql, params(raw), ctx.sizes.repeats)
            ctx.log(f"{name}: GET {path} ({size} bytes); raw query: {rows} rows")
            ctx.emit(f"{name}.median", median(samples), "ms", median(limits), lower_is_better=True)
            ctx.emit(f"{name}.p95", percentile(samples, 0.95), "ms", percentile(limits, 0.95),
                     lower_is_better=True)
    finally:
        raw.close()
        app.extensions["care_episodes"].close()
