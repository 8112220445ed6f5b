"""Shared fixtures: a fixed clock, actors, and one application per storage backend.

Storage tests run on SQLite and PostgreSQL.  Without a PostgreSQL server the PostgreSQL
cases skip; in CI (``CI=true``) a skip there is a failure, so a missing server is noticed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from episodes import Actor, ActorRole, Episodes, FixedClock

pytest_plugins = ["tests.browser"]  # the browser fixtures: served, browser, page

POSTGRES_ADMIN_URL = os.environ.get(
    "CARE_EPISODES_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
# Several test runs may share one server (parallel developers): each can name its own database.
POSTGRES_TEST_DATABASE = os.environ.get("CARE_EPISODES_TEST_PG_DB", "care_episodes_test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Clinical dates in the tests are in early 2026; "now" is a fixed day after them.
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def skip_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (in CI a skipped storage or browser test is a failure)")
    pytest.skip(reason)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def clinician() -> Actor:
    return Actor("clin-ana", ActorRole.CLINICIAN)


@pytest.fixture
def admin_actor() -> Actor:
    return Actor("adm-bo", ActorRole.ADMIN)


@pytest.fixture
def reviewer() -> Actor:
    return Actor("rev-cy", ActorRole.REVIEWER)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'care-episodes.db'}"


@pytest.fixture(scope="session")
def postgres_database_url() -> str | None:
    """Create (once) an empty database for the test run; None when no server answers."""
    try:
        import psycopg
        from sqlalchemy.engine import make_url
    except ImportError:  # pragma: no cover - the dev extra installs psycopg
        return None
    admin = make_url(POSTGRES_ADMIN_URL)
    try:
        with psycopg.connect(
            host=admin.host, port=admin.port or 5432, user=admin.username,
            dbname=admin.database, autocommit=True, connect_timeout=3,
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (POSTGRES_TEST_DATABASE,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{POSTGRES_TEST_DATABASE}"')
    except psycopg.OperationalError:
        return None
    return admin.set(database=POSTGRES_TEST_DATABASE).render_as_string(hide_password=False)


@pytest.fixture
def postgres_url(postgres_database_url: str | None) -> str:
    """An empty PostgreSQL database (the public schema is dropped and recreated)."""
    if postgres_database_url is None:
        skip_or_fail(f"no PostgreSQL server at {POSTGRES_ADMIN_URL}")
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(postgres_database_url)
    with psycopg.connect(
        host=url.host, port=url.port or 5432, user=url.username, dbname=url.database,
        autocommit=True,
    ) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return postgres_database_url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request) -> str:
    """Every storage test runs once per backend."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return request.getfixturevalue(fixture)


def open_app(url: str, clock: FixedClock) -> Episodes:
    return Episodes(url, clock=clock)


@pytest.fixture
def app(sqlite_url: str, clock: FixedClock) -> Iterator[Episodes]:
    """The application on an SQLite file: the embedded default."""
    application = open_app(sqlite_url, clock)
    yield application
    application.close()


@pytest.fixture
def any_app(database_url: str, clock: FixedClock) -> Iterator[Episodes]:
    """The application on each backend in turn."""
    application = open_app(database_url, clock)
    yield application
    application.close()


@pytest.fixture
def other_app(any_app: Episodes, database_url: str, clock: FixedClock) -> Iterator[Episodes]:
    """A second application on the same database: another web worker or another process."""
    application = Episodes(database_url, clock=clock)
    yield application
    application.close()


@pytest.fixture
def projected(sqlite_url: str, clock: FixedClock):
    """The application with inline read models, on an SQLite file."""
    from projections import ProjectedEpisodes

    application = ProjectedEpisodes(sqlite_url, clock=clock)
    yield application
    application.close()


@pytest.fixture
def any_projected(database_url: str, clock: FixedClock):
    """The application with inline read models, on each backend in turn."""
    from projections import ProjectedEpisodes

    application = ProjectedEpisodes(database_url, clock=clock)
    yield application
    application.close()


@pytest.fixture
def reads(projected):
    from projections import ReadModels

    return ReadModels(projected)


PANEL_PASSWORDS = {"admin": "admin-password-1", "clinician": "clinician-password-1",
                   "reviewer": "reviewer-password-1"}


@pytest.fixture
def panel(sqlite_url: str, clock: FixedClock):
    """The admin panel's Flask app on an SQLite file, with one user per role (named after it)."""
    from admin import create_app

    app = create_app({
        "DATABASE_URL": sqlite_url, "SECRET_KEY": "test-secret", "TESTING": True,
        "SESSION_COOKIE_SECURE": False, "REMEMBER_COOKIE_SECURE": False, "CLOCK": clock,
    })
    users = app.extensions["care_episodes"].users
    for role, password in PANEL_PASSWORDS.items():
        users.add(role, role, password)
    yield app
    app.extensions["care_episodes"].close()


@pytest.fixture
def client(panel):
    return panel.test_client()
