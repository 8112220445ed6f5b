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
