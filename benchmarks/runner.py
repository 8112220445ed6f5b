"""The order of a run on one backend.

The main database is built once and read by the stages that follow, so the figures are
measured at the same size:

1. ``bulk_import``: N historical episodes into an empty database (plain ``Episodes``), then
   one long episode (not timed);
2. ``rebuild``: every read model rebuilt from those events;
3. ``commands``: more episodes recorded as inline commands among the N;
4. ``panel``: the pages, at N episodes (plus those of step 3 and the long one);
5. ``memory``: the rebuild and the audit export in a process of their own, on the main
   database, then on a small one;
6. ``concurrency`` (PostgreSQL only): in an empty database of its own.
"""

from __future__ import annotations

import os
import time

from benchmarks import bulk_import, commands, concurrency, memory, panel, rebuild
from benchmarks.backends import Backend
from benchmarks.context import Context, Sizes
from benchmarks.figures import Reporter

STAGES = (bulk_import, rebuild, commands, panel, memory)
POSTGRES_ONLY = (concurrency,)
# What a stage needs an earlier one to have done: the main database (imported), its read models.
NEEDS = {"rebuild": ("bulk_import",), "commands": ("bulk_import", "rebuild"),
         "panel": ("bulk_import", "rebuild"), "memory": ("bulk_import",)}


def stage_names() -> tuple[str, ...]:
    return tuple(_name(stage) for stage in STAGES + POSTGRES_ONLY)


def chosen_stages(names: str | None, backend: str) -> tuple | None:
    """The stages named (comma-separated), with those they need, in the run's order; None for
    all of them.  (``concurrency`` runs on PostgreSQL only.)"""
    if not names:
        return None
    wanted = {name.strip() for name in names.split(",") if name.strip()}
    unknown = wanted - set(stage_names())
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(stage_names())}")
    wanted |= {needed for name in wanted for needed in NEEDS.get(name, ())}
    every = STAGES + (POSTGRES_ONLY if backend == "postgres" else ())
    return tuple(stage for stage in every if _name(stage) in wanted)


def _name(stage: object) -> str:
    return stage.__name__.rsplit(".", 1)[-1]  # type: ignore[attr-defined]
# Encryption at rest (and compression) change every payload: the figures are for clear JSON.
PAYLOAD_SETTINGS = ("CARE_EPISODES_CIPHER_KEY", "CARE_EPISODES_CIPHER_TOPIC", "CIPHER_KEY",
                    "CIPHER_TOPIC", "CARE_EPISODES_COMPRESSOR_TOPIC", "COMPRESSOR_TOPIC")


def clear_payload_settings(reporter: Reporter) -> None:
    for name in PAYLOAD_SETTINGS:
        if os.environ.pop(name, None):
            reporter.log(f"${name} is ignored: the benchmarks measure unencrypted payloads")


def run_backend(backend: Backend, sizes: Sizes, reporter: Reporter,
                stages: tuple | None = None) -> Context:
    """Run every stage (or the given ones) on ``backend``; the context keeps what they noted."""
    ctx = Context(backend, sizes, reporter)
    ctx.log(backend.describe())
    chosen = stages if stages is not None else STAGES + (POSTGRES_ONLY if backend.name == "postgres" else ())
    for stage in chosen:
        name = _name(stage)
        start = time.perf_counter()
        stage.run(ctx)
        ctx.log(f"stage {name} took {time.perf_counter() - start:.1f} s")
    return ctx
