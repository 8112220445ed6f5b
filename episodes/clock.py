"""The application's sense of now.  Injectable so tests and imports control recorded time."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Protocol

# Clinical dates are local dates while recorded times are UTC.  A clinic at UTC+14 is already
# on tomorrow's date, so "not in the future" allows up to 14 hours ahead of UTC, plus a few
# minutes of clock drift between machines.
DEFAULT_SKEW = timedelta(hours=14, minutes=5)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FixedClock:
    """A clock that stands still until moved: for tests, demos and imports."""

    def __init__(self, now: datetime):
        if now.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._now = now.astimezone(timezone.utc)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, now: datetime) -> None:
        self._now = now.astimezone(timezone.utc)


def latest_clinical_date(clock: Clock, skew: timedelta = DEFAULT_SKEW) -> date:
    """The latest clinical date that is not in the future anywhere on Earth."""
    return (clock.now() + skew).date()
