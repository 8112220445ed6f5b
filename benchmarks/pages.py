"""Time some of the panel's pages on a database you already have: input for the optimisation
work, not a figure (no limit beside it).

    python -m benchmarks.pages URL PATH [PATH ...] [--repeats N] [--statements] [--today DATE]

    python -m benchmarks.pages postgresql+psycopg://postgres@127.0.0.1/care / /episodes/ \\
        "/episodes/?q=Patient/0042" --statements

Each page is requested through the Flask test client of ``admin.create_app``, logged in as the
benchmarks' reviewer (``bench-reviewer``, added to the database's users when missing: run it
on a copy, or on a benchmark's database, not on a clinic's).  Prints the median and the 95th
percentile of ``--repeats`` requests after two warm-up ones; with ``--statements``, one more
request per page with the SQL it sent through SQLAlchemy, slowest first (the command path's
driver statements are not seen; a page view's access-log entry is one of them).  ``--today``
sets the panel's clock (default: the benchmarks' fixed clock, as their workload was dated).
"""

from __future__ import annotations

import argparse
import time
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from benchmarks import panel
from benchmarks.figures import median, percentile
from episodes import FixedClock

SLOWEST = 8  # statements printed per page


def open_panel(url: str, today: date | None) -> Any:
    clock = (FixedClock(datetime(today.year, today.month, today.day, 12, tzinfo=timezone.utc))
             if today else None)
    return panel.create_panel(url, clock)


def statements_of(client: Any, path: str) -> tuple[float, list[tuple[float, str]]]:
    """One request's milliseconds, and (ms, SQL) of each statement it sent through SQLAlchemy."""
    sent: list[tuple[float, str]] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["care_episodes_started"] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        started = conn.info.pop("care_episodes_started", None)
        if started is not None:
            sent.append(((time.perf_counter() - started) * 1000, " ".join(statement.split())))

    event.listen(Engine, "before_cursor_execute", before)
    event.listen(Engine, "after_cursor_execute", after)
    try:
        start = time.perf_counter()
        client.get(path).get_data()
        elapsed = (time.perf_counter() - start) * 1000
    finally:
        event.remove(Engine, "before_cursor_execute", before)
        event.remove(Engine, "after_cursor_execute", after)
    return elapsed, sorted(sent, reverse=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pages")
    parser.add_argument("url", help="the database's SQLAlchemy URL")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="a page of the panel, e.g. /")
    parser.add_argument("--repeats", type=int, default=20, help="requests timed per page")
    parser.add_argument("--statements", action="store_true", help="the SQL each page sends")
    parser.add_argument("--today", type=date.fromisoformat, help="the panel's date (YYYY-MM-DD)")
    args = parser.parse_args(argv)
    client = open_panel(args.url, args.today).test_client()
    panel.log_in(client)
    for path in args.paths:
        samples, size = panel.page_latencies(client, path, args.repeats)
        print(f"{path}: {size} bytes, median {median(samples):.1f} ms, "
              f"p95 {percentile(samples, 0.95):.1f} ms ({args.repeats} requests)")
        if args.statements:
            elapsed, sent = statements_of(client, path)
            print(f"  one more request: {elapsed:.1f} ms, {len(sent)} statements, "
                  f"{sum(ms for ms, _ in sent):.1f} ms in them; the slowest:")
            for ms, sql in sent[:SLOWEST]:
                print(f"  {ms:8.1f} ms  {sql[:160]}")


if __name__ == "__main__":
    main()
