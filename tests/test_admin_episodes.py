"""The episode list: filters, search, sort, pages (one episode's page: test_admin_episode_page.py)."""

from __future__ import annotations

import re
import sqlite3
from datetime import date, timedelta
from uuid import uuid4

import pytest

from episodes import FixedClock
from episodes.demo import seed_demo
from projections import ProjectedEpisodes
from tests.conftest import NOW
from tests.panel import login
from tests.pathways import admit, complete_intake, define_standard_program, refer

ROLES = ("admin", "clinician", "reviewer")


def cells(page: str) -> list[list[str]]:
    """The list's rows, each as the text of its cells."""
    body = page[page.index("<tbody>"):page.index("</tbody>")] if "<tbody>" in page else ""
    return [
        [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cell)).strip()
         for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.DOTALL)
    ]


def patients(page: str) -> list[str]:
    return [row[0] for row in cells(page)]


@pytest.fixture
def eps(panel):
    return panel.extensions["care_episodes"].episodes


@pytest.fixture(scope="module")
def demo_database(tmp_path_factory):
    """Thirty synthetic episodes, Patient/DEMO-0000 to Patient/DEMO-0029, in every status,
    recorded once for the module (seeding takes seconds); each test gets a copy."""
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    application = ProjectedEpisodes(f"sqlite:///{path}", clock=FixedClock(NOW))
    summary = seed_demo(application, episodes=30, seed=11, today=date(2026, 5, 30))
    application.close()
    return path, summary


@pytest.fixture
def sqlite_url(tmp_path, request):
    """The panel's database: empty, or a copy of the demo database for tests that ask for it."""
    path = tmp_path / "care-episodes.db"
    if "demo" in request.fixturenames:
        template, _ = request.getfixturevalue("demo_database")
        with sqlite3.connect(template) as source, sqlite3.connect(path) as copy:
            source.backup(copy)
    return f"sqlite:///{path}"


@pytest.fixture
def demo(demo_database, panel):
    return demo_database[1]


# ---------------------------------------------------------------- the list


@pytest.mark.parametrize("role", ROLES)
def test_every_role_lists_the_episodes(client, demo, role):
    login(client, role)
    response = client.get("/episodes/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "30 episodes; page 1 of 1." in page  # the default page holds 50
    assert len(cells(page)) == 30
    # Check the program filter offers the defined programs by name.
    assert '<option value="hybrid-8wk">Hybrid IOP (8 weeks, 12 group hours)</option>' in page


@pytest.mark.parametrize("status", ["finished", "active", "cancelled"])
def test_the_status_filter_keeps_only_that_status(client, demo, status):
    login(client, "clinician")
    rows = cells(client.get(f"/episodes/?status={status}").get_data(as_text=True))
    # Check against what the write side says each episode's status is.
    assert len(rows) == demo.statuses[status] > 0
    assert {row[1] for row in rows} == {status}


def test_program_clinic_and_level_filters(client, demo):
    login(client, "reviewer")
    dbt = cells(client.get("/episodes/?program=dbt-6wk").get_data(as_text=True))
    assert dbt and {row[2] for row in dbt} == {"dbt-6wk"}
    # Check the central clinic belongs to the hybrid program only.
    central = cells(client.get("/episodes/?clinic=central").get_data(as_text=True))
    assert central and {row[2] for row in central} == {"hybrid-8wk"}
    iop = cells(client.get("/episodes/?level=2.1").get_data(as_text=True))
    assert iop and {row[4] for row in iop} == {"2.1"}
    assert "No episode matches" in client.get("/episodes/?program=nowhere").get_data(as_text=True)


def test_search_finds_a_patient_by_part_of_the_reference(client, demo):
    login(client, "clinician")
    assert patients(client.get("/episodes/?q=DEMO-0007").get_data(as_text=True)) == [
        "Patient/DEMO-0007"]
    assert patients(client.get("/episodes/?q=demo-0007").get_data(as_text=True)) == [
        "Patient/DEMO-0007"]  # case does not matter
    assert len(patients(client.get("/episodes/?q=DEMO-001").get_data(as_text=True))) == 10


def test_sorting_by_a_column_and_paging_through_it(client, demo):
    login(client, "admin")
    first = client.get("/episodes/?sort=patient_ref&dir=asc&size=25").get_data(as_text=True)
    assert patients(first) == [f"Patient/DEMO-{n:04d}" for n in range(25)]
    assert "30 episodes; page 1 of 2." in first
    second = client.get("/episodes/?sort=patient_ref&dir=asc&size=25&page=2").get_data(as_text=True)
    assert patients(second) == [f"Patient/DEMO-{n:04d}" for n in range(25, 30)]
    backwards = client.get("/episodes/?sort=patient_ref&dir=desc&size=25").get_data(as_text=True)
    assert patients(backwards)[:2] == ["Patient/DEMO-0029", "Patient/DEMO-0028"]
    # Check the sorted column's header says so, and a click on it reverses the order.
    assert '<th aria-sort="ascending" class="sortable "><a href="/episodes/?sort=patient_ref&amp;' \
           'size=25&amp;dir=desc">Patient' in first
    # Check the pager keeps the filters, the sort and the page size, and pages by key: the
    # next page starts after the last episode shown.
    last_shown = first[first.index("<tbody>"):].split('href="/episodes/')[25].split('"')[0]
    assert f'href="/episodes/?sort=patient_ref&amp;size=25&amp;after={last_shown}" rel="next"' \
        in first
    assert "rel=\"prev\"" not in first


def link(page: str, rel: str) -> str:
    """The pager's link by its words (First, Previous, Next, Last), unescaped."""
    words = {"first": "« First", "prev": "‹ Previous", "next": "Next ›", "last": "Last »"}[rel]
    found = re.search(r'<a href="([^"]+)"[^>]*>' + re.escape(words) + "</a>", page)
    assert found, f"no {words} link"
    return found.group(1).replace("&amp;", "&")


def test_paging_by_key_forward_backward_and_to_the_last_page(client, demo):
    login(client, "admin")
    first = client.get("/episodes/?sort=patient_ref&dir=asc&size=25").get_data(as_text=True)
    second = client.get(link(first, "next")).get_data(as_text=True)
    # Every episode once, in order, and the page knows where it is.
    assert patients(first) + patients(second) == [f"Patient/DEMO-{n:04d}" for n in range(30)]
    assert "page 2 of 2" in second and "Next ›" not in second
    # Back from the second page, and straight to the last one.
    assert patients(client.get(link(second, "prev")).get_data(as_text=True)) == patients(first)
    last = client.get(link(first, "last")).get_data(as_text=True)
    assert patients(last) == patients(second) and "page 2 of 2" in last
    assert patients(client.get(link(last, "first")).get_data(as_text=True)) == patients(first)


def test_paging_by_key_keeps_episodes_without_a_value_last(client, demo):
    login(client, "admin")
    # Sorted by discharge date, newest first: the episodes not discharged come last.
    url = "/episodes/?sort=discharged_on&size=25"
    page, rows = client.get(url).get_data(as_text=True), []
    while True:
        rows += cells(page)
        if "Next ›" not in page:
            break
        page = client.get(link(page, "next")).get_data(as_text=True)
    dates = [row[7][:10] for row in rows]
    discharged = [d for d in dates if d != "—"]
    assert len(rows) == 30 and len({row[0] for row in rows}) == 30
    assert dates == discharged + ["—"] * (30 - len(discharged))
    assert discharged == sorted(discharged, reverse=True)


def test_a_cursor_that_is_not_an_episode_is_refused(client, demo):
    login(client, "clinician")
    assert client.get("/episodes/?after=nonsense").status_code == 400
    assert client.get(f"/episodes/?after={uuid4()}").status_code == 400
    assert client.get(f"/episodes/?after={uuid4()}&last=1").status_code == 400


def test_by_default_the_newest_referrals_come_first(client, demo):
    login(client, "clinician")
    referred = [row[5] for row in cells(client.get("/episodes/").get_data(as_text=True))]
    assert referred == sorted(referred, reverse=True)


def test_a_page_past_the_end_shows_the_last_page(client, demo):
    login(client, "clinician")
    page = client.get("/episodes/?size=25&page=9&sort=patient_ref&dir=asc")
    assert page.status_code == 200
    assert "page 2 of 2" in page.get_data(as_text=True)
    assert len(cells(page.get_data(as_text=True))) == 5  # 30 - 25


def test_over_target_filter(client, eps, clinician, admin_actor):
    define_standard_program(eps, admin_actor)  # 12 weeks: 84 days
    for patient_ref, admitted_on in (("Patient/5001", date(2026, 3, 2)),  # day 92 on 1 June
                                     ("Patient/5002", date(2026, 5, 4))):  # day 29
        episode = refer(eps, clinician, admitted_on - timedelta(days=7), patient_ref=patient_ref)
        complete_intake(eps, episode, clinician, admitted_on - timedelta(days=6))
        admit(eps, episode, clinician, admitted_on)
    refer(eps, clinician, date(2026, 5, 20), patient_ref="Patient/5003")  # not admitted
    login(client, "reviewer")
    over = client.get("/episodes/?status=active&over_target=yes").get_data(as_text=True)
    assert patients(over) == ["Patient/5001"]
    within = client.get("/episodes/?over_target=no&sort=patient_ref").get_data(as_text=True)
    assert patients(within) == ["Patient/5002", "Patient/5003"]


@pytest.mark.parametrize("query", [
    "status=bogus", "sort=password", "dir=sideways", "size=7", "page=0", "page=two", "level=9.9",
    "over_target=maybe", "q=" + "x" * 65, "program=" + "p" * 65,
])
def test_a_bad_parameter_is_a_bad_request_not_a_crash(client, query):
    login(client, "clinician")
    response = client.get(f"/episodes/?{query}")
    assert response.status_code == 400
    assert "Nothing was changed." in response.get_data(as_text=True)


def test_listing_is_in_the_access_log_with_the_search(client, panel, demo):
    login(client, "reviewer")
    client.get("/episodes/?status=active&q=DEMO-00")
    [entry] = panel.extensions["care_episodes"].access.entries(action="read")
    assert (entry.actor_id, entry.detail) == ("reviewer", "episode list: status=active&q=DEMO-00")
