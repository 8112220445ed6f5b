"""Programs as the read models hold them (``rm_programs``): one indexed table, a few rows.

The write side lists programs by finding their streams (``episodes.program_index``) and
replaying each one.  The panel lists programs on most pages, so it reads them here instead,
one row a program and nothing replayed, as :class:`episodes.program.ProgramDefinition` values.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Connection, select

from episodes.program import ProgramDefinition
from episodes.vocabulary import AgeBand, CriteriaEdition, LevelOfCare, ServiceFormat
from projections import tables


def list_programs(connection: Connection) -> list[ProgramDefinition]:
    """Every defined program (its latest definition), by code."""
    p = tables.programs
    return [
        ProgramDefinition(
            code=row.code, name=row.name, target_weeks=row.target_weeks,
            days_per_week=row.days_per_week, age_band=AgeBand(row.age_band),
            minimum_weekly_hours=Decimal(row.minimum_weekly_hours),
            level_of_care=LevelOfCare(row.level_code, CriteriaEdition(row.level_edition)),
            format=ServiceFormat(row.format),
            clinics=tuple(c for c in row.clinics.split(",") if c),
        )
        for row in connection.execute(select(p).order_by(p.c.code))
    ]


class ProgramQueries:
    """Mixed into :class:`projections.ReadModels`."""

    def programs(self) -> list[ProgramDefinition]:
        """Every defined program, sorted by code (as ``Episodes.programs``, from ``rm_programs``)."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            return list_programs(connection)
