"""Helpers that record the common steps of a pathway with realistic defaults.

Tests say what matters to them and leave the rest to these helpers.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from uuid import UUID

from episodes import Actor, Episodes

ALL_DIMENSIONS_MODERATE = {str(d): 2 for d in range(1, 7)}
DEPRESSION = {"code": "F33.1", "category": "mental-health", "display": "Major depressive disorder, recurrent, moderate"}
ALCOHOL_USE = {"code": "F10.20", "category": "substance-use", "display": "Alcohol use disorder, moderate"}


def define_standard_program(app: Episodes, actor: Actor, **overrides: Any) -> None:
    fields = {
        "code": "iop-adult", "name": "Adult IOP", "target_weeks": 12, "days_per_week": 3,
        "clinics": ["north", "south"],
    }
    app.define_program(actor, **{**fields, **overrides})


def refer(app: Episodes, actor: Actor, on: date, **overrides: Any) -> UUID:
    fields = {
        "patient_ref": "Patient/1001", "effective_date": on, "source": "primary care",
        "direction": "step-up", "requested_level": "2.1",
    }
    return app.refer(actor, **{**fields, **overrides}).episode_id


def complete_intake(app: Episodes, episode: UUID, actor: Actor, on: date, **overrides: Any) -> None:
    fields = {
        "effective_date": on, "clinician": actor.id, "diagnoses": [DEPRESSION, ALCOHOL_USE],
        "asam_ratings": ALL_DIMENSIONS_MODERATE, "recommended_level": "2.1", "phq9": 18, "gad7": 13,
    }
    app.complete_intake(episode, actor, **{**fields, **overrides})


def admit(app: Episodes, episode: UUID, actor: Actor, on: date, **overrides: Any) -> None:
    fields = {"effective_date": on, "program_code": "iop-adult", "clinic": "north", "payer": "Medicaid"}
    app.admit(episode, actor, **{**fields, **overrides})


def admitted_episode(app: Episodes, actor: Actor, referred_on: date, admitted_on: date | None = None) -> UUID:
    """A referral, an intake the next day, and an admission (by default two days later)."""
    define_program_once(app, actor)
    episode = refer(app, actor, referred_on)
    complete_intake(app, episode, actor, referred_on + timedelta(days=1))
    admit(app, episode, actor, admitted_on or referred_on + timedelta(days=2))
    return episode


def define_program_once(app: Episodes, actor: Actor) -> None:
    define_standard_program(app, actor)  # defining the same program again is a no-op


def attend(app: Episodes, episode: UUID, actor: Actor, on: date, minutes: int = 180, **overrides: Any):
    fields = {"effective_date": on, "kind": "group", "minutes": minutes, "format": "in-person"}
    return app.record_attendance(episode, actor, **{**fields, **overrides})


def admitted_on(app: Episodes, actor: Actor, day: date, **admission: Any) -> UUID:
    """A referral a week before ``day``, the intake the next day, the admission on ``day``."""
    define_program_once(app, actor)
    episode = refer(app, actor, day - timedelta(days=7))
    complete_intake(app, episode, actor, day - timedelta(days=6))
    admit(app, episode, actor, day, **admission)
    return episode


def count_event_rows(app: Episodes) -> int:
    """Rows in the events table, counted with raw SQL (not through the library)."""
    from sqlalchemy import text

    with app.recorder.datastore.engine.connect() as connection:
        return connection.execute(text("SELECT COUNT(*) FROM care_episodes_events")).scalar_one()
