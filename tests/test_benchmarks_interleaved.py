"""The limits measured interleaved with what they are compared with (the benchmarks are
never timed tests: these check the bookkeeping, not the figures)."""

from __future__ import annotations

import io

import pytest

from benchmarks import bulk_import, commands, raw, rebuild
from benchmarks.backends import SQLiteBackend
from benchmarks.context import Sizes
from benchmarks.figures import Reporter
from benchmarks.runner import run_backend


class RecordedLimit:
    def __init__(self) -> None:
        self.asked: list[float] = []

    def run(self, seconds: float) -> None:
        self.asked.append(seconds)


def test_the_limit_runs_a_share_of_the_commands_time_after_every_slice_of_it():
    limit = RecordedLimit()
    between = commands.Interleaved(limit, every=0.05, share=0.5)  # type: ignore[arg-type]
    for took in (0.02, 0.02, 0.02, 0.07, 0.01):  # seconds each command took
        between(took)
    # Check a slice once 0.05 s of commands had passed (0.06), then at once after the 0.07 s
    # command; the last 0.01 s waits for more commands.
    assert limit.asked == pytest.approx([0.03, 0.035])
    assert between.slices == 2 and between.pending == pytest.approx(0.01)


def test_the_single_row_limit_adds_up_its_slices():
    backend = SQLiteBackend()
    connection = backend.raw_scratch()
    try:
        raw.create_raw_table(connection)
        limit = raw.SingleRowTransactions(connection, [("t:T", b'{"a": 1}')])
        limit.run(0.01)
        first = (limit.done, limit.seconds)
        limit.run(0.01)
        # Check each slice ran for its time (the clock is read every tenth transaction) and
        # the totals grew by the second slice's own.
        assert first[0] >= 10 and first[1] >= 0.01
        assert limit.done > first[0] and limit.seconds >= first[1] + 0.01
        rows = connection.execute(f"SELECT count(*) FROM {raw.RAW_TABLE}").fetchone()[0]
        assert rows == limit.done and limit.rate == limit.done / limit.seconds
    finally:
        connection.close()
        backend.close()


def test_rounds_of_rebuilds_fill_about_five_seconds_at_the_first_ones_pace():
    assert rebuild.rounds_for(0.6) == 5  # at most five
    assert rebuild.rounds_for(2.0) == 2
    assert rebuild.rounds_for(60.0) == 1  # at least one


def test_the_stages_note_how_their_limits_were_interleaved(monkeypatch):
    calls: list[str] = []
    for module, name, label in ((raw, "multi_row_seconds", "limit"), (bulk_import, "_import", "import")):
        def noting(*args, original=getattr(module, name), label=label, **kwargs):
            calls.append(label)
            return original(*args, **kwargs)
        monkeypatch.setattr(module, name, noting)
    out = io.StringIO()
    backend = SQLiteBackend()
    sizes = Sizes(episodes=6, command_episodes=20, long_episode=10, repeats=2, raw_seconds=0.2)
    try:
        ctx = run_backend(backend, sizes, Reporter(as_json=True, out=out, quiet=True),
                          stages=(bulk_import, rebuild, commands))
    finally:
        backend.close()
    facts = ctx.facts
    # Check the commands' limit ran in slices between them, for about half their time.
    assert facts["limit_slices"] >= 1 and facts["limit_transactions"] > 0
    # (Less by what waits for the next slice, under half a slice, and the notes rounding.)
    assert facts["limit_seconds"] >= commands.LIMIT_SHARE * (facts["command_seconds"] - commands.SLICE_SECONDS) - 0.01
    # Check a round ratio for each rebuild measured, the rounds as the first rebuild allowed.
    ratios = facts["rebuild_round_ratios"]
    assert len(ratios) == facts["rebuild_rounds"] >= 1 and all(r > 0 for r in ratios)
    # Check the import's limit ran on both sides of the import.
    assert calls == ["limit", "import", "limit"]
    before, after = facts["import_limit_rows_per_s_before_after"]
    assert before > 0 and after > 0
