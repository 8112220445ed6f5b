"""The episode list (filters, search, sort, pages) and one episode's page (where it stands, its
history with corrections, its weekly hours, and the record as it stood at a version or a date)."""

from __future__ import annotations

import re
import sqlite3
from datetime import date, timedelta
from uuid import uuid4

import pytest

from episodes import Episodes, FixedClock
from episodes.demo import seed_demo
from projections import ProjectedEpisodes
from tests.conftest import NOW
from tests.panel import login
from tests.pathways import admit, attend, complete_intake, define_standard_program, refer

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


# ---------------------------------------------------------------- one episode


@pytest.fixture
def story(eps, clinician, admin_actor, clock):
    """Patient/6001: admitted Monday 4 May; three groups in W19, two in W20; a session amended
    and one voided; all recorded on 1 June. On 2 June a hold from 22 May is entered late, then
    a PHQ-9 and an authorization."""
    define_standard_program(eps, admin_actor)
    episode = refer(eps, clinician, date(2026, 4, 27), patient_ref="Patient/6001")  # v1
    complete_intake(eps, episode, clinician, date(2026, 4, 28))  # v2, PHQ-9 18
    admit(eps, episode, clinician, date(2026, 5, 4))  # v3
    for day in (4, 6, 8, 11, 13):  # v4-v8
        attend(eps, episode, clinician, date(2026, 5, day))
    session = attend(eps, episode, clinician, date(2026, 5, 18))  # v9
    eps.amend_event(episode, clinician, target_version=session.version, changes={"minutes": 150},
                    reason="the group ended early")  # v10
    twice = attend(eps, episode, clinician, date(2026, 5, 20))  # v11
    eps.void_event(episode, clinician, target_version=twice.version, reason="recorded twice")  # v12
    clock.advance(timedelta(days=1))  # 2 June
    eps.place_on_hold(episode, clinician, effective_date=date(2026, 5, 22),
                      reason="influenza")  # v13
    eps.record_outcome(episode, clinician, effective_date=date(2026, 5, 18), instrument="PHQ-9",
                       score=9)  # v14
    eps.record_authorization(episode, admin_actor, effective_date=date(2026, 5, 4),
                             payer="Medicaid", unit="days", authorized=20,
                             start=date(2026, 5, 4), end=date(2026, 6, 30))  # v15
    return episode


def heading(page: str) -> str:
    return re.search(r"<h1>(.*?)</h1>", page, re.DOTALL).group(1)


@pytest.mark.parametrize("role", ROLES)
def test_every_role_opens_an_episode(client, story, role):
    login(client, role)
    response = client.get(f"/episodes/{story}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert heading(page) == 'Patient/6001 <span class="badge onhold">onhold</span>'
    assert "Day 30 of 84 (35.7%) · week 5" in page  # 4 May to 2 June: 29 days, + 1; 30 / 84
    assert "Adult IOP <span class=\"muted\">(iop-adult)</span>" in page


def test_an_unknown_episode_is_not_found(client, story):
    login(client, "admin")
    assert client.get(f"/episodes/{uuid4()}").status_code == 404
    assert client.get("/episodes/not-an-id").status_code == 404


def test_opening_an_episode_is_in_the_access_log(client, panel, story):
    login(client, "clinician")
    client.get(f"/episodes/{story}")
    client.get(f"/episodes/{story}?version=12")
    entries = list(panel.extensions["care_episodes"].access.entries(episode_id=story))
    assert [(e.action, e.actor_id, e.patient_ref, e.detail) for e in entries] == [
        ("read", "clinician", "Patient/6001", "episode page"),
        ("read", "clinician", "Patient/6001", "episode page: version=12"),
    ]


def test_the_history_shows_every_event_and_its_corrections(client, story):
    login(client, "reviewer")
    page = client.get(f"/episodes/{story}").get_data(as_text=True)
    assert "History <span class=\"count\">15</span>" in page
    amended = page[page.index('id="v9"'):page.index('id="v10"')]
    assert 'amended</span> by <a href="#v10">v10</a>' in amended
    amendment = page[page.index('id="v10"'):page.index('id="v11"')]
    assert "Correction: event amended" in amendment
    assert 'of <a href="#v9">version 9</a>' in amendment
    assert "minutes: <del>180</del> → <ins>150</ins>" in amendment
    assert "the group ended early" in amendment and "clin-ana" in amendment
    assert '<tr id="v11" class=" voided">' in page
    assert 'voided</span> by <a href="#v12">v12</a>' in page
    # Check the late entry shows both times: recorded on 2 June, about 22 May.
    hold = page[page.index('id="v13"'):page.index('id="v14"')]
    assert "2026-06-02 12:00" in hold and "2026-05-22" in hold and "Placed on hold" in hold


def test_weekly_hours_are_drawn_against_the_minimum(client, story):
    login(client, "clinician")
    page = client.get(f"/episodes/{story}").get_data(as_text=True)
    assert "minimum 9 h" in page
    # Check W19 meets (3 x 3 h), W20 is below (2 x 3 h), W21 has a hold from Friday 22 May.
    assert "2026-W19 (from 2026-05-04): 9.00 h, meets the minimum" in page
    assert "2026-W20 (from 2026-05-11): 6.00 h, below the minimum" in page
    assert "2026-W21 (from 2026-05-18): 2.50 h, on hold (not judged)" in page  # 150 minutes
    assert 'class="mark below"' in page and 'class="mark on-hold"' in page


def test_attendance_scores_and_authorizations(client, story):
    login(client, "reviewer")
    page = re.sub(r"\s+", " ", client.get(f"/episodes/{story}").get_data(as_text=True))
    assert "6 attended, 0 missed, 0 excused" in page  # the voided session does not count
    # Check the PHQ-9 fell from 18 at intake to 9: a change of -9, a 50 % drop (a response).
    assert re.search(r"PHQ-9 .*?18 .*?9 .*?-9</td> <td>yes</td> <td>no</td>", page)
    assert "20 days" in page and "Medicaid" in page


def test_as_of_a_version_shows_the_earlier_status_and_history(client, story):
    login(client, "clinician")
    page = client.get(f"/episodes/{story}?version=12").get_data(as_text=True)
    assert heading(page) == 'Patient/6001 <span class="badge active">active</span>'
    assert "As of version 12</strong>" in page
    assert 'id="v12"' in page and 'id="v13"' not in page  # the hold came later
    assert "?episode_id=" not in page  # record links only on the current record


def test_as_of_a_recorded_day_shows_what_the_record_said_by_its_end(client, story):
    login(client, "clinician")
    june_first = client.get(f"/episodes/{story}?recorded_on=2026-06-01").get_data(as_text=True)
    # Check the hold, entered on 2 June, was not on the record at the end of 1 June.
    assert heading(june_first).endswith('<span class="badge active">active</span>')
    assert "the record at the end of 2026-06-01 (UTC)" in june_first
    too_early = client.get(f"/episodes/{story}?recorded_on=2026-05-01")
    assert too_early.status_code == 200
    assert "The episode had not been recorded yet at that point" in too_early.get_data(as_text=True)


def test_as_of_a_clinical_date_by_todays_record(client, story):
    login(client, "reviewer")
    before = client.get(f"/episodes/{story}?effective_on=2026-05-21").get_data(as_text=True)
    assert heading(before).endswith('<span class="badge active">active</span>')
    during = client.get(f"/episodes/{story}?effective_on=2026-05-25").get_data(as_text=True)
    assert heading(during).endswith('<span class="badge onhold">onhold</span>')
    assert "clinical date 2026-05-25, by today's record" in during
    # Check the banner tells that on 25 May itself nothing was on the record yet.
    assert "the record then said <strong>nothing yet</strong>" in during


@pytest.mark.parametrize("query", ["version=abc", "version=0", "recorded_on=2026-02-30",
                                   "effective_on=yesterday"])
def test_a_bad_as_of_is_a_bad_request(client, story, query):
    login(client, "reviewer")
    assert client.get(f"/episodes/{story}?{query}").status_code == 400


def test_recorders_get_links_to_what_the_pathway_allows_next(client, story):
    login(client, "clinician")
    page = client.get(f"/episodes/{story}").get_data(as_text=True)
    # Check an episode on hold may resume or be discharged, not be put on hold again.
    assert f'href="/record/resume?episode_id={story}"' in page
    assert f'href="/record/discharge?episode_id={story}"' in page
    assert "/record/place_on_hold" not in page and "/record/admit" not in page


def test_reviewers_see_no_record_links(client, story):
    login(client, "reviewer")
    page = client.get(f"/episodes/{story}").get_data(as_text=True)
    assert "/record/" not in page


def test_an_episode_the_read_models_have_not_caught_up_with(client, panel, sqlite_url, clock,
                                                            clinician):
    writer = Episodes(sqlite_url, clock=clock)  # an import that does not project
    episode = refer(writer, clinician, date(2026, 5, 20), patient_ref="Patient/7001")
    writer.close()
    login(client, "admin")
    response = client.get(f"/episodes/{episode}")
    # Check the page still shows the episode, from its events.
    assert response.status_code == 200
    assert heading(response.get_data(as_text=True)).startswith("Patient/7001")


def test_the_episode_page_needs_no_inline_style_or_script(client, story):
    login(client, "admin")
    page = client.get(f"/episodes/{story}").get_data(as_text=True)
    assert "style=" not in page and "<script" not in page


def test_without_a_login_the_pages_send_to_the_login_and_log_no_read(client, panel, story):
    for path in ("/", "/episodes/", f"/episodes/{story}"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert list(panel.extensions["care_episodes"].access.entries(action="read")) == []


def test_as_of_a_day_and_a_clinical_date_together(client, story):
    login(client, "clinician")
    # Check the record at the end of 1 June knew nothing of the hold from 22 May.
    page = client.get(f"/episodes/{story}?recorded_on=2026-06-01&effective_on=2026-05-25")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert heading(html).endswith('<span class="badge active">active</span>')
    assert "the record at the end of 2026-06-01 (UTC), clinical date 2026-05-25" in html


def test_the_episode_page_exports_fhir_and_records_the_export(client, panel):
    import json

    from tests.pathways import admitted_episode

    app = panel.extensions["care_episodes"].episodes
    from episodes import Actor, ActorRole

    episode = admitted_episode(app, Actor("clin-ana", ActorRole.CLINICIAN), date(2026, 3, 2))
    login(client, "clinician")
    page = client.get(f"/episodes/{episode}").get_data(as_text=True)
    assert f'href="/episodes/{episode}/fhir.json"' in page
    response = client.get(f"/episodes/{episode}/fhir.json")
    assert response.status_code == 200 and response.mimetype == "application/fhir+json"
    bundle = json.loads(response.get_data(as_text=True))
    assert bundle["resourceType"] == "Bundle"
    assert any(e["resource"]["resourceType"] == "EpisodeOfCare" for e in bundle["entry"])
    exports = list(panel.extensions["care_episodes"].access.entries(action="export"))
    assert [(e.actor_id, e.episode_id, e.detail) for e in exports] == [("clinician", episode, "FHIR R4 Bundle")]
    assert client.get("/episodes/00000000-0000-0000-0000-000000000000/fhir.json").status_code == 404


def test_the_history_escapes_what_the_record_says(client, eps, clinician, admin_actor):
    """The history's rows are written in Python (admin/timeline.py): every text from the record
    is still escaped, in the event's fields and in its reason."""
    from tests.pathways import admitted_on as admitted

    episode = admitted(eps, clinician, date(2026, 5, 4))
    session = attend(eps, episode, clinician, date(2026, 5, 6), topic='<b>"CBT" & co</b>')
    eps.amend_event(episode, clinician, target_version=session.version, changes={"minutes": 90},
                    reason="<script>alert(1)</script>")
    login(client, "reviewer")
    page = client.get(f"/episodes/{episode}").get_data(as_text=True)
    assert "<script>" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;&#34;CBT&#34; &amp; co&lt;/b&gt;" in page
    assert "minutes: <del>180</del> → <ins>90</ins>" in page


def test_the_episode_page_reads_the_history_as_the_library_gives_it(panel, story):
    """The page reads the stream with one plain SELECT (episodes.history.read_history): the
    same events, in the same order, as Episodes.history; an id of no episode is not found."""
    from episodes import EpisodeNotFound
    from episodes.history import read_history
    from episodes.program import program_id

    app = panel.extensions["care_episodes"].episodes
    assert read_history(app, story) == list(app.history(story))
    for not_an_episode in (uuid4(), program_id("iop-adult")):
        with pytest.raises(EpisodeNotFound):
            read_history(app, not_an_episode)


def test_the_page_decodes_the_history_as_the_library_does(panel, story):
    """The page decodes with the panel's faster mapper (projections.decoding.fast_mapper):
    the same events as the application's own mapper."""
    from episodes.history import read_history

    services = panel.extensions["care_episodes"]
    assert read_history(services.episodes, story, mapper=services.history_mapper) == list(
        services.episodes.history(story))


def test_an_event_amended_twice_shows_each_change_from_the_value_before_it(client, eps, clinician):
    from tests.pathways import admitted_on as admitted

    episode = admitted(eps, clinician, date(2026, 5, 4))
    session = attend(eps, episode, clinician, date(2026, 5, 6))  # v4, 180 minutes
    eps.amend_event(episode, clinician, target_version=session.version, changes={"minutes": 150},
                    reason="the group ended early")  # v5
    eps.amend_event(episode, clinician, target_version=session.version, changes={"minutes": 120},
                    reason="it ended earlier still")  # v6
    twice = attend(eps, episode, clinician, date(2026, 5, 8))  # v7
    eps.void_event(episode, clinician, target_version=twice.version, reason="recorded twice")  # v8
    login(client, "reviewer")
    page = client.get(f"/episodes/{episode}").get_data(as_text=True)
    session_row = page[page.index('id="v4"'):page.index('id="v5"')]
    assert session_row.startswith('id="v4" class=" amended">')
    assert 'by <a href="#v5">v5</a>' in session_row and 'by <a href="#v6">v6</a>' in session_row
    first = page[page.index('id="v5"'):page.index('id="v6"')]
    assert 'class="correction"' in first and "minutes: <del>180</del> → <ins>150</ins>" in first
    # Check the second amendment starts from the value the first one left.
    second = page[page.index('id="v6"'):page.index('id="v7"')]
    assert "minutes: <del>150</del> → <ins>120</ins>" in second
    voided = page[page.index('id="v7"'):page.index('id="v8"')]
    assert voided.startswith('id="v7" class=" voided">')
    assert 'voided</span> by <a href="#v8">v8</a>' in voided
    assert 'of <a href="#v7">version 7</a>' in page[page.index('id="v8"'):]


def test_the_page_reads_the_episode_row_and_the_stream_once(client, panel, story):
    """Each figure of the page used to read (or check) the episode's rm_episodes row itself:
    now the row is read once, the stream once, and the programs only for the as-of card."""
    from sqlalchemy import event

    engine = panel.extensions["care_episodes"].reads.engine
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        statements.append(statement)

    login(client, "reviewer")
    event.listen(engine, "before_cursor_execute", count)
    try:
        current = client.get(f"/episodes/{story}").get_data(as_text=True)
        reads_now = list(statements)
        statements.clear()
        as_of = client.get(f"/episodes/{story}?version=12").get_data(as_text=True)
    finally:
        event.remove(engine, "before_cursor_execute", count)

    def reading(table: str, found: list[str]) -> int:
        return sum(f"FROM {table}" in s for s in found)

    assert reading("rm_episodes", reads_now) == 1
    assert reading("care_episodes_events", reads_now) == 1
    assert reading("rm_programs", reads_now) == 0  # the status row names the program
    assert reading("rm_programs", statements) == 1  # the as-of card looks it up
    # Check both cards name the program.
    for page in (current, as_of):
        assert 'Adult IOP <span class="muted">(iop-adult)</span>' in page
