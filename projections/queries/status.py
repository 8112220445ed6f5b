"""Status: per episode, where it stands and how far it is into its program's target."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from uuid import UUID

from sqlalchemy import Connection, RowMapping, select

from projections import tables
from projections.queries.common import episode_row, held_on, recertification_due, valid_at_end_of


@dataclass(frozen=True)
class EpisodeStatus:
    episode_id: UUID
    patient_ref: str
    status: str  # FHIR EpisodeOfCare status code
    status_since: date
    level_code: str | None
    tapering: bool
    program_code: str | None
    program_name: str | None
    clinic: str | None
    admitted_on: date | None
    discharged_on: date | None
    discharge_type: str | None
    day: int | None  # day N of the stay, counting the admission day as day 1
    week: int | None  # week N of the stay (days 1-7 are week 1)
    target_days: int | None
    percent_of_target: float | None  # day N / target days * 100
    expected_end: date | None  # admission + target (the last day of the target stay)
    over_target: bool
    last_attended_on: date | None
    next_review_on: date | None
    recertification_due: date | None
    version: int


def episode_status(connection: Connection, episode_id: UUID, as_of: date) -> EpisodeStatus:
    return status_of(episode_row(connection, episode_id), as_of)


def status_of(row: RowMapping, as_of: date) -> EpisodeStatus:
    """The status from the episode's row (:func:`projections.queries.common.episode_row`)."""
    admitted, discharged = row["admitted_on"], row["discharged_on"]
    target_days = row["target_weeks"] * 7 if row["target_weeks"] else None
    day = week = percent = expected_end = recert = None
    if admitted is not None and as_of >= admitted:
        last_day = min(discharged, as_of) if discharged else as_of
        day = (last_day - admitted).days + 1  # a same-day stay is day 1
        week = (day - 1) // 7 + 1
        if target_days:
            percent = round(day / target_days * 100, 1)
            expected_end = admitted + timedelta(days=target_days - 1)
        recert = recertification_due(admitted, discharged, as_of)
    return EpisodeStatus(
        episode_id=row["episode_id"], patient_ref=row["patient_ref"], status=row["status"],
        status_since=row["status_since"], level_code=row["level_code"], tapering=bool(row["tapering"]),
        program_code=row["program_code"], program_name=row["program_name"], clinic=row["clinic"],
        admitted_on=admitted, discharged_on=discharged, discharge_type=row["discharge_type"],
        day=day, week=week, target_days=target_days, percent_of_target=percent,
        expected_end=expected_end, over_target=bool(day and target_days and day > target_days),
        last_attended_on=row["last_attended_on"], next_review_on=row["next_review_on"],
        recertification_due=recert, version=row["version"],
    )


@dataclass(frozen=True)
class StatusAsOf:
    """An episode's status on a past date, as the record stood then and as it stands now."""

    episode_id: UUID
    on: date
    status_then: str | None  # None: the episode was not on the record yet
    level_then: str | None
    status_now: str | None  # what today's record (corrections included) says about that date
    level_now: str | None

    @property
    def corrected_since(self) -> bool:
        return (self.status_then, self.level_then) != (self.status_now, self.level_now)


def status_as_of(connection: Connection, episode_id: UUID, on: date) -> StatusAsOf:
    p = tables.periods
    base = select(p.c.status, p.c.level_code).where(p.c.episode_id == episode_id, valid_at_end_of(on))
    then = connection.execute(base.where(held_on(on))).first()
    now = connection.execute(base.where(p.c.recorded_to.is_(None))).first()
    return StatusAsOf(
        episode_id=episode_id, on=on,
        status_then=then[0] if then else None, level_then=then[1] if then else None,
        status_now=now[0] if now else None, level_now=now[1] if now else None,
    )


class StatusQueries:
    """Mixed into :class:`projections.ReadModels`."""

    def status(self, episode_id: UUID, as_of: date | None = None) -> EpisodeStatus:
        """Where the episode stands today (or ``as_of``), with day N and percent of target."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            return episode_status(connection, episode_id, as_of or self.today())  # type: ignore[attr-defined]

    def status_as_of(self, episode_id: UUID, on: date) -> StatusAsOf:
        """The status on a past date as the record held it then, and as it holds it now."""
        with self.connect() as connection:  # type: ignore[attr-defined]
            return status_as_of(connection, episode_id, on)
