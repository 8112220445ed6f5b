"""How fast this machine runs Python, printed at the start of a run.

The figures are ratios against the database's own limit measured in the same run, so they do
not depend on how fast the machine is overall; they do depend on how fast it runs *Python*
compared with how fast it runs SQLite's C code and its own system calls, and that differs
from machine to machine (docs/performance.md, "The same figures on a fifth machine": the same
code gave a SQLite commands ratio of 0.09-0.10 on one machine and 0.055 on one whose Python
was 2.5 times slower).  This one number lets two runs' ratios be compared.
"""

from __future__ import annotations

import statistics
import time
import timeit

PROBE = "sum(range(1000))"


def python_loop_us(repeat: int = 5, number: int = 2_000) -> float:
    """Microseconds for ``sum(range(1000))``, the best of ``repeat`` rounds."""
    return min(timeit.repeat(PROBE, repeat=repeat, number=number)) / number * 1e6


# ---------------------------------------------------------------- drift

def drift(seconds: float = 20.0, chunk_iterations: int = 200_000) -> dict[str, float]:
    """How much this machine's speed drifts: a fixed pure-Python loop (~13 ms on the machines
    here) timed again and again for ``seconds``.  Returns the fastest and slowest chunk's
    milliseconds, and the 10th and 90th percentiles of two ratios: each chunk against the
    next (``near_*``), and chunks a third of the run or more apart (``far_*``).  Where the
    near ratios are as spread as the far ones, a limit measured after a figure meets a
    different machine than the figure did (docs/performance.md, the eighth machine)."""
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 4:
        start = time.perf_counter()
        total = 0
        for i in range(chunk_iterations):
            total += i * i % 7
        times.append(time.perf_counter() - start)
    return drift_of(times)


def drift_of(times: list[float]) -> dict[str, float]:
    """:func:`drift`'s figures for chunk times (seconds, in the order they were measured)."""
    near = [b / a for a, b in zip(times, times[1:])]
    gap = max(1, len(times) // 3)
    step = max(1, gap // 10)  # a sample of the far pairs: a long run has millions
    far = [times[j] / times[i] for i in range(0, len(times), step) for j in range(i + gap, len(times), step)]
    deciles = statistics.quantiles
    return {
        "chunks": len(times), "fastest_ms": min(times) * 1e3, "slowest_ms": max(times) * 1e3,
        "near_p10": deciles(near, n=10)[0], "near_p90": deciles(near, n=10)[-1],
        "far_p10": deciles(far, n=10)[0], "far_p90": deciles(far, n=10)[-1],
    }


if __name__ == "__main__":  # python -m benchmarks.machine [seconds]
    import sys

    print(f"{PROBE}: {python_loop_us():.1f} us (best of 5)")
    found = drift(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0)
    print(f"{found['chunks']} chunks of the same loop: {found['fastest_ms']:.1f} to {found['slowest_ms']:.1f} ms; "
          f"ratio of neighbours p10-p90 {found['near_p10']:.2f}-{found['near_p90']:.2f}, "
          f"of chunks a third of the run apart {found['far_p10']:.2f}-{found['far_p90']:.2f}")
