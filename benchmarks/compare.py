"""Two versions of the library, timed alternately on the same database: did a change help?

    git worktree add /tmp/before <commit>
    python -m benchmarks.compare /tmp/before . [--backend sqlite|postgres] [--rounds 3]

On a shared machine the speed drifts by tens of percent within minutes, and the raw limits of
a full run drift with it; so a change is judged here by running the command workload of both
checkouts in turn, round after round, on one database (N demo episodes recorded first, then
40 new demo episodes per turn, each turn with seeds of its own).  Each turn is a fresh Python
process that imports the library from its checkout.  Prints ms a command per turn and the
median of each side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.backends import PostgresBackend, SQLiteBackend

TURN = """
import sys
from benchmarks import workload
from projections import ProjectedEpisodes
app = ProjectedEpisodes(sys.argv[1], clock=workload.bench_clock())
seeded = workload.seed(app, int(sys.argv[2]), seed=int(sys.argv[3]))
app.close()
print(1e3 / seeded.rate)
"""


def turn(tree: Path, url: str, episodes: int, seed: int) -> float:
    """ms a command, recording ``episodes`` demo episodes with the library of ``tree``."""
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    result = subprocess.run(
        [sys.executable, "-c", TURN, url, str(episodes), str(seed)],
        cwd=tree, env=environment, capture_output=True, text=True, check=True,
    )
    return float(result.stdout.split()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare")
    parser.add_argument("before", type=Path, help="a checkout of the earlier version")
    parser.add_argument("after", type=Path, help="a checkout of the later version")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--episodes", type=int, default=200, help="recorded first, by the later version")
    parser.add_argument("--turn-episodes", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    before, after = args.before.resolve(), args.after.resolve()
    backend = SQLiteBackend() if args.backend == "sqlite" else PostgresBackend(database="care_episodes_bench_compare")
    try:
        url = backend.fresh("compare")
        turn(after, url, args.episodes, seed=1)
        times: dict[str, list[float]] = {"before": [], "after": []}
        for n in range(args.rounds):
            for side, tree in (("before", before), ("after", after)):
                seed = 100 + 2 * n + (side == "after")
                times[side].append(turn(tree, url, args.turn_episodes, seed))
                print(f"round {n + 1} {side:6s} {times[side][-1]:.3f} ms a command", flush=True)
    finally:
        backend.close()
    b, a = statistics.median(times["before"]), statistics.median(times["after"])
    print(f"median: before {b:.3f} ms, after {a:.3f} ms a command ({(a - b) / b:+.1%})")


if __name__ == "__main__":
    main()
