"""How the bulk jobs' worker processes are counted and open the store (episodes.workers)."""

from __future__ import annotations

import pickle
from base64 import b64encode
from datetime import UTC, datetime

import pytest

from episodes import Episodes, FixedClock
from episodes.encryption import cipher_environment
from episodes.workers import (
    MAX_AUTOMATIC_WORKERS,
    StoreSpec,
    available_cores,
    is_in_memory,
    worker_count,
)

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def test_a_spec_opens_the_same_store_with_the_same_settings_after_pickling(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    key = b64encode(bytes(range(32))).decode()
    app = Episodes(url, clock=FixedClock(NOW), env=cipher_environment(key))
    try:
        spec = pickle.loads(pickle.dumps(StoreSpec.of(app)))
        assert spec.url == app.database_url
        assert spec.settings == app.settings and spec.settings  # the explicit cipher settings
        opened = spec.open()
        try:
            assert opened.clock.now() == NOW
            assert opened.database_url == app.database_url
        finally:
            opened.close()
    finally:
        app.close()


@pytest.mark.parametrize("url, expected", [
    ("sqlite:///:memory:", True), ("sqlite://", True), ("sqlite:////tmp/x.db", False),
    ("postgresql+psycopg://localhost/x", False),
])
def test_in_memory_stores_are_recognised(url, expected):
    assert is_in_memory(url) is expected


def test_worker_count():
    shared, private = StoreSpec("sqlite:////tmp/x.db"), StoreSpec("sqlite:///:memory:")
    assert worker_count(None, private) == 0  # no other process can open it
    assert worker_count(4, private) == 0
    assert worker_count(0, shared) == 0 and worker_count(1, shared) == 0  # one process: this one
    assert worker_count(3, shared) == 3
    automatic = min(available_cores(), MAX_AUTOMATIC_WORKERS)
    assert worker_count(None, shared) == (automatic if automatic > 1 else 0)
    with pytest.raises(ValueError, match="workers"):
        worker_count(-1, shared)
