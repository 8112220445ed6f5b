"""Programs and users in the panel: only admins define and revise programs and manage users.

Users are changed through the panel's forms; each change is in the access log as
``user-admin`` with what changed, never the password.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from episodes import Actor, ActorRole
from episodes.access import access
from tests.conftest import PANEL_PASSWORDS
from tests.panel import csrf_token, login
from tests.pathways import define_standard_program

BO = Actor("adm-bo", ActorRole.ADMIN)

TEEN_PROGRAM = {
    "code": "iop-teen", "name": "Adolescent IOP", "target_weeks": "10", "days_per_week": "3",
    "age_band": "adolescent", "minimum_weekly_hours": "", "level_of_care": "2.1",
    "format": "hybrid", "clinics": "east, west",
}


def library(panel):
    return panel.extensions["care_episodes"]


def access_rows(panel, action: str | None = None):
    with library(panel).episodes.recorder.datastore.engine.connect() as connection:
        rows = connection.execute(select(access).order_by(access.c.id)).mappings().all()
    return [row for row in rows if action is None or row["action"] == action]


def text(response) -> str:
    return response.get_data(as_text=True)


def post(client, path: str, data: dict):
    """POST a form with a valid token from a page of this area (any role's page has one)."""
    return client.post(path, data={**data, "csrf_token": csrf_token(client, "/users")})


def user(panel, username: str) -> dict:
    return next(row for row in library(panel).users.all() if row["username"] == username)


def try_login(panel, username: str, password: str) -> int:
    other = panel.test_client()
    return other.post("/login", data={"username": username, "password": password,
                                      "csrf_token": csrf_token(other)}).status_code


@pytest.fixture
def adult_program(panel):
    define_standard_program(library(panel).episodes, BO)  # iop-adult, 12 weeks, 3 days, north/south


# ---------------------------------------------------------------------------- who may open what

PAGES = ["/programs", "/programs/iop-adult", "/users"]
CHANGES = [
    ("/programs", TEEN_PROGRAM),
    ("/programs/iop-adult", {**TEEN_PROGRAM, "code": "iop-adult", "target_weeks": "8"}),
    ("/users", {"username": "clin-eve", "role": "admin", "password": "long-enough-1"}),
    ("/users/clinician/role", {"role": "admin"}),
    ("/users/admin/active", {"active": "0"}),
    ("/users/admin/password", {"password": "taken-over-123"}),
]


def test_every_manage_route_is_in_the_role_tests(panel):
    rules = {(rule.rule, method) for rule in panel.url_map.iter_rules()
             if rule.endpoint.startswith("manage.")
             for method in rule.methods - {"HEAD", "OPTIONS"}}
    tested = {(path.replace("iop-adult", "<code>"), "GET") for path in PAGES}
    tested |= {(re.sub(r"^/users/\w+/", "/users/<username>/", path.replace("iop-adult", "<code>")),
                "POST") for path, _ in CHANGES}
    assert rules == tested


@pytest.mark.parametrize("role, status", [("admin", 200), ("clinician", 403), ("reviewer", 403)])
@pytest.mark.parametrize("path", PAGES)
def test_only_admins_open_programs_and_users(client, adult_program, path, role, status):
    login(client, role)
    assert client.get(path).status_code == status


@pytest.mark.parametrize("role", ["clinician", "reviewer"])
@pytest.mark.parametrize("path, data", CHANGES)
def test_a_forbidden_change_writes_nothing(client, panel, adult_program, path, data, role):
    login(client, role)
    programs_before = library(panel).episodes.programs()
    users_before = library(panel).users.all()
    response = post(client, path, data)
    assert response.status_code == 403
    # Check nothing changed: programs, users, and no user-admin line in the access log.
    assert library(panel).episodes.programs() == programs_before
    assert library(panel).users.all() == users_before
    assert access_rows(panel, "user-admin") == []
    assert try_login(panel, "admin", PANEL_PASSWORDS["admin"]) == 302


# ---------------------------------------------------------------------------- programs


def test_programs_are_listed_with_their_measures(client, adult_program):
    login(client, "admin")
    page = text(client.get("/programs"))
    row = re.search(r"<tr>\s*<td><code>iop-adult</code></td>.*?</tr>", page, re.DOTALL).group(0)
    cells = [re.sub(r"<[^>]+>", "", cell).strip()
             for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)]
    # Check code, name, 12 weeks, 3 days, 9 hours (the adult minimum), adult, 2.1, in person,
    # and the clinics.
    assert cells[:9] == ["iop-adult", "Adult IOP", "12", "3", "9", "adult", "2.1 asam-4",
                         "in-person", "north, south"]
    assert 'name="csrf_token"' in page


def test_an_admin_defines_a_program(client, panel):
    login(client, "admin")
    response = post(client, "/programs", TEEN_PROGRAM)
    assert response.status_code == 302
    assert "Program iop-teen (Adolescent IOP) is defined." in text(client.get("/programs"))
    teen = library(panel).episodes.program("iop-teen")
    # Check a blank minimum takes the adolescent default of 6 hours; clinics split on commas.
    assert (teen.target_weeks, teen.minimum_weekly_hours, teen.clinics, teen.format.value) == (
        10, Decimal(6), ("east", "west"), "hybrid")
    row = next(library(panel).reads.audit(event_type="Defined"))
    assert (row.actor_id, row.actor_role, row.aggregate) == ("admin", "admin", "program")


def test_a_wrong_program_is_refused_with_the_errors_by_their_fields(client, panel):
    login(client, "admin")
    response = post(client, "/programs", {**TEEN_PROGRAM, "code": "Teen IOP", "days_per_week": "9"})
    assert response.status_code == 422
    page = text(response)
    assert 'id="code-error">Use lower-case letters, digits and dashes.</p>' in page
    assert re.search(r'id="days_per_week-error">[^<]*less than or equal to 7', page)
    assert re.search(r'id="days_per_week" name="days_per_week" [^>]*value="9" aria-invalid="true"',
                     page)
    assert 'value="Adolescent IOP"' in page  # what was typed stays in the form
    assert library(panel).episodes.programs() == []


def test_a_program_code_in_use_must_be_revised_instead(client, panel, adult_program):
    login(client, "admin")
    response = post(client, "/programs", {**TEEN_PROGRAM, "code": "iop-adult"})
    assert response.status_code == 422
    assert "exists; revise it instead." in text(response)
    assert library(panel).episodes.program("iop-adult").name == "Adult IOP"


def test_an_admin_revises_a_program_and_the_reason_is_on_the_record(client, panel, adult_program):
    login(client, "admin")
    form = text(client.get("/programs/iop-adult"))
    assert 'id="target_weeks" name="target_weeks" inputmode="numeric" value="12"' in form
    assert 'value="north, south"' in form
    response = post(client, "/programs/iop-adult", {
        "name": "Adult IOP", "target_weeks": "8", "days_per_week": "3", "age_band": "adult",
        "minimum_weekly_hours": "9", "level_of_care": "2.1", "format": "in-person",
        "clinics": "north, south", "reason": "the payer funds eight weeks",
    })
    assert response.status_code == 302
    assert library(panel).episodes.program("iop-adult").target_weeks == 8
    revised = next(library(panel).reads.audit(event_type="Revised"))
    assert (revised.action, revised.reason, revised.actor_id) == (
        "update", "the payer funds eight weeks", "admin")


def test_a_wrong_revision_keeps_the_program(client, panel, adult_program):
    login(client, "admin")
    response = post(client, "/programs/iop-adult", {"name": "Adult IOP", "target_weeks": "0"})
    assert response.status_code == 422
    assert re.search(r'id="target_weeks-error">[^<]*greater than or equal to 1', text(response))
    assert library(panel).episodes.program("iop-adult").target_weeks == 12


def test_an_unknown_program_cannot_be_revised(client):
    login(client, "admin")
    assert client.get("/programs/no-such").status_code == 404
    assert post(client, "/programs/no-such", {"name": "x"}).status_code == 404


# ---------------------------------------------------------------------------- users


def test_users_are_listed_with_role_state_and_lock(client, panel):
    for _ in range(5):  # five wrong passwords lock the clinician out for 15 minutes
        try_login(panel, "clinician", "wrong")
    login(client, "admin")
    page = text(client.get("/users"))
    row = re.search(r'<tr id="user-clinician">.*?</tr>', page, re.DOTALL).group(0)
    # Check the lock is shown: 12:00 + 15 minutes.
    assert "2026-06-01 12:15" in row and "locked" in row and ">clinician<" in row
    assert "(you)" in re.search(r'<tr id="user-admin">.*?</tr>', page, re.DOTALL).group(0)


def test_an_admin_adds_a_user(client, panel):
    login(client, "admin")
    response = post(client, "/users", {"username": "clin-eve", "role": "clinician",
                                       "password": "eve-password-1"})
    assert response.status_code == 302
    assert "User clin-eve is added as clinician." in text(client.get("/users"))
    assert try_login(panel, "clin-eve", "eve-password-1") == 302
    change = access_rows(panel, "user-admin")[-1]
    assert (change["actor_id"], change["detail"]) == (
        "admin", "added user clin-eve with role clinician")


@pytest.mark.parametrize("data, field, message", [
    ({"username": "clin-eve", "role": "clinician", "password": "short"}, "password",
     "a password needs at least 10 characters"),
    ({"username": "clinician", "role": "clinician", "password": "long-enough-1"}, "username",
     "user &#39;clinician&#39; exists"),
    ({"username": "Eve Smith", "role": "clinician", "password": "long-enough-1"}, "username",
     "a username is 1-64 letters"),
    ({"username": "job", "role": "system", "password": "long-enough-1"}, "role", "Choose one of"),
])
def test_a_refused_user_is_explained_and_not_added(client, panel, data, field, message):
    login(client, "admin")
    before = library(panel).users.all()
    response = post(client, "/users", data)
    assert response.status_code == 422
    assert re.search(rf'id="add-{field}-error">{re.escape(message)}', text(response))
    assert library(panel).users.all() == before
    assert access_rows(panel, "user-admin") == []


def test_an_admin_changes_a_role_and_it_holds_at_once(client, panel):
    clinician = panel.test_client()
    login(clinician, "clinician")
    assert clinician.get("/audit/").status_code == 403
    login(client, "admin")
    assert post(client, "/users/clinician/role", {"role": "reviewer"}).status_code == 302
    # Check the next request already sees the reviewer role.
    assert clinician.get("/audit/").status_code == 200
    change = access_rows(panel, "user-admin")[-1]
    assert change["detail"] == "changed the role of clinician from clinician to reviewer"


def test_an_admin_disables_and_enables_a_user(client, panel):
    reviewer = panel.test_client()
    login(reviewer, "reviewer")
    login(client, "admin")
    assert post(client, "/users/reviewer/active", {"active": "0"}).status_code == 302
    assert user(panel, "reviewer")["active"] is False
    # Check the open session ends and a new login is refused.
    assert reviewer.get("/audit/").status_code == 302
    assert try_login(panel, "reviewer", PANEL_PASSWORDS["reviewer"]) == 401
    assert post(client, "/users/reviewer/active", {"active": "1"}).status_code == 302
    assert try_login(panel, "reviewer", PANEL_PASSWORDS["reviewer"]) == 302
    assert [row["detail"] for row in access_rows(panel, "user-admin")] == [
        "disabled user reviewer", "enabled user reviewer"]


def test_an_admin_resets_a_password_and_the_log_never_holds_it(client, panel):
    for _ in range(5):
        try_login(panel, "clinician", "wrong")  # locked out
    login(client, "admin")
    response = post(client, "/users/clinician/password", {"password": "a-new-password-2"})
    assert response.status_code == 302
    # Check the lock is lifted, the old password is gone and the new one works.
    assert user(panel, "clinician")["locked_until"] is None
    assert try_login(panel, "clinician", PANEL_PASSWORDS["clinician"]) == 401
    assert try_login(panel, "clinician", "a-new-password-2") == 302
    assert access_rows(panel, "user-admin")[-1]["detail"] == "reset the password of clinician"
    assert not any("a-new-password-2" in (row["detail"] or "") for row in access_rows(panel))


def test_a_too_short_new_password_is_refused(client, panel):
    login(client, "admin")
    response = post(client, "/users/clinician/password", {"password": "short"})
    assert response.status_code == 422
    assert 'id="clinician-password-error">a password needs at least 10 characters' in text(response)
    assert try_login(panel, "clinician", PANEL_PASSWORDS["clinician"]) == 302
    assert access_rows(panel, "user-admin") == []


def test_an_admin_cannot_disable_themself_or_change_their_own_role(client, panel):
    login(client, "admin")
    response = post(client, "/users/admin/active", {"active": "0"})
    assert response.status_code == 422
    assert "You cannot disable your own account." in text(response)
    response = post(client, "/users/admin/role", {"role": "reviewer"})
    assert response.status_code == 422
    assert "You cannot change your own role" in text(response)
    # Check the admin is still an active admin and nothing was logged as a change.
    assert (user(panel, "admin")["active"], user(panel, "admin")["role"]) == (True, "admin")
    assert client.get("/users").status_code == 200
    assert access_rows(panel, "user-admin") == []


def test_an_unknown_user_is_not_found(client):
    login(client, "admin")
    assert post(client, "/users/nobody/active", {"active": "0"}).status_code == 404
