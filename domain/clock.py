"""Time is injected: every use case takes a Clock, tests pass one they can move."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from storage.types import utc_now


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The real clock, always UTC-aware."""

    def now(self) -> datetime:
        return utc_now()


class FrozenClock:
    """A clock that moves only when told to (tests, catch-up replays)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._now = moment.astimezone(UTC)
