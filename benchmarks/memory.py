"""5. Memory: peak resident memory of a rebuild and of a full audit export, each in a process
of its own, at two sizes (the small database has a tenth of the episodes).  Flat memory means
the same peak at both sizes.

Each figure: value = the peak at the full size (MiB), limit = the peak at the small size,
ratio = limit / value (1.0: flat; 0.5: the peak doubled).

The peak is the child's ``ru_maxrss``, as ``getrusage(RUSAGE_CHILDREN)`` reports it in a small
measuring process started for each child (see ``MEASURER``), so no other child, and not the
benchmark process itself, can hide or inflate it.

A rebuild may pass the streams in several processes (``projections.rebuild``): its figure is
then the **sum** of the peaks (the rebuilding process's and each worker's own, ``VmHWM``), the
memory the machine needs for it (``ru_maxrss`` of the children would give the largest one
only).  Both sizes are rebuilt with the same number of processes, the number the library
chooses (or ``--workers`` gives) for the full size, so flat still means flat per process.

Run as a child: ``python -m benchmarks.memory rebuild|export|baseline URL [PROCESSES]``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks import workload
from benchmarks.context import Context
from episodes import Episodes

PEAKS = "peaks_kib"  # the line on which a rebuild child gives the peak of each of its processes

ROOT = Path(__file__).resolve().parent.parent
MODES = ("baseline", "rebuild", "export")


class _Discard:
    """A text stream that keeps nothing: the export's bytes are counted, not held."""

    def __init__(self) -> None:
        self.characters = 0

    def write(self, text: str) -> int:
        self.characters += len(text)
        return len(text)


def child(mode: str, url: str, processes: int | None = None) -> str:
    """What the child process does; returns a line for its parent (a rebuild: two)."""
    app = Episodes(url, clock=workload.bench_clock())
    try:
        if mode == "baseline":  # the libraries imported and the application opened
            import projections  # noqa: F401 - what the others import

            return "opened"
        if mode == "rebuild":
            from projections.rebuild import Rebuild
            from projections.rebuild_workers import own_peak_rss_kib

            job = Rebuild(app, workers=processes)
            applied = job.run()
            peaks = [own_peak_rss_kib(), *job.worker_peaks_kib]
            return (f"{applied} events applied in {job.processes_used} processes\n"
                    f"{PEAKS} {' '.join(map(str, peaks))}")
        from projections import ReadModels

        sink = _Discard()
        rows = ReadModels(app).export_audit(sink, "csv")  # type: ignore[arg-type]
        return f"{rows} audit rows, {sink.characters} characters"
    finally:
        app.close()


# A small process between the benchmark and the measured child.  On Linux a process's peak RSS
# starts at the RSS of the process it was forked from (the kernel keeps the old memory's high
# water mark across exec), so the child is started from this small process, not from the big
# benchmark process; this one reads the peak of its only child: RUSAGE_CHILDREN.
MEASURER = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(done.returncode)\n"
)


def peak_rss(mode: str, url: str, processes: int | None = None) -> tuple[float, str]:
    """Run ``mode`` in a child process: (its peak resident memory in MiB, what it said).  A
    rebuild's peak is the sum of its processes' peaks (``processes``: as its ``workers``)."""
    extra = [] if processes is None else [str(processes)]
    done = subprocess.run(
        [sys.executable, "-c", MEASURER, sys.executable, "-m", "benchmarks.memory", mode, url, *extra],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {mode} child failed ({done.returncode}):\n{done.stderr}")
    *said, peak_kib = done.stdout.strip().splitlines()
    peaks = [line.split()[1:] for line in said if line.startswith(PEAKS)]
    said = [line for line in said if not line.startswith(PEAKS)]
    if peaks:  # each process's own peak: their sum
        return sum(int(kib) for kib in peaks[0]) / 1024, " ".join(said)
    return int(peak_kib) / 1024, " ".join(said)  # Linux reports KiB


def measure_database(ctx: Context, url: str, label: str, processes: int) -> dict[str, float]:
    peaks = {}
    for mode in MODES:
        peaks[mode], said = peak_rss(mode, url, processes if mode == "rebuild" else None)
        ctx.log(f"memory {label}: {mode}: peak {peaks[mode]:.1f} MiB ({said})")
    ctx.note(f"memory_{label}_peaks_mib", {m: round(v, 1) for m, v in peaks.items()})
    return peaks


def rebuild_processes(url: str, workers: int | None) -> int:
    """The processes a rebuild of ``url`` uses when asked for ``workers`` (None: the library's
    choice for that database's size)."""
    from projections.rebuild import Rebuild

    app = Episodes(url, clock=workload.bench_clock())
    try:
        return Rebuild(app, workers=workers).processes_for(app.recorder.max_notification_id() or 0)
    finally:
        app.close()


def run(ctx: Context) -> None:
    """After the other main-database stages: the full size, then a small database, each
    rebuilt with the processes the full size gets."""
    processes = rebuild_processes(ctx.main_url, ctx.sizes.workers)
    ctx.note("memory_rebuild_processes", processes)
    large = measure_database(ctx, ctx.main_url, "full", processes)
    small_url = ctx.backend.fresh("small")
    app = Episodes(small_url, clock=workload.bench_clock())
    try:
        seeded = workload.seed(app, ctx.sizes.memory_small)
        ctx.note("memory_small_events", seeded.commands)
    finally:
        app.close()
    small = measure_database(ctx, small_url, "small", processes)
    for mode, name in (("rebuild", "memory.rebuild"), ("export", "memory.audit_export")):
        ctx.emit(name, large[mode], "MiB", small[mode], lower_is_better=True)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or sys.argv[1] not in MODES:
        sys.exit(f"usage: python -m benchmarks.memory {{{'|'.join(MODES)}}} URL [PROCESSES]")
    print(child(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else None))
