"""The workload: realistic episodes written through the library's own commands.

* :func:`seed` records demo episodes (``episodes.demo.seed_demo``: three programs, every
  status and discharge type, misses, holds, step-downs, corrections), each program day's group
  hours as three one-hour groups (:data:`GROUPS_PER_DAY`): ~48 events an episode, the issue's
  scale (about 5 million events at 100,000 episodes).
* :func:`record_long_episode` records one episode of a given number of events (a long stay
  with two sessions a day): the subject of the per-episode audit export and a long episode page.
* :class:`Timed` wraps an application and times its ``execute`` calls only, so what the demo
  generator itself does (and its reads between episodes) is not counted.
* :func:`histories` gives the same demo episodes as input for the bulk import
  (``episodes.importing``): the commands, not the events, as a migration file would hold them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from episodes import Actor, ActorRole, Episodes, FixedClock, Receipt, demo
from episodes.demo import PROGRAMS, seed_demo
from episodes.importing import EpisodeHistory, ImportCommand, episode_id_for
from projections import ReadModels

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)  # the demo counts its dates back from here
HISTORY_SEED = 7  # the historical episodes (bulk import)
COMMANDS_SEED = 8  # the episodes recorded as inline commands (other command ids, other episodes)
LONG_ACTOR = Actor("clin-bench", ActorRole.CLINICIAN)
LONG_PATIENT = "Patient/BENCH-LONG"
# Each program day's three group hours as three one-hour sessions (episodes.demo.seed_demo),
# as many IOP days run: ~48 events an episode, where one three-hour session a day gave ~22.  The
# issue sizes the panel's figures at 100,000 episodes and ~5 million events: 4.8 million here,
# 2.2 million before (benchmarks up to session 17; docs/performance-history.md).
GROUPS_PER_DAY = 3


def bench_clock() -> FixedClock:
    return FixedClock(NOW)


class Timed:
    """An application whose ``execute`` calls are counted and timed; all else passes through."""

    def __init__(self, app: Episodes, between: Callable[[float], None] | None = None):
        """``between``: called after each command, untimed, with the seconds it took."""
        self.app = app
        self.seconds = 0.0
        self.commands = 0
        self.between = between

    def execute(self, command: str, data: Any, actor: Actor) -> Any:
        start = time.perf_counter()
        try:
            return self.app.execute(command, data, actor)
        finally:
            took = time.perf_counter() - start
            self.seconds += took
            self.commands += 1
            if self.between is not None:
                self.between(took)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Seeded:
    episode_ids: tuple[UUID, ...]
    commands: int  # one event each
    seconds: float  # inside execute() only

    @property
    def rate(self) -> float:
        return self.commands / self.seconds


def seed(app: Episodes, episodes: int, seed: int = HISTORY_SEED,
         between: Callable[[float], None] | None = None) -> Seeded:
    """Record ``episodes`` demo episodes through ``app.execute``, timing the commands
    (``between``: as :class:`Timed`'s)."""
    timed = Timed(app, between)
    summary = seed_demo(timed, episodes=episodes, seed=seed, today=NOW.date(),  # type: ignore[arg-type]
                        groups_per_day=GROUPS_PER_DAY)
    return Seeded(summary.episode_ids, timed.commands, timed.seconds)


def define_programs(app: Episodes) -> None:
    """The demo's programs (an import's admissions look them up), as ``seed_demo`` defines them."""
    admin = Actor("adm-demo", ActorRole.ADMIN)
    for program in PROGRAMS:
        app.define_program(admin, **program)


def histories(episodes: int, seed: int = HISTORY_SEED) -> list[EpisodeHistory]:
    """The commands of ``episodes`` demo episodes (those :func:`seed` records with the same
    seed), one history each, without touching a database: the bulk import's input."""
    return list(iter_histories(episodes, seed))


def iter_histories(episodes: int, seed: int = HISTORY_SEED) -> Iterator[EpisodeHistory]:
    """:func:`histories` one at a time, for imports too large to hold in memory (100,000
    demo episodes take about 1.2 GB as a list).  The loop of ``seed_demo``, episode by episode:
    the same random sequence, so the same episodes."""
    rng, discharge_types = random.Random(seed), demo.discharge_types_in_turn()
    for n in range(episodes):
        capture = _Capture()
        demo._seed_episode(capture, rng, n, seed, NOW.date(), discharge_types,  # type: ignore[arg-type]
                           GROUPS_PER_DAY)
        yield EpisodeHistory(tuple(capture.histories[0]), f"episode {n + 1}")


class _Capture:
    """Stands in for an application under the demo generator: keeps each command instead of
    executing it, and answers with the receipt the application would give (the generator
    only reads a receipt's episode id and version)."""

    clock = bench_clock()

    def __init__(self) -> None:
        self.histories: list[list[ImportCommand]] = []

    def execute(self, command: str, data: Any, actor: Actor) -> Receipt:
        data = dict(data)
        if command == "refer":
            self.histories.append([])
            episode_id = episode_id_for(data["command_id"])
        else:
            episode_id = data.pop("episode_id")  # the import derives it from the referral
        self.histories[-1].append(ImportCommand(command, data, actor))
        return Receipt(episode_id, len(self.histories[-1]), command, NOW)


def long_history(events: int) -> EpisodeHistory:
    """The commands of :func:`record_long_episode`'s episode, for the bulk import."""
    capture = _Capture()
    record_long_episode(capture, events)  # type: ignore[arg-type]
    return EpisodeHistory(tuple(capture.histories[0]), "the long episode")


def record_long_episode(app: Episodes, events: int) -> UUID:
    """One episode of exactly ``events`` events: referral, intake, admission, then sessions
    (a group and an individual session most days, an excused absence now and then)."""
    if events < 4:
        raise ValueError("a long episode has at least 4 events")
    run = _runner(app)
    referred = date(2025, 6, 2)
    episode_id = run("refer", patient_ref=LONG_PATIENT, effective_date=referred,
                     source="primary care", direction="step-up", requested_level="2.1").episode_id
    run("complete_intake", episode_id=episode_id, effective_date=referred + timedelta(days=1),
        clinician=LONG_ACTOR.id, diagnoses=[{"code": "F33.1", "category": "mental-health"}],
        asam_ratings={str(d): 2 for d in range(1, 7)}, recommended_level="2.1", phq9=18, gad7=14)
    admitted = referred + timedelta(days=2)
    run("admit", episode_id=episode_id, effective_date=admitted, program_code="iop-12wk",
        clinic="north", payer="Medicaid")
    for n in range(events - 3):
        day = admitted + timedelta(days=n // 2)
        if n % 17 == 16:
            run("record_absence", episode_id=episode_id, effective_date=day, kind="group",
                minutes=180, excused=True)
        elif n % 2 == 0:
            run("record_attendance", episode_id=episode_id, effective_date=day, kind="group",
                minutes=180, format="in-person", topic="Relapse prevention")
        else:
            run("record_attendance", episode_id=episode_id, effective_date=day,
                kind="individual", minutes=50, format="virtual", topic="individual therapy")
    return episode_id


def _runner(app: Episodes) -> Any:
    counter = iter(range(1_000_000))

    def run(command: str, **data: Any) -> Any:
        data["command_id"] = f"bench-long-{next(counter)}"
        return app.execute(command, data, LONG_ACTOR)

    return run


def admitted_episodes(app: Episodes, statuses: tuple[str, ...] = ("active",)) -> dict[UUID, date]:
    """Episodes in these statuses (up to 500 of each, by the read models) and the day each was
    admitted on: a day a session may be recorded on, late where the episode is finished."""
    reads = ReadModels(app)
    pages = [reads.episodes(status=status, page_size=500) for status in statuses]
    return {row.episode_id: row.admitted_on for page in pages for row in page.rows if row.admitted_on}


def record_sessions(app: Any, admitted: dict[UUID, date], count: int, start: int,
                    prefix: str = "profile") -> None:
    """``count`` group sessions, one an episode in turn (``admitted``: episode id -> a day in
    treatment, its admission), command ids ``{prefix}-{n}`` from ``n = start``; ``app``: an
    application or anything with its ``execute`` (a :class:`Timed`)."""
    actor = Actor("clin-profile", ActorRole.CLINICIAN)
    ids = list(admitted)
    for n in range(start, start + count):
        episode = ids[n % len(ids)]
        app.execute("record_attendance", {
            "episode_id": episode, "command_id": f"{prefix}-{n}", "kind": "group", "minutes": 180,
            "format": "in-person", "effective_date": admitted[episode],  # a day in treatment
        }, actor)


def stream_lengths(app: Episodes, episode_ids: tuple[UUID, ...]) -> dict[UUID, int]:
    """How many events each of the given episodes has (its version)."""
    return {episode_id: app.repository.get(episode_id).version for episode_id in episode_ids}
