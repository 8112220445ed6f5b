"""SQLite binds None and bytes as they are (``episodes.sqlite_binding``): the adapters are
registered when the application opens a SQLite database, give back the very value, and leave
an adapter registered before them in place."""

from __future__ import annotations

import sqlite3

from episodes import sqlite_binding


def test_an_application_on_sqlite_registers_the_adapters(app):
    for cls in (bytes, type(None)):
        assert (cls, sqlite3.PrepareProtocol) in sqlite3.adapters


def test_what_is_bound_through_the_adapters_is_stored_as_it_was():
    sqlite_binding.bind_as_they_are()
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE t (a, b)")
    blob = bytes(range(256))
    connection.executemany("INSERT INTO t VALUES (?, ?)", [(blob, None), (b"", None)])
    assert connection.execute("SELECT a, typeof(a), b, typeof(b) FROM t").fetchall() == [
        (blob, "blob", None, "null"), (b"", "blob", None, "null")]


def test_an_adapter_registered_before_is_kept():
    registry = sqlite3.adapters  # (the module's own, which register_adapter writes to)
    keys = [(bytes, sqlite3.PrepareProtocol), (type(None), sqlite3.PrepareProtocol)]
    saved = {key: registry.pop(key) for key in keys if key in registry}
    try:
        registry[keys[0]] = len
        sqlite_binding.bind_as_they_are()
        assert registry[keys[0]] is len  # kept
        assert registry[keys[1]]("x") is None  # registered: None for anything it is given
    finally:
        for key in keys:
            registry.pop(key, None)
        registry.update(saved)
