"""The storage contract under concurrent writers, on every backend.

Several application instances (web workers, an import job) write to one database.  A stale
append must be refused by the store; the application then decides again against the new
state, and either records at the next version or says the command no longer holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError

from episodes import (
    ActorRole,
    ConflictError,
    Envelope,
    Episode,
    Episodes,
    Receipt,
    RuleViolation,
    ServiceFormat,
    SessionKind,
)
from episodes.events import SessionAttended
from episodes.verification import verify
from episodes.writer import Head
from tests.pathways import admitted_episode, attend, count_event_rows

EVENTS_TABLE = "care_episodes_events"



count_rows = count_event_rows  # raw SQL, not through the library


def sessions_in(app: Episodes, episode: UUID) -> list[tuple[int, str, date]]:
    return [
        (e.originator_version, e.envelope.command_id, e.effective_date)
        for e in app.history(episode)
        if isinstance(e, SessionAttended)
    ]


def kept_copies_taken(app: Episodes, monkeypatch) -> list[Any]:
    """What each command's unchecked look at the app's kept copies found (None: no copy)."""
    taken: list[Any] = []
    take = app._recent.take_unchecked

    def taking(stream_id: UUID) -> Any:
        taken.append(take(stream_id))
        return taken[-1]

    monkeypatch.setattr(app._recent, "take_unchecked", taking)
    return taken


def load_stale_copy_first(app: Episodes, stale: Episode, monkeypatch) -> list[UUID]:
    """Make the app's next load return ``stale``, as if another writer appended right after it."""
    real_load: Callable[..., Any] = app._current_episode
    loads: list[UUID] = []

    def load(connection: Any, aggregate_id: UUID) -> Any:
        loads.append(aggregate_id)
        # The chain's head hardly matters here: the stale append is refused by its version.
        stale_head = Head(stale.version, "stale head")
        return (stale, stale_head) if len(loads) == 1 else real_load(connection, aggregate_id)

    monkeypatch.setattr(app, "_current_episode", load)
    return loads


def test_a_stale_write_is_refused_by_the_store(any_app, other_app, clinician, clock):
    episode = admitted_episode(any_app, clinician, date(2026, 3, 2))  # v1-v3, admitted 4 March
    stale = any_app.get(episode)  # loaded at version 3
    attend(other_app, episode, clinician, date(2026, 3, 5), command_id="session-0305-other")  # v4

    stale.record(
        SessionAttended, timestamp=clock.now(), latest_date=date(2026, 6, 1),
        effective_date=date(2026, 3, 6),
        envelope=Envelope(
            "clin-ana", ActorRole.CLINICIAN, "session-0306-stale", "session-0306-stale"
        ),
        kind=SessionKind.GROUP, minutes=180, format=ServiceFormat.IN_PERSON,
    )
    # Check the stale version 4 collides with the stored version 4.
    with pytest.raises(IntegrityError):
        any_app.save(stale)

    # Check nothing was lost or doubled: four events, the other instance's session among them.
    assert [e.originator_version for e in any_app.history(episode)] == [1, 2, 3, 4]
    assert sessions_in(any_app, episode) == [(4, "session-0305-other", date(2026, 3, 5))]


def test_the_application_retries_against_the_new_state(any_app, other_app, clinician, monkeypatch):
    episode = admitted_episode(any_app, clinician, date(2026, 3, 2))  # v1-v3
    stale = any_app.repository.get(episode)  # version 3
    attend(other_app, episode, clinician, date(2026, 3, 5), command_id="session-0305-other")  # v4
    any_app._recent.clear()  # no copy kept from its own commands: it loads (see the next tests)
    loads = load_stale_copy_first(any_app, stale, monkeypatch)

    receipt = attend(any_app, episode, clinician, date(2026, 3, 6), command_id="session-0306-mine")

    # Check the first attempt hit the other write, the second loaded again and recorded at v5.
    assert len(loads) == 2 and any_app.retried_appends == 1
    assert (receipt.version, receipt.event, receipt.duplicate) == (5, "SessionAttended", False)
    assert sessions_in(any_app, episode) == [
        (4, "session-0305-other", date(2026, 3, 5)),
        (5, "session-0306-mine", date(2026, 3, 6)),
    ]


def test_a_kept_copy_the_stream_moved_on_from_is_refused_by_the_store_then_decided_again(
    any_app, other_app, clinician
):
    episode = admitted_episode(any_app, clinician, date(2026, 3, 2))  # v1-v3: any_app keeps v3
    attend(other_app, episode, clinician, date(2026, 3, 5), command_id="session-0305-other")  # v4

    receipt = attend(any_app, episode, clinician, date(2026, 3, 6), command_id="session-0306-mine")

    # Check the append decided on the kept v3 was refused, and the command was decided again
    # on the stored stream: recorded at v5, chained to the other process's v4.
    assert any_app.retried_appends == 1
    assert (receipt.version, receipt.duplicate) == (5, False)
    assert sessions_in(any_app, episode) == [
        (4, "session-0305-other", date(2026, 3, 5)),
        (5, "session-0306-mine", date(2026, 3, 6)),
    ]
    assert verify(any_app).intact


def test_writers_taking_turns_on_one_episode_check_their_copies_first(any_app, other_app, clinician):
    episode = admitted_episode(any_app, clinician, date(2026, 3, 2))  # any_app keeps v3
    attend(other_app, episode, clinician, date(2026, 3, 5))  # v4: other_app replays, keeps v4
    attend(any_app, episode, clinician, date(2026, 3, 6))  # v5: its kept v3 refused, retried
    assert any_app.retried_appends == 1
    attend(other_app, episode, clinician, date(2026, 3, 7))  # v6: its kept v4 refused, retried
    assert other_app.retried_appends == 1

    # Check the episode is now known to be shared: each reads the head before deciding, so
    # neither fails an append on an out-of-date copy again.
    attend(any_app, episode, clinician, date(2026, 3, 8))  # v7
    attend(other_app, episode, clinician, date(2026, 3, 9))  # v8
    attend(any_app, episode, clinician, date(2026, 3, 10))  # v9
    assert (any_app.retried_appends, other_app.retried_appends) == (1, 1)
    # Once a check finds the stream where it was left, the kept copy is used unchecked again.
    attend(any_app, episode, clinician, date(2026, 3, 11))  # v10
    assert any_app._recent.take_unchecked(episode) is not None
    assert [e.originator_version for e in any_app.history(episode)] == list(range(1, 11))


def test_a_kept_copy_is_never_replaced_by_an_earlier_version():
    """Two threads' commands on one episode may keep their copies in either order."""
    from types import SimpleNamespace

    from episodes.recent import RecentEpisodes

    kept, stream = RecentEpisodes(), UUID(int=7)
    later, earlier = SimpleNamespace(id=stream, version=6), SimpleNamespace(id=stream, version=5)
    kept.put(later, Head(6, "digest-6"))
    kept.put(earlier, Head(5, "digest-5"))  # the thread that committed first keeps it last
    assert kept.take_unchecked(stream) == (later, Head(6, "digest-6"))


def test_a_kept_copy_never_refuses_what_the_stored_stream_allows(
    any_app, other_app, clinician, monkeypatch
):
    episode = admitted_episode(any_app, clinician, date(2026, 3, 2))  # admitted 4 March
    any_app.place_on_hold(episode, clinician, effective_date=date(2026, 3, 5),
                          reason="hospital admission")  # v4: any_app keeps the episode on hold
    other_app.resume(episode, clinician, effective_date=date(2026, 3, 9))  # v5, elsewhere
    taken = kept_copies_taken(any_app, monkeypatch)

    # On hold, a session is refused; resumed (as stored), it is recorded.
    receipt = attend(any_app, episode, clinician, date(2026, 3, 10))

    assert taken[0] is not None and taken[0][0].state.status.value == "onhold"  # decided on first
    assert (receipt.version, receipt.event) == (6, "SessionAttended")
    assert any_app.retried_appends == 0  # the refusal was checked before anything was appended


def test_a_kept_copy_still_refuses_what_the_stored_stream_refuses(
    any_app, other_app, clinician, monkeypatch
):
    episode = admitted_episode(any_app, clinician, date(2026, 3, 2))
    any_app.place_on_hold(episode, clinician, effective_date=date(2026, 3, 5),
                          reason="hospital admission")  # v4, kept and current
    rows = count_rows(any_app)
    taken = kept_copies_taken(any_app, monkeypatch)

    # Check the rule's own error (not a conflict: nobody else wrote), and nothing written.
    with pytest.raises(RuleViolation):
        attend(any_app, episode, clinician, date(2026, 3, 6))
    assert taken[0] is not None  # the kept copy refused, and the head confirmed it
    assert count_rows(any_app) == rows
    # And the stream is as it was (the refused command's copy is not kept: it is read again).
    assert any_app.episode(episode).version == 4


def test_a_command_another_process_recorded_from_a_kept_copy_is_a_duplicate(
    any_app, other_app, clinician, monkeypatch
):
    episode = admitted_episode(any_app, clinician, date(2026, 3, 2))  # any_app keeps v3
    first = attend(other_app, episode, clinician, date(2026, 3, 5), command_id="session-0305")
    taken = kept_copies_taken(any_app, monkeypatch)

    again = attend(any_app, episode, clinician, date(2026, 3, 5), command_id="session-0305")

    assert taken[0] is not None and any_app.retried_appends == 1  # its append was refused
    # Check the kept copy, which does not know the command, did not record it a second time.
    assert (again.version, again.duplicate) == (first.version, True)
    assert sessions_in(any_app, episode) == [(4, "session-0305", date(2026, 3, 5))]


def test_a_command_the_other_write_made_impossible_is_a_conflict(
    any_app, other_app, clinician, monkeypatch
):
    episode = admitted_episode(any_app, clinician, date(2026, 3, 2))  # v1-v3, admitted 4 March
    attend(any_app, episode, clinician, date(2026, 3, 5))  # v4
    stale = any_app.repository.get(episode)  # version 4, still active
    other_app.discharge(
        episode, clinician, effective_date=date(2026, 3, 10), discharge_type="completed",
        reason="Treatment goals met",
    )  # v5
    rows = count_rows(any_app)
    load_stale_copy_first(any_app, stale, monkeypatch)

    # A session on 12 March held against the stale copy, not after the 10 March discharge.
    with pytest.raises(ConflictError) as conflict:
        attend(any_app, episode, clinician, date(2026, 3, 12))

    message = str(conflict.value)
    # Check the message names the other change and why the command no longer holds.
    assert "another user changed this episode" in message
    assert "now at version 5" in message
    assert "after the discharge (2026-03-10)" in message
    # Check nothing was written: same rows, the discharge is still the last event.
    assert count_rows(any_app) == rows
    last_two = [type(e).__name__ for e in any_app.history(episode)][-2:]
    assert last_two == ["SessionAttended", "Discharged"]


def test_four_writers_at_once_record_every_session_once(any_app, database_url, clock, clinician):
    # The sqlite case of database_url is a file (sqlite_url), so the writers share it.
    episode = admitted_episode(any_app, clinician, date(2026, 1, 1))  # v1-v3, admitted 3 January
    writers = [Episodes(database_url, clock=clock) for _ in range(4)]
    start_together = threading.Barrier(len(writers))
    receipts: list[Receipt] = []
    failures: list[str] = []

    def write_ten_sessions(number: int, app: Episodes) -> None:
        start_together.wait()
        for i in range(10):
            # Writer n takes days 10n..10n+9 after 5 January: 5 Jan .. 13 Feb, no day twice.
            day = date(2026, 1, 5) + timedelta(days=10 * number + i)
            command_id = f"writer{number}-session{i}"
            try:
                receipts.append(attend(app, episode, clinician, day, command_id=command_id))
            except Exception as error:  # noqa: BLE001 - every failure is reported below
                failures.append(f"writer {number}, session {i}: {type(error).__name__}: {error}")

    threads = [
        threading.Thread(target=write_ten_sessions, args=(n, app)) for n, app in enumerate(writers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for app in writers:
        app.close()

    history = list(any_app.history(episode))
    sessions = [e for e in history if isinstance(e, SessionAttended)]
    # Check the stream stayed whole whatever happened: versions 1..N with no gap or repeat,
    # and no command recorded twice.
    assert [e.originator_version for e in history] == list(range(1, len(history) + 1))
    assert len({e.envelope.command_id for e in sessions}) == len(sessions)
    # Check no command failed (no "database is locked", no conflict beyond the retries).
    assert failures == []
    # Check 4 writers x 10 sessions = 40 sessions on 40 days; 3 opening events + 40 = 43.
    assert len(sessions) == 40
    assert len({e.effective_date for e in sessions}) == 40
    assert len(history) == 43
    assert sorted(r.version for r in receipts) == list(range(4, 44))


def test_a_database_error_while_deciding_on_a_kept_episode_is_raised_as_it_is(
    postgres_url, clock, clinician, monkeypatch
):
    """Another session holds the stream's lock past the server's lock_timeout: the command
    fails with the server's error, whether or not the application keeps the episode.  (A kept
    episode's refusals are checked against the stream's head; found in review: a database
    error was taken for a refusal, and reading the head after it failed with another error.)"""
    import psycopg
    from psycopg.errors import LockNotAvailable
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from episodes.storage import advisory_key
    from tests.pathways import admit, complete_intake, define_standard_program, refer

    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=300")  # read by libpq when it connects
    app = Episodes(postgres_url, clock=clock)
    url = make_url(postgres_url)
    holder = psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                             dbname=url.database, options="-c lock_timeout=0")
    try:
        define_standard_program(app, clinician)
        episode = refer(app, clinician, date(2026, 3, 2))
        complete_intake(app, episode, clinician, date(2026, 3, 3))  # kept from here
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(episode),))
        for kept in (True, False):
            if not kept:
                app._recent.clear()
            with pytest.raises(OperationalError) as failed:
                admit(app, episode, clinician, date(2026, 3, 5))  # looks its program up
            assert isinstance(failed.value.orig, LockNotAvailable), (kept, failed.value)
    finally:
        holder.rollback()
        holder.close()
        app.close()
