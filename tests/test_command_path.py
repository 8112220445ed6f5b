"""The fast command path: episodes kept between commands, never trusted blindly.

An application keeps the episodes its last commands decided (``episodes.recent``), so the
next command on one of them need not replay its stream.  These tests hold that shortcut to
the rules of the slow path: another writer's events are always seen, a failed command
leaves nothing behind, and the hash chain is the one a replay would compute.
"""

from __future__ import annotations

from datetime import date

import pytest

from episodes import Episodes
from episodes.errors import InvalidCommand, RuleViolation
from episodes.verification import verify
from tests.pathways import admit, admitted_episode, attend, complete_intake, refer


def discharge(app: Episodes, episode, actor, on: date) -> None:
    app.discharge(episode, actor, effective_date=on, discharge_type="completed", reason="goals met")


def test_a_command_after_another_writer_decides_on_the_newest_state(any_app, other_app, clinician):
    episode = admitted_episode(any_app, clinician, date(2026, 3, 2))
    attend(any_app, episode, clinician, date(2026, 3, 5))  # any_app now keeps the episode
    discharge(other_app, episode, clinician, date(2026, 3, 6))
    # Check the kept copy is not trusted: the discharge written elsewhere refuses the session.
    with pytest.raises(RuleViolation):
        attend(any_app, episode, clinician, date(2026, 3, 9))
    assert any_app.get(episode).state.status.value == "finished"
    assert verify(any_app).intact


def test_the_chain_of_kept_episodes_is_the_chain_a_replay_computes(any_app, other_app, clinician):
    episode = admitted_episode(any_app, clinician, date(2026, 3, 2))
    for day in (4, 5, 6):
        attend(any_app, episode, clinician, date(2026, 3, day))
    attend(other_app, episode, clinician, date(2026, 3, 9))  # replays, then keeps it too
    attend(any_app, episode, clinician, date(2026, 3, 10))
    report = verify(any_app)
    assert report.intact, report.summary()
    assert len(list(any_app.history(episode))) == 8


def test_a_failed_command_leaves_no_trace_in_the_kept_episode(projected, clinician, monkeypatch):
    episode = admitted_episode(projected, clinician, date(2026, 3, 2))
    attend(projected, episode, clinician, date(2026, 3, 4))

    def broken(*args, **kwargs):
        raise RuntimeError("read model write failed")

    monkeypatch.setattr(projected.projector, "_apply_events", broken)
    with pytest.raises(RuntimeError):
        attend(projected, episode, clinician, date(2026, 3, 5), minutes=90)
    monkeypatch.undo()
    attend(projected, episode, clinician, date(2026, 3, 5), minutes=60)
    # Check the rolled-back session (90 minutes) is in neither the stream nor the state.
    sessions = [e for e in projected.history(episode) if type(e).__name__ == "SessionAttended"]
    assert [s.minutes for s in sessions] == [180, 60]
    assert projected.get(episode).version == 5
    assert verify(projected).intact


def test_the_episode_row_is_rewritten_whole_after_another_process_projected(database_url, clock,
                                                                             clinician):
    from sqlalchemy import select

    from projections import ProjectedEpisodes, tables

    mine, theirs = ProjectedEpisodes(database_url, clock=clock), ProjectedEpisodes(database_url, clock=clock)
    try:
        episode = admitted_episode(mine, clinician, date(2026, 3, 2))
        attend(mine, episode, clinician, date(2026, 3, 5))  # `mine` remembers the row it wrote
        discharge(theirs, episode, clinician, date(2026, 3, 6))  # version 5, projected by `theirs`
        mine.void_event(episode, clinician, target_version=5, reason="discharged the wrong patient")
        with mine.projector.engine.connect() as connection:
            status = connection.execute(
                select(tables.episodes.c.status).where(tables.episodes.c.episode_id == episode)
            ).scalar_one()
        # Check the void reopened the episode in the read model too: `mine` did not skip the
        # status column as "unchanged since the row it wrote before".
        assert status == mine.get(episode).state.status.value == "active"
    finally:
        mine.close()
        theirs.close()


def test_an_admission_reads_the_program_as_revised_by_another_process(
    any_app, other_app, clinician, admin_actor
):
    first = admitted_episode(any_app, clinician, date(2026, 3, 2))  # any_app now keeps the program
    assert any_app.get(first).state.clinic == "north"
    other_app.revise_program(admin_actor, code="iop-adult", name="Adult IOP", target_weeks=12,
                             days_per_week=4, clinics=["south"])
    second = refer(any_app, clinician, date(2026, 3, 3))
    complete_intake(any_app, second, clinician, date(2026, 3, 4))
    # Check the kept definition is not trusted: the north clinic no longer runs the program.
    with pytest.raises(InvalidCommand, match="runs at south"):
        admit(any_app, second, clinician, date(2026, 3, 5))
    admit(any_app, second, clinician, date(2026, 3, 5), clinic="south")
    admission = next(e for e in any_app.history(second) if type(e).__name__ == "Admitted")
    assert admission.planned_days_per_week == 4  # the revised program's default


def test_an_admission_to_an_unknown_program_names_the_field(any_app, clinician):
    episode = refer(any_app, clinician, date(2026, 3, 3))
    complete_intake(any_app, episode, clinician, date(2026, 3, 4))
    with pytest.raises(InvalidCommand) as refused:
        admit(any_app, episode, clinician, date(2026, 3, 5), program_code="iop-missing")
    assert "program_code" in refused.value.errors


def test_another_thread_projecting_never_changes_the_copy_a_command_decides_on(
        any_projected, database_url, clock, clinician, monkeypatch):
    """The panel serves requests in threads sharing one application.  Thread A takes the copy
    it keeps of episode E and decides on it, without a lock (the store checks it when A
    appends).  Thread B, recording on another episode, finds an event of E pending (recorded
    by a writer that does not project: the command line) and projects it first.  B must not
    fold that event onto A's copy: A's event would then chain to the wrong one, or B would
    project A's session, which the store then refuses (found in review, on both backends)."""
    import threading

    from sqlalchemy import select

    from projections import tables

    panel = any_projected
    command_line = Episodes(database_url, clock=clock)
    e = admitted_episode(panel, clinician, date(2026, 3, 2))  # the panel keeps E at v3
    f = admitted_episode(panel, clinician, date(2026, 3, 2))
    attend(command_line, e, clinician, date(2026, 3, 5), command_id="cli-0305")  # v4, pending
    command_line.close()

    b_projects_e, a_took_its_copy = threading.Event(), threading.Event()
    take_unchecked, fold = panel._recent.take_unchecked, panel.projector._fold
    taken_by_a: list[object] = []

    def taking(stream_id):
        taken = take_unchecked(stream_id)
        if threading.current_thread().name == "A":
            taken_by_a.append(taken)
            a_took_its_copy.set()
        return taken

    def folding(connection, event):
        if event.originator_id == e and threading.current_thread().name == "B":
            b_projects_e.set()
            a_took_its_copy.wait(10)  # B projects E's pending event once A holds its copy
        return fold(connection, event)

    monkeypatch.setattr(panel._recent, "take_unchecked", taking)
    monkeypatch.setattr(panel.projector, "_fold", folding)
    errors: list[BaseException] = []

    def record(episode, day, command_id):
        try:
            attend(panel, episode, clinician, day, command_id=command_id)
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    b = threading.Thread(target=record, name="B", args=(f, date(2026, 3, 6), "panel-f"))
    b.start()
    assert b_projects_e.wait(10)
    a = threading.Thread(target=record, name="A", args=(e, date(2026, 3, 6), "panel-e"))
    a.start()
    a.join(30)
    b.join(30)

    assert not a.is_alive() and not b.is_alive()
    assert errors == []
    # A decided on its kept copy (v3); the store refused that append, and A decided again.
    assert taken_by_a[0] is not None and panel.retried_appends == 1
    # Check A's session followed the command line's, chained to it, and the read models
    # hold the two sessions as recorded.
    report = verify(panel)
    assert report.intact, report.summary()
    sessions = [(ev.originator_version, ev.envelope.command_id) for ev in panel.history(e)
                if type(ev).__name__ == "SessionAttended"]
    assert sessions == [(4, "cli-0305"), (5, "panel-e")]
    s = tables.sessions
    with panel.recorder.datastore.engine.connect() as connection:
        rows = connection.execute(select(s.c.version, s.c.session_date)
                                  .where(s.c.episode_id == e).order_by(s.c.version)).all()
    assert [tuple(r) for r in rows] == [(4, date(2026, 3, 5)), (5, date(2026, 3, 6))]
