"""One episode's page: where it stands, its history with corrections, its weekly hours, and
the record as it stood at a version or a date."""

from __future__ import annotations

import re
from datetime import date, timedelta
from uuid import uuid4

import pytest

from episodes import Episodes
from tests.panel import login
from tests.pathways import admit, attend, complete_intake, define_standard_program, refer

ROLES = ("admin", "clinician", "reviewer")


@pytest.fixture
def eps(panel):
    return panel.extensions["care_episodes"].episodes


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


# ---------------------------------------------------------------- a long history, paged


def versions_shown(page: str) -> list[int]:
    return [int(v) for v in re.findall(r'<tr id="v(\d+)"', page)]


def pager_link(page: str, name: str) -> str | None:
    """The address of the history pager's link ``name`` (earlier, later, latest, all)."""
    found = re.search(rf'id="history-{name}" href="([^"]*)"', page)
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.fixture
def paged(panel):
    """Pages of 4 entries: the story's 15 events make 4 pages."""
    panel.config["HISTORY_PAGE_SIZE"] = 4
    return 4


def test_a_history_that_fits_on_one_page_has_no_pager(client, story):
    login(client, "reviewer")
    page = client.get(f"/episodes/{story}").get_data(as_text=True)
    assert versions_shown(page) == list(range(1, 16))
    assert "history-pager" not in page


def test_a_long_history_shows_its_latest_entries_and_links_to_the_earlier(client, story, paged):
    login(client, "reviewer")
    page = client.get(f"/episodes/{story}").get_data(as_text=True)
    assert versions_shown(page) == [12, 13, 14, 15]
    # Check the count and the figures are still those of every event.
    assert "History <span class=\"count\">15</span>" in page
    assert "Versions 12–15: 4 of 15 entries." in page
    assert "6 attended, 0 missed" in re.sub(r"\s+", " ", page)
    assert pager_link(page, "earlier") == f"/episodes/{story}?before=12"
    assert pager_link(page, "later") is None and pager_link(page, "latest") is None
    assert pager_link(page, "all") == f"/episodes/{story}?history=all"


def test_the_earlier_links_page_back_to_the_first_event_and_forward_again(client, story, paged):
    login(client, "reviewer")
    seen, path = [], f"/episodes/{story}"
    while path:
        page = client.get(path).get_data(as_text=True)
        seen.append(versions_shown(page))
        path = pager_link(page, "earlier")
    assert seen == [[12, 13, 14, 15], [8, 9, 10, 11], [4, 5, 6, 7], [1, 2, 3]]
    # Check the first page links forward by key, then to the latest page.
    assert pager_link(page, "later") == f"/episodes/{story}?before=8"
    later = client.get(f"/episodes/{story}?before=8").get_data(as_text=True)
    assert versions_shown(later) == [4, 5, 6, 7]
    assert pager_link(later, "later") == f"/episodes/{story}?before=12"
    last_but_one = client.get(f"/episodes/{story}?before=12").get_data(as_text=True)
    assert pager_link(last_but_one, "later") == f"/episodes/{story}"
    assert pager_link(last_but_one, "latest") == f"/episodes/{story}"


def test_the_whole_history_on_one_page(client, story, paged):
    login(client, "reviewer")
    page = client.get(f"/episodes/{story}?history=all").get_data(as_text=True)
    assert versions_shown(page) == list(range(1, 16))
    assert "All 15 entries." in page
    assert pager_link(page, "latest") == f"/episodes/{story}"
    assert pager_link(page, "earlier") is None and pager_link(page, "all") is None


def test_a_correction_links_to_the_page_of_the_event_it_corrects(client, story, paged):
    login(client, "reviewer")
    page = client.get(f"/episodes/{story}?before=12").get_data(as_text=True)  # versions 8-11
    # v10 amends v9 (on this page); v11 is voided by v12 (on the latest page).
    assert 'of <a href="#v9">version 9</a>' in page
    assert f'voided</span> by <a href="/episodes/{story}?before=13#v12">v12</a>' in page
    latest = client.get(f"/episodes/{story}").get_data(as_text=True)
    assert f'of <a href="/episodes/{story}?before=12#v11">version 11</a>' in latest
    assert versions_shown(client.get(f"/episodes/{story}?before=13").get_data(as_text=True))[-1] == 12


def test_an_as_of_view_is_paged_and_its_links_keep_the_as_of(client, story, paged):
    login(client, "reviewer")
    page = client.get(f"/episodes/{story}?version=10").get_data(as_text=True)
    assert versions_shown(page) == [7, 8, 9, 10]
    assert "History <span class=\"count\">10</span>" in page
    assert pager_link(page, "earlier") == f"/episodes/{story}?version=10&before=7"
    earlier = client.get(f"/episodes/{story}?version=10&before=7").get_data(as_text=True)
    assert versions_shown(earlier) == [3, 4, 5, 6] and "As of version 10" in earlier
    # A clinical date leaves out what is dated after it: pages by the versions it keeps.
    clinical = client.get(f"/episodes/{story}?effective_on=2026-05-12").get_data(as_text=True)
    assert versions_shown(clinical) == [5, 6, 7, 15]  # v15: an authorization from 4 May
    assert "History <span class=\"count\">8</span>" in clinical
    assert pager_link(clinical, "earlier") == f"/episodes/{story}?effective_on=2026-05-12&before=5"
    assert pager_link(clinical, "all") == f"/episodes/{story}?effective_on=2026-05-12&history=all"


def test_the_access_log_records_the_history_page_asked_for(client, panel, story, paged):
    login(client, "clinician")
    client.get(f"/episodes/{story}?before=8")
    client.get(f"/episodes/{story}?history=all")
    entries = list(panel.extensions["care_episodes"].access.entries(episode_id=story))
    assert [e.detail for e in entries] == ["episode page: before=8", "episode page: history=all"]


@pytest.mark.parametrize("query", ["before=0", "before=x", "history=some", "before=3&history=all"])
def test_a_bad_history_page_is_a_bad_request(client, story, query):
    login(client, "reviewer")
    assert client.get(f"/episodes/{story}?{query}").status_code == 400


def test_a_page_before_the_first_version_links_to_the_latest(client, story, paged):
    login(client, "reviewer")
    page = client.get(f"/episodes/{story}?before=1").get_data(as_text=True)
    assert versions_shown(page) == [] and "None of the 15 entries is before that version." in page
    assert pager_link(page, "later") == f"/episodes/{story}?before=5"
    assert versions_shown(client.get(f"/episodes/{story}?before=99").get_data(as_text=True)) == [
        12, 13, 14, 15]


def test_the_latest_page_is_the_same_from_the_read_models_or_from_the_fold(
        client, panel, story, paged, monkeypatch):
    """Today's page takes its heading from the read models' row when it is at the stream's last
    version (and decodes only the page); folding the stream gives the same page."""
    login(client, "clinician")
    paths = [f"/episodes/{story}", f"/episodes/{story}?before=9", f"/episodes/{story}?before=3"]
    fast = [client.get(p).get_data(as_text=True) for p in paths]
    reads = panel.extensions["care_episodes"].reads
    original = reads.episode_figures

    def behind(*args, **kwargs):  # the row one version behind the stream: the page folds it
        figures = original(*args, **kwargs)
        from dataclasses import replace
        return replace(figures, status=replace(figures.status, version=figures.status.version - 1))

    monkeypatch.setattr(reads, "episode_figures", behind)
    folded = [client.get(p).get_data(as_text=True) for p in paths]
    token = re.compile(r'name="csrf_token" value="[^"]*"')
    assert [token.sub("", p) for p in fast] == [token.sub("", p) for p in folded]
    assert versions_shown(fast[1]) == [5, 6, 7, 8]


def test_the_history_page_decodes_only_its_events_and_the_corrections(panel, story):
    """episodes.history_page.read_page: the page's events as read_history gives them, with
    every correction and every event one targets; the last version; not an episode's stream."""
    from episodes import EpisodeNotFound
    from episodes.history import read_history
    from episodes.history_page import read_page
    from episodes.program import program_id

    app = panel.extensions["care_episodes"].episodes
    everything = read_history(app, story)
    with app.recorder.datastore.engine.connect() as connection:
        latest = read_page(app, story, connection, size=3)
        assert latest.events == everything[12:] and latest.head == 15
        middle = read_page(app, story, connection, size=3, before=12)  # v9-v11
        assert middle.events == everything[8:11]
        # v10 amends v9, v12 voids v11: the corrections and their targets come with any page.
        first = read_page(app, story, connection, size=2)
        assert [e.originator_version for e in first.related] == [9, 10, 11, 12, 14, 15]
        assert read_page(app, story, connection, size=5, before=1).events == []
        assert read_page(app, story, connection, size=4, before=40).events == everything[11:]
        for not_an_episode in (uuid4(), program_id("iop-adult")):
            with pytest.raises(EpisodeNotFound):
                read_page(app, not_an_episode, connection, size=3)
