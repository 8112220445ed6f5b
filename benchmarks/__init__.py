"""Benchmarks of care-episodes, each figure beside the limit the database itself reaches in
the same run on the same machine (``make bench``; ``python -m benchmarks --quick --json``).

=====================  ==========================================  ==========================
figure                 what the library does                       limit (driver only)
=====================  ==========================================  ==========================
commands               inline command: load, decide, append,       single-row INSERT
                       update the read models, commit              transactions per second
bulk_import            ``Episodes.execute`` per historical event   multi-row INSERTs in large
                                                                   transactions
rebuild                every read model rebuilt from the events    scan of the events table,
                                                                   every payload decoded
panel.*                list, episode page, audit export (median    the same rows, one raw
                       and p95, through the Flask test client)     SQL query
memory.*               peak RSS of a rebuild / full audit export   the same at a tenth of
                       at N episodes                               the episodes
concurrency.*          8 writer processes, overlapping episodes    8 processes of raw
                       (PostgreSQL)                                single-row transactions
=====================  ==========================================  ==========================

Each figure is printed as ``{"name", "backend", "value", "unit", "limit", "ratio"}`` with
``ratio = value / limit`` (``limit / value`` for times and memory).  One module per benchmark;
:mod:`benchmarks.runner` gives their order, :mod:`benchmarks.workload` the episodes.
"""
