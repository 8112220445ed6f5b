"""``python -m benchmarks [--quick] [--json] [--backend sqlite|postgres|both] [--episodes N]``

Measures the library beside the limits of the database itself, on SQLite and PostgreSQL;
see ``benchmarks/__init__.py`` and docs/performance.md.  Figures go to standard output
(one JSON object per line with ``--json``), progress and sizes to standard error.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from benchmarks import machine
from benchmarks.backends import (
    DEFAULT_POSTGRES_ADMIN_URL,
    DEFAULT_POSTGRES_DATABASE,
    BackendUnavailable,
    PostgresBackend,
    SQLiteBackend,
)
from benchmarks.context import Sizes
from benchmarks.figures import Reporter
from benchmarks.runner import chosen_stages, clear_payload_settings, run_backend


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a short run: 200 episodes, fewer repeats (about 2 minutes)")
    parser.add_argument("--json", action="store_true", help="one JSON object per figure and line")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--episodes", type=int, metavar="N",
                        help="historical episodes (default 2000, 200 with --quick)")
    parser.add_argument("--long-episode", type=int, metavar="EVENTS",
                        help="events of the long episode (default 500, 200 with --quick)")
    parser.add_argument("--command-episodes", type=int, metavar="N",
                        help="episodes recorded as inline commands (default N/5, at most 400)")
    parser.add_argument("--repeats", type=int, help="requests per panel page (default 50, 20 quick)")
    parser.add_argument("--writers", type=int, help="concurrent writers on PostgreSQL (default 8)")
    parser.add_argument("--writer-commands", type=int, metavar="N",
                        help="commands per writer (default 100, 25 with --quick)")
    parser.add_argument("--raw-seconds", type=float, metavar="S",
                        help="how long each raw single-row insert limit runs (default 5, 2 quick)")
    parser.add_argument("--stages", metavar="NAMES",
                        help="only these stages, comma-separated (bulk_import, rebuild, commands, panel, "
                             "memory, concurrency), with the ones they need (e.g. panel: bulk_import, rebuild)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="worker processes of the import and the rebuild (default: the library's "
                             "choice, one per core; 0: all in one process)")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "CARE_EPISODES_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL),
        help="a PostgreSQL server URL (its database is only used to create the scratch one)")
    parser.add_argument("--database", default=DEFAULT_POSTGRES_DATABASE,
                        help="the scratch PostgreSQL database, created and dropped by the run")
    args = parser.parse_args(argv)
    try:
        chosen_stages(args.stages, "postgres")
    except ValueError as error:
        parser.error(f"--stages: {error}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sizes = Sizes.choose(quick=args.quick, episodes=args.episodes, long_episode=args.long_episode,
                         command_episodes=args.command_episodes, repeats=args.repeats, writers=args.writers,
                         writer_commands=args.writer_commands, raw_seconds=args.raw_seconds,
                         workers=args.workers)
    reporter = Reporter(as_json=args.json)
    clear_payload_settings(reporter)
    reporter.log(f"{platform.python_implementation()} {platform.python_version()}, "
                 f"{os.cpu_count()} CPUs; sizes: {sizes}")
    reporter.log(f"this machine's Python: {machine.PROBE} in {machine.python_loop_us():.1f} us "
                 "(compare ratios between machines with it: benchmarks/machine.py)")
    names = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    problems: list[str] = []
    started = time.perf_counter()
    for name in names:
        try:
            backend = (SQLiteBackend() if name == "sqlite"
                       else PostgresBackend(args.postgres_url, args.database))
        except BackendUnavailable as error:
            print(f"python -m benchmarks: {error}; run with --backend sqlite to measure "
                  "SQLite only", file=sys.stderr)
            return 2
        try:
            ctx = run_backend(backend, sizes, reporter, chosen_stages(args.stages, name))
            problems += ctx.facts.get("problems", [])  # type: ignore[arg-type]
        finally:
            backend.close()
    reporter.log(f"done in {time.perf_counter() - started:.0f} s")
    for problem in problems:
        print(f"python -m benchmarks: PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
