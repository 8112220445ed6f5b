"""The ``care-episodes`` command line, through click's runner and as an installed script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from episodes.cli import main


def test_help_lists_the_global_database_option_and_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert "--db URL" in result.output
    assert "CARE_EPISODES_DATABASE_URL" in result.output
    for command in ("demo", "programs", "show", "history"):
        assert command in result.output


def test_installed_console_script_answers_help():
    script = Path(sys.executable).parent / "care-episodes"
    executable = str(script) if script.exists() else shutil.which("care-episodes")
    assert executable, "the care-episodes console script is not installed"
    completed = subprocess.run([executable, "--help"], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    assert "Usage: care-episodes" in completed.stdout


def test_demo_seeds_the_database_given_by_the_environment(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    monkeypatch.setenv("CARE_EPISODES_DATABASE_URL", url)
    runner = CliRunner()
    first = runner.invoke(main, ["demo", "--episodes", "8", "--seed", "3"])
    assert first.exit_code == 0, first.output
    assert f"Seeded 8 episodes into {url}" in first.output
    # Check the same seed again records nothing new: the same episodes come back.
    again = runner.invoke(main, ["demo", "--episodes", "8", "--seed", "3"])
    assert again.output == first.output

    episode_id = first.output.strip().splitlines()[-1].split()[-1]
    shown = runner.invoke(main, ["show", episode_id])
    assert shown.exit_code == 0, shown.output
    state = json.loads(shown.output)
    assert state["id"] == episode_id
    assert state["state"]["patient_ref"].startswith("Patient/DEMO-")

    history = runner.invoke(main, ["history", episode_id])
    lines = [json.loads(line) for line in history.output.splitlines()]
    assert lines[0]["event"] == "ReferralReceived"
    assert [line["version"] for line in lines] == list(range(1, len(lines) + 1))
    assert len(lines) == state["version"]

    programs = runner.invoke(main, ["programs"])
    assert [line.split("\t")[0] for line in programs.output.splitlines()] == [
        "dbt-6wk", "hybrid-8wk", "iop-12wk",
    ]


def test_an_unknown_episode_is_an_error_with_exit_code_1(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = CliRunner().invoke(main, ["--db", url, "show", "00000000-0000-0000-0000-000000000000"])
    assert result.exit_code == 1
    assert "no episode with id 00000000-0000-0000-0000-000000000000" in result.output


def test_rebuild_project_and_lag_commands(tmp_path):
    import re

    from admin.cli import main as full_cli

    url = f"sqlite:///{tmp_path / 'rm.db'}"
    runner = CliRunner()
    seeded = runner.invoke(full_cli, ["--db", url, "demo", "--episodes", "5", "--seed", "2"])
    assert seeded.exit_code == 0, seeded.output
    # The panel's demo brings the read models up to date, and prints the demo logins.
    assert runner.invoke(full_cli, ["--db", url, "lag"]).output.strip() == "0"
    assert "user 'reviewer'" in seeded.output
    rebuilt = runner.invoke(full_cli, ["--db", url, "rebuild"])
    assert rebuilt.exit_code == 0, rebuilt.output
    events = int(re.search(r"Rebuilt the read models from (\d+) events", rebuilt.output).group(1))
    assert events > 5 * 3  # every demo episode has at least a referral, an intake and more
    caught_up = runner.invoke(full_cli, ["--db", url, "project"])
    assert caught_up.output.strip() == f"Applied 0 events; position {events}, lag 0."


def test_list_filters_episodes_from_the_read_models(tmp_path):
    from admin.cli import main as full_cli

    url = f"sqlite:///{tmp_path / 'list.db'}"
    runner = CliRunner()
    runner.invoke(full_cli, ["--db", url, "demo", "--episodes", "12", "--seed", "4"])
    listed = runner.invoke(full_cli, ["--db", url, "list", "--status", "finished"])
    assert listed.exit_code == 0, listed.output
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert lines and all(line[2] == "finished" for line in lines)
    assert f"{len(lines)} episodes" in listed.stderr


def test_the_demo_covers_every_status_discharge_type_and_correction(tmp_path):
    from sqlalchemy import create_engine, text

    from admin.cli import main as full_cli

    url = f"sqlite:///{tmp_path / 'demo-cover.db'}"
    result = CliRunner().invoke(full_cli, ["--db", url, "demo", "--episodes", "60", "--seed", "7"])
    assert result.exit_code == 0, result.output
    engine = create_engine(url)
    with engine.connect() as connection:
        statuses = {r[0] for r in connection.execute(text("SELECT status FROM rm_episodes"))}
        discharges = {r[0] for r in connection.execute(
            text("SELECT discharge_type FROM rm_episodes WHERE discharge_type IS NOT NULL"))}
        corrections = {r[0] for r in connection.execute(
            text("SELECT event_type FROM rm_audit WHERE action IN ('correct', 'void')"))}
    engine.dispose()
    from episodes import DischargeType, EpisodeStatus

    assert statuses == {s.value for s in EpisodeStatus}
    assert discharges == {t.value for t in DischargeType}
    assert corrections == {"EventAmended", "EventVoided", "MarkedEnteredInError"}


@pytest.mark.parametrize("today", ["2026-11-26", "2026-12-03", "2026-12-10"])
def test_the_demo_has_every_discharge_type_whatever_the_date(tmp_path, today):
    """The demo counts its dates back from today, so which episodes reach a planned discharge
    depends on the date: these dates once left one type out (types went by episode number)."""
    from datetime import date, datetime, timezone

    from sqlalchemy import create_engine, text

    from episodes import DischargeType
    from episodes.clock import FixedClock
    from episodes.demo import seed_demo
    from projections import ProjectedEpisodes

    url = f"sqlite:///{tmp_path / 'demo-dates.db'}"
    day = date.fromisoformat(today)
    app = ProjectedEpisodes(url, clock=FixedClock(datetime(day.year, day.month, day.day, 12,
                                                           tzinfo=timezone.utc)))
    try:
        seed_demo(app, episodes=60, seed=7)
    finally:
        app.close()
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            discharges = {r[0] for r in connection.execute(
                text("SELECT discharge_type FROM rm_episodes WHERE discharge_type IS NOT NULL"))}
    finally:
        engine.dispose()
    assert discharges == {t.value for t in DischargeType}


def test_users_add_reads_the_password_from_stdin_and_refuses_a_short_one(tmp_path):
    from admin.cli import main as full_cli
    from admin.users import UserStore
    from episodes import Episodes, SystemClock

    url = f"sqlite:///{tmp_path / 'users.db'}"
    runner = CliRunner()
    made = runner.invoke(full_cli, ["--db", url, "users", "add", "dana", "--role", "reviewer"],
                         input="a-long-enough-password\n")
    assert made.exit_code == 0, made.output
    assert made.output.strip() == "Created reviewer dana."
    short = runner.invoke(full_cli, ["--db", url, "users", "add", "eve", "--role", "admin"], input="short\n")
    assert short.exit_code == 1 and "at least 10 characters" in short.output
    app = Episodes(url)
    store = UserStore(app.recorder.datastore.engine, SystemClock())
    assert store.authenticate("dana", "a-long-enough-password").role.value == "reviewer"
    assert store.get("eve") is None
    listed = runner.invoke(full_cli, ["--db", url, "users", "list"])
    assert listed.output.strip() == "dana\treviewer\tactive"
    app.close()
