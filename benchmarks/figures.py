"""A measured figure beside the limit the database itself reaches, and how it is printed.

Every figure is one JSON object per line::

    {"name": "commands", "backend": "sqlite", "value": 212.4, "unit": "commands/s",
     "limit": 2391.0, "ratio": 0.08883}

``ratio`` is ``value / limit`` for rates (higher is better), ``limit / value`` for latencies
and memory (lower is better), so a ratio of 1 always means "as good as the limit".
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TextIO

KEYS = ("name", "backend", "value", "unit", "limit", "ratio")


def significant(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant digits (what is printed)."""
    return float(f"{x:.{digits}g}")


@dataclass(frozen=True)
class Figure:
    name: str
    backend: str
    value: float
    unit: str
    limit: float
    lower_is_better: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        # Rounded once here, so the printed ratio is exactly value / limit of the printed numbers.
        object.__setattr__(self, "value", significant(self.value))
        object.__setattr__(self, "limit", significant(self.limit))

    @property
    def ratio(self) -> float:
        numerator, denominator = ((self.limit, self.value) if self.lower_is_better
                                  else (self.value, self.limit))
        if denominator == 0:
            return math.inf if numerator else 1.0
        return significant(numerator / denominator)

    def as_dict(self) -> dict[str, object]:
        values = asdict(self)
        return {key: values[key] if key != "ratio" else self.ratio for key in KEYS}

    def json_line(self) -> str:
        return json.dumps(self.as_dict())

    def text_line(self) -> str:
        return (f"{self.backend:<9} {self.name:<34} {self.value:>12g} {self.unit:<12} "
                f"limit {self.limit:>12g}   ratio {self.ratio:.4g}")


class Reporter:
    """Prints figures as they are measured (JSON lines or a table) and keeps them."""

    def __init__(self, *, as_json: bool, out: TextIO | None = None, log: TextIO | None = None,
                 quiet: bool = False):
        self.as_json = as_json
        self.out = sys.stdout if out is None else out
        self.log_stream = sys.stderr if log is None else log
        self.quiet = quiet
        self.figures: list[Figure] = []

    def emit(self, figure: Figure) -> None:
        self.figures.append(figure)
        print(figure.json_line() if self.as_json else figure.text_line(), file=self.out, flush=True)

    def log(self, message: str) -> None:
        """Progress and context (sizes, event counts): never mixed into the JSON lines."""
        if not self.quiet:
            print(f"[bench] {message}", file=self.log_stream, flush=True)


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile: the smallest sample with ``fraction`` of them at or below it."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)
