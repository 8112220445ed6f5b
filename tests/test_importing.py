"""The bulk import (``episodes.importing``): the same record as the commands one by one, the
hash chain intact, every rule applied, nothing of a refused batch written, a re-import
skipping what is there, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import pickle
from datetime import date, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from benchmarks import workload
from episodes import Actor, ActorRole, Episodes
from episodes.cli import main
from episodes.encryption import cipher_environment
from episodes.importing import (
    EpisodeHistory,
    ImportCommand,
    ImportRejected,
    episode_id_for,
    import_episodes,
    read_json_lines,
)
from episodes.verification import verify
from projections import ProjectedEpisodes, Projector
from projections.dump import canonical_dump
from tests.conftest import NOW

MIGRATION = Actor("migration", ActorRole.SYSTEM)
CLINICIAN = Actor("clin-ana", ActorRole.CLINICIAN)
KEY = "q0fBI7lAbmFzd9bUqqYx9Tz5tJQmXo3oXnFL2p3ufd4="  # a fixed test key (base64 of 32 bytes)


def stored_rows(app: Episodes) -> list[tuple]:
    """Every row of the events table in notification order, without the notification id."""
    table = app.recorder.events_record_cls.__table__
    with app.recorder.datastore.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(
            select(table.c.originator_id, table.c.originator_version, table.c.topic, table.c.state)
            .order_by(table.c.id))]


def episode_rows(app: Episodes) -> list[tuple]:
    """The rows of the episodes' streams (the programs' carry random command ids)."""
    return [row for row in stored_rows(app) if not row[2].startswith("episodes.program:")]


def without_program_commands(app: Episodes) -> dict:
    """The read models, but the audit rows of the programs (their command ids are random)."""
    dump = canonical_dump(app.recorder.datastore.engine)
    dump["rm_audit"] = [row for row in dump["rm_audit"] if row[7] != "program"]
    assert dump["rm_audit"], "the episodes' own audit rows are compared"
    return dump


def event_count(app: Episodes) -> int:
    table = app.recorder.events_record_cls.__table__
    with app.recorder.datastore.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def execute_all(app, histories) -> None:
    """The histories through ``execute``, one command at a time (the live path)."""
    for history in histories:
        episode_id = history.stream_id()
        for item in history.commands:
            data = dict(item.data)
            if item.command != "refer":
                data["episode_id"] = episode_id
            app.execute(item.command, data, item.actor or MIGRATION)


def history(*commands: tuple[str, dict], referral: str = "ref-1", source: str | None = None
            ) -> EpisodeHistory:
    """A hand-written history: the referral (command id ``referral``) and then ``commands``."""
    refer = ImportCommand("refer", {
        "command_id": referral, "patient_ref": "Patient/1001", "effective_date": "2026-02-02",
        "source": "primary care", "direction": "step-up", "requested_level": "2.1"}, CLINICIAN)
    return EpisodeHistory((refer, *(ImportCommand(name, data, CLINICIAN) for name, data in commands)),
                          source)


INTAKE = ("complete_intake", {"effective_date": "2026-02-03", "clinician": "clin-ana",
                              "diagnoses": [{"code": "F33.1", "category": "mental-health"}],
                              "asam_ratings": {str(d): 2 for d in range(1, 7)},
                              "recommended_level": "2.1", "phq9": 18, "gad7": 13})
ADMIT = ("admit", {"effective_date": "2026-02-04", "program_code": "iop-12wk", "clinic": "north",
                   "payer": "Medicaid"})


def session(day: str, **overrides) -> tuple[str, dict]:
    return ("record_attendance", {"effective_date": day, "kind": "group", "minutes": 180,
                                  "format": "in-person", "topic": "Mindfulness", **overrides})


@pytest.fixture
def imported(any_app):
    workload.define_programs(any_app)
    return any_app


# ---------------------------------------------------------------- the same record as execute


def test_an_import_stores_exactly_what_the_commands_one_by_one_store(database_url, clock):
    histories = workload.histories(12)  # demo episodes: every status, holds, corrections
    live = Episodes(database_url, clock=clock)
    try:
        workload.define_programs(live)
        execute_all(live, histories)
        expected = episode_rows(live)
    finally:
        live.close()
    # The import goes into an empty database of the same kind: another SQLite file, or the
    # PostgreSQL test database emptied.
    if database_url.startswith("sqlite"):
        database_url = database_url.replace(".db", "-imported.db")
    else:
        _empty_postgres(database_url)
    app = Episodes(database_url, clock=clock)
    try:
        workload.define_programs(app)
        summary = import_episodes(app, histories, actor=MIGRATION)
        assert (summary.imported, summary.events) == (12, sum(len(h.commands) for h in histories))
        # Check row for row, in the same order: ids, versions, topics and the exact payloads
        # (fields, envelopes with their previous_hash, recorded times).
        assert episode_rows(app) == expected
        assert verify(app).intact, verify(app).summary()
    finally:
        app.close()


def _empty_postgres(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    parts = make_url(url)
    with psycopg.connect(host=parts.host, port=parts.port or 5432, user=parts.username,
                         dbname=parts.database, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def test_the_imported_history_reads_back_event_by_event_as_the_live_one(sqlite_url, tmp_path, clock):
    histories = workload.histories(8)
    live = Episodes(f"sqlite:///{tmp_path / 'live.db'}", clock=clock)
    app = Episodes(sqlite_url, clock=clock)
    try:
        for target in (live, app):
            workload.define_programs(target)
        execute_all(live, histories)
        import_episodes(app, histories, actor=MIGRATION)
        for h in histories:
            episode_id = h.stream_id()
            # Check the domain events compare equal, and the aggregate folds the same way.
            assert list(app.history(episode_id)) == list(live.history(episode_id))
            assert app.get(episode_id).state == live.get(episode_id).state
            assert app.repository.get(episode_id).version == len(h.commands)
    finally:
        live.close()
        app.close()


def test_the_read_models_caught_up_after_an_import_equal_those_of_live_commands(sqlite_url, tmp_path, clock):
    histories = workload.histories(10)
    live = ProjectedEpisodes(f"sqlite:///{tmp_path / 'live.db'}", clock=clock)
    app = Episodes(sqlite_url, clock=clock)
    try:
        workload.define_programs(live)
        execute_all(live, histories)
        workload.define_programs(app)
        import_episodes(app, histories, actor=MIGRATION)
        projector = Projector(app)
        projector.create_tables()
        # Check the import wrote no read model; the catch-up then builds exactly the live ones.
        assert canonical_dump(app.recorder.datastore.engine)["rm_episodes"] == []
        projector.catch_up()
        assert without_program_commands(app) == without_program_commands(live)
    finally:
        live.close()
        app.close()


def test_recorded_time_is_the_import_and_clinical_dates_come_from_the_source(imported, clock):
    import_episodes(imported, [history(INTAKE, ADMIT, session("2026-02-05"))], actor=MIGRATION)
    events = list(imported.history(episode_id_for("ref-1")))
    # Check every event is recorded at the application's clock, never back-dated.
    assert {event.timestamp for event in events} == {NOW}
    assert [event.effective_date for event in events] == [
        date(2026, 2, 2), date(2026, 2, 3), date(2026, 2, 4), date(2026, 2, 5)]
    # Check who recorded each: the source's actor, not the one running the import.
    assert {event.envelope.actor_id for event in events} == {"clin-ana"}


def test_the_size_of_the_batches_changes_nothing_stored(sqlite_url, tmp_path, clock):
    histories = workload.histories(30)
    one = Episodes(f"sqlite:///{tmp_path / 'one.db'}", clock=clock)
    two = Episodes(sqlite_url, clock=clock)
    try:
        for app, batch_events in ((one, 100_000), (two, 150)):
            workload.define_programs(app)
            summary = import_episodes(app, histories, actor=MIGRATION, batch_events=batch_events)
            # Whole episodes of about batch_events events: one transaction, or one per ~150.
            if batch_events > 1000:
                assert summary.batches == 1
            else:
                assert summary.batches >= summary.events // 200
        # Check same rows in the same notification order, in one transaction or in many.
        assert episode_rows(two) == episode_rows(one)
    finally:
        one.close()
        two.close()


# ---------------------------------------------------------------- the audit trail


def test_the_hash_chain_verifies_and_a_live_command_appends_after_an_import(imported, clinician):
    import_episodes(imported, [history(INTAKE, ADMIT, session("2026-02-05"))], actor=MIGRATION)
    assert verify(imported).intact
    episode_id = episode_id_for("ref-1")
    receipt = imported.record_attendance(episode_id, clinician, effective_date="2026-02-06",
                                         kind="group", minutes=180, format="in-person")
    # Check the live command continues the imported chain: version 5, its previous_hash the
    # digest of the imported head, and the whole store still verifies.
    assert receipt.version == 5
    events = list(imported.history(episode_id))
    assert events[0].envelope.previous_hash == "0" * 64
    assert len({event.envelope.previous_hash for event in events}) == 5
    report = verify(imported)
    assert report.intact, report.summary()
    assert report.events == event_count(imported)


def test_an_encrypted_store_gets_encrypted_imported_events(sqlite_url, clock):
    app = Episodes(sqlite_url, clock=clock, env=cipher_environment(KEY))
    try:
        workload.define_programs(app)
        import_episodes(app, [history(INTAKE, ADMIT)], actor=MIGRATION)
        states = [row[3] for row in stored_rows(app) if row[0] == episode_id_for("ref-1")]
        # Check no imported payload is stored in clear (a field name every payload has is in
        # none: a ciphertext starts with "{" one time in 256, so its first byte proves nothing),
        # and they read back and verify.
        assert len(states) == 3 and not any(b'"effective_date"' in bytes(s) for s in states)
        assert [e.effective_date for e in app.history(episode_id_for("ref-1"))] == [
            date(2026, 2, 2), date(2026, 2, 3), date(2026, 2, 4)]
        assert verify(app).intact
    finally:
        app.close()


def test_notification_ids_follow_the_input_order(imported):
    histories = [history(INTAKE, referral=f"ref-{n}") for n in range(5)]
    import_episodes(imported, histories, actor=MIGRATION, batch_events=4)
    rows = stored_rows(imported)[-10:]
    # Check each episode's events are consecutive, in version order, episodes in input order.
    assert [(r[0], r[1]) for r in rows] == [
        (episode_id_for(f"ref-{n}"), version) for n in range(5) for version in (1, 2)]


def test_on_postgresql_an_import_leaves_the_planner_statistics_of_what_it_loaded(postgres_url, clock):
    app = Episodes(postgres_url, clock=clock)
    try:
        workload.define_programs(app)
        names = ("care_episodes_events", "care_episodes_heads")

        def reltuples() -> list[float]:  # -1: never analysed
            with app.recorder.datastore.engine.connect() as connection:
                return [connection.exec_driver_sql(
                    f"SELECT reltuples FROM pg_class WHERE oid = '{name}'::regclass").scalar_one()
                    for name in names]

        def rows() -> list[int]:
            with app.recorder.datastore.engine.connect() as connection:
                return [connection.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar_one()
                        for name in names]

        assert reltuples() == [-1, -1]
        import_episodes(app, workload.histories(5), actor=MIGRATION)
        # Check the tables were analysed at the end of the import: the planner knows their rows
        # (docs/performance.md: without it, a stream was taken for 0.5% of the events table).
        assert reltuples() == rows()
    finally:
        app.close()


# ---------------------------------------------------------------- re-importing


def test_importing_the_same_input_again_skips_every_episode(imported):
    histories = workload.histories(6)
    first = import_episodes(imported, histories, actor=MIGRATION)
    events = event_count(imported)
    again = import_episodes(imported, histories, actor=MIGRATION)
    # Check nothing new, every episode reported as skipped by its id.
    assert (again.imported, again.events) == (0, 0)
    assert again.skipped == [h.stream_id() for h in histories]
    assert first.skipped == [] and event_count(imported) == events


def test_the_same_referral_twice_in_one_input_is_refused(imported):
    with pytest.raises(ImportRejected) as refused:
        import_episodes(imported, [history(source="line 1"), history(source="line 2")],
                        actor=MIGRATION)
    # Check the second is named, with its field, and the first was not written either.
    assert refused.value.source == "line 2" and "command_id" in refused.value.errors
    assert event_count(imported) == 3  # the three program definitions


# ---------------------------------------------------------------- every rule applies


def test_a_history_breaking_a_rule_names_it_and_nothing_of_its_batch_is_written(imported):
    good = history(INTAKE, ADMIT, referral="good")
    early = history(INTAKE, ADMIT, session("2026-02-01"), referral="bad", source="line 2")
    with pytest.raises(ImportRejected) as refused:
        import_episodes(imported, [good, early, history(referral="after")], actor=MIGRATION)
    error = refused.value
    # Check the episode, the command (4th: the session), the field and the rule are named.
    assert (error.source, error.episode_id, error.index, error.command) == (
        "line 2", episode_id_for("bad"), 4, "record_attendance")
    assert error.rule is not None and error.rule.endswith("Error")
    assert "line 2" in str(error) and "command 4 (record_attendance)" in str(error)
    # Check the whole batch, the good episode before it included, was not written.
    assert event_count(imported) == 3


def test_earlier_batches_stay_and_importing_again_after_the_fix_carries_on(imported):
    good = history(INTAKE, referral="good")
    bad = history(("admit", {**ADMIT[1], "clinic": "nowhere"}), referral="bad")
    with pytest.raises(ImportRejected) as refused:
        import_episodes(imported, [good, bad], actor=MIGRATION, batch_events=1)
    # Check the field is named (the clinic), the earlier batch stays, the failing one is not.
    assert "clinic" in refused.value.errors
    assert event_count(imported) == 3 + 2
    fixed = history(INTAKE, ADMIT, referral="bad")
    summary = import_episodes(imported, [good, fixed], actor=MIGRATION, batch_events=1)
    assert (summary.imported, summary.skipped) == (1, [episode_id_for("good")])


@pytest.mark.parametrize(("command", "field"), [
    (session("2026-02-05", minutes="three hours"), "minutes"),
    (session("2026-02-05", minutes=180.0), "minutes"),  # a float is not a whole number
    (session("2026-02-05", command_id="x" * 101), "command_id"),
    (session("2026-02-05", episode_id="00000000-0000-0000-0000-000000000000"), "episode_id"),
    (session("2026-06-20"), "effective_date"),  # in the future of the clock
    (("discharge", {"effective_date": "2026-02-06", "discharge_type": "planned"}), "reason"),
])
def test_bad_input_names_its_field(imported, command, field):
    # The same valid session first, so a remembered validation cannot hide the bad one.
    with pytest.raises(ImportRejected) as refused:
        import_episodes(imported, [history(INTAKE, ADMIT, session("2026-02-05"), command)],
                        actor=MIGRATION)
    assert field in refused.value.errors, refused.value
    assert refused.value.index == 5
    assert event_count(imported) == 3


def test_a_reviewer_may_not_import_nor_stand_as_a_commands_actor(imported):
    reviewer = Actor("rev-cy", ActorRole.REVIEWER)
    from episodes import NotPermitted

    with pytest.raises(NotPermitted):
        import_episodes(imported, [history()], actor=reviewer)
    reviewed = EpisodeHistory((*history().commands, ImportCommand("complete_intake", INTAKE[1], reviewer)))
    with pytest.raises(ImportRejected) as refused:
        import_episodes(imported, [reviewed], actor=MIGRATION)
    assert refused.value.rule == "NotPermitted" and "actor" in refused.value.errors


def test_a_rejection_deep_in_a_batch_names_its_line_and_survives_pickling(imported):
    histories = [history(INTAKE, referral=f"ok-{n}") for n in range(20)]
    histories[13] = history(("waitlist", {"effective_date": "2026-01-01"}), referral="early",
                            source="line 14")
    with pytest.raises(ImportRejected) as refused:
        import_episodes(imported, histories, actor=MIGRATION)
    assert (refused.value.source, refused.value.index, refused.value.rule) == (
        "line 14", 2, "ClinicalDateError")
    assert "effective_date" in refused.value.errors
    assert event_count(imported) == 3
    # Check it crosses a process boundary whole (keyword-only arguments need __reduce__).
    copy = pickle.loads(pickle.dumps(refused.value))
    assert (str(copy), copy.errors, copy.rule) == (str(refused.value), refused.value.errors, "ClinicalDateError")


def test_a_dry_run_decides_everything_and_writes_nothing(imported):
    summary = import_episodes(imported, workload.histories(5), actor=MIGRATION, dry_run=True)
    assert summary.imported == 5 and summary.events > 5
    assert event_count(imported) == 3


# ---------------------------------------------------------------- the JSON Lines file and the CLI


def as_json_line(h: EpisodeHistory) -> str:
    return json.dumps({"commands": [
        {"command": c.command, "data": c.data,
         **({"actor": {"id": c.actor.id, "role": c.actor.role.value}} if c.actor else {})}
        for c in h.commands]}, default=str)


def test_a_malformed_line_is_named():
    lines = [as_json_line(history()), "", '{"commands": [{"command": "refer", "actor": {"id": "x"}}]}']
    histories = read_json_lines(lines)
    assert next(histories).source == "line 1"
    with pytest.raises(ImportRejected) as refused:
        next(histories)
    # Check the line and the field: the third line's first command's actor has no valid role.
    assert refused.value.source == "line 3" and "commands[1].actor" in refused.value.errors


def test_the_import_command_imports_a_file_and_again_skips_it(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    app = Episodes(url, clock=clock)
    workload.define_programs(app)
    app.close()
    histories = workload.histories(4)
    source = tmp_path / "episodes.jsonl"
    source.write_text("\n".join(as_json_line(h) for h in histories) + "\n", encoding="utf-8")
    runner = CliRunner()
    first = runner.invoke(main, ["--db", url, "import", str(source)])
    assert first.exit_code == 0, first.output
    events = sum(len(h.commands) for h in histories)
    assert f"4 episodes imported ({events} events)" in first.output
    assert "care-episodes project" in first.output  # the read models are not written
    again = runner.invoke(main, ["--db", url, "import", str(source)])
    assert again.exit_code == 0, again.output
    assert "0 episodes imported (0 events)" in again.output and "4 skipped" in again.output


def test_the_import_command_exits_1_naming_line_command_and_field(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    app = Episodes(url, clock=clock)
    workload.define_programs(app)
    app.close()
    bad = history(INTAKE, ("admit", {**ADMIT[1], "program_code": "no-such-program"}), referral="b")
    source = tmp_path / "episodes.jsonl"
    source.write_text(as_json_line(history()) + "\n" + as_json_line(bad) + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["--db", url, "import", str(source)])
    assert result.exit_code == 1
    assert "line 2" in result.output and "command 3 (admit)" in result.output
    assert "program_code" in result.output and "Nothing of that episode's batch was written" in result.output
    app = Episodes(url, clock=clock)
    try:
        assert event_count(app) == 3
    finally:
        app.close()


def test_a_missing_referral_command_id_is_refused_before_anything(imported):
    commands = history().commands
    no_id = EpisodeHistory((ImportCommand("refer", {k: v for k, v in commands[0].data.items()
                                                    if k != "command_id"}),))
    with pytest.raises(ImportRejected) as refused:
        import_episodes(imported, [no_id], actor=MIGRATION)
    assert "command_id" in refused.value.errors and refused.value.index == 1


def test_commands_without_command_ids_get_the_same_ones_each_time(imported):
    intake = ImportCommand("complete_intake", INTAKE[1])  # no command id, no actor
    import_episodes(imported, [EpisodeHistory((history().commands[0], intake))], actor=MIGRATION)
    second = list(imported.history(episode_id_for("ref-1")))[1]
    # Check a deterministic id from the episode and the position, and the import's actor.
    assert second.envelope.command_id == f"import:{episode_id_for('ref-1')}:2"
    assert second.envelope.actor_id == "migration"
    assert timedelta(0) == second.timestamp - NOW


def test_a_row_the_database_refuses_rolls_the_whole_batch_back(imported):
    # A stray row at version 2 of the episode's stream (no first event, so not "existing"):
    # the import's version 2 then breaks the store's unique (stream, version) index.
    table = imported.recorder.events_record_cls.__table__
    with imported.recorder.datastore.engine.begin() as connection:
        connection.execute(table.insert().values(
            originator_id=episode_id_for("ref-1"), originator_version=2, topic="stray", state=b"{}"))
    with pytest.raises(ImportRejected) as refused:
        import_episodes(imported, [history(referral="other"), history(INTAKE)], actor=MIGRATION)
    # Check it is named as the database's refusal, and neither episode of the batch was kept.
    assert refused.value.rule == "IntegrityError" and "nothing of it was written" in str(refused.value)
    assert event_count(imported) == 3 + 1


def test_the_benchmark_histories_are_the_demo_episodes(app):
    from episodes.demo import seed_demo

    seeded = seed_demo(app, episodes=6, seed=workload.HISTORY_SEED, today=NOW.date(),
                       groups_per_day=workload.GROUPS_PER_DAY)
    histories = workload.histories(6)
    # Check the same episodes, command for command: the import benchmark loads what seed() records.
    assert [h.stream_id() for h in histories] == list(seeded.episode_ids)
    assert [len(h.commands) for h in histories] == [app.get(i).version for i in seeded.episode_ids]
