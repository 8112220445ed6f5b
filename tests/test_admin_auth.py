"""Logging in, roles, CSRF, headers and lockout of the admin panel."""

from __future__ import annotations

from sqlalchemy import select

from episodes.access import access
from tests.conftest import PANEL_PASSWORDS
from tests.panel import csrf_token, login, post


def access_rows(panel):
    engine = panel.extensions["care_episodes"].episodes.recorder.datastore.engine
    with engine.connect() as connection:
        return connection.execute(select(access).order_by(access.c.id)).mappings().all()


def test_pages_need_a_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_each_role_logs_in_and_sees_its_menu(client):
    login(client, "reviewer")
    page = client.get("/").get_data(as_text=True)
    assert "reviewer" in page and "Log out" in page


def test_a_wrong_password_is_refused_and_audited(client, panel):
    response = client.post("/login", data={
        "username": "clinician", "password": "nope", "csrf_token": csrf_token(client),
    })
    assert response.status_code == 401
    assert "unknown user or wrong password" in response.get_data(as_text=True)
    last = access_rows(panel)[-1]
    assert (last["action"], last["outcome"], last["actor_id"]) == ("login", "failure", "clinician")


def test_five_failures_lock_the_account_even_for_the_right_password(client, panel):
    for _ in range(5):
        client.post("/login", data={"username": "admin", "password": "wrong",
                                    "csrf_token": csrf_token(client)})
    response = client.post("/login", data={
        "username": "admin", "password": PANEL_PASSWORDS["admin"], "csrf_token": csrf_token(client),
    })
    assert response.status_code == 401
    assert "locked" in response.get_data(as_text=True)
    # Check every attempt was audited: 6 failures, no success.
    outcomes = [row["outcome"] for row in access_rows(panel) if row["action"] == "login"]
    assert outcomes == ["failure"] * 6


def test_a_form_without_its_csrf_token_is_refused(client):
    response = client.post("/login", data={"username": "admin", "password": PANEL_PASSWORDS["admin"]})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)


def test_logout_needs_a_post_with_a_token(client):
    login(client, "clinician")
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400  # no token
    assert post(client, "/logout").status_code == 302
    assert client.get("/").status_code == 302  # logged out


def test_security_headers_and_cookie_flags(client):
    response = client.get("/login")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    login(client, "admin")
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"


def test_no_open_redirect_after_login(client):
    response = client.post("/login?next=//evil.example/", data={
        "username": "admin", "password": PANEL_PASSWORDS["admin"], "csrf_token": csrf_token(client),
    })
    assert response.headers["Location"] == "/"


def test_a_refused_page_is_logged_as_a_denied_access(client, panel):
    login(client, "clinician")
    assert client.get("/users").status_code == 403
    last = access_rows(panel)[-1]
    assert (last["actor_id"], last["outcome"], last["detail"]) == ("clinician", "denied", "GET /users")
