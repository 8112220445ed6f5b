"""Query functions over the read-model tables, one module per read model.

Each function takes an SQLAlchemy ``Connection`` first and returns frozen dataclasses;
:class:`projections.ReadModels` wraps them with a connection of its own.
"""
