"""Attendance read model: attended against expected sessions, and runs of unexcused misses.

Rate = attended / (attended + missed + excused); sessions the program cancelled stay out.
The miss run counts unexcused misses since the last attended session, in clinical order.
"""

from __future__ import annotations

from datetime import date
from uuid import UUID

import pytest

from episodes import Episodes
from projections import ReadModels
from projections.queries.attendance import AttendanceCounts
from tests.pathways import admitted_on, attend

D = date.fromisoformat




def miss(app: Episodes, episode: UUID, actor, on: str, kind: str = "group", excused: bool = False):
    return app.record_absence(episode, actor, effective_date=on, kind=kind, minutes=180,
                              excused=excused)


def cancel(app: Episodes, episode: UUID, actor, on: str, kind: str = "group"):
    return app.record_program_cancellation(episode, actor, effective_date=on, kind=kind,
                                           minutes=180)


def counts(c: AttendanceCounts) -> tuple[int, int, int, int]:
    return (c.attended, c.missed, c.excused, c.cancelled)


def test_rate_counts_excused_absences_and_leaves_cancellations_out(projected, clinician):
    reads = ReadModels(projected)
    episode = admitted_on(projected, clinician, D("2026-03-02"))
    for day in ("2026-03-02", "2026-03-04", "2026-03-06", "2026-03-09", "2026-03-11"):
        attend(projected, episode, clinician, D(day))  # five groups attended
    for day in ("2026-03-03", "2026-03-10"):
        attend(projected, episode, clinician, D(day), minutes=50, kind="individual")
    miss(projected, episode, clinician, "2026-03-13")  # group, unexcused
    miss(projected, episode, clinician, "2026-03-16", excused=True)  # group, excused (ill)
    cancel(projected, episode, clinician, "2026-03-18")  # the program cancelled a group
    miss(projected, episode, clinician, "2026-03-17", kind="individual")
    attend(projected, episode, clinician, D("2026-03-20"), minutes=50, kind="individual")

    attendance = reads.attendance(episode)
    # Check the totals: attended 5 + 3 = 8, missed 2, excused 1, cancelled 1.
    assert counts(attendance.total) == (8, 2, 1, 1)
    # Check the rate: 8 / (8 + 2 + 1) = 8 / 11 = 0.7272... = 72.7 %; the cancellation is left out.
    assert attendance.total.expected == 11
    assert attendance.total.rate == pytest.approx(8 / 11)
    assert attendance.total.percent == 72.7
    # Check per kind: group 5 / (5 + 1 + 1) = 5/7 (1 cancelled left out);
    # individual 3 / (3 + 1) = 3/4.
    assert sorted(attendance.by_kind) == ["group", "individual"]
    assert counts(attendance.by_kind["group"]) == (5, 1, 1, 1)
    assert attendance.by_kind["group"].rate == pytest.approx(5 / 7)
    assert counts(attendance.by_kind["individual"]) == (3, 1, 0, 0)
    assert attendance.by_kind["individual"].rate == pytest.approx(0.75)
    # Check the run: the latest session (03-20) was attended, so no run.
    assert (attendance.consecutive_misses, attendance.at_risk) == (0, False)
    assert attendance.last_attended_on == D("2026-03-20")
    # Check as of 03-15: only sessions dated up to then: attended 8 - 1 = 7, missed 1 (03-13);
    # rate 7 / 8 = 0.875, and the 03-13 miss is a run of 1.
    earlier = reads.attendance(episode, as_of=D("2026-03-15"))
    assert counts(earlier.total) == (7, 1, 0, 0)
    assert earlier.total.rate == pytest.approx(0.875)
    assert earlier.consecutive_misses == 1


def test_a_late_entry_breaks_the_run_where_it_happened(projected, clinician):
    reads = ReadModels(projected)
    episode = admitted_on(projected, clinician, D("2026-03-02"))
    attend(projected, episode, clinician, D("2026-03-02"))
    miss(projected, episode, clinician, "2026-03-04")
    miss(projected, episode, clinician, "2026-03-06")
    miss(projected, episode, clinician, "2026-03-09")
    # Check three unexcused misses in a row reach the default threshold of 3.
    attendance = reads.attendance(episode)
    assert (attendance.consecutive_misses, attendance.at_risk) == (3, True)
    assert [a.episode_id for a in reads.miss_run_alerts()] == [episode]

    # A Thursday group the patient did attend is recorded late, after the Monday miss.
    attend(projected, episode, clinician, D("2026-03-05"))
    # Check clinical order: 03-02 attended, 03-04 miss, 03-05 attended, 03-06 miss, 03-09 miss
    # -> run 2.
    # (In recorded order the attended session came last, which would wrongly give a run of 0.)
    attendance = reads.attendance(episode)
    assert (attendance.consecutive_misses, attendance.at_risk) == (2, False)
    assert attendance.last_attended_on == D("2026-03-05")
    assert reads.miss_run_alerts() == []
    # Check the threshold is a parameter: a run of 2 reaches a threshold of 2.
    assert reads.attendance(episode, threshold=2).at_risk is True
    assert [(a.episode_id, a.consecutive_misses) for a in reads.miss_run_alerts(threshold=2)] == [
        (episode, 2)]

    # An excused absence and a program cancellation neither extend nor break the run.
    miss(projected, episode, clinician, "2026-03-11", excused=True)
    cancel(projected, episode, clinician, "2026-03-12")
    miss(projected, episode, clinician, "2026-03-13")
    # Check the run: 03-06, 03-09, (03-11 excused, 03-12 cancelled skipped), 03-13 -> 3 misses.
    attendance = reads.attendance(episode)
    assert (attendance.consecutive_misses, attendance.at_risk) == (3, True)
    alert = reads.miss_run_alerts()
    assert [(a.episode_id, a.status, a.consecutive_misses, a.last_attended_on) for a in alert] == [
        (episode, "active", 3, D("2026-03-05"))]


def test_voided_and_amended_sessions_count_as_corrected(projected, clinician):
    reads = ReadModels(projected)
    episode = admitted_on(projected, clinician, D("2026-04-06"))
    attend(projected, episode, clinician, D("2026-04-06"))
    wrong_day = attend(projected, episode, clinician, D("2026-04-07"))
    miss(projected, episode, clinician, "2026-04-08")
    ill = miss(projected, episode, clinician, "2026-04-10")
    # Check before corrections: attended 2, missed 2 -> rate 2 / 4 = 0.5, run 2.
    before = reads.attendance(episode)
    assert counts(before.total) == (2, 2, 0, 0)
    assert (before.total.rate, before.consecutive_misses) == (0.5, 2)

    projected.void_event(episode, clinician, target_version=wrong_day.version,
                         reason="no group ran on Tuesday; entered in error")
    projected.amend_event(episode, clinician, target_version=ill.version, changes={"excused": True},
                          reason="a doctor's note arrived: the absence is excused")
    after = reads.attendance(episode)
    # Check after: attended 2 - 1 = 1, missed 2 - 1 = 1, excused 1 -> rate 1 / (1 + 1 + 1) = 1/3;
    # the run is 1 (04-08), since the amended 04-10 absence is now excused.
    assert counts(after.total) == (1, 1, 1, 0)
    assert after.total.rate == pytest.approx(1 / 3)
    assert after.consecutive_misses == 1


def test_an_episode_without_expected_sessions_has_no_rate(projected, clinician):
    reads = ReadModels(projected)
    episode = admitted_on(projected, clinician, D("2026-04-06"))
    cancel(projected, episode, clinician, "2026-04-06")
    attendance = reads.attendance(episode)
    # Check a cancelled session alone expects nothing: 0 / 0 has no rate.
    assert counts(attendance.total) == (0, 0, 0, 1)
    total = attendance.total
    assert (total.expected, total.rate, total.percent) == (0, None, None)


def test_alerts_and_program_rates_across_episodes_on_each_backend(any_projected, clinician):
    app = any_projected
    reads = ReadModels(app)
    app.define_program(clinician, code="iop-teen", name="Adolescent IOP", age_band="adolescent")

    # Adult IOP, episode A: in March 2 attended, 1 missed, 1 excused; one attended in April.
    a = admitted_on(app, clinician, D("2026-03-02"))
    attend(app, a, clinician, D("2026-03-02"))
    attend(app, a, clinician, D("2026-03-04"))
    miss(app, a, clinician, "2026-03-06")
    miss(app, a, clinician, "2026-03-09", excused=True)
    attend(app, a, clinician, D("2026-04-01"))
    # Adult IOP, episode B: three unexcused misses in March after one attended, and a cancellation.
    b = admitted_on(app, clinician, D("2026-03-02"))
    attend(app, b, clinician, D("2026-03-02"))
    for day in ("2026-03-04", "2026-03-06", "2026-03-09"):
        miss(app, b, clinician, day)
    cancel(app, b, clinician, "2026-03-11")
    # Adolescent IOP, episode C: four misses in a row, then discharged (no longer an alert).
    c = admitted_on(app, clinician, D("2026-03-02"), program_code="iop-teen")
    attend(app, c, clinician, D("2026-03-03"))
    for day in ("2026-03-05", "2026-03-10", "2026-03-12", "2026-03-17"):
        miss(app, c, clinician, day)
    app.discharge(c, clinician, effective_date="2026-03-20", discharge_type="left-against-advice",
                  reason="stopped attending")
    # Episode D (adult): entered in error; its sessions count nowhere.
    d = admitted_on(app, clinician, D("2026-03-02"))
    for day in ("2026-03-04", "2026-03-06", "2026-03-09"):
        miss(app, d, clinician, day)
    app.mark_entered_in_error(d, clinician, effective_date="2026-03-20", reason="wrong patient")

    # Check the alert lists only B: C is discharged and D entered in error.
    alerts = reads.miss_run_alerts()
    assert [(x.episode_id, x.consecutive_misses, x.program_code) for x in alerts] == [
        (b, 3, "iop-adult")]

    rates = {r.program_code: r for r in reads.program_attendance(D("2026-03-01"), D("2026-03-31"))}
    # Check the adult rate over March: A 2 attended, 1 missed, 1 excused; B 1 attended, 3 missed,
    # 1 cancelled -> attended 3, missed 4, excused 1, cancelled 1; rate 3 / (3 + 4 + 1) = 3/8.
    adult = rates["iop-adult"]
    assert (adult.program_name, adult.episodes) == ("Adult IOP", 2)
    assert counts(adult.counts) == (3, 4, 1, 1)
    assert adult.counts.rate == pytest.approx(0.375)
    # Check the adolescent rate: 1 attended, 4 missed -> 1 / 5 = 0.2.
    teen = rates["iop-teen"]
    assert (teen.episodes, counts(teen.counts), teen.counts.percent) == (1, (1, 4, 0, 0), 20.0)
    # Check the date range bounds (both included): 03-04 to 03-06 holds A's 03-04 attended and
    # 03-06 miss, B's 03-04 and 03-06 misses -> adult 1 / (1 + 3) = 0.25; C's 03-05 miss ->
    # teen 0 / 1 = 0.
    narrow = {r.program_code: r for r in reads.program_attendance(D("2026-03-04"), D("2026-03-06"))}
    assert counts(narrow["iop-adult"].counts) == (1, 3, 0, 0)
    assert narrow["iop-adult"].counts.rate == pytest.approx(0.25)
    assert counts(narrow["iop-teen"].counts) == (0, 1, 0, 0)
    assert narrow["iop-teen"].counts.rate == 0.0
    # Check a range with no sessions lists every program with no rate.
    empty = reads.program_attendance(D("2026-05-01"), D("2026-05-31"))
    assert [(r.program_code, r.episodes, r.counts.rate) for r in empty] == [
        ("iop-adult", 0, None), ("iop-teen", 0, None)]
