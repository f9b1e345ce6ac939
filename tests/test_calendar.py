"""WorkCalendar: working days from chinese_calendar and operator lists, and working hours."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest

from domain.calendar import WorkCalendar

TZ = ZoneInfo("Asia/Shanghai")
HOURS = [(time(9), time(12)), (time(13), time(17))]
CAL = WorkCalendar(TZ, working_hours=HOURS)
DAY = 1440  # a policy "1d"
HOUR = 60  # a policy "1h"


def local(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=TZ)


def working(start: datetime, minutes: int, calendar: WorkCalendar = CAL, **kw) -> datetime:
    return calendar.add(start, minutes, working_time=True, **kw)


def test_day_minutes_and_policy_conversion() -> None:
    assert CAL.day_minutes == 7 * 60
    assert WorkCalendar(TZ).day_minutes == 1440
    assert CAL.working_minutes(3 * DAY) == 3 * 420
    assert CAL.working_minutes(2 * HOUR) == 120
    assert CAL.working_minutes(DAY + 2 * HOUR) == 420 + 120
    assert WorkCalendar(TZ).working_minutes(3 * DAY + 5) == 3 * DAY + 5


def test_clock_time_is_plain_addition() -> None:
    friday_evening = local(2026, 11, 27, 19)
    assert CAL.add(friday_evening, 90, working_time=False) == local(2026, 11, 27, 20, 30)
    assert CAL.add(friday_evening, 2 * DAY, working_time=False) == local(2026, 11, 29, 19)
    assert CAL.add(friday_evening, 2 * HOUR, working_time=False, fraction=0.5) == local(
        2026, 11, 27, 20
    )


def test_friday_evening_start_begins_monday_morning() -> None:
    result = working(local(2026, 11, 27, 19), 2 * HOUR)
    assert result == local(2026, 11, 30, 11)
    assert result.tzinfo is UTC


def test_lunch_does_not_count() -> None:
    tuesday = (2026, 12, 1)
    # Starting during lunch: the clock starts at 13:00.
    assert working(local(*tuesday, 12, 30), HOUR) == local(*tuesday, 14)
    # 11:00-12:00 and 13:00-14:00.
    assert working(local(*tuesday, 11), 2 * HOUR) == local(*tuesday, 14)


def test_whole_days_are_working_days() -> None:
    # Tuesday 10-17 less lunch is 6h, the 7th hour is Wednesday 09:00-10:00.
    assert working(local(2026, 12, 1, 10), DAY) == local(2026, 12, 2, 10)
    # Friday 6h, Monday 7h, Tuesday 7h, Wednesday 1h = 21h.
    assert working(local(2026, 11, 27, 10), 3 * DAY) == local(2026, 12, 2, 10)
    # A span that fills the day ends at 17:00, not at the next morning.
    assert working(local(2026, 12, 1, 9), DAY) == local(2026, 12, 1, 17)


def test_make_up_working_days_count() -> None:
    # chinese_calendar 2026: Saturday 10 October (National Day) and Sunday 20 September are
    # make-up working days.
    assert chinese_calendar.is_workday(date(2026, 10, 10))
    assert chinese_calendar.is_workday(date(2026, 9, 20))
    assert CAL.is_working_day(date(2026, 10, 10))
    # Friday 16-17, then Saturday 09-10.
    assert working(local(2026, 10, 9, 16), 2 * HOUR) == local(2026, 10, 10, 10)
    # Saturday 19 September is off, Sunday 20 works.
    assert working(local(2026, 9, 19, 10), HOUR) == local(2026, 9, 20, 10)


def test_public_holidays_do_not_count() -> None:
    assert not CAL.is_working_day(date(2026, 10, 1))
    # Wednesday 30 September 16-17, National Day 1-7 October off, Thursday 8 October 09-10.
    assert working(local(2026, 9, 30, 16), 2 * HOUR) == local(2026, 10, 8, 10)


def test_deadline_across_new_year_into_an_unknown_year() -> None:
    start = local(2026, 12, 31, 16)
    # 2027 is unknown to chinese_calendar: Friday 1 January counts unless listed.
    assert working(start, 2 * HOUR) == local(2027, 1, 1, 10)
    listed = WorkCalendar(TZ, working_hours=HOURS, extra_holidays={date(2027, 1, 1)})
    assert working(start, 2 * HOUR, listed) == local(2027, 1, 4, 10)


def test_operator_lists_win() -> None:
    saturday, monday = date(2026, 11, 28), date(2026, 11, 30)
    with_saturday = WorkCalendar(TZ, working_hours=HOURS, extra_workdays={saturday})
    assert working(local(2026, 11, 27, 16), 2 * HOUR, with_saturday) == local(2026, 11, 28, 10)
    without_monday = WorkCalendar(TZ, working_hours=HOURS, extra_holidays={monday})
    assert working(local(2026, 11, 27, 16), 2 * HOUR, without_monday) == local(2026, 12, 1, 10)
    both = WorkCalendar(TZ, extra_workdays={saturday}, extra_holidays={saturday})
    assert both.is_working_day(saturday)


def test_fraction_of_working_time() -> None:
    assert working(local(2026, 12, 1, 10), 2 * HOUR, fraction=0.5) == local(2026, 12, 1, 11)
    # Half of 21 working hours is 10h30: Tuesday 7h, Wednesday 09-12 and 13:00-13:30.
    assert working(local(2026, 12, 1, 9), 3 * DAY, fraction=0.5) == local(2026, 12, 2, 13, 30)


def test_zero_working_time_returns_start() -> None:
    saturday = local(2026, 11, 28, 10)
    assert working(saturday, 0) == saturday
    assert working(saturday, 2 * HOUR, fraction=0.0) == saturday


def test_empty_working_hours_count_whole_days() -> None:
    calendar = WorkCalendar(TZ)
    # Saturday start: the hour is Monday 00:00-01:00.
    assert working(local(2026, 11, 28, 10), HOUR, calendar) == local(2026, 11, 30, 1)
    # Friday 10:00-24:00 is 14h, the other 10h are Monday's.
    assert working(local(2026, 11, 27, 10), DAY, calendar) == local(2026, 11, 30, 10)
    # A span ending exactly at midnight ends there.
    assert working(local(2026, 11, 27, 10), 14 * HOUR, calendar) == local(2026, 11, 28, 0)
    assert calendar.is_working_moment(local(2026, 12, 1, 3))
    assert not calendar.is_working_moment(local(2026, 11, 28, 3))


@pytest.mark.parametrize(
    "hours",
    [
        [(time(9), time(12)), (time(11), time(13))],  # overlap
        [(time(13), time(17)), (time(9), time(12))],  # not sorted
        [(time(12), time(9))],  # start after end
        [(time(9), time(9))],  # empty period
        [(time(9, 0, 30), time(12))],  # not a whole minute
    ],
)
def test_invalid_working_hours(hours: list[tuple[time, time]]) -> None:
    with pytest.raises(ValueError):
        WorkCalendar(TZ, working_hours=hours)


def test_touching_periods_are_allowed() -> None:
    calendar = WorkCalendar(TZ, working_hours=[(time(9), time(12)), (time(12), time(13))])
    assert calendar.day_minutes == 240


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2026, 12, 1, 10)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError):
        CAL.add(naive, 60, working_time=True)
    with pytest.raises(ValueError):
        CAL.add(naive, 60, working_time=False)
    with pytest.raises(ValueError):
        CAL.is_working_moment(naive)
    with pytest.raises(ValueError):
        CAL.working_minutes_between(naive, local(2026, 12, 1, 12))


def test_is_working_moment() -> None:
    assert CAL.is_working_moment(local(2026, 12, 1, 9))
    assert CAL.is_working_moment(local(2026, 12, 1, 16, 59))
    assert not CAL.is_working_moment(local(2026, 12, 1, 12))  # lunch
    assert not CAL.is_working_moment(local(2026, 12, 1, 17))  # periods are half-open
    assert not CAL.is_working_moment(local(2026, 11, 28, 10))  # Saturday
    assert not CAL.is_working_moment(local(2026, 10, 1, 10))  # National Day
    # The moment is read in the calendar's zone: 02:00 UTC is 10:00 in Shanghai.
    assert CAL.is_working_moment(datetime(2026, 12, 1, 2, tzinfo=UTC))


def test_working_minutes_between() -> None:
    # Friday 16-17 and Monday 09-10.
    assert CAL.working_minutes_between(local(2026, 11, 27, 16), local(2026, 11, 30, 10)) == 120
    # Two whole working days and the weekend between them.
    assert CAL.working_minutes_between(local(2026, 11, 27, 0), local(2026, 12, 1, 0)) == 2 * 420
    assert CAL.working_minutes_between(local(2026, 12, 1, 12), local(2026, 12, 1, 13)) == 0
    assert CAL.working_minutes_between(local(2026, 12, 1, 11), local(2026, 12, 1, 10)) == 0


def test_between_agrees_with_add() -> None:
    rng = random.Random(1)
    checked = 0
    while checked < 40:
        start = local(2026, 9, 1, 0) + timedelta(minutes=rng.randrange(200 * 1440))
        if not CAL.is_working_moment(start):
            continue
        minutes = rng.choice([rng.randrange(1, 8 * HOUR), rng.randrange(1, 5) * DAY])
        end = working(start, minutes)
        assert CAL.working_minutes_between(start, end) == CAL.working_minutes(minutes)
        checked += 1


def test_long_span() -> None:
    start = local(2026, 12, 1, 9)
    end = working(start, 200 * DAY)
    assert CAL.working_minutes_between(start, end) == 200 * 420
    assert end.astimezone(TZ).time() == time(17)


def test_no_working_day_within_ten_years_raises() -> None:
    first = date(2027, 1, 1)
    never = WorkCalendar(TZ, extra_holidays={first + timedelta(days=n) for n in range(3700)})
    with pytest.raises(ValueError):
        working(local(2027, 1, 1, 10), HOUR, never)
