"""Choosing some of the benchmark's stages (``python -m benchmarks --stages``)."""

from __future__ import annotations

import pytest

from benchmarks.__main__ import parse
from benchmarks.runner import chosen_stages, stage_names


def names(stages):
    return [stage.__name__.rsplit(".", 1)[-1] for stage in stages]


def test_every_stage_when_none_is_named():
    assert chosen_stages(None, "sqlite") is None and chosen_stages("", "postgres") is None


def test_a_stage_comes_with_the_stages_it_needs_in_the_runs_order():
    assert names(chosen_stages("panel", "sqlite")) == ["bulk_import", "rebuild", "panel"]
    assert names(chosen_stages("memory, bulk_import", "sqlite")) == ["bulk_import", "memory"]
    assert names(chosen_stages("commands,rebuild", "postgres")) == ["bulk_import", "rebuild", "commands"]


def test_concurrency_runs_on_postgresql_only():
    assert names(chosen_stages("concurrency", "postgres")) == ["concurrency"]
    assert chosen_stages("concurrency", "sqlite") == ()  # nothing to run, not everything


def test_an_unknown_stage_is_refused_naming_the_known_ones(capsys):
    with pytest.raises(ValueError, match="unknown stage"):
        chosen_stages("panel,nope", "sqlite")
    with pytest.raises(SystemExit):
        parse(["--stages", "nope"])
    error = capsys.readouterr().err
    assert "--stages" in error and all(name in error for name in stage_names())
