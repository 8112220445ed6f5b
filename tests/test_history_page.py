"""A page of an episode's history read alone (episodes.history_page.read_page) is that part of
the whole history, on each backend, and says the same of its corrections; the pages of a
history (admin.timeline.window) cover it once, in order, whatever the page size."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from admin import timeline
from episodes.history import read_history
from episodes.history_page import read_page
from tests.pathways import admitted_on, attend


def corrected_episode(app, clinician):
    """v4-v9 and v13-v15 sessions; v9 amended twice (v10, v12), v6 voided (v11), v14 voided
    (v16); then two more sessions (v17, v18)."""
    episode = admitted_on(app, clinician, date(2026, 5, 4))
    for day in range(5, 11):  # v4-v9
        attend(app, episode, clinician, date(2026, 5, day))
    app.amend_event(episode, clinician, target_version=9, changes={"minutes": 150}, reason="early")
    app.void_event(episode, clinician, target_version=6, reason="twice")  # v11
    app.amend_event(episode, clinician, target_version=9, changes={"minutes": 120}, reason="earlier")
    for day in range(11, 14):  # v13-v15
        attend(app, episode, clinician, date(2026, 5, day))
    app.void_event(episode, clinician, target_version=14, reason="wrong day")  # v16
    for day in range(14, 16):  # v17, v18
        attend(app, episode, clinician, date(2026, 5, day))
    return episode


def test_a_page_is_its_part_of_the_history_with_the_same_corrections(any_app, clinician):
    episode = corrected_episode(any_app, clinician)
    everything = read_history(any_app, episode)
    assert len(everything) == 18
    whole = timeline.corrections(everything)
    with any_app.recorder.datastore.engine.connect() as connection:
        for size in (1, 2, 3, 5, 18, 40):
            for before in (None, *range(1, 21)):
                page = read_page(any_app, episode, connection, size=size, before=before)
                win = timeline.window(range(1, 19), size, before)
                assert page.head == 18
                assert page.events == everything[win.start:win.end]
                found = timeline.corrections(page.related)
                # Check every row of the page says what the whole history says of it.
                assert timeline.rows(page.events, found) == timeline.rows(
                    page.events, whole) == timeline.rows(everything[win.start:win.end], whole)


@given(versions=st.lists(st.integers(1, 60), unique=True).map(sorted),
       size=st.integers(1, 8), start=st.one_of(st.none(), st.integers(1, 70)))
def test_the_pages_of_a_history_cover_it_once_in_order(versions, size, start):
    """From any page, the earlier links walk to the first entry and the later links back to
    the latest page, each entry on exactly one page of each walk."""
    def walk(before, direction):
        seen = []
        while True:
            win = timeline.window(versions, size, before)
            seen.append(versions[win.start:win.end])
            assert len(seen[-1]) == size or win.start == 0 or not seen[-1]
            step = win.earlier if direction == "earlier" else win.later
            if direction == "later" and win.has_later and step is None:
                step = 10**6  # the latest page
            if step is None:
                return seen, win
            before = step

    back, first = walk(start, "earlier")
    assert first.start == 0 and first.earlier is None
    # Back: the pages, read from the first, are the entries up to the starting page's end.
    entries_back = [v for page in reversed(back) for v in page]
    assert entries_back == versions[:len(entries_back)]
    forth, latest = walk(start, "later")
    assert latest.end == len(versions) and not latest.has_later
    # Forth: each page starts where the one before it ends, up to the latest page, which is
    # always the latest ``size`` entries (and may show again some of the page before it).
    assert forth[-1] == versions[-size:]
    entries_forth = [v for page in forth[:-1] for v in page]
    following = versions[len(entries_back) - len(back[0]):]
    assert entries_forth == following[:len(entries_forth)]
    assert sorted(set(entries_forth) | set(forth[-1])) == following
