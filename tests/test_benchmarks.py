"""The benchmark harness, run on a tiny workload: every figure is a JSON line with the six keys,
a positive value beside a positive limit, and the ratio the issue defines.

No test here times anything: the figures' sizes are whatever this machine gives.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import concurrency, machine, workload
from benchmarks.backends import PostgresBackend
from benchmarks.context import Sizes
from benchmarks.figures import Figure, Reporter, percentile
from benchmarks.memory import peak_rss
from benchmarks.runner import run_backend

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"name", "backend", "value", "unit", "limit", "ratio"}
SQLITE_FIGURES = {
    "commands", "commands.first_visit", "bulk_import", "rebuild",
    "panel.list.median", "panel.list.p95", "panel.episode.median", "panel.episode.p95",
    "panel.episode_long.median", "panel.episode_long.p95",
    "panel.audit_export.median", "panel.audit_export.p95",
    "memory.rebuild", "memory.audit_export",
}
LOWER_IS_BETTER_UNITS = {"ms", "MiB"}  # times and memory: ratio = limit / value


def figures(output: str) -> dict[str, dict]:
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    return {line["name"]: line for line in lines}


def expected_ratio(figure: dict) -> float:
    if figure["unit"] in LOWER_IS_BETTER_UNITS:
        return figure["limit"] / figure["value"]
    return figure["value"] / figure["limit"]


# ---------------------------------------------------------------- figures and percentiles


def test_a_rate_is_compared_as_value_over_limit_and_a_time_as_limit_over_value():
    commands = Figure("commands", "sqlite", 150.0, "commands/s", 3000.0)
    page = Figure("panel.list.p95", "sqlite", 20.0, "ms", 0.5, lower_is_better=True)
    # Check 150 / 3000 = 0.05, and 0.5 ms / 20 ms = 0.025.
    assert commands.as_dict() == {"name": "commands", "backend": "sqlite", "value": 150.0,
                                  "unit": "commands/s", "limit": 3000.0, "ratio": 0.05}
    assert page.ratio == 0.025


def test_the_printed_ratio_is_that_of_the_printed_numbers():
    figure = Figure("rebuild", "postgres", 1234.5678, "events/s", 98765.4321)
    line = json.loads(figure.json_line())
    # Check the value and the limit are rounded to 4 significant digits, the ratio from them:
    # 1235 / 98770 = 0.012503...
    assert (line["value"], line["limit"], line["ratio"]) == (1235.0, 98770.0, 0.0125)


def test_the_95th_percentile_is_the_nearest_rank():
    samples = [float(n) for n in range(1, 21)]  # 1..20 ms
    # Check rank ceil(0.95 * 20) = 19: the 19th smallest sample; the median of 1..20 is 10.5.
    assert percentile(samples, 0.95) == 19.0
    assert percentile([7.0], 0.95) == 7.0


def test_a_quick_run_is_200_episodes_and_the_rest_follows_from_n():
    sizes = Sizes.choose(quick=True)
    # Check a fifth of 200 episodes recorded as commands, a tenth in the small memory database.
    assert (sizes.episodes, sizes.command_episodes, sizes.memory_small) == (200, 40, 20)
    assert Sizes.choose(episodes=2_000).command_episodes == 400
    assert Sizes.choose().writers == 8


# ---------------------------------------------------------------- a whole run on SQLite


def test_a_tiny_run_on_sqlite_prints_every_figure_as_one_json_line():
    done = subprocess.run(
        # (8 episodes: the fewest whose demo histories admit one, besides the long episode, for
        # commands.first_visit to record into)
        [sys.executable, "-m", "benchmarks", "--json", "--backend", "sqlite", "--episodes", "8",
         "--long-episode", "12", "--repeats", "3", "--raw-seconds", "0.2"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    found = {line["name"]: line for line in lines}
    # Check one line per figure of the issue (concurrency is PostgreSQL's), each with the six keys.
    assert set(found) == SQLITE_FIGURES
    assert len(lines) == len(SQLITE_FIGURES)
    for figure in lines:
        assert set(figure) == KEYS, figure
        assert figure["backend"] == "sqlite"
        assert figure["value"] > 0 and figure["limit"] > 0, figure
        assert figure["ratio"] == pytest.approx(expected_ratio(figure), rel=1e-3), figure
    # Check the units name what was measured.
    assert found["commands"]["unit"] == found["commands.first_visit"]["unit"] == "commands/s"
    assert found["bulk_import"]["unit"] == found["rebuild"]["unit"] == "events/s"
    assert found["panel.audit_export.p95"]["unit"] == "ms"
    assert found["memory.rebuild"]["unit"] == "MiB"
    # Check the progress went to standard error, never between the JSON lines.
    assert "imported_events" in done.stderr


def test_a_run_without_json_prints_a_readable_table():
    out = io.StringIO()
    reporter = Reporter(as_json=False, out=out, quiet=True)
    reporter.emit(Figure("commands", "sqlite", 150.0, "commands/s", 3000.0))
    # Check the line names the figure, its value and unit, the limit and the ratio.
    assert out.getvalue().split() == ["sqlite", "commands", "150", "commands/s", "limit", "3000",
                                      "ratio", "0.05"]


def test_the_machines_python_speed_is_the_fastest_of_its_rounds(monkeypatch):
    rounds = iter([0.4, 0.1, 0.3])  # seconds for 1,000 loops each
    monkeypatch.setattr(machine.timeit, "repeat", lambda *a, **k: [next(rounds) for _ in range(3)])
    assert machine.python_loop_us(repeat=3, number=1_000) == pytest.approx(100.0)  # 0.1 s / 1,000


def test_the_machines_python_speed_is_measured():
    assert 0 < machine.python_loop_us(repeat=1, number=10) < 1_000_000


# ---------------------------------------------------------------- memory


def test_a_childs_peak_memory_is_its_own_not_the_benchmark_processs(sqlite_url):
    ballast = b"x" * (300 * 1024 * 1024)  # this process now holds 300 MiB more
    peak, said = peak_rss("baseline", sqlite_url)
    # Check the child (the libraries and an open application) is measured well under 300 MiB:
    # a child started straight from this process would start at its peak.
    assert said == "opened"
    assert 10 < peak < 300
    assert len(ballast) == 300 * 1024 * 1024


# ---------------------------------------------------------------- concurrency on PostgreSQL


@pytest.mark.postgres
def test_two_writers_into_the_same_episodes_lose_and_duplicate_nothing(postgres_url):
    out = io.StringIO()
    reporter = Reporter(as_json=True, out=out, quiet=True)
    backend = PostgresBackend(existing_url=postgres_url)
    sizes = Sizes(writers=2, writer_commands=4, raw_seconds=0.2)
    ctx = run_backend(backend, sizes, reporter, stages=(concurrency,))
    found = figures(out.getvalue())
    assert set(found) == {"concurrency.commands", "concurrency.conflicts_retried",
                          "concurrency.events_found", "concurrency.distinct_command_ids",
                          "concurrency.projected"}
    assert all(set(f) == KEYS and f["backend"] == "postgres" for f in found.values())
    # Check the throughput is beside the raw limit of as many writer processes.
    throughput = found["concurrency.commands"]
    assert throughput["value"] > 0 and throughput["limit"] > 0
    assert throughput["ratio"] == pytest.approx(throughput["value"] / throughput["limit"], rel=1e-3)
    # Check 2 writers x 4 sessions = 8 events found for 8 commands acknowledged, 8 command ids.
    assert (found["concurrency.events_found"]["value"], found["concurrency.events_found"]["limit"]) \
        == (8, 8)
    assert found["concurrency.distinct_command_ids"]["value"] == 8
    # Check the read models kept up: 3 programs + 2 episodes x (referral, intake, admission)
    # + 8 sessions = 17 events, 17 audit rows.
    assert (found["concurrency.projected"]["value"], found["concurrency.projected"]["limit"]) \
        == (17, 17)
    # Check retries are counted per command (none is fine: the stream lock serialises writers).
    retried = found["concurrency.conflicts_retried"]
    assert retried["limit"] == 8 and retried["value"] >= 0
    assert "problems" not in ctx.facts


def test_the_statement_floor_replays_what_the_commands_sent(capsys):
    from benchmarks import statement_floor

    statement_floor.main(["--episodes", "2", "--command-episodes", "4"])
    printed = capsys.readouterr().out
    # Check the replay ran the captured statements: a count of them, and a floor in µs.
    commands = int(printed.split(" commands, ")[0])
    statements = float(printed.split(" commands, ")[1].split(" statements")[0])
    assert commands >= 4 and statements >= 6  # head, event, head row, position, row, audit at least
    # Every commit writes pages: the event, its stream's head, the position, the audit row...
    pages = float(printed.split("statements each\n")[1].split(" pages")[0])
    assert pages >= 4
    # ... and they are told apart by table or index, adding up to the total.
    shares = printed.split("by table or index: ")[1].split("\n")[0].split(", ")
    per_btree = {share.rsplit(" ", 1)[0]: float(share.rsplit(" ", 1)[1]) for share in shares}
    assert {"care_episodes_events", "rm_audit", "rm_tracking"} <= set(per_btree)
    assert abs(sum(per_btree.values()) - pages) <= 0.01 * len(per_btree)
    assert "through sqlite3 alone:" in printed and "best this schema allows" in printed


def _profiled_calls(printed: str, label: str) -> float:
    """The calls a command of a part of the command path, as `benchmarks.profiling` printed them."""
    line = next(line for line in printed.splitlines() if line.strip().startswith(label))
    return float(line.split()[-1])


@pytest.mark.parametrize("kept", [False, True], ids=["first-visit", "kept"])
def test_the_profile_follows_the_path_the_timed_commands_took(capsys, kept):
    from benchmarks import profiling

    profiling.main(["--episodes", "50", "--commands", "3", "--profiler", "cprofile",
                    *(["--kept"] if kept else [])])
    printed = capsys.readouterr().out
    assert "; 3 commands into 3 active episodes" in printed
    # Every command's input is validated (from memory or not).
    assert _profiled_calls(printed, "validate the input") == 1
    # A first visit reads the episode from the store and replays it; a kept one does neither.
    assert _profiled_calls(printed, "replay the stream") == (0 if kept else 1)
    decoded = _profiled_calls(printed, "decode a stored event")  # events replayed a command
    assert decoded == 0 if kept else decoded >= 2
    # One commit, on SQLite through the driver: no statement of either path goes through
    # SQLAlchemy (the replay reads through the driver too).
    commits = (_profiled_calls(printed, "COMMIT through the driver"),
               _profiled_calls(printed, "COMMIT through SQLAlchemy"))
    assert commits == (1, 0)


def test_two_checkouts_are_timed_in_turn(capsys):
    from benchmarks import compare

    root = Path(__file__).resolve().parents[1]
    compare.main([str(root), str(root), "--episodes", "2", "--turn-episodes", "3", "--rounds", "1"])
    printed = capsys.readouterr().out
    # Check both sides ran and a time a command was read back from each.
    assert "round 1 before" in printed and "round 1 after" in printed
    median = printed.split("median: before ")[1]
    assert float(median.split(" ms")[0]) > 0


def test_pages_are_timed_on_an_existing_database_with_their_statements(tmp_path, capsys):
    from benchmarks import pages
    from episodes.demo import seed_demo
    from projections import ProjectedEpisodes

    url = f"sqlite:///{tmp_path / 'pages.db'}"
    app = ProjectedEpisodes(url, clock=workload.bench_clock())
    seed_demo(app, episodes=6)
    app.close()
    pages.main([url, "/", "/episodes/?status=active", "--repeats", "2", "--statements"])
    printed = capsys.readouterr().out
    # Check each page was timed and its statements listed, slowest first. Which statements are
    # slowest depends on the machine's load (and the dashboard's path on the day), so the check
    # is on how many are listed and their order, not on which tables they read.
    assert printed.count(" ms (2 requests)") == 2
    for page in printed.split("/episodes/"):
        sent = int(page.split(" statements, ")[0].rsplit(" ", 1)[1])
        listed = [line.split(" ms  ", 1) for line in page.splitlines() if " ms  " in line]
        assert sent > 0 and len(listed) == min(sent, pages.SLOWEST)
        assert all(sql.startswith(("SELECT", "INSERT", "WITH")) for _, sql in listed)
        times = [float(ms) for ms, _ in listed]
        assert times == sorted(times, reverse=True)


def test_the_drift_compares_neighbouring_chunks_and_distant_ones():
    # A machine that ran the loop in 10 ms for a while, then in 20 ms.
    found = machine.drift_of([0.010] * 30 + [0.020] * 30)
    assert (found["chunks"], found["fastest_ms"], found["slowest_ms"]) == (60, 10.0, 20.0)
    # Check neighbours are equal but for the one step, while chunks far apart differ by it.
    assert found["near_p10"] == found["near_p90"] == 1.0
    assert found["far_p90"] == 2.0


def test_the_drift_measures_chunks_for_the_time_given():
    start = time.perf_counter()
    found = machine.drift(seconds=0.05, chunk_iterations=1_000)
    # Check it went on for the time asked (not a time limit: a lower bound of the work done).
    assert time.perf_counter() - start >= 0.05
    assert found["chunks"] >= 4 and 0 < found["fastest_ms"] <= found["slowest_ms"]


def test_the_imports_limit_is_measured_again_after_a_discarded_slice_on_postgresql(postgres_url):
    """Right after a large import PostgreSQL writes at a fraction of its rate for a while: the
    limit's second half comes after a slice of the same size, written and not counted."""
    from benchmarks import raw
    from benchmarks.backends import raw_connect

    connection = raw_connect(postgres_url)
    try:
        raw.create_raw_table(connection)
        payloads = [("episodes.events:SessionAttended", b'{"minutes": 180}')]
        raw.settle(connection, payloads, 120)
        written = connection.execute(f"SELECT count(*) FROM {raw.RAW_TABLE}").fetchone()[0]
        assert written == 120
        raw.drop_raw_table(connection)
    finally:
        connection.close()
