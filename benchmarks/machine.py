"""How fast this machine runs Python, printed at the start of a run.

The figures are ratios against the database's own limit measured in the same run, so they do
not depend on how fast the machine is overall; they do depend on how fast it runs *Python*
compared with how fast it runs SQLite's C code and its own system calls, and that differs
from machine to machine (docs/performance.md, "The same figures on a fifth machine": the same
code gave a SQLite commands ratio of 0.09-0.10 on one machine and 0.055 on one whose Python
was 2.5 times slower).  This one number lets two runs' ratios be compared.
"""

from __future__ import annotations

import timeit

PROBE = "sum(range(1000))"


def python_loop_us(repeat: int = 5, number: int = 2_000) -> float:
    """Microseconds for ``sum(range(1000))``, the best of ``repeat`` rounds."""
    return min(timeit.repeat(PROBE, repeat=repeat, number=number)) / number * 1e6
