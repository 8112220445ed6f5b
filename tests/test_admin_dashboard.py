"""The dashboard: who is in treatment today, what needs attention, and stays against target.

Today is Monday 1 June 2026 (the panel's fixed clock). The last four completed ISO weeks are
2026-W19 (4-10 May) to 2026-W22 (25-31 May). The program is the standard adult IOP: a 12-week
(84-day) target and a 9-hour weekly minimum.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest

from admin import charts
from episodes import Episodes
from tests.panel import login
from tests.pathways import admit, attend, complete_intake, define_standard_program, refer

ROLES = ("admin", "clinician", "reviewer")
W19 = date(2026, 5, 4)  # the Monday of the first of the four completed weeks


def admitted(eps, actor, patient_ref: str, day: date, **admission) -> object:
    """A referral a week before ``day``, the intake the next day, the admission on ``day``."""
    episode = refer(eps, actor, day - timedelta(days=7), patient_ref=patient_ref)
    complete_intake(eps, episode, actor, day - timedelta(days=6))
    admit(eps, episode, actor, day, **admission)
    return episode


def three_groups_a_week(eps, episode, actor, first_monday: date, weeks: int) -> None:
    """Monday, Wednesday and Friday groups of 3 hours: 9 hours, the adult minimum."""
    for week in range(weeks):
        for weekday in (0, 2, 4):
            attend(eps, episode, actor, first_monday + timedelta(weeks=week, days=weekday))


def section(page: str, anchor: str) -> str:
    """The HTML of one card of the dashboard, found by its id."""
    start = page.index(f'id="{anchor}"')
    return page[start:page.index("</section>", start)]


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture
def eps(panel):
    return panel.extensions["care_episodes"].episodes


@pytest.fixture
def alerts(eps, clinician, admin_actor):
    return five_alerts(eps, clinician, admin_actor)


def five_alerts(eps, clinician, admin_actor) -> dict:
    """Five patients, each behind one alert (Patient/2004 behind two)."""
    define_standard_program(eps, admin_actor)
    over = admitted(eps, clinician, "Patient/2001", date(2026, 3, 2))  # day 92 on 1 June
    three_groups_a_week(eps, over, clinician, W19, 4)

    short_week = admitted(eps, clinician, "Patient/2002", W19)
    three_groups_a_week(eps, short_week, clinician, W19, 3)
    attend(eps, short_week, clinician, date(2026, 5, 25))
    attend(eps, short_week, clinician, date(2026, 5, 27))  # W22: 2 x 3 h = 6 h, below 9

    expiring = admitted(eps, clinician, "Patient/2003", W19, clinic="south")
    three_groups_a_week(eps, expiring, clinician, W19, 4)
    eps.record_authorization(expiring, admin_actor, effective_date=W19, payer="Medicaid",
                             unit="days", authorized=30, start=W19, end=date(2026, 6, 10))

    missing = admitted(eps, clinician, "Patient/2004", W19)
    three_groups_a_week(eps, missing, clinician, W19, 3)
    for day in (25, 27, 29):  # three unexcused absences in a row, none attended in W22
        eps.record_absence(missing, clinician, effective_date=date(2026, 5, day), kind="group",
                           minutes=180)

    done = admitted(eps, clinician, "Patient/2005", date(2026, 3, 2))
    eps.discharge(done, clinician, effective_date=date(2026, 4, 12), discharge_type="completed",
                  reason="treatment goals met")  # 2 March to 12 April: 41 + 1 = 42 days
    return {"over": over, "short_week": short_week, "expiring": expiring, "missing": missing}


@pytest.mark.parametrize("role", ROLES)
def test_every_role_opens_the_dashboard(client, eps, role):
    login(client, role)
    response = client.get("/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    # Check the census, the four alerts and the chart are there even with no episode at all.
    for heading in ("Census today: 0 in treatment", "Weeks under the minimum hours",
                    "Authorizations expiring within 14 days", "In treatment past the target stay",
                    "Consecutive missed sessions", "Length of stay against target"):
        assert heading in page


def test_the_census_counts_who_is_in_treatment_by_program_clinic_and_level(client, alerts):
    login(client, "clinician")
    page = text(client.get("/").get_data(as_text=True))
    # Check 2001-2004 are active; 2005 was discharged in April.
    assert "Census today: 4 in treatment" in page
    assert "Adult IOP 4" in page  # by program, under its name
    assert "north 3" in page and "south 1" in page  # 2003 is in the south clinic
    assert "2.1 4" in page  # every one at level 2.1 (IOP)


def test_each_alert_lists_its_patients_with_links_to_their_episodes(client, alerts):
    login(client, "reviewer")
    page = client.get("/").get_data(as_text=True)

    below = section(page, "below-minimum")
    # Check only the two short weeks are alerts: 2002's 6 hours and 2004's none, both in W22.
    assert sorted(re.findall(r"Patient/\d+", below)) == ["Patient/2002", "Patient/2004"]
    assert "2026-W22 6.00 9.0" in text(below) and "2026-W22 0.00 9.0" in text(below)
    assert f'href="/episodes/{alerts["short_week"]}"' in below

    expiring = text(section(page, "authorizations-expiring"))
    # Check 2003's authorization ends on 10 June: 9 days after 1 June.
    assert "Patient/2003 Medicaid 2026-06-10 9" in expiring

    over = text(section(page, "over-target"))
    # Check 2001 is on day 92 (2 March to 1 June: 29 + 30 + 31 + 1 days, + 1) of 84.
    assert "Patient/2001 iop-adult 2026-03-02 92 84" in over
    assert "Patient/2005" not in over  # discharged

    misses = text(section(page, "consecutive-misses"))
    assert "Patient/2004 active iop-adult 3 2026-05-22" in misses  # last attended Friday of W21


def test_the_stay_chart_shows_the_median_against_the_target(client, alerts):
    login(client, "admin")
    page = client.get("/").get_data(as_text=True)
    # Check the one discharged stay: 42 days of an 84-day target is 50 %.
    assert "42 d / 84 d (50%), n=1" in page
    assert 'aria-label="Median length of stay against the target, per program"' in page
    # Check the distribution puts that 42-day stay in the 6-8 weeks bin (42-55 days).
    assert "6-8 weeks: 1 episodes" in page
    assert "1 discharged episodes; 4 still open are not in the figures" in text(page)


def test_alert_tables_stop_at_twenty_rows_and_say_how_many_there_are(client, eps, clinician,
                                                                     admin_actor):
    define_standard_program(eps, admin_actor)
    for n in range(6):  # in care all four weeks without a session: 4 weeks below each
        admitted(eps, clinician, f"Patient/30{n:02d}", W19)
    login(client, "clinician")
    below = section(client.get("/").get_data(as_text=True), "below-minimum")
    # Check 6 x 4 = 24 violations are counted and 20 shown.
    assert '">24</span>' in below
    assert below.count("<tr><td>") == 20
    assert "Showing 20 of 24." in text(below)


def test_the_dashboard_says_when_the_figures_lag_behind_the_record(client, eps, sqlite_url,
                                                                   clock, clinician):
    login(client, "admin")
    assert "Figures are up to date with the record." in client.get("/").get_data(as_text=True)
    writer = Episodes(sqlite_url, clock=clock)  # an import that does not project
    refer(writer, clinician, date(2026, 5, 20), patient_ref="Patient/4001")
    writer.close()
    page = client.get("/").get_data(as_text=True)
    assert "The figures are 1 event behind the record" in page


def test_opening_the_dashboard_is_in_the_access_log(client, panel, alerts):
    login(client, "reviewer")
    client.get("/")
    [entry] = panel.extensions["care_episodes"].access.entries(action="read")
    assert (entry.actor_id, entry.actor_role) == ("reviewer", "reviewer")
    # Check the entry says how many episodes the alerts listed: 2001 to 2004 (2004 twice).
    assert entry.detail == "dashboard: 4 episodes in alerts"


def test_the_dashboard_needs_no_inline_style_or_script(client, alerts):
    login(client, "admin")
    page = client.get("/").get_data(as_text=True)
    # Check nothing the Content-Security-Policy would block.
    assert "style=" not in page and "<script" not in page
    assert page.count("<svg") == 2


# ---------------------------------------------------------------- the chart helpers


def test_gridlines_fall_on_round_numbers():
    assert charts.nice_step(9.9) == 2.5  # 9.9 / 4 = 2.475, rounded up to 2.5
    assert charts.nice_step(23) == 10  # 23 / 4 = 5.75, rounded up to 10
    assert charts.nice_step(0) == 1


def test_a_bar_chart_escapes_its_labels_and_draws_the_threshold():
    svg = str(charts.bar_chart([charts.Bar("<W1>", 6, kind="below"), charts.Bar("W2", 0)],
                               title="Hours & minimum", threshold=9, threshold_label="minimum 9 h"))
    assert "&lt;W1&gt;" in svg and "<W1>" not in svg
    assert 'aria-label="Hours &amp; minimum"' in svg
    assert 'class="mark below"' in svg and 'class="threshold"' in svg and "minimum 9 h" in svg
    # Check a zero is still drawn, as a 2-pixel stub.
    assert re.search(r'<rect class="mark" [^>]*height="2\.0"', svg)


def test_day_n_of_target_past_100_percent_is_a_full_red_bar():
    assert 'class="progress over"' in str(charts.progress(150.0, title="day 126 of 84"))
    assert 'width="100.0"' in str(charts.progress(150.0, title="day 126 of 84"))
    assert 'width="25.0"' in str(charts.progress(25.0, title="day 21 of 84"))


# ---------------------------------------------------------------- figures read side by side


def without_token(page: str) -> str:
    """The page but its form token (signed with the time: two requests a second apart differ)."""
    return re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token"', page)


def test_the_figures_read_side_by_side_make_the_page_they_make_one_after_another(
        client, panel, alerts, monkeypatch):
    import sys

    dashboard = sys.modules["admin.views.dashboard"]  # (admin.views.dashboard is also its blueprint)
    login(client, "reviewer")
    side_by_side = without_token(client.get("/").get_data(as_text=True))
    monkeypatch.setattr(dashboard, "is_in_memory", lambda url: True)  # the one-by-one path
    one_by_one = without_token(client.get("/").get_data(as_text=True))
    assert side_by_side == one_by_one
    assert "Patient/2001" in side_by_side  # an alert's patient: the figures were read


def test_on_postgresql_too_the_figures_side_by_side_make_the_page_of_one_after_another(
        postgres_url, clock, clinician, admin_actor, monkeypatch):
    import sys

    from admin import create_app
    from tests.conftest import PANEL_PASSWORDS

    app = create_app({
        "DATABASE_URL": postgres_url, "SECRET_KEY": "test-secret", "TESTING": True,
        "SESSION_COOKIE_SECURE": False, "REMEMBER_COOKIE_SECURE": False, "CLOCK": clock,
    })
    try:
        app.extensions["care_episodes"].users.add("reviewer", "reviewer", PANEL_PASSWORDS["reviewer"])
        five_alerts(app.extensions["care_episodes"].episodes, clinician, admin_actor)
        client = app.test_client()
        login(client, "reviewer")
        side_by_side = without_token(client.get("/").get_data(as_text=True))
        monkeypatch.setattr(sys.modules["admin.views.dashboard"], "is_in_memory", lambda url: True)
        assert without_token(client.get("/").get_data(as_text=True)) == side_by_side
        assert "Patient/2004" in section(side_by_side, "consecutive-misses")  # the figures were read
    finally:
        app.extensions["care_episodes"].close()


def test_each_figure_is_read_in_a_thread_on_a_file_and_here_in_memory(sqlite_url):
    import threading

    from sqlalchemy import create_engine

    from admin.views.dashboard import side_by_side

    def reads() -> dict:
        return {name: threading.current_thread for name in ("a", "b", "c")}

    on_file = side_by_side(create_engine(sqlite_url), reads())
    in_memory = side_by_side(create_engine("sqlite://"), reads())
    assert list(on_file) == ["a", "b", "c"]  # by name, in the order given
    assert {thread.name.split("_")[0] for thread in on_file.values()} == {"care-episodes-dashboard"}
    assert set(in_memory.values()) == {threading.main_thread()}


def test_a_figure_that_fails_fails_the_page_with_its_own_error(sqlite_url):
    from sqlalchemy import create_engine

    from admin.views.dashboard import side_by_side

    def broken() -> None:
        raise LookupError("no such program")

    with pytest.raises(LookupError, match="no such program"):
        side_by_side(create_engine(sqlite_url), {"fine": lambda: 1, "broken": broken})
