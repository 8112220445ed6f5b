"""In a real browser: each role logs in and sees the menu its role allows."""

from __future__ import annotations

import pytest

from tests.browser import log_in

MENUS = {
    "admin": ["Dashboard", "Episodes", "New referral", "Audit", "Programs", "Users"],
    "clinician": ["Dashboard", "Episodes", "New referral"],
    "reviewer": ["Dashboard", "Episodes", "Audit"],
}


@pytest.mark.browser
@pytest.mark.parametrize("role", sorted(MENUS))
def test_each_role_logs_in_and_sees_its_menu(page, role):
    log_in(page, role)
    assert page.locator("nav[aria-label=Main] a").all_inner_texts() == MENUS[role]
    assert role in page.locator(".who").inner_text()


@pytest.mark.browser
def test_a_wrong_password_shows_an_error_and_stays_on_login(page):
    page.goto("/login")
    page.fill("#username", "admin")
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    assert page.locator(".flash.error").inner_text() == "unknown user or wrong password"
    assert page.url.endswith("/login")
