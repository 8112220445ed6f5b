"""What one run shares between the benchmarks: the sizes, the backend, where results go, and
what earlier stages left behind (the main database, the long episode, a typical episode)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from uuid import UUID

from benchmarks.backends import Backend
from benchmarks.figures import Figure, Reporter


@dataclass(frozen=True)
class Sizes:
    """How big a run is.  The default run is the one docs/performance.md reports."""

    episodes: int = 2_000  # N: historical episodes imported, then read by the panel
    command_episodes: int = 400  # episodes recorded as inline commands (the commands figure)
    long_episode: int = 500  # events of the one long episode (audit export, long episode page)
    repeats: int = 50  # requests per panel page (and runs of each raw query)
    memory_small: int = 200  # episodes in the small database of the memory comparison
    writers: int = 8  # concurrent writer processes (PostgreSQL)
    writer_commands: int = 100  # commands per writer
    # How long the concurrent writers' raw limit runs (and the commands' limit, when too few
    # commands to interleave it with: benchmarks.commands).
    raw_seconds: float = 5.0
    workers: int | None = None  # worker processes of the import and the rebuild (None: the library's choice)

    @classmethod
    def choose(cls, *, quick: bool = False, episodes: int | None = None, **overrides: int) -> Sizes:
        base = cls(episodes=200, long_episode=200, repeats=20, writer_commands=25,
                   raw_seconds=2.0) if quick else cls()
        if episodes is not None:
            if episodes < 2:
                raise ValueError("--episodes must be at least 2")
            base = replace(base, episodes=episodes)
        n = base.episodes
        # The commands are recorded among the N episodes already there: 400 of them (~8,800
        # commands) measure the rate at any N without the run growing with it.
        base = replace(base, command_episodes=max(2, min(400, n // 5)), memory_small=max(2, n // 10))
        given = {name: value for name, value in overrides.items() if value is not None}
        return replace(base, **given)


@dataclass
class Context:
    backend: Backend
    sizes: Sizes
    reporter: Reporter
    main_url: str = ""
    long_episode: UUID | None = None
    typical_episode: UUID | None = None  # the longest demo episode
    facts: dict[str, object] = field(default_factory=dict)  # sizes and counts for the report

    @property
    def name(self) -> str:
        return self.backend.name

    def emit(self, name: str, value: float, unit: str, limit: float, *,
             lower_is_better: bool = False) -> Figure:
        figure = Figure(name, self.name, value, unit, limit, lower_is_better)
        self.reporter.emit(figure)
        return figure

    def log(self, message: str) -> None:
        self.reporter.log(f"{self.name}: {message}")

    def note(self, key: str, value: object) -> None:
        self.facts[key] = value
        self.log(f"{key} = {value}")

    def problem(self, message: str) -> None:
        """Something a benchmark found wrong (not slow: wrong); the run ends with an error."""
        self.facts.setdefault("problems", []).append(message)  # type: ignore[union-attr]
        self.reporter.log(f"PROBLEM ({self.name}): {message}")
