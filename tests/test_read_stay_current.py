"""The dashboard's cheaper path ("as of today, as the record holds it now") against the
general queries: the same answers, whatever the record.

``length_of_stay_summary``, ``census`` and ``authorizations_expiring`` read ``rm_episodes``
(and two probes) when nothing was recorded after the day asked about and no period of today's
record begins after it (``projections.queries.stay.unchanged_since`` and ``begins_after``);
otherwise they group ``rm_periods`` as before.  Random records (waitlists for one program and
admissions to another, holds, level changes, discharges, authorizations, amended dates, voided
events, episodes entered in error, dates up to tomorrow, recorded over several days) are asked
the same questions both ways: the general way by making the two probes answer "changed".
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest.mock import patch
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from episodes import EpisodesError, FixedClock
from projections import ProjectedEpisodes, ReadModels
from projections.queries.stay import begins_after, unchanged_since
from tests.pathway_model import ACTOR, intake_fields
from tests.pathways import admit, complete_intake, define_standard_program, refer

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
TODAY = NOW.date()
D = date.fromisoformat
# Sorted: a patient waitlisted for one and admitted to another groups under the greater code.
PROGRAMS = ("dbt-6wk", "iop-adult", "php-adult")
REASON = "as recorded on the ward"


@contextmanager
def general_paths() -> Iterator[None]:
    """Every query takes its general path: the record "changed" since any day, and a period
    "begins" after it."""
    with ExitStack() as stack:
        for module in ("stay", "census"):
            stack.enter_context(patch(f"projections.queries.{module}.unchanged_since",
                                      return_value=False))
        for module in ("stay", "census", "utilization"):
            stack.enter_context(patch(f"projections.queries.{module}.begins_after",
                                      return_value=True))
        yield


def answers(reads: ReadModels, days: list[date], known: list[date | None]) -> dict[Any, Any]:
    """The questions the dashboard asks, on a few days, as the record stood on a few days."""
    result: dict[Any, Any] = {}
    for day in days:
        for known_on in known:
            result["summary", day, known_on] = reads.length_of_stay_summary(day, known_on)
        result["census", day] = reads.census(day)
        for within_days, program in ((14, None), (30, "iop-adult")):
            result["expiring", day, within_days, program] = reads.authorizations_expiring(
                within_days=within_days, on=day, program_code=program)
    return result


# ---------------------------------------------------------------- random records


def attempt(app: ProjectedEpisodes, command: str, payload: dict[str, Any]) -> Any:
    try:
        return app.execute(command, {"command_id": uuid4().hex, "reason": REASON, **payload}, ACTOR)
    except EpisodesError:
        return None  # refused: the record is as it was


def record_episode(app: ProjectedEpisodes, clock: FixedClock, data: st.DataObject, n: int,
                   last: datetime) -> None:
    """One episode: a referral, then random commands, each recorded some hours after the last
    (in the four days up to ``last``) and dated some days after the last (up to the latest
    date the clock allows: the next day)."""
    clock.set(last - timedelta(hours=data.draw(st.integers(0, 96), label="recorded")))
    day = clock.now().date() - timedelta(days=data.draw(st.integers(0, 80), label="referred"))
    receipt = attempt(app, "refer", {
        "patient_ref": f"Patient/{n}", "source": "primary care", "direction": "new",
        "requested_level": "2.1", "effective_date": day,
    })
    episode, versions = receipt.episode_id, 1
    for _ in range(data.draw(st.integers(0, 10), label="commands")):
        clock.set(min(clock.now() + timedelta(hours=data.draw(st.integers(0, 30))), last))
        day += timedelta(days=data.draw(st.integers(0, 15), label="days later"))
        day = min(day, clock.now().date() + timedelta(days=1))  # the latest date it allows
        command = data.draw(st.sampled_from([
            "complete_intake", "waitlist", "admit", "admit", "record_attendance",
            "record_authorization", "change_level_of_care", "place_on_hold", "resume",
            "discharge", "amend_event", "void_event", "mark_entered_in_error",
        ]), label="command")
        payload: dict[str, Any] = {"episode_id": episode, "effective_date": day}
        if command == "complete_intake":
            payload.update(intake_fields("2.1"))
        elif command == "waitlist":
            program = data.draw(st.sampled_from([None, *PROGRAMS]), label="waits for")
            payload.update({"program_code": program} if program else {})
        elif command == "admit":
            payload.update(program_code=data.draw(st.sampled_from(PROGRAMS), label="program"),
                           clinic="north", payer="Medicaid")
        elif command == "record_attendance":
            payload.update(kind="group", minutes=180, format="in-person")
        elif command == "record_authorization":
            start = day - timedelta(days=data.draw(st.integers(0, 40), label="authorized from"))
            payload.update(payer="Medicaid", unit=data.draw(st.sampled_from(["days", "sessions"])),
                           authorized=12, start=start,
                           end=start + timedelta(days=data.draw(st.integers(0, 60), label="for")))
        elif command == "change_level_of_care":
            kind = data.draw(st.sampled_from(["step-down", "step-up", "taper"]), label="kind")
            payload.update(kind=kind, to_level={"step-down": "1.5", "step-up": "2.5"}.get(kind))
        elif command == "discharge":
            payload.update(discharge_type=data.draw(
                st.sampled_from(["completed", "left-against-advice"])), aftercare_plan="weekly OP")
        elif command in ("amend_event", "void_event"):
            payload["target_version"] = data.draw(st.integers(2, max(versions, 2)), label="target")
            if command == "amend_event":
                earlier = day - timedelta(days=data.draw(st.integers(0, 20), label="amended to"))
                payload["changes"] = {"effective_date": earlier.isoformat()}
            del payload["effective_date"]  # a correction is dated the day it is recorded
        elif command == "mark_entered_in_error":
            del payload["effective_date"]
        if attempt(app, command, payload) is not None:
            versions += 1


@contextmanager
def fresh_database(backend: str, postgres_database_url: str | None) -> Iterator[str]:
    """An empty database for one example."""
    if backend == "sqlite":
        directory = Path(tempfile.mkdtemp(prefix="stay-current-"))
        try:
            yield f"sqlite:///{directory / 'care-episodes.db'}"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(postgres_database_url)
    with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                         dbname=url.database, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    yield postgres_database_url


def check_both_ways(backend: str, postgres_database_url: str | None, data: st.DataObject) -> None:
    with fresh_database(backend, postgres_database_url) as url:
        clock = FixedClock(NOW - timedelta(days=5))
        app = ProjectedEpisodes(url, clock=clock)
        try:
            for code in PROGRAMS:
                define_standard_program(app, ACTOR, code=code, name=code, clinics=["north"])
            # Recorded until today, or until a few days ago: then the record held at the end
            # of a day since is today's.
            until = data.draw(st.sampled_from([0, 0, 1, 3]), label="recorded until")
            last = NOW - timedelta(days=until)
            for n in range(data.draw(st.integers(1, 6), label="episodes")):
                record_episode(app, clock, data, n, last)
            clock.set(NOW)
            reads = ReadModels(app)
            days = [TODAY, TODAY + timedelta(days=1),
                    TODAY - timedelta(days=data.draw(st.integers(1, 60), label="a day"))]
            known = [None, TODAY, TODAY - timedelta(days=2)]
            with reads.connect() as connection:
                event(f"the record unchanged since two days ago: "
                      f"{unchanged_since(connection, TODAY - timedelta(days=2))}")
                event(f"a period begins after today: {begins_after(connection, TODAY)}")
            fast = answers(reads, days, known)
            with general_paths():
                general = answers(reads, days, known)
            # Check every answer, question by question (the first that differs is named).
            for question, answer in fast.items():
                assert answer == general[question], question
        finally:
            app.close()


SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=25, **SETTINGS)
@given(data=st.data())
def test_the_cheaper_path_answers_as_the_general_one_on_sqlite(data):
    check_both_ways("sqlite", None, data)


@settings(max_examples=6, **SETTINGS)
@given(data=st.data())
def test_the_cheaper_path_answers_as_the_general_one_on_postgresql(postgres_database_url, data):
    if postgres_database_url is None:
        pytest.skip("no PostgreSQL server")
    check_both_ways("postgres", postgres_database_url, data)


# ---------------------------------------------------------------- told as stories


def test_the_dashboards_questions_take_the_cheaper_path(projected, clinician):
    # Recorded at the fixed clock's noon, dated up to today: nothing after the end of today.
    define_standard_program(projected, clinician)
    episode = refer(projected, clinician, D("2026-05-01"))
    complete_intake(projected, episode, clinician, D("2026-05-02"))
    admit(projected, episode, clinician, D("2026-05-04"))
    reads = ReadModels(projected)
    with reads.connect() as connection:
        # Check the two probes let "today, as held now" read rm_episodes ...
        assert unchanged_since(connection, TODAY) and not begins_after(connection, TODAY)
        # ... and that a day already past is another question: the admission came after it.
        assert not unchanged_since(connection, D("2026-05-31"))
        assert begins_after(connection, D("2026-05-03"))
    # Check the figures: one active episode, open (censored) since 05-04.
    assert (reads.census().then, reads.census().now) == (1, 1)
    assert reads.length_of_stay_summary().overall.censored == 1


def test_a_patient_waitlisted_for_one_program_and_admitted_to_another(any_projected, clinician):
    app = any_projected
    for code in ("dbt-6wk", "iop-adult"):
        define_standard_program(app, clinician, code=code, name=code)
    # Waitlisted for Adult IOP, admitted to DBT, discharged after 10 days (10 - 1 + 1 = 10).
    episode = refer(app, clinician, D("2026-04-01"))
    complete_intake(app, episode, clinician, D("2026-04-02"))
    app.waitlist(episode, clinician, effective_date=D("2026-04-03"), program_code="iop-adult")
    admit(app, episode, clinician, D("2026-05-01"), program_code="dbt-6wk")
    app.discharge(episode, clinician, effective_date=D("2026-05-10"), discharge_type="completed",
                  reason="completed")
    reads = ReadModels(app)

    summary = reads.length_of_stay_summary()
    # Check the stay is grouped as the periods group it: under the greater program code of
    # the periods (the waitlist's "iop-adult", not the admission's "dbt-6wk"), both ways.
    assert [(f.key, f.count, f.median_days) for f in summary.by_program] == [
        ("iop-adult", 1, 10.0)]
    with general_paths():
        assert reads.length_of_stay_summary() == summary
