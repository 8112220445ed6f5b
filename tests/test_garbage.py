"""Fewer garbage collections during a bulk pass (episodes.garbage), and settings restored."""

from __future__ import annotations

import gc

import pytest

from benchmarks import workload
from episodes import Actor, ActorRole, garbage
from episodes.importing import import_episodes


def settings() -> tuple[tuple[int, int, int], int]:
    return gc.get_threshold(), gc.get_freeze_count()


def test_a_pass_freezes_what_the_process_held_and_restores_every_setting_even_when_it_fails():
    before = settings()
    with pytest.raises(RuntimeError), garbage.fewer_collections():
        assert gc.get_threshold() == garbage.THRESHOLD and gc.get_freeze_count() > 0
        raise RuntimeError("the pass failed")
    assert settings() == before


def test_an_import_collects_garbage_less_often_and_then_as_before(any_app):
    """The import runs with fewer collections: what the process held is frozen, young
    collections every 50,000 allocations; afterwards every setting is back."""
    workload.define_programs(any_app)
    before = settings()
    during = []
    import_episodes(any_app, workload.histories(5), actor=Actor("migration", ActorRole.SYSTEM),
                    batch_events=30, progress=lambda summary: during.append(settings()))
    assert during and all(threshold == garbage.THRESHOLD and frozen > 0 for threshold, frozen in during)
    assert settings() == before
