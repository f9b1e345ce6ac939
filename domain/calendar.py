"""Working time: Chinese holidays, make-up working days and working hours, in the city's zone.

`chinesecalendar` knows the official calendar for the years it ships; for later years a day
is a working day when it is Monday to Friday and not a holiday the operator listed. Operator
lists win over the package: an extra working day beats an extra holiday, which beats the package.

Within a working day only the working periods count (e.g. 09:00-12:00 and 13:00-17:00); with no
periods configured the whole day counts, as before. Periods are wall-clock times in `tz`: a DST
jump inside a period neither adds nor removes working time.

A policy duration converts to working minutes by whole days and the rest: "3d" is three working
days (3 x `day_minutes`), "2h" is two working hours; see `working_minutes`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

_DAY = timedelta(days=1)
_MINUTE = timedelta(minutes=1)
# A calendar that finds no working day in ten years is misconfigured; fail instead of spinning.
_MAX_IDLE_DAYS = 3660


def _offset(t: time) -> timedelta:
    return timedelta(hours=t.hour, minutes=t.minute, seconds=t.second, microseconds=t.microsecond)


def _require_aware(*moments: datetime) -> None:
    for moment in moments:
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("aware datetimes only")


_MEMO_LIMIT = 4096


class WorkCalendar:
    """Which days and hours count, and how a span of working minutes falls on the clock."""

    def __init__(
        self,
        tz: ZoneInfo,
        *,
        extra_holidays: Iterable[date] = (),
        extra_workdays: Iterable[date] = (),
        working_hours: Sequence[tuple[time, time]] = (),
    ) -> None:
        self.tz = tz
        self._holidays = frozenset(extra_holidays)
        self._workdays = frozenset(extra_workdays)
        self.working_hours: tuple[tuple[time, time], ...] = tuple(working_hours)
        # Periods as offsets from local midnight, so the empty default can end at 24:00.
        self._periods = self._validated(self.working_hours)
        self._day_length = sum((end - start for start, end in self._periods), timedelta())
        self.day_minutes = self._day_length // _MINUTE
        # The sweep computes the same deadlines for many tickets at once (same start, same
        # policy): both answers are memoised, bounded.
        self._days: dict[date, bool] = {}
        self._sums: dict[tuple[datetime, int], datetime] = {}

    @staticmethod
    def _validated(hours: tuple[tuple[time, time], ...]) -> tuple[tuple[timedelta, timedelta], ...]:
        """The periods as (start, end) offsets from midnight; ValueError when malformed."""
        if not hours:
            return ((timedelta(), _DAY),)
        periods = []
        for start, end in hours:
            if start.tzinfo is not None or end.tzinfo is not None:
                raise ValueError("working hours are local times without tzinfo")
            if (start.second, start.microsecond, end.second, end.microsecond) != (0, 0, 0, 0):
                # day_minutes is a whole number of minutes.
                raise ValueError("working hours must be whole minutes")
            if start >= end:
                raise ValueError(f"working period {start}-{end} does not start before it ends")
            if periods and _offset(start) < periods[-1][1]:
                raise ValueError("working periods must be sorted and must not overlap")
            periods.append((_offset(start), _offset(end)))
        return tuple(periods)

    def is_working_day(self, day: date) -> bool:
        """Whether `day` is a working day (operator lists first, then the official calendar)."""
        known = self._days.get(day)
        if known is None:
            if len(self._days) > _MEMO_LIMIT:
                self._days.clear()
            known = self._days[day] = self._is_working_day(day)
        return known

    def _is_working_day(self, day: date) -> bool:
        if day in self._workdays:
            return True
        if day in self._holidays:
            return False
        try:
            return chinese_calendar.is_workday(day)
        except NotImplementedError:
            # A year the package does not know yet: weekdays, less the listed holidays.
            return day.weekday() < 5

    def working_minutes(self, minutes: int) -> int:
        """A policy duration as working minutes: whole days as working days, the rest as is."""
        if minutes < 0:
            raise ValueError("a duration cannot be negative")
        days, rest = divmod(minutes, 1440)
        return days * self.day_minutes + rest

    def _wall(self, moment: datetime) -> datetime:
        # Naive local wall time: the periods are wall-clock times, so arithmetic stays on the wall.
        return moment.astimezone(self.tz).replace(tzinfo=None)

    def _aware(self, wall: datetime) -> datetime:
        return wall.replace(tzinfo=self.tz).astimezone(UTC)

    def add(
        self, start: datetime, minutes: int, *, working_time: bool, fraction: float = 1.0
    ) -> datetime:
        """`start` plus `minutes` (times `fraction`) on the clock, or counting only working time."""
        _require_aware(start)
        if not working_time:
            return start + timedelta(minutes=minutes * fraction)
        total = round(self.working_minutes(minutes) * fraction)
        if total < 0:
            raise ValueError("a duration cannot be negative")
        if total == 0:
            return start
        key = (start, total)
        found = self._sums.get(key)
        if found is None:
            if len(self._sums) > _MEMO_LIMIT:
                self._sums.clear()
            found = self._sums[key] = self._add_working(start, total)
        return found

    def _add_working(self, start: datetime, total: int) -> datetime:
        remaining = timedelta(minutes=total)
        cursor = self._wall(start)
        day = cursor.date()
        idle = 0
        while True:
            if self.is_working_day(day):
                idle = 0
                midnight = datetime.combine(day, time())
                # Only the first day can start part-way; later days start at midnight, so a
                # day that cannot hold the rest is skipped whole.
                if cursor > midnight or remaining <= self._day_length:
                    for period_start, period_end in self._periods:
                        begin = max(cursor, midnight + period_start)
                        end = midnight + period_end
                        if begin >= end:
                            continue
                        if remaining <= end - begin:
                            return self._aware(begin + remaining)
                        remaining -= end - begin
                else:
                    remaining -= self._day_length
            else:
                idle += 1
                if idle > _MAX_IDLE_DAYS:
                    raise ValueError("no working day within ten years")
            day += _DAY
            cursor = datetime.combine(day, time())

    def is_working_moment(self, moment: datetime) -> bool:
        """Whether `moment` falls inside a working period of a working day."""
        _require_aware(moment)
        wall = self._wall(moment)
        if not self.is_working_day(wall.date()):
            return False
        offset = wall - datetime.combine(wall.date(), time())
        return any(start <= offset < end for start, end in self._periods)

    def working_minutes_between(self, start: datetime, end: datetime) -> int:
        """Whole working minutes in [start, end); 0 when `end` is not after `start`."""
        _require_aware(start, end)
        if end <= start:
            return 0
        first, last = self._wall(start), self._wall(end)
        total = timedelta()
        day = first.date()
        while day <= last.date():
            if self.is_working_day(day):
                midnight = datetime.combine(day, time())
                if first <= midnight and midnight + _DAY <= last:
                    # A whole day inside the span: no need to look at its periods.
                    total += self._day_length
                else:
                    for period_start, period_end in self._periods:
                        begin = max(first, midnight + period_start)
                        finish = min(last, midnight + period_end)
                        if begin < finish:
                            total += finish - begin
            day += _DAY
        return total // _MINUTE
