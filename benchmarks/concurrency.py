"""6. Concurrency (PostgreSQL): writer processes recording sessions into overlapping episodes
at once, each command through :class:`projections.ProjectedEpisodes` (as the panel records).

Every writer records into episodes chosen at random among a few shared ones (half as many
episodes as writers), with its own command ids.  A command that raises ``ConflictError`` is
sent again with the same command id (idempotent: recorded at most once).  At the end the
event store is read back raw: every acknowledged command must be there exactly once.

Figures:

* ``concurrency.commands``: commands per second of all writers together; limit: raw single-row
  INSERT transactions per second of as many processes at once;
* ``concurrency.conflicts_retried``: stale appends the library retried itself plus commands the
  writers re-sent after a ``ConflictError``; limit: the number of commands (ratio: per command);
* ``concurrency.events_found``: events in the store carrying the writers' command ids; limit:
  the commands acknowledged (ratio 1.0: none lost);
* ``concurrency.distinct_command_ids``: distinct command ids among them; limit: the events
  found (ratio 1.0: none duplicated);
* ``concurrency.projected``: audit rows in the read models; limit: events in the store
  (ratio 1.0: the inline projection missed none).
"""

from __future__ import annotations

import multiprocessing
import random
import time
import traceback
from collections import Counter
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from benchmarks import raw, workload
from benchmarks.backends import raw_connect
from benchmarks.context import Context
from episodes import Actor, ActorRole, ConflictError
from episodes.demo import seed_demo
from projections import ProjectedEpisodes

ADMITTED = date(2026, 1, 5)
SESSION_DAYS = 140  # sessions fall on one of the 140 days after the admission
MAX_RESENDS = 100


def prepare(url: str, episodes: int) -> list[UUID]:
    """Programs and ``episodes`` admitted episodes for the writers to share."""
    app = ProjectedEpisodes(url, clock=workload.bench_clock())
    actor = Actor("clin-setup", ActorRole.CLINICIAN)
    try:
        seed_demo(app, episodes=0)  # the demo's three programs
        ids = []
        for n in range(episodes):
            episode = app.refer(actor, command_id=f"bench-setup-{n}", patient_ref=f"Patient/BENCH-{n:03d}",
                                effective_date=ADMITTED - timedelta(days=3), source="self",
                                direction="step-up", requested_level="2.1").episode_id
            app.complete_intake(episode, actor, effective_date=ADMITTED - timedelta(days=2),
                                clinician=actor.id, recommended_level="2.1",
                                diagnoses=[{"code": "F33.1", "category": "mental-health"}],
                                asam_ratings={str(d): 1 for d in range(1, 7)})
            app.admit(episode, actor, effective_date=ADMITTED, program_code="iop-12wk", clinic="north")
            ids.append(episode)
        return ids
    finally:
        app.close()


def writer(url: str, index: int, episode_ids: list[str], commands: int, barrier: Any,
           results: Any) -> None:
    """One writer process: ``commands`` sessions into episodes picked at random."""
    try:
        app = ProjectedEpisodes(url, clock=workload.bench_clock())
        rng = random.Random(index)
        actor = Actor(f"clin-w{index}", ActorRole.CLINICIAN)
        receipts, resent = [], 0
        barrier.wait()
        start = time.perf_counter()
        for n in range(commands):
            data = {
                "episode_id": UUID(rng.choice(episode_ids)), "command_id": f"bench-w{index}-{n}",
                "effective_date": ADMITTED + timedelta(days=rng.randrange(SESSION_DAYS)),
                "kind": "group", "minutes": 180, "format": "in-person",
            }
            while True:
                try:
                    receipt = app.execute("record_attendance", data, actor)
                    break
                except ConflictError:
                    resent += 1
                    if resent > MAX_RESENDS:
                        raise
            receipts.append((data["command_id"], str(receipt.episode_id), receipt.version,
                             receipt.duplicate))
        elapsed = time.perf_counter() - start
        results.put({"receipts": receipts, "elapsed": elapsed, "resent": resent,
                     "stale": app.retried_appends})
        app.close()
    except BaseException:  # the parent must hear of it, not wait forever
        results.put({"error": traceback.format_exc()})
        raise


def run(ctx: Context) -> None:
    sizes = ctx.sizes
    url = ctx.backend.fresh("concurrency")
    episode_ids = prepare(url, max(2, sizes.writers // 2))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(sizes.writers + 1)
    results = context.Queue()
    processes = [
        context.Process(target=writer, args=(url, n, [str(e) for e in episode_ids],
                                              sizes.writer_commands, barrier, results))
        for n in range(sizes.writers)
    ]
    ctx.log(f"{sizes.writers} writers x {sizes.writer_commands} commands into "
            f"{len(episode_ids)} shared episodes")
    for process in processes:
        process.start()
    barrier.wait(timeout=300)
    start = time.perf_counter()
    outcomes = [results.get(timeout=3600) for _ in processes]
    wall = time.perf_counter() - start
    for process in processes:
        process.join()
    errors = [o["error"] for o in outcomes if "error" in o]
    if errors:
        raise RuntimeError("a writer process failed:\n" + errors[0])
    receipts = [r for o in outcomes for r in o["receipts"]]
    retried = sum(o["stale"] + o["resent"] for o in outcomes)
    found, distinct, projected, events = check(ctx, url, episode_ids, receipts)
    payloads = raw.sample_payloads(url)
    connection = raw_connect(url)
    try:
        raw.create_raw_table(connection)
        limit = raw.concurrent_single_row_transactions(url, payloads, sizes.writers,
                                                       sizes.raw_seconds)
        raw.drop_raw_table(connection)
    finally:
        connection.close()
    acknowledged = sum(1 for r in receipts if not r[3])
    ctx.emit("concurrency.commands", len(receipts) / wall, "commands/s", limit)
    ctx.emit("concurrency.conflicts_retried", retried, "retries", len(receipts))
    ctx.emit("concurrency.events_found", found, "events", acknowledged)
    ctx.emit("concurrency.distinct_command_ids", distinct, "events", found)
    ctx.emit("concurrency.projected", projected, "events", events)


def check(ctx: Context, url: str, episode_ids: list[UUID],
          receipts: list[tuple[str, str, int, bool]]) -> tuple[int, int, int, int]:
    """Read the store back: (events with the writers' command ids, distinct command ids among
    them, audit rows in the read models, events in the store)."""
    connection = raw_connect(url)
    try:
        stored = [(UUID(bytes=s) if isinstance(s, bytes) else UUID(str(s)), version, command_id)
                  for s, version, command_id in raw.decode_command_ids(connection, episode_ids)
                  if command_id.startswith("bench-w")]
        events = connection.execute(f"SELECT count(*) FROM {raw.EVENTS_TABLE}").fetchone()[0]
        projected = connection.execute("SELECT count(*) FROM rm_audit").fetchone()[0]
    finally:
        connection.close()
    counts = Counter(command_id for _, _, command_id in stored)
    at = {(str(s), version): command_id for s, version, command_id in stored}
    lost = [r for r in receipts if not r[3] and at.get((r[1], r[2])) != r[0]]
    duplicated = sorted(c for c, n in counts.items() if n > 1)
    repeated = [r for r in receipts if r[3]]
    for problem, items in (("lost or misplaced", lost), ("duplicated", duplicated),
                           ("acknowledged as duplicates", repeated)):
        if items:
            ctx.problem(f"{len(items)} commands {problem}, e.g. {items[:3]}")
    if projected != events:
        ctx.problem(f"the read models hold {projected} audit rows for {events} events")
    ctx.note("concurrency_commands", len(receipts))
    return len(stored), len(counts), projected, events
