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
    chosen = stages or STAGES + (POSTGRES_ONLY if backend.name == "postgres" else ())
    for stage in chosen:
        name = stage.__name__.rsplit(".", 1)[-1]
        start = time.perf_counter()
        stage.run(ctx)
        ctx.log(f"stage {name} took {time.perf_counter() - start:.1f} s")
    return ctx
