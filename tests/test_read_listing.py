"""The episode list: filters, search, sort and pages, on both backends."""

from __future__ import annotations

from datetime import date

import pytest

from projections import ReadModels
from tests.pathways import admitted_on, refer


def test_filter_search_sort_and_page(any_projected, clinician):
    reads = ReadModels(any_projected)
    early = admitted_on(any_projected, clinician, date(2026, 1, 5))  # referred 2025-12-29
    late = admitted_on(any_projected, clinician, date(2026, 4, 6))  # referred 2026-03-30
    waiting = refer(any_projected, clinician, date(2026, 5, 4), patient_ref="Patient/2002")

    everything = reads.episodes(as_of=date(2026, 5, 10))
    # Newest referral first by default: 05-04, 03-30, 2025-12-29.
    assert [r.episode_id for r in everything.rows] == [waiting, late, early]
    assert everything.total == 3 and everything.pages == 1

    active = reads.episodes(status="active", sort="admitted_on", descending=False)
    assert [r.episode_id for r in active.rows] == [early, late]
    assert [r.episode_id for r in reads.episodes(search="2002").rows] == [waiting]

    # As of 2026-05-10: early is on day 126 (> 84, the 12-week target), late on day 35.
    over = reads.episodes(over_target=True, as_of=date(2026, 5, 10))
    assert [r.episode_id for r in over.rows] == [early]
    not_over = reads.episodes(over_target=False, as_of=date(2026, 5, 10))
    assert {r.episode_id for r in not_over.rows} == {late, waiting}

    second = reads.episodes(page=2, page_size=2)
    assert (second.total, second.pages, [r.episode_id for r in second.rows]) == (3, 2, [early])


def test_bad_sort_or_page_size_is_refused(reads):
    with pytest.raises(ValueError, match="cannot sort by 'name'"):
        reads.episodes(sort="name")
    with pytest.raises(ValueError, match="page_size must be 1-500"):
        reads.episodes(page_size=0)


def test_keyset_pages_walk_the_order_both_ways(any_projected, clinician):
    """Pages read by key (after / before an episode, the last page) hold the same rows as pages
    by number, in both directions, with the episodes without a value for the column last."""
    reads = ReadModels(any_projected)
    for n, day in enumerate((date(2026, 1, 5), date(2026, 2, 2), date(2026, 2, 2), date(2026, 3, 2))):
        admitted_on(any_projected, clinician, day)
    for n in range(3):
        refer(any_projected, clinician, date(2026, 5, 4 + n), patient_ref=f"Patient/30{n}")
    for sort, descending in (("admitted_on", True), ("admitted_on", False), ("referred_on", True),
                             ("patient_ref", False)):
        order = dict(sort=sort, descending=descending, page_size=2)
        by_number = [reads.episodes(page=n, **order) for n in (1, 2, 3, 4)]
        expected = [r.episode_id for p in by_number for r in p.rows]
        assert len(expected) == len(set(expected)) == 7
        if sort == "admitted_on":  # the three not admitted come last, whichever the direction
            admitted = {r.episode_id for p in by_number for r in p.rows if r.admitted_on}
            assert set(expected[:4]) == admitted
        walked, page = [], reads.episodes(**order)
        while True:
            walked += [r.episode_id for r in page.rows]
            if not page.has_next:
                break
            page = reads.episodes(after=page.last_id, **order)
            assert page.page == len(walked) // 2 + 1 and page.position == len(walked)
        assert walked == expected
        last = reads.episodes(last=True, **order)
        assert [r.episode_id for r in last.rows] == expected[6:] and last.page == 4
        back, page = [], last
        while page.has_previous:
            page = reads.episodes(before=page.first_id, **order)
            back = [r.episode_id for r in page.rows] + back
        assert back == expected[:6]


def test_a_search_counts_and_pages_in_one_pass(any_projected, clinician):
    reads = ReadModels(any_projected)
    for n in range(5):
        refer(any_projected, clinician, date(2026, 5, 1 + n), patient_ref=f"Patient/77{n}")
    refer(any_projected, clinician, date(2026, 5, 9), patient_ref="Patient/880")
    page = reads.episodes(search="patient/77", page_size=2)
    assert page.total == 5 and page.has_next and len(page.rows) == 2
    assert [r.patient_ref for r in page.rows] == ["Patient/774", "Patient/773"]
    rest = reads.episodes(search="patient/77", page_size=2, after=page.last_id)
    assert [r.patient_ref for r in rest.rows] == ["Patient/772", "Patient/771"]
    assert reads.episodes(search="nobody").total == 0
