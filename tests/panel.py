"""Helpers for tests of the admin panel: CSRF tokens and logging in as a role."""

from __future__ import annotations

import re

from tests.conftest import PANEL_PASSWORDS

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client, path: str = "/login") -> str:
    """The form token the panel put in a page (tokens are bound to the session)."""
    page = client.get(path)
    match = TOKEN.search(page.get_data(as_text=True))
    assert match, f"no CSRF token in {path}"
    return match.group(1)


def login(client, role: str) -> None:
    response = client.post("/login", data={
        "username": role, "password": PANEL_PASSWORDS[role], "csrf_token": csrf_token(client),
    })
    assert response.status_code == 302, response.get_data(as_text=True)


def post(client, path: str, data: dict | None = None, **kwargs):
    """POST a form the way a browser does: with the page's CSRF token."""
    return client.post(path, data={**(data or {}), "csrf_token": csrf_token(client, "/")}, **kwargs)
