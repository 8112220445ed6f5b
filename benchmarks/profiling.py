"""Where one inline command spends its time: input for the optimisation work (not a figure).

    python -m benchmarks.profiling [--backend sqlite|postgres] [--episodes N] [--commands K] [--kept]

Builds a database of N demo episodes (read models rebuilt), then records K sessions, each into
another active episode, through :class:`projections.ProjectedEpisodes` (as the panel does):
first timed without a profiler, then K more under a profiler: ``pyinstrument`` (sampling,
little overhead) when it is installed, else ``cProfile`` (deterministic, but its overhead
inflates code with many small calls).  Prints the time per command in each part of the command
path (inclusive: a part contains the parts indented under it), the SQL statements one command
sends, and (cProfile) the functions with the most time of their own.

Both runs take the same path.  By default each command is the process's first on its episode
(a clinician recording for one patient after another in a panel that has just started): the
episode is read and replayed from the store.  With ``--kept``, each episode has had one
session recorded by the same process first (untimed), so every command decides on the copy
the process kept (``episodes/recent.py``): the path of the ``commands`` figure, where each
demo episode is recorded command after command.

pyinstrument is not a dependency: ``.venv/bin/pip install pyinstrument`` to use it.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from typing import Any
from uuid import UUID

from sqlalchemy import event

from benchmarks import workload
from benchmarks.backends import PostgresBackend, SQLiteBackend
from benchmarks.rebuild import rebuild
from episodes import Episodes, application, command_input, driver, integrity
from episodes.episode import Episode
from projections import ProjectedEpisodes, derive
from projections.projector import Projector

PROFILE_DATABASE = "care_episodes_bench_profile"  # not the benchmark's: both can run at once


def _parts() -> tuple[list[tuple[int, str, Callable[..., Any]]], list[tuple[str, Callable[..., Any]]]]:
    """The command path: (depth, label, function) in the order a command runs them; and the
    work counted wherever it is called from: (label, function)."""
    from sqlalchemy.engine import Connection

    from episodes.writer import QueuedAppend, StreamWriter

    path = [
        (0, "the whole command (Episodes.execute)", Episodes.execute),
        (1, "validate the input (marshmallow schema, or remembered)", command_input.load_command),
        (1, "lock the stream (PostgreSQL advisory lock)", StreamWriter.lock_stream),
        # A kept copy is decided on unchecked (episodes/recent.py): these run only without one,
        # for a shared stream, or when the kept copy turned out stale.
        (1, "the episode as stored: head read, kept copy checked, else replayed",
         Episodes._current_episode),
        (2, "SELECT the stream's head", StreamWriter.head),
        # (Its read sent before the head's, when nothing is kept of the episode: fetched here.)
        (2, "replay the stream (no current kept copy)", StreamWriter.stream_read),
        (1, "decide (Episode.record)", Episode.record),
        (1, "queue the event and its head", StreamWriter.queue_append),
        (2, "encode once: JSON, digest, cipher", integrity.encode),
        (1, "the events' positions (PostgreSQL: the round trip)", QueuedAppend.appended),
        (1, "inline read models (Projector.project_own)", Projector.project_own),
        (2, "catch up others' events first (only when behind)", Projector.apply_pending),
        (2, "fold the episode (cache, else replay)", Projector._fold),
        (2, "write the episode row and fact rows", Projector._write_episode),
        (2, "close / open status periods", Projector._write_periods),
        # SQLite commits on the driver's connection (episodes.driver.transaction), PostgreSQL (and
        # SQLite after a SQLAlchemy statement in the transaction) through SQLAlchemy.
        (1, "COMMIT through the driver (SQLite)", driver._commit),
        (1, "COMMIT through SQLAlchemy (PostgreSQL)", Connection.commit),
    ]
    anywhere = [
        ("decode a stored event (mapper.to_domain_event)",
         application.TupleRestoringMapper.to_domain_event),
        ("digest of a stored event (hash chain)", integrity.stored_digest),
        ("derive the episode row", derive.episode_row),
    ]
    return path, anywhere


def _key(function: Callable[..., Any]) -> tuple[str, int, str]:
    code = function.__code__
    return code.co_filename, code.co_firstlineno, code.co_name


class StatementCounter:
    """SQL statements sent to the database, by their verb and table: those SQLAlchemy sends
    and those the command path sends through the driver (episodes/driver.py)."""

    def __init__(self, engine: Any):
        self.counts: Counter[str] = Counter()
        event.listen(engine, "before_cursor_execute", self._seen)
        execute, execute_many = driver.execute, driver.execute_many

        def counted_execute(connection: Any, prepared: Any, *args: Any) -> Any:
            self._seen(connection, None, prepared.sql)
            return execute(connection, prepared, *args)

        def counted_execute_many(connection: Any, prepared: Any, rows: Any) -> None:
            self._seen(connection, None, prepared.sql)
            execute_many(connection, prepared, rows)

        driver.execute, driver.execute_many = counted_execute, counted_execute_many  # type: ignore[assignment]

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        words = statement.split()
        verb = words[0].upper() if words else "?"
        table = next((w for w in words if w.startswith(("care_episodes_", "rm_"))), "")
        if not table and len(words) > 1:  # e.g. SELECT pg_advisory_xact_lock(...)
            table = words[1].split("(")[0]
        self.counts[f"{verb} {table}".strip()] += 1


def build(url: str, episodes: int) -> None:
    app = Episodes(url, clock=workload.bench_clock())
    try:
        workload.seed(app, episodes)
    finally:
        app.close()
    rebuild(url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--commands", type=int, default=100)
    parser.add_argument("--kept", action="store_true",
                        help="profile commands on episodes the process kept (the commands figure's path)")
    parser.add_argument("--profiler", choices=("pyinstrument", "cprofile"),
                        default="pyinstrument" if _has_pyinstrument() else "cprofile")
    args = parser.parse_args(argv)
    backend = (SQLiteBackend() if args.backend == "sqlite"
               else PostgresBackend(database=PROFILE_DATABASE))
    try:
        url = backend.fresh("profile")
        build(url, args.episodes)
        app = ProjectedEpisodes(url, clock=workload.bench_clock())
        ids = workload.admitted_episodes(app)
        k = min(args.commands, len(ids))
        visit = "a session recorded by this process before each" if args.kept else "a first visit each"
        print(f"{backend.describe()}; {args.episodes} demo episodes, "
              f"{app.recorder.max_notification_id()} events; {k} commands into {k} active episodes, "
              f"{visit}")
        app, plain_ms = _timed(app, url, ids, k, args.kept)
        statements = StatementCounter(app.recorder.datastore.engine)  # type: ignore[attr-defined]
        if args.profiler == "pyinstrument":
            from pyinstrument import Profiler

            sampler = Profiler(interval=0.001)
            sampler.start()
            workload.record_sessions(app, ids, k, 3 * k)
            sampler.stop()
            measured: Callable[[Callable[..., Any]], tuple[float, float | None]] = \
                _sampled(sampler.last_session.root_frame(), k)
            profiler = None
        else:
            profiler = cProfile.Profile()
            profiler.enable()
            workload.record_sessions(app, ids, k, 3 * k)
            profiler.disable()
            measured = _traced(profiler, k)
        app.close()
    finally:
        backend.close()
    print(f"profiler: {args.profiler}")
    report(measured, statements, k, plain_ms)
    if profiler is not None:
        print("\nfunctions with the most time of their own:")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def _timed(app: ProjectedEpisodes, url: str, ids: dict[UUID, date], k: int,
           kept: bool) -> tuple[ProjectedEpisodes, float]:
    """Record k sessions without a profiler (ms a command), and return the application the
    profiled commands then run on, in the same state: with ``kept``, a session recorded on
    each episode beforehand (untimed), so the timed and the profiled commands all find the copy
    this process kept; without, a fresh application for the profiled run, so its commands
    too are each the process's first on their episode (read and replayed from the store)."""
    if kept:
        workload.record_sessions(app, ids, k, 0)
    start = time.perf_counter()
    workload.record_sessions(app, ids, k, k)
    plain_ms = (time.perf_counter() - start) * 1000 / k
    if not kept:
        app.close()
        app = ProjectedEpisodes(url, clock=workload.bench_clock())
    return app, plain_ms


def _has_pyinstrument() -> bool:
    try:
        import pyinstrument  # noqa: F401
    except ImportError:
        return False
    return True


def _traced(profiler: cProfile.Profile, k: int) -> Callable[[Callable[..., Any]], tuple[float, float | None]]:
    """Per command: (inclusive ms, calls) of a function, from cProfile."""
    table = pstats.Stats(profiler).stats  # type: ignore[attr-defined]

    def per_command(function: Callable[..., Any]) -> tuple[float, float | None]:
        entry = table.get(_key(function))
        return (entry[3] * 1000 / k, entry[1] / k) if entry else (0.0, 0.0)

    return per_command


def _sampled(root: Any, k: int) -> Callable[[Callable[..., Any]], tuple[float, float | None]]:
    """Per command: (inclusive ms, None) of a function, from pyinstrument's call tree (the
    outermost frames of the function, wherever they are called from)."""

    def inclusive(frame: Any, key: tuple[str, int, str]) -> float:
        if (frame.file_path, frame.line_no, frame.function) == key:
            return frame.time
        return sum(inclusive(child, key) for child in frame.children)

    def per_command(function: Callable[..., Any]) -> tuple[float, float | None]:
        return (inclusive(root, _key(function)) * 1000 / k if root else 0.0), None

    return per_command


def report(measured: Callable[[Callable[..., Any]], tuple[float, float | None]],
           statements: StatementCounter, k: int, plain_ms: float) -> None:
    path, anywhere = _parts()
    total = measured(Episodes.execute)[0]
    print(f"\n{plain_ms:.2f} ms per command without the profiler; {total:.2f} ms under it\n")
    print("the command path, per command (inclusive ms; share of the whole command; calls):")

    def line(indent: str, label: str, function: Callable[..., Any]) -> None:
        ms, calls = measured(function)
        shown = "" if calls is None else f"{calls:5.3g}"
        print(f"  {indent}{label:<{56 - len(indent)}} {ms:8.2f} ms {ms / total:6.1%}  {shown}")

    for depth, label, function in path:
        line("  " * depth, label, function)
    print("\ncounted wherever called, per command:")
    for label, function in anywhere:
        line("", label, function)
    print(f"\nSQL statements per command: {sum(statements.counts.values()) / k:.1f}")
    for statement, count in statements.counts.most_common():
        print(f"  {count / k:5.2f}  {statement}")


if __name__ == "__main__":
    main()
