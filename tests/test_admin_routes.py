"""Every route of the panel, for every role: who may open it, who is turned away, and that a
turned-away post writes nothing.

The matrix is read from ``panel.url_map``, so a new route is covered the day it is added: a
route without a role decorator (``admin.security.roles``) fails here, and so does a route whose
roles differ from the policy written out by hand below.
"""

from __future__ import annotations

from datetime import date
from urllib.parse import urlsplit
from uuid import UUID

import pytest
from flask import Flask, url_for
from sqlalchemy import inspect, select, text

from admin.users import users as users_table
from episodes import EpisodeStatus, allowed_commands
from episodes.access import ACCESS_TABLE
from episodes.verification import take_checkpoint
from tests import pathways
from tests.panel import csrf_token, login
from tests.record_forms import CLINICIAN

ROLES = ("admin", "clinician", "reviewer")
ANONYMOUS = "anonymous"
EVERYONE, RECORDERS, REVIEWERS, ADMINS = (
    {"admin", "clinician", "reviewer"}, {"admin", "clinician"}, {"admin", "reviewer"}, {"admin"})
# The two routes that must work without a role: logging in, and logging out.
PUBLIC = {"auth.login", "auth.logout"}

# Who may open what, written out from the roles: admins everything; clinicians record and read
# episodes; reviewers read episodes, the audit history, exports and verification.
POLICY: dict[str, set[str]] = {
    "dashboard.index": EVERYONE,
    "episodes.index": EVERYONE, "episodes.show": EVERYONE, "episodes.fhir": EVERYONE,
    "record.refer": RECORDERS, "record.command": RECORDERS,
    "audit.index": REVIEWERS, "audit.access": REVIEWERS, "audit.episode": REVIEWERS,
    "audit.export_csv": REVIEWERS, "audit.export_jsonl": REVIEWERS,
    "verification.index": REVIEWERS, "verification.run": REVIEWERS,
    "verification.checkpoint": REVIEWERS, "verification.download": REVIEWERS,
    "manage.programs": ADMINS, "manage.define_program": ADMINS, "manage.revise_program": ADMINS,
    "manage.users": ADMINS, "manage.add_user": ADMINS, "manage.change_role": ADMINS,
    "manage.set_active": ADMINS, "manage.reset_password": ADMINS,
}

COMMAND = "record_attendance"  # recorded on the active episode below
# What each posting route would write if it were allowed (the "allowed" test shows it does).
PAYLOADS: dict[str, dict[str, str]] = {
    "record.refer": {"effective_date": "2026-05-29", "patient_ref": "Patient/7007", "source": "self",
                     "direction": "new", "requested_level": "2.1", "command_id": "route-refer"},
    "record.command": {"effective_date": "2026-03-05", "kind": "group", "minutes": "180",
                       "format": "in-person", "command_id": "route-attend"},
    "manage.define_program": {"code": "iop-teen", "name": "Adolescent IOP", "target_weeks": "10",
                              "days_per_week": "3", "clinics": "east"},
    "manage.revise_program": {"name": "Adult IOP (evenings)", "target_weeks": "12",
                              "days_per_week": "3", "clinics": "north, south",
                              "reason": "Evening groups"},
    "manage.add_user": {"username": "intruder", "role": "admin", "password": "a-long-password-1"},
    "manage.change_role": {"role": "admin"},
    "manage.set_active": {"active": "0"},
    "manage.reset_password": {"password": "a-new-password-22"},
    "verification.checkpoint": {},
    "verification.run": {},  # reads only: verifying writes nothing, whoever asks
}
WRITES_NOTHING_EVEN_WHEN_ALLOWED = {"verification.run"}


# ---------------------------------------------------------------- helpers


def endpoints(app: Flask) -> list[str]:
    return sorted({rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint != "static"})


def unguarded(app: Flask) -> list[str]:
    """Endpoints with no ``allowed_roles`` (no ``@roles(...)``), other than log in and out."""
    return [e for e in endpoints(app)
            if e not in PUBLIC and not hasattr(app.view_functions[e], "allowed_roles")]


def allowed(app: Flask, endpoint: str) -> set[str]:
    return {role.value for role in getattr(app.view_functions[endpoint], "allowed_roles", ())}


def snapshot(panel) -> dict[str, object]:
    """Rows in every table (events, heads, read models, checkpoints, users, ...), every user as
    stored, and the programs the library knows: what "nothing written" is checked against.
    The access log is left out: a refused attempt may well be put on record there."""
    library = panel.extensions["care_episodes"].episodes
    engine = library.recorder.datastore.engine
    with engine.connect() as connection:
        counts = {name: connection.execute(text(f'SELECT COUNT(*) FROM "{name}"')).scalar_one()
                  for name in inspect(connection).get_table_names() if name != ACCESS_TABLE}
        people = [tuple(row) for row in connection.execute(
            select(users_table).order_by(users_table.c.username))]
    assert {"care_episodes_events", "admin_users"} <= set(counts)
    return {"counts": counts, "users": people,
            "programs": [(p.code, p.name, p.target_weeks) for p in library.programs()]}


@pytest.fixture
def seeded(panel) -> dict[str, str]:
    """An active episode (referred 2 March, admitted 4 March), its program and a checkpoint:
    the values the routes' ``<...>`` parts and query strings are filled with."""
    library = panel.extensions["care_episodes"].episodes
    episode = pathways.admitted_episode(library, CLINICIAN, date(2026, 3, 2), date(2026, 3, 4))
    # Check the command filled in for <command> is one the pathway allows for this episode.
    assert library.episode(episode).status is EpisodeStatus.ACTIVE
    assert COMMAND in allowed_commands(EpisodeStatus.ACTIVE)
    take_checkpoint(library)  # so the checkpoint download has something to give
    return {"episode_id": str(episode), "command": COMMAND, "code": "iop-adult",
            "username": "clinician"}


def path_of(panel, rule, values: dict[str, str]) -> str:
    missing = [name for name in rule.arguments if name not in values]
    assert not missing, f"{rule.rule}: no test value for {missing}; add one to the `seeded` fixture"
    arguments = {name: values[name] for name in rule.arguments}
    if "episode_id" in arguments:
        arguments["episode_id"] = UUID(arguments["episode_id"])
    if "command" in rule.arguments:  # /record/<command>?episode_id=...
        arguments["episode_id"] = values["episode_id"]
    with panel.test_request_context():
        return url_for(rule.endpoint, **arguments)


def client_as(panel, role: str):
    client = panel.test_client()
    if role != ANONYMOUS:
        login(client, role)
    return client


def get(client, path: str):
    """GET a page and read it to the end (a streamed export keeps its request open until then)."""
    response = client.get(path)
    response.get_data()
    response.close()
    return response


def goes_to_login(response) -> bool:
    return response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/login"


# ---------------------------------------------------------------- the policy


def test_every_route_has_a_role_decorator_except_log_in_and_out(panel):
    assert unguarded(panel) == []
    # Check the roles each view allows are the roles the policy gives it, route by route.
    assert {e: allowed(panel, e) for e in endpoints(panel) if e not in PUBLIC} == POLICY


def test_a_route_added_without_a_role_decorator_is_caught(panel):
    panel.add_url_rule("/naked", "naked", lambda: "patient data")
    # Check the check itself: the undecorated route is named, the decorated ones are not.
    assert unguarded(panel) == ["naked"]


# ---------------------------------------------------------------- GET, every route, every role


def test_every_route_answers_each_role_as_its_roles_allow(panel, seeded):
    covered: list[str] = []
    problems: list[str] = []
    clients = {role: client_as(panel, role) for role in (*ROLES, ANONYMOUS)}
    for rule in sorted(panel.url_map.iter_rules(), key=lambda r: r.endpoint):
        if rule.endpoint == "static":
            continue
        covered.append(rule.endpoint)
        if rule.endpoint not in PUBLIC and not hasattr(panel.view_functions[rule.endpoint],
                                                        "allowed_roles"):
            problems.append(f"{rule.endpoint} {rule.rule}: no @roles(...) decorator")
            continue
        if "GET" not in rule.methods:
            continue
        path = path_of(panel, rule, seeded)
        if rule.endpoint == "auth.login":
            # Check the login page is the one page anyone may open.
            for role, client in clients.items():
                if get(client, path).status_code != 200:
                    problems.append(f"GET {path} as {role}: the login page did not open")
            continue
        permitted = allowed(panel, rule.endpoint)
        for role, client in clients.items():
            status = (response := get(client, path)).status_code
            if role == ANONYMOUS:
                ok, wanted = goes_to_login(response), "302 to /login"
            elif role not in permitted:
                ok, wanted = status == 403, "403"
            else:
                ok, wanted = status < 400, "a page or a redirect (not 403, not 500)"
            if not ok:
                problems.append(f"GET {path} as {role}: {status}, expected {wanted}")
    assert problems == []
    # Check every route but the static files was tried: 25 endpoints today (18 GET, 10 POST,
    # 3 of them both), and exactly the endpoints the application has.
    assert covered == endpoints(panel)
    assert len(covered) == len(POLICY) + len(PUBLIC) == 25


# ---------------------------------------------------------------- POST, forbidden roles


def test_a_forbidden_post_answers_403_and_writes_nothing(panel, seeded):
    tried: list[tuple[str, str]] = []
    problems: list[str] = []
    for role in (*ROLES, ANONYMOUS):
        client = client_as(panel, role)
        token = csrf_token(client, "/login")  # a valid token for this session
        for rule in sorted(panel.url_map.iter_rules(), key=lambda r: r.endpoint):
            if "POST" not in rule.methods or rule.endpoint in PUBLIC:
                continue
            assert rule.endpoint in PAYLOADS, f"{rule.endpoint}: add what a post would write to PAYLOADS"
            if role != ANONYMOUS and role in allowed(panel, rule.endpoint):
                continue
            path = path_of(panel, rule, seeded)
            before = snapshot(panel)
            response = client.post(path, data={**PAYLOADS[rule.endpoint], "csrf_token": token})
            tried.append((rule.endpoint, role))
            wanted = goes_to_login(response) if role == ANONYMOUS else response.status_code == 403
            if not wanted:
                problems.append(f"POST {path} as {role}: {response.status_code}")
            if snapshot(panel) != before:
                problems.append(f"POST {path} as {role}: something was written")
    assert problems == []
    # Check who was turned away where: reviewers from the 2 record routes, clinicians from the
    # 2 verification posts, both from the 6 admin posts, anonymous from all 10.
    by_role = {role: sorted(e for e, r in tried if r == role) for role in (*ROLES, ANONYMOUS)}
    assert by_role["admin"] == []
    assert len(by_role["reviewer"]) == 2 + 6
    assert len(by_role["clinician"]) == 2 + 6
    assert len(by_role[ANONYMOUS]) == 10 == len(PAYLOADS)
    assert "record.command" in by_role["reviewer"] and "verification.run" in by_role["clinician"]


def test_the_same_posts_by_an_admin_do_write(panel, seeded):
    # The "nothing written" above means something only if these posts would write: they do.
    client = client_as(panel, "admin")
    token = csrf_token(client, "/login")
    unchanged = []
    for rule in sorted(panel.url_map.iter_rules(), key=lambda r: r.endpoint):
        if "POST" not in rule.methods or rule.endpoint in PUBLIC:
            continue
        before = snapshot(panel)
        response = client.post(path_of(panel, rule, seeded),
                               data={**PAYLOADS[rule.endpoint], "csrf_token": token})
        assert response.status_code < 400, (rule.endpoint, response.status_code)
        if snapshot(panel) == before:
            unchanged.append(rule.endpoint)
    assert unchanged == sorted(WRITES_NOTHING_EVEN_WHEN_ALLOWED)
