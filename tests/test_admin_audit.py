"""The audit area of the panel: the log of changes, the access log, one episode's history,
exports and the integrity card.

The story: twenty demo episodes are recorded on 1 June; on 3 June clinician Zed defines the
adult program, refers Patient/1001, completes the intake, admits, records a session on 7 May
and voids it the same morning ("recorded for the wrong patient").  That is six rows by
clin-zed, all recorded on 3 June: Defined (the program), then five on the episode.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from datetime import date, datetime, timezone
from uuid import UUID

import pytest
from sqlalchemy import select

from episodes import Actor, ActorRole
from episodes.access import access
from episodes.demo import seed_demo
from tests.panel import csrf_token, login
from tests.pathways import admitted_episode, attend

ZED = Actor("clin-zed", ActorRole.CLINICIAN)
ZED_DAY = datetime(2026, 6, 3, 9, 0, tzinfo=timezone.utc)
ZED_EVENTS = ["Defined", "ReferralReceived", "IntakeCompleted", "Admitted", "SessionAttended",
              "EventVoided"]


# ---------------------------------------------------------------------------- helpers


def library(panel):
    return panel.extensions["care_episodes"]


def access_rows(panel):
    with library(panel).episodes.recorder.datastore.engine.connect() as connection:
        return connection.execute(select(access).order_by(access.c.id)).mappings().all()


def stored_event_count(panel) -> int:
    """Counted in the event store itself, not in the read model the page shows."""
    return len(library(panel).episodes.recorder.select_notifications(start=None, limit=100_000))


def positions(page: str) -> list[int]:
    return [int(p) for p in re.findall(r'data-position="(\d+)"', page)]


def access_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-access-id="(\d+)"', page)]


def next_link(page: str) -> str | None:
    match = re.search(r'rel="next" href="([^"]+)"', page)
    return html.unescape(match.group(1)) if match else None


def text(response) -> str:
    return response.get_data(as_text=True)


def zed_story(panel, clock) -> UUID:
    app = library(panel).episodes
    clock.set(ZED_DAY)
    episode = admitted_episode(app, ZED, date(2026, 5, 4))  # Defined, referral, intake, admission
    session = attend(app, episode, ZED, date(2026, 5, 7))  # version 4
    app.void_event(episode, ZED, target_version=session.version,
                   reason="recorded for the wrong patient")
    return episode


@pytest.fixture
def zed_episode(panel, clock) -> UUID:
    return zed_story(panel, clock)


@pytest.fixture
def seeded(panel, clock) -> UUID:
    """Twenty demo episodes recorded on 1 June, then Zed's story on 3 June."""
    seed_demo(library(panel).episodes, episodes=20, seed=7, today=date(2026, 5, 30))
    return zed_story(panel, clock)


# ---------------------------------------------------------------------------- who may open what

AUDIT_PAGES = ["/audit/", "/audit/access", "/audit/episodes/{episode}", "/audit/export.csv",
               "/audit/export.jsonl"]


def test_every_audit_route_is_in_the_role_tests(panel):
    # Check a new audit route cannot be added without being tested for every role.
    rules = {rule.rule for rule in panel.url_map.iter_rules() if rule.endpoint.startswith("audit.")}
    assert rules == {"/audit/", "/audit/access", "/audit/episodes/<uuid:episode_id>",
                     "/audit/export.csv", "/audit/export.jsonl"}


@pytest.mark.parametrize("role, status", [("admin", 200), ("reviewer", 200), ("clinician", 403)])
@pytest.mark.parametrize("path", AUDIT_PAGES)
def test_admins_and_reviewers_audit_clinicians_may_not(client, panel, zed_episode, path, role,
                                                       status):
    login(client, role)
    before = len(access_rows(panel))
    response = client.get(path.format(episode=zed_episode))
    assert response.status_code == status
    if status == 403:
        # Check a refused clinician leaves no read or export behind: only the denied attempt.
        added = access_rows(panel)[before:]
        assert [(row["action"], row["outcome"]) for row in added] == [("read", "denied")]


def test_the_audit_needs_a_login(client):
    response = client.get("/audit/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


# ---------------------------------------------------------------------------- the log of changes


def test_filters_by_actor_action_event_type_and_episode(client, seeded):
    login(client, "reviewer")

    page = text(client.get("/audit/?actor=clin-zed"))
    # Check Zed's six rows, in the order they were recorded, and nobody else's.
    assert len(positions(page)) == 6
    cells = re.findall(r'<td>(\w+) <span class="muted">[a-z-]+</span></td>', page)
    assert [name for name in cells if name in ZED_EVENTS] == ZED_EVENTS
    assert "clin-ana" not in page and "Patient/1001" in page

    page = text(client.get("/audit/?actor=clin-zed&action=void"))
    assert len(positions(page)) == 1 and "EventVoided" in page
    assert "recorded for the wrong patient" in page

    page = text(client.get("/audit/?actor=clin-zed&event_type=Admitted"))
    assert len(positions(page)) == 1 and "Admitted" in page

    # Check an episode's filter leaves out the program row: referral, intake, admission,
    # session, void = 5.
    page = text(client.get(f"/audit/?episode={seeded}"))
    assert len(positions(page)) == 5


def test_filters_by_recorded_date_with_an_inclusive_end(client, seeded):
    login(client, "admin")
    # Check only 3 June's rows are recorded after 2 June: Zed's six.
    assert len(positions(text(client.get("/audit/?from=2026-06-02")))) == 6
    # Check a one-day window from 3 June to 3 June holds that whole day.
    assert len(positions(text(client.get("/audit/?from=2026-06-03&to=2026-06-03")))) == 6
    # Check up to and including 1 June: the demo only.
    page = text(client.get("/audit/?to=2026-06-01"))
    assert positions(page) and "clin-zed" not in page
    assert positions(text(client.get("/audit/?from=2026-06-04"))) == []


@pytest.mark.parametrize("query, field, message", [
    ("episode=not-a-uuid", "episode", "Not an episode id"),
    ("from=2026-13-01", "from", "Not a date"),
    ("from=2026-06-03&to=2026-06-01", "to", "The end comes before the start"),
    ("action=delete", "action", "Choose one of create, update, correct, void"),
])
def test_a_wrong_filter_is_explained_next_to_its_field(client, panel, query, field, message):
    login(client, "reviewer")
    before = len(access_rows(panel))
    response = client.get(f"/audit/?{query}")
    assert response.status_code == 400
    page = text(response)
    assert f'id="{field}-error">{message}' in page
    assert positions(page) == []
    assert len(access_rows(panel)) == before  # nothing was shown, so nothing was read


def test_pages_follow_the_log_without_gaps_or_repeats(client, panel, seeded):
    panel.config["PAGE_SIZE"] = 100
    login(client, "reviewer")
    seen, url, pages = [], "/audit/", 0
    while url:
        page = text(client.get(url))
        seen += positions(page)
        url = next_link(page)
        pages += 1
    # Check every stored event appears once, in log order, 100 to a page.
    total = stored_event_count(panel)
    assert seen == sorted(set(seen)) and len(seen) == total
    assert pages == -(-total // 100)  # ceiling of total / 100


def test_filtered_pages_keep_their_filter(client, panel, seeded):
    panel.config["PAGE_SIZE"] = 4
    login(client, "reviewer")
    first = text(client.get("/audit/?actor=clin-zed"))
    assert len(positions(first)) == 4
    link = next_link(first)
    assert "actor=clin-zed" in link
    second = text(client.get(link))
    # Check 6 rows = 4 on the first page + 2 on the second, and the second is the last.
    assert len(positions(second)) == 2 and next_link(second) is None
    assert min(positions(second)) > max(positions(first))
    assert "End of the log." in second


def test_viewing_the_log_is_itself_recorded(client, panel, zed_episode):
    login(client, "reviewer")
    client.get("/audit/?actor=clin-zed")
    last = access_rows(panel)[-1]
    assert (last["actor_id"], last["action"]) == ("reviewer", "read")
    assert last["detail"] == "audit log: actor=clin-zed"


# ---------------------------------------------------------------------------- exports


def test_csv_export_streams_the_filtered_rows_and_is_recorded(client, panel, seeded):
    login(client, "reviewer")
    response = client.get("/audit/export.csv?actor=clin-zed")
    assert response.status_code == 200 and response.is_streamed
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="audit-2026-06-03.csv"'
    assert response.headers["Cache-Control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(text(response))))
    assert [row["event_type"] for row in rows] == ZED_EVENTS
    assert rows[0]["aggregate"] == "program" and rows[0]["patient_ref"] == ""
    assert {row["patient_ref"] for row in rows[1:]} == {"Patient/1001"}
    assert rows[-1]["reason"] == "recorded for the wrong patient"
    assert rows[-1]["prior_version"] == "4"
    assert rows[-1]["recorded_at"] == "2026-06-03T09:00:00+00:00"
    # Check the export is in the access log with its filters.
    last = access_rows(panel)[-1]
    assert (last["actor_id"], last["action"], last["outcome"]) == ("reviewer", "export", "success")
    assert last["detail"] == "audit export csv: actor=clin-zed"
    assert last["episode_id"] is None


def test_jsonl_export_of_one_episode_names_it_in_the_access_log(client, panel, zed_episode):
    login(client, "admin")
    response = client.get(f"/audit/export.jsonl?episode={zed_episode}&action=void")
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    disposition = 'attachment; filename="audit-2026-06-03.jsonl"'
    assert response.headers["Content-Disposition"] == disposition
    lines = [json.loads(line) for line in text(response).splitlines()]
    assert len(lines) == 1
    assert lines[0]["event_type"] == "EventVoided" and lines[0]["prior_version"] == 4
    assert lines[0]["aggregate_id"] == str(zed_episode)
    assert lines[0]["effective_date"] == "2026-06-03"  # a void is dated the day it is made
    last = access_rows(panel)[-1]
    assert last["action"] == "export" and last["episode_id"] == zed_episode
    assert last["patient_ref"] == "Patient/1001"
    assert last["detail"] == f"audit export jsonl: episode={zed_episode}; action=void"


def test_an_unfiltered_export_holds_every_event(client, panel, seeded):
    login(client, "reviewer")
    rows = list(csv.DictReader(io.StringIO(text(client.get("/audit/export.csv")))))
    assert len(rows) == stored_event_count(panel)
    assert [int(row["position"]) for row in rows] == sorted(int(row["position"]) for row in rows)
    lines = text(client.get("/audit/export.jsonl")).splitlines()
    assert len(lines) == len(rows)


def test_an_export_with_a_wrong_filter_is_refused_and_not_recorded(client, panel):
    login(client, "reviewer")
    response = client.get("/audit/export.csv?from=yesterday")
    assert response.status_code == 400
    assert [row for row in access_rows(panel) if row["action"] == "export"] == []


# ---------------------------------------------------------------------------- one episode's history


def test_an_episode_history_shows_its_changes_and_records_the_visit(client, panel, zed_episode):
    login(client, "reviewer")
    response = client.get(f"/audit/episodes/{zed_episode}")
    assert response.status_code == 200
    page = text(response)
    assert "Audit history of Patient/1001" in page
    assert len(positions(page)) == 5  # referral, intake, admission, session, void
    visit = access_rows(panel)[-1]
    assert (visit["actor_id"], visit["action"], visit["episode_id"], visit["patient_ref"]) == (
        "reviewer", "read", zed_episode, "Patient/1001")
    # Check the visit is the first line of the episode's own access log.
    assert access_ids(page)[0] == visit["id"]


def test_an_unknown_episode_is_not_found_and_not_recorded(client, panel):
    login(client, "admin")
    before = len(access_rows(panel))
    assert client.get("/audit/episodes/00000000-0000-0000-0000-000000000000").status_code == 404
    assert len(access_rows(panel)) == before


def test_a_clinicians_read_is_seen_by_the_reviewer(panel, zed_episode):
    clinician = panel.test_client()
    login(clinician, "clinician")
    assert clinician.get(f"/episodes/{zed_episode}").status_code == 200

    reviewer = panel.test_client()
    login(reviewer, "reviewer")
    page = text(reviewer.get("/audit/access?actor=clinician&action=read"))
    # Check the clinician's read is listed, with the episode and the patient.
    assert len(access_ids(page)) == 1
    assert f"/audit/episodes/{zed_episode}" in page and "Patient/1001" in page
    # Check it is in the episode's own history too.
    page = text(reviewer.get(f"/audit/episodes/{zed_episode}"))
    reader = r'<td>clinician <span class="muted">clinician</span></td>\s*<td>read</td>'
    assert re.search(reader, page)


# ---------------------------------------------------------------------------- the access log


def test_the_access_log_is_newest_first_and_pages_back(client, panel):
    login(client, "admin")  # entry 1: admin's login
    for _ in range(4):
        client.get("/audit/")  # entries 2-5: four reads of the audit log
    panel.config["PAGE_SIZE"] = 3
    first = text(client.get("/audit/access"))  # entry 6: this read
    # Check newest first: 6, 5, 4; then 3, 2, 1 on the older page, which is the last.
    assert access_ids(first) == [6, 5, 4]
    second = text(client.get(next_link(first)))
    assert access_ids(second) == [3, 2, 1] and next_link(second) is None


def test_the_access_log_filters_by_action_actor_and_episode(client, panel, zed_episode):
    other = panel.test_client()
    other.post("/login", data={"username": "clinician", "password": "wrong",
                               "csrf_token": csrf_token(other)})
    login(client, "reviewer")
    page = text(client.get("/audit/access?action=login"))
    # Check the failed login and the reviewer's own login, and no read.
    assert len(access_ids(page)) == 2
    assert "outcome-failure" in page and "unknown user or wrong password" in page
    page = text(client.get("/audit/access?actor=clinician"))
    assert len(access_ids(page)) == 1
    client.get(f"/audit/episodes/{zed_episode}")
    page = text(client.get(f"/audit/access?episode={zed_episode}"))
    # Check the history visit, and this very look at the log (newest first): it names the
    # episode too, so it is part of that episode's trail.
    assert len(access_ids(page)) == 2
    assert page.index(f"access log: episode={zed_episode}") < page.index("audit history")
    response = client.get("/audit/access?action=delete")
    assert response.status_code == 400 and access_ids(text(response)) == []


# ---------------------------------------------------------------------------- integrity


def test_the_integrity_card_counts_events_and_links_to_verification(client, panel, zed_episode):
    login(client, "reviewer")
    page = text(client.get("/audit/"))
    # Check six events were recorded (Zed's story), none waiting for the read models.
    assert '<dd class="num" id="event-count">6</dd>' in page
    assert '<dd class="num" id="read-lag">0</dd>' in page
    assert 'href="/audit/verification/"' in page
