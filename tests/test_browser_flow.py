"""In a real browser, through the forms only: a clinician keeps one episode from referral to
discharge, a reviewer audits it, exports its history and verifies the record, an admin opens
the users page.  The pictures of docs/screenshots/ are taken on the way
(``CARE_EPISODES_SCREENSHOTS=1`` writes them there; otherwise to a temporary directory).
"""

from __future__ import annotations

import csv
import re
from datetime import date
from uuid import UUID

import pytest

from episodes.demo import seed_demo
from tests.browser import log_in, screenshot

PATIENT = "Patient/5005"
ATTENDANCE_LIMITS = "Must be greater than or equal to 1 and less than or equal to 720."


def expect(locator):
    # Imported here: without playwright the browser fixture skips, and this module still loads.
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture
def library(panel):
    return panel.extensions["care_episodes"].episodes


@pytest.fixture
def demo(library):
    """40 synthetic episodes in three programs (dbt-6wk, hybrid-8wk, iop-12wk), so the
    dashboard and the lists have figures."""
    return seed_demo(library, episodes=40, seed=7, today=date(2026, 5, 30))


# ---------------------------------------------------------------- filling in forms


def fill(page, fields: dict[str, str]) -> None:
    """Type into inputs and choose in selects, by element id."""
    for element_id, value in fields.items():
        control = page.locator(f"#{element_id}")
        if control.evaluate("e => e.tagName") == "SELECT":
            control.select_option(value)
        else:
            control.fill(value)


def record(page, command: str, fields: dict[str, str], recorded: str, status: str) -> None:
    """From the episode page: open the command's form, fill it in, submit, and check the
    "Recorded ..." message and the status the episode page shows afterwards."""
    page.click(f'nav.commands a[href^="/record/{command}?"]')
    fill(page, fields)
    page.click("form.record-form button[type=submit]")
    expect(page.locator(".flash.success")).to_have_text(recorded)
    expect(page.locator("h1 .badge")).to_have_text(status)


def card(page, heading: str):
    """The section of the page under the heading ``heading``."""
    return page.locator("section", has=page.locator("h2", has_text=heading))


def log_out(page) -> None:
    page.click("form.logout button[type=submit]")
    expect(page.locator(".flash.info")).to_have_text("You are logged out.")


def event_types(library, episode: UUID) -> list[str]:
    return [type(event).__name__ for event in library.history(episode)]


# ---------------------------------------------------------------- the clinician


def refer_and_admit(page, library) -> UUID:
    page.click("nav[aria-label=Main] >> text=New referral")
    fill(page, {"f-effective_date": "2026-03-02", "f-patient_ref": PATIENT,
                "f-source": "primary care", "f-direction": "step-up", "f-requested_level": "2.1"})
    page.click("form.record-form button[type=submit]")
    expect(page.locator(".flash.success")).to_have_text("Recorded ReferralReceived (version 1)")
    expect(page.locator("h1")).to_contain_text(PATIENT)
    expect(page.locator("h1 .badge")).to_have_text("planned")
    episode = UUID(page.url.rsplit("/", 1)[1])

    # The intake: one diagnosis and all six ASAM dimensions rated (D1 ... D6).
    ratings = {"1": "1", "2": "0", "3": "2", "4": "2", "5": "3", "6": "2"}
    record(page, "complete_intake", {
        "f-effective_date": "2026-03-03", "f-diagnoses-0-code": "F33.1",
        "f-diagnoses-0-category": "mental-health",
        "f-diagnoses-0-display": "Major depressive disorder, recurrent, moderate",
        **{f"f-asam_ratings-{d}": score for d, score in ratings.items()},
        "f-recommended_level": "2.1", "f-phq9": "18",
    }, "Recorded IntakeCompleted (version 2)", "planned")
    record(page, "admit", {"f-effective_date": "2026-03-04", "f-program_code": "iop-12wk",
                           "f-clinic": "north", "f-payer": "Medicaid"},
           "Recorded Admitted (version 3)", "active")
    # Check the library holds exactly what the forms recorded.
    intake = library.episode(episode).facts[1]
    assert [d.code for d in intake.diagnoses] == ["F33.1"]
    assert {str(k): v for k, v in intake.asam_ratings.items()} == \
        {"1": 1, "2": 0, "3": 2, "4": 2, "5": 3, "6": 2}
    return episode


def a_refused_session_is_shown_beside_minutes(page, library, episode: UUID) -> None:
    page.click('nav.commands a[href^="/record/record_attendance?"]')
    fill(page, {"f-effective_date": "2026-03-04", "f-kind": "group", "f-minutes": "0",
                "f-format": "in-person", "f-topic": "Relapse prevention"})
    page.click("form.record-form button[type=submit]")
    # Check the message sits in the minutes field, the input is marked, the others are not.
    minutes = page.locator(".field", has=page.locator("#f-minutes"))
    expect(minutes.locator(".field-error")).to_have_text(ATTENDANCE_LIMITS)
    expect(page.locator("#f-minutes")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".field-error")).to_have_count(1)
    expect(page.locator(".flash.success")).to_have_count(0)
    # Check what was typed is kept, and nothing was recorded.
    expect(page.locator("#f-topic")).to_have_value("Relapse prevention")
    assert event_types(library, episode) == ["ReferralReceived", "IntakeCompleted", "Admitted"]
    screenshot(page, "record-form-error")
    # Corrected on the same form, the session is recorded.
    fill(page, {"f-minutes": "180"})
    page.click("form.record-form button[type=submit]")
    expect(page.locator(".flash.success")).to_have_text("Recorded SessionAttended (version 4)")
    expect(page.locator("h1 .badge")).to_have_text("active")


def sessions_outcome_and_discharge(page) -> None:
    record(page, "record_attendance", {"f-effective_date": "2026-03-06", "f-kind": "individual",
                                       "f-minutes": "60", "f-format": "virtual"},
           "Recorded SessionAttended (version 5)", "active")
    expect(card(page, "History")).to_contain_text("Session attended")
    record(page, "record_outcome", {"f-effective_date": "2026-04-15", "f-instrument": "PHQ-9",
                                    "f-score": "9"},
           "Recorded OutcomeMeasured (version 6)", "active")
    record(page, "discharge", {"f-effective_date": "2026-05-27", "f-discharge_type": "completed",
                               "f-follow_up_date": "2026-06-10", "f-reason": "Treatment goals met"},
           "Recorded Discharged (version 7)", "finished")


RECORDED = ["ReferralReceived", "IntakeCompleted", "Admitted", "SessionAttended",
            "SessionAttended", "OutcomeMeasured", "Discharged"]


# ---------------------------------------------------------------- the reviewer


def audit_history_and_csv(page, panel, episode: UUID) -> None:
    page.goto(f"/episodes/{episode}")
    page.click("text=Audit history")
    expect(page.locator("h1")).to_have_text(f"Audit history of {PATIENT}")
    rows = page.locator("table.audit-rows tbody tr")
    expect(rows).to_have_count(7)
    # Check each row is the clinician's, in the order recorded, with its event.
    cells = [rows.nth(i).locator("td").all_inner_texts() for i in range(7)]
    assert [c[3] for c in cells] == ["clinician clinician"] * 7
    assert [c[5].split()[0] for c in cells] == RECORDED
    assert [c[6] for c in cells] == [str(v) for v in range(1, 8)]
    positions = rows.evaluate_all("rows => rows.map(r => r.dataset.position)")

    with page.expect_download() as download:
        page.click("a:text-is('CSV')")
    with open(download.value.path(), newline="", encoding="utf-8") as exported:
        lines = list(csv.DictReader(exported))
    # Check the file holds the same seven events as the page: same positions, same order.
    assert [row["event_type"] for row in lines] == RECORDED
    assert [row["position"] for row in lines] == positions
    assert {row["actor_id"] for row in lines} == {"clinician"}
    assert {row["patient_ref"] for row in lines} == {PATIENT}
    assert {row["aggregate_id"] for row in lines} == {str(episode)}
    assert [row["effective_date"] for row in lines] == [
        "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-04", "2026-03-06", "2026-04-15",
        "2026-05-27"]
    assert lines[-1]["reason"] == "Treatment goals met"
    assert download.value.suggested_filename == "audit-2026-06-01.csv"
    # Check the export is itself on record, with the reviewer's name and the filter used.
    access = panel.extensions["care_episodes"].access
    exports = list(access.entries(episode_id=episode, action="export"))
    assert [(e.actor_id, e.patient_ref) for e in exports] == [("reviewer", PATIENT)]
    assert exports[0].detail == f"audit export csv: episode={episode}"


def verification_is_intact(page) -> None:
    page.click("nav[aria-label=Main] >> text=Audit")
    expect(page.locator("h1")).to_have_text("Audit")
    # The reviewer narrows the log to what the clinician recorded: the seven events.
    page.fill("#actor", "clinician")
    page.click("form.audit-filters button[type=submit]")
    expect(page.locator("table.audit-rows tbody tr")).to_have_count(7)
    screenshot(page, "audit")
    page.click("#verification-link")
    page.click("#verify-now")
    expect(page.locator("#verification-result")).to_contain_text("intact")
    expect(page.locator("#verification-result")).to_have_class(re.compile(r"\bsuccess\b"))
    screenshot(page, "verification")


# ---------------------------------------------------------------- the story


@pytest.mark.browser
def test_an_episode_from_referral_to_discharge_then_audited(page, panel, library, demo):
    page.goto("/login")
    screenshot(page, "login")
    log_in(page, "clinician")
    # Check the dashboard has figures from the 40 demo episodes.
    expect(page.locator("h2.section").first).to_have_text(re.compile(r"Census today: [1-9]\d* in treatment"))
    screenshot(page, "dashboard")
    page.goto("/episodes/?size=25")
    expect(page.locator("p[role=status]")).to_have_text("40 episodes; page 1 of 2.")
    expect(page.locator("table.episodes tbody tr")).to_have_count(25)
    screenshot(page, "episodes")
    # The active demo episode admitted first, for the picture of an episode page with sessions:
    # check its page counts the sessions the list counts.
    page.goto("/episodes/?status=active&sort=admitted_on&dir=asc")
    first = page.locator("table.episodes tbody tr").first
    patient, attended = first.locator("td").nth(0).inner_text(), int(first.locator("td").nth(8).inner_text())
    assert attended >= 2
    first.locator("a").first.click()
    expect(page.locator("h1")).to_contain_text(patient)
    expect(page.locator("h1 .badge")).to_have_text("active")
    expect(card(page, "Attendance")).to_contain_text(f"{attended} attended,")
    expect(card(page, "History")).to_contain_text("Session attended")
    screenshot(page, "episode")

    episode = refer_and_admit(page, library)
    a_refused_session_is_shown_beside_minutes(page, library, episode)
    sessions_outcome_and_discharge(page)
    # Check the whole story is in the library, as recorded through the forms.
    assert event_types(library, episode) == RECORDED
    assert library.episode(episode).state.discharged_on == date(2026, 5, 27)

    log_out(page)
    log_in(page, "reviewer")
    audit_history_and_csv(page, panel, episode)
    verification_is_intact(page)


@pytest.mark.browser
def test_an_admin_opens_the_users_page(page, demo):
    log_in(page, "admin")
    page.click("nav[aria-label=Main] >> text=Users")
    expect(page.locator("h1")).to_have_text("Users")
    # Check the three users of the panel are listed.
    for name in ("admin", "clinician", "reviewer"):
        expect(page.locator(f"#user-{name}")).to_contain_text(name)
    screenshot(page, "users")


@pytest.mark.browser
def test_a_clinician_has_no_users_page(page):
    log_in(page, "clinician")
    expect(page.locator("nav[aria-label=Main] >> text=Users")).to_have_count(0)
    response = page.goto("/users")
    assert response is not None and response.status == 403


@pytest.mark.browser
def test_a_long_history_pages_back_and_shows_everything(page, panel, demo):
    """The episode page shows the latest entries of a history; its links page to the earlier
    ones and back, or show them all (pages of 5 here, 100 by default)."""
    panel.config["HISTORY_PAGE_SIZE"] = 5
    log_in(page, "reviewer")
    page.goto("/episodes/?status=active&sort=admitted_on&dir=asc")
    page.locator("table.episodes tbody tr").first.locator("a").first.click()
    history = card(page, "History")
    total = int(history.locator("h2 .count").inner_text())
    assert total > 10
    rows = history.locator("table.timeline tbody tr")
    expect(rows).to_have_count(5)
    expect(rows.last).to_have_id(f"v{total}")
    expect(page.locator("#history-range")).to_have_text(f"Versions {total - 4}–{total}: 5 of {total} entries.")
    page.click("#history-earlier")
    expect(rows.first).to_have_id(f"v{total - 9}")
    expect(rows.last).to_have_id(f"v{total - 5}")
    page.click("#history-latest")
    expect(rows.last).to_have_id(f"v{total}")
    page.click("#history-all")
    expect(rows).to_have_count(total)
    expect(page.locator("#history-range")).to_have_text(f"All {total} entries.")
    # Check every page view is in the access log with the history page asked for.
    episode = UUID(page.url.split("/episodes/")[1].split("?")[0])
    details = [e.detail for e in panel.extensions["care_episodes"].access.entries(episode_id=episode)]
    assert details[-4:] == ["episode page", "episode page: before=" + str(total - 4),
                            "episode page", "episode page: history=all"]
