"""What the benchmarks' figures rest on, held by the suite as counts no machine's load moves.

The benchmarks (docs/performance.md) time the library, and their figures are noisy; a change
that loses one of the properties below would show there only as a slower run, maybe.  So the
properties themselves are tested, by counting, never by timing:

* a command on an episode the application keeps sends a fixed set of statements, whatever the
  episode's length, and never reads its stream back; one on an episode it keeps nothing of
  reads the stream once, sent with the head's read;
* the panel's pages send as many statements for 30 episodes as for 3, and for a 60-event
  history as for a 10-event one (no statement per row shown);
* on SQLite, the statements behind the list, the episode page and the audit export search the
  large tables by an index: none reads the events, the audit rows, the sessions or the periods
  through.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import event

from episodes import driver
from tests.panel import login
from tests.pathways import admitted_episode, attend, refer

FIRST_DAY = date(2026, 3, 2)
# The statements of one session recorded on a kept episode, with its inline read models
# (docs/performance.md, "Where the time goes now"): read the stream's head, append the event,
# move the head, move the projection's position, update the episode row, add the session and
# the audit row.  PostgreSQL also takes the stream's advisory lock, locks the events table (so
# positions commit in order) and reads the position under a row lock.
# A session on a kept episode: decided on the kept copy, whose append the store refuses if the
# stream moved on elsewhere (episodes/recent.py), so the stream's head is not read first.
COMMAND_STATEMENTS = {
    "sqlite": ["INSERT care_episodes_events",
               "INSERT care_episodes_heads", "UPDATE rm_tracking", "UPDATE rm_episodes",
               "INSERT rm_sessions", "INSERT rm_audit"],
    "postgresql": ["SELECT pg_advisory_xact_lock",
                   "LOCK care_episodes_events", "INSERT care_episodes_events",
                   "INSERT care_episodes_heads", "SELECT rm_tracking", "UPDATE rm_tracking",
                   "UPDATE rm_episodes", "INSERT rm_sessions", "INSERT rm_audit"],
}
LARGE_TABLES = ("care_episodes_events", "rm_audit", "rm_sessions", "rm_periods")


class Sent:
    """Every statement sent on an engine, through SQLAlchemy and through ``episodes.driver``,
    with the parameters the driver received."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Any]] = []

    def names(self) -> list[str]:
        """Each statement as its verb and the first table (or function) it names."""
        return [_name(sql) for sql, _ in self.statements]

    def counted(self) -> Counter[str]:
        """How many of each (a page's figures may be read side by side, in any order)."""
        return Counter(self.names())

    def clear(self) -> None:
        self.statements.clear()


def _name(sql: str) -> str:
    verb = sql.split()[0].upper()
    table = re.search(r"\b(?:FROM|INTO|UPDATE|LOCK(?: TABLE)?)\s+\"?(\w+)", sql, re.IGNORECASE)
    if table is None:  # SELECT pg_advisory_xact_lock(...)
        return f"{verb} {sql.split()[1].split('(')[0]}"
    return f"{verb} {table.group(1)}"


@contextmanager
def sent_on(engine: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sent]:
    sent = Sent()

    def through_sqlalchemy(conn: Any, cursor: Any, sql: str, parameters: Any, *args: Any) -> None:
        sent.statements.append((sql, parameters))

    execute, execute_many = driver.execute, driver.execute_many

    def through_driver(connection: Any, prepared: Any, values: Any = driver._NONE) -> Any:
        sent.statements.append((prepared.sql, prepared.parameters(values)))
        return execute(connection, prepared, values)

    def many_through_driver(connection: Any, prepared: Any, rows: Any) -> None:
        sent.statements.append((prepared.sql, [prepared.parameters(row) for row in rows]))
        execute_many(connection, prepared, rows)

    monkeypatch.setattr(driver, "execute", through_driver)
    monkeypatch.setattr(driver, "execute_many", many_through_driver)
    event.listen(engine, "before_cursor_execute", through_sqlalchemy)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", through_sqlalchemy)
        monkeypatch.undo()


# ---------------------------------------------------------------- the command path


def test_a_session_on_a_kept_episode_sends_the_same_statements_however_long_the_episode(
        any_projected, clinician, monkeypatch):
    app = any_projected
    engine = app.recorder.datastore.engine
    episode = admitted_episode(app, clinician, FIRST_DAY)
    days = iter(FIRST_DAY + timedelta(days=3 + n) for n in range(100))
    attend(app, episode, clinician, next(days))  # the application keeps the episode from here

    with sent_on(engine, monkeypatch) as sent:
        attend(app, episode, clinician, next(days))
    short = sent.names()
    for _ in range(40):
        attend(app, episode, clinician, next(days))
    with sent_on(engine, monkeypatch) as sent:
        attend(app, episode, clinician, next(days))
    long = sent.names()

    assert long == short  # 5 events or 45: the same statements
    assert short == COMMAND_STATEMENTS[engine.dialect.name]
    # Check the episode was never read back: neither the stream nor the read models' copy.
    assert not any(name in ("SELECT care_episodes_events", "SELECT rm_episodes") for name in short)


def test_a_first_command_on_an_episode_reads_its_stream_with_its_head(any_projected, database_url,
                                                                     clock, clinician, monkeypatch):
    """An application that keeps nothing of the episode (started since, or another process
    wrote it last) replays its stream: the stream's read goes through the driver, sent just
    before the head's, so on PostgreSQL both travel in one round trip."""
    from projections import ProjectedEpisodes

    episode = admitted_episode(any_projected, clinician, FIRST_DAY)
    attend(any_projected, episode, clinician, FIRST_DAY + timedelta(days=3))
    fresh = ProjectedEpisodes(database_url, clock=clock)
    try:
        with sent_on(fresh.recorder.datastore.engine, monkeypatch) as sent:
            attend(fresh, episode, clinician, FIRST_DAY + timedelta(days=4))
        names = sent.names()
        # Check the replay read the stream once, sent right before the head's read, and that
        # nothing else was added to the kept path's statements but those two reads.
        assert names.count("SELECT care_episodes_events") == 1
        assert names.index("SELECT care_episodes_heads") == names.index("SELECT care_episodes_events") + 1
        assert len(names) == len(COMMAND_STATEMENTS[fresh.recorder.datastore.engine.dialect.name]) + 2
        # Check the next command decides on the copy now kept: no read of the stream again.
        with sent_on(fresh.recorder.datastore.engine, monkeypatch) as sent:
            attend(fresh, episode, clinician, FIRST_DAY + timedelta(days=5))
        assert "SELECT care_episodes_events" not in sent.names()
    finally:
        fresh.close()


def test_a_change_of_status_reads_the_open_periods_with_the_append(any_projected, clinician,
                                                                   monkeypatch):
    """A hold closes the episode's open status period and opens another, so the projector
    reads the open periods: through the driver, and on PostgreSQL queued right behind the
    position's lock, so the read travels in the append's round trip, not one of its own."""
    app = any_projected
    engine = app.recorder.datastore.engine
    episode = admitted_episode(app, clinician, FIRST_DAY)
    attend(app, episode, clinician, FIRST_DAY + timedelta(days=3))  # kept from here
    through_sqlalchemy: list[str] = []

    def record(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        through_sqlalchemy.append(sql)

    event.listen(engine, "before_cursor_execute", record)
    try:
        with sent_on(engine, monkeypatch) as sent:
            app.place_on_hold(episode, clinician, effective_date=FIRST_DAY + timedelta(days=4),
                              reason="hospital admission")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    names = sent.names()

    assert through_sqlalchemy == []  # every statement through the driver (pipelined)
    assert names.count("SELECT rm_periods") == 1
    assert "UPDATE rm_periods" in names and "INSERT rm_periods" in names  # closed one, opened one
    if engine.dialect.name == "postgresql":
        assert names.index("SELECT rm_periods") == names.index("SELECT rm_tracking") + 1


def test_a_session_dated_before_others_still_sends_no_read_of_the_stream(projected, clinician,
                                                                          monkeypatch):
    """A session documented late (dated before sessions already recorded) makes the projector
    count the episode's sessions again, from the episode it keeps, not from the database."""
    episode = admitted_episode(projected, clinician, FIRST_DAY)
    for day in (10, 11, 12):
        attend(projected, episode, clinician, FIRST_DAY + timedelta(days=day))
    with sent_on(projected.recorder.datastore.engine, monkeypatch) as sent:
        attend(projected, episode, clinician, FIRST_DAY + timedelta(days=5))
    assert sent.names() == COMMAND_STATEMENTS["sqlite"]


def test_on_postgresql_a_command_after_a_read_runs_on_prepared_statements(postgres_url, clock,
                                                                         clinician):
    """psycopg forgets what it prepared at every rollback on the connection (a read's end), and
    prepares a query by itself only at its fifth execution: the command path prepares its
    statements at their first."""
    from projections import ProjectedEpisodes

    app = ProjectedEpisodes(postgres_url, clock=clock)
    try:
        episode = admitted_episode(app, clinician, FIRST_DAY)
        app.episode(episode)  # a read, rolled back when its connection goes back to the pool
        attend(app, episode, clinician, FIRST_DAY + timedelta(days=3))
        engine = app.recorder.datastore.engine
        with driver.transaction(engine) as connection:  # the commands' connection, kept for the next
            prepared = connection.exec_driver_sql("SELECT statement FROM pg_prepared_statements").scalars().all()
    finally:
        app.close()
    assert any(statement.startswith("INSERT INTO care_episodes_events") for statement in prepared)
    assert any(statement.startswith("INSERT INTO rm_audit") for statement in prepared)


def test_on_postgresql_connections_with_preparation_off_are_left_so(postgres_url, clock, clinician):
    """Behind PgBouncer's transaction pooling, server-side prepared statements break: a
    connection set up with ``prepare_threshold = None`` gets none from the command path (which
    asks psycopg to prepare its statements at once, and psycopg declines there)."""
    from projections import ProjectedEpisodes

    app = ProjectedEpisodes(postgres_url, clock=clock)
    engine = app.recorder.datastore.engine

    def no_preparation(dbapi_connection, record):
        dbapi_connection.prepare_threshold = None

    event.listen(engine, "connect", no_preparation)
    engine.dispose()
    try:
        episode = admitted_episode(app, clinician, FIRST_DAY)
        for day in range(3, 10):
            attend(app, episode, clinician, FIRST_DAY + timedelta(days=day))
        with driver.transaction(engine) as connection:  # the commands' connection, kept for the next
            prepared = connection.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements").scalar()
    finally:
        app.close()
    assert prepared == 0


# ---------------------------------------------------------------- the panel


@pytest.fixture
def eps(panel):
    return panel.extensions["care_episodes"].episodes


@pytest.fixture
def engine(panel):
    return panel.extensions["care_episodes"].reads.engine


def add_episodes(eps: Any, actor: Any, count: int, start: int) -> list[UUID]:
    """``count`` admitted episodes with two sessions each, for patients numbered from ``start``."""
    made = []
    for n in range(start, start + count):
        episode = admitted_episode(eps, actor, FIRST_DAY)
        for day in (5, 6):
            attend(eps, episode, actor, FIRST_DAY + timedelta(days=day))
        made.append(episode)
    refer(eps, actor, FIRST_DAY, patient_ref=f"Patient/{start + count}")  # one not admitted
    return made


def statements_of(client: Any, engine: Any, path: str, monkeypatch: pytest.MonkeyPatch) -> Sent:
    with sent_on(engine, monkeypatch) as sent:
        response = client.get(path)
        response.get_data()  # a streamed body (the exports) is read as it is sent
    assert response.status_code == 200, path
    return sent


@pytest.mark.parametrize("path", ["/", "/episodes/", "/episodes/?status=active", "/audit/"])
def test_a_page_of_thirty_episodes_sends_the_statements_of_a_page_of_three(
        client, eps, engine, clinician, monkeypatch, path):
    add_episodes(eps, clinician, 3, start=0)
    login(client, "reviewer")
    few = statements_of(client, engine, path, monkeypatch).counted()
    add_episodes(eps, clinician, 27, start=100)
    many = statements_of(client, engine, path, monkeypatch).counted()
    assert many == few, path
    assert few.total() >= 2  # the page read something, and logged the view


@pytest.mark.parametrize("page", [
    "/episodes/{id}", "/audit/episodes/{id}", "/audit/export.csv?episode={id}",
    "/episodes/{id}/fhir.json",
])
def test_an_episode_of_sixty_events_sends_the_statements_of_one_of_ten(
        client, eps, engine, clinician, monkeypatch, page):
    episode = admitted_episode(eps, clinician, FIRST_DAY)
    days = [FIRST_DAY + timedelta(days=3 + n) for n in range(60)]
    for day in days[:6]:
        attend(eps, episode, clinician, day)
    login(client, "reviewer")
    path = page.format(id=episode)
    short = statements_of(client, engine, path, monkeypatch).counted()
    for day in days[6:56]:
        attend(eps, episode, clinician, day)
    long = statements_of(client, engine, path, monkeypatch).counted()
    assert long == short, path


# ---------------------------------------------------------------- SQLite's plans


def plans(database: str, sent: Sent) -> Iterator[tuple[str, str]]:
    """(statement, a line of its plan) for each SELECT sent, as SQLite would run it now."""
    with sqlite3.connect(database) as connection:
        for sql, parameters in sent.statements:
            if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", parameters or ()):
                yield sql, row[-1]


def full_scans(lines: Iterator[tuple[str, str]]) -> list[tuple[str, str]]:
    """Plan lines that read one of the large tables through, without an index."""
    scan = re.compile(rf"^SCAN ({'|'.join(LARGE_TABLES)})\b(?!.*USING)")
    return [(sql, line) for sql, line in lines if scan.search(line)]


def test_the_pages_search_the_large_tables_by_an_index(client, eps, engine, clinician, sqlite_url,
                                                       monkeypatch):
    episodes = add_episodes(eps, clinician, 5, start=0)
    login(client, "reviewer")
    lines: list[tuple[str, str]] = []
    for path in ("/episodes/", "/episodes/?status=active", f"/episodes/{episodes[0]}",
                 f"/audit/episodes/{episodes[0]}", f"/audit/export.csv?episode={episodes[0]}",
                 "/episodes/?q=Patient/0"):
        sent = statements_of(client, engine, path, monkeypatch)
        lines += plans(sqlite_url.removeprefix("sqlite:///"), sent)
    assert full_scans(iter(lines)) == []
    # Check the pages did read the large tables (by an index), so the check had plans to look at.
    searched = {m.group(1) for _, line in lines if (m := re.match(r"SEARCH (\w+)", line))}
    assert {"care_episodes_events", "rm_audit", "rm_sessions", "rm_periods"} <= searched


def test_the_scan_check_finds_a_scan(sqlite_url, projected):
    """The control for the test above: a statement that reads the audit rows through is seen."""
    sent = Sent()
    sent.statements.append(("SELECT count(*) FROM rm_audit WHERE rm_audit.reason LIKE ?", ("%x%",)))
    assert [line for _, line in full_scans(plans(sqlite_url.removeprefix("sqlite:///"), sent))] \
        == ["SCAN rm_audit"]
