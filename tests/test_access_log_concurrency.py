"""The access log under concurrent writers: every page view writes an entry chained to the one
before it, so entries written at the same moment by several workers must still form one chain
(each entry's previous_hash is the digest of the entry with the next lower id), with none lost.
The lock in ``episodes.access`` is what makes that hold; without it two writers read the same
last digest and the chain forks (PostgreSQL) or a writer fails (SQLite)."""

from __future__ import annotations

import threading

from episodes import Episodes
from episodes.access import CHAINED_FIELDS, AccessLog, entry_digest
from episodes.integrity import GENESIS

WRITERS, ENTRIES = 4, 15


def test_concurrent_writers_keep_one_whole_chain(database_url, clock):
    # Each writer on an engine of its own, as separate web workers (the sqlite case is a file).
    apps = [Episodes(database_url, clock=clock) for _ in range(WRITERS)]
    logs = [AccessLog(app.recorder.datastore.engine, clock) for app in apps]
    start_together = threading.Barrier(WRITERS)
    failures: list[str] = []

    def view_pages(number: int, log: AccessLog) -> None:
        start_together.wait()
        for n in range(ENTRIES):
            try:
                log.record(actor_id=f"worker-{number}", actor_role="reviewer", action="read",
                           detail=f"page {n}")
            except Exception as error:  # noqa: BLE001 - every failure is reported below
                failures.append(f"worker {number}, entry {n}: {type(error).__name__}: {error}")

    threads = [threading.Thread(target=view_pages, args=(n, log)) for n, log in enumerate(logs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        entries = list(logs[0].entries())
    finally:
        for app in apps:
            app.close()

    assert failures == []
    assert len(entries) == WRITERS * ENTRIES
    assert sorted(e.detail for e in entries if e.actor_id == "worker-0") == sorted(
        f"page {n}" for n in range(ENTRIES))
    previous = GENESIS
    for entry in entries:  # in id order
        assert entry.previous_hash == previous, f"entry {entry.id} does not follow the one before"
        fields = {name: getattr(entry, name) for name in CHAINED_FIELDS}
        assert entry.digest == entry_digest(fields, previous), f"entry {entry.id} was altered"
        previous = entry.digest
