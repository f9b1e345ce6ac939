"""Working time: Chinese public holidays and make-up working days, in the city's time zone.

`chinesecalendar` knows the official calendar for the years it ships; for later years a day
is a working day when it is Monday to Friday and not a holiday the operator listed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar


class WorkCalendar:
    """Which days count, and how a span of working minutes falls on the clock."""

    def __init__(
        self,
        tz: ZoneInfo,
        *,
        extra_holidays: Iterable[date] = (),
        extra_workdays: Iterable[date] = (),
    ) -> None:
        self.tz = tz
        self._holidays = frozenset(extra_holidays)
        self._workdays = frozenset(extra_workdays)

    def is_working_day(self, day: date) -> bool:
        if day in self._workdays:
            return True
        if day in self._holidays:
            return False
        try:
            return chinese_calendar.is_workday(day)
        except NotImplementedError:
            # A year the package does not know yet: weekdays, less the listed holidays.
            return day.weekday() < 5

    def add(self, start: datetime, minutes: int, *, working_time: bool) -> datetime:
        """`start` plus `minutes` on the clock, or counting only minutes of working days."""
        if start.tzinfo is None:
            raise ValueError("aware datetimes only")
        if not working_time:
            return start + timedelta(minutes=minutes)
        local = start.astimezone(self.tz)
        remaining = timedelta(minutes=minutes)
        day = local.date()
        cursor = local
        # Walk day by day; a few hundred iterations at most for realistic deadlines.
        for _ in range(3660):
            next_midnight = datetime.combine(day + timedelta(days=1), time(), self.tz)
            if self.is_working_day(day):
                available = next_midnight - cursor
                if remaining <= available:
                    return (cursor + remaining).astimezone(UTC)
                remaining -= available
            day += timedelta(days=1)
            cursor = next_midnight
        raise ValueError("no working days in ten years")
