"""The rebuild's benchmarks with worker processes: the rebuild figure says how many processes
it used, and the memory figure of a rebuild in several processes is the sum of their peaks."""

from __future__ import annotations

import io
import json
from datetime import date

from benchmarks import bulk_import, memory, rebuild
from benchmarks.backends import SQLiteBackend
from benchmarks.context import Sizes
from benchmarks.figures import Reporter
from benchmarks.memory import peak_rss
from benchmarks.runner import run_backend
from episodes import Episodes
from episodes.demo import seed_demo


def test_a_rebuild_in_two_processes_counts_the_memory_of_both(sqlite_url):
    app = Episodes(sqlite_url)
    try:
        seed_demo(app, episodes=6, seed=2, today=date(2026, 5, 30))
    finally:
        app.close()
    alone, said_alone = peak_rss("rebuild", sqlite_url, 1)
    both, said_both = peak_rss("rebuild", sqlite_url, 2)
    assert "in 1 processes" in said_alone and "in 2 processes" in said_both
    # Check each process counts with its own peak (each holds the libraries, tens of MiB): the
    # sum, where the largest of the two would be about the peak of one process alone.
    assert 10 < alone < 300
    assert both > 1.6 * alone


def test_the_rebuild_stage_notes_the_processes_it_used():
    out = io.StringIO()
    reporter = Reporter(as_json=True, out=out, quiet=True)
    backend = SQLiteBackend()
    sizes = Sizes(episodes=4, long_episode=10, repeats=2, memory_small=2, raw_seconds=0.2, workers=2)
    try:
        ctx = run_backend(backend, sizes, reporter, stages=(bulk_import, rebuild, memory))
    finally:
        backend.close()
    assert ctx.facts["rebuild_processes"] == 2
    assert ctx.facts["first_rebuild_events_per_s"] > 0  # the figure is a second rebuild's
    assert ctx.facts["memory_rebuild_processes"] == 2
    names = {json.loads(line)["name"] for line in out.getvalue().splitlines()}
    assert {"rebuild", "memory.rebuild"} <= names
