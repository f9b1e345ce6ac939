"""A domain refusal reads in the person's words: states named, times in the city's time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from domain.errors import DomainError
from views.common import refusal_text
from views.i18n import translator


def test_times_are_shown_in_the_city_and_states_in_words() -> None:
    t = translator("en")
    window = DomainError(
        "duty.outside_window",
        opens=datetime(2026, 11, 25, 3, 30, tzinfo=UTC),
        closes=datetime(2026, 11, 25, 6, 0, tzinfo=UTC),
    )
    assert refusal_text(window, t, ZoneInfo("Asia/Shanghai")) == (
        "Check-in is open from 2026-11-25 11:30 until 2026-11-25 14:00."
    )
    stale = DomainError("ticket.stale", number="ZZ-1", status="accepted")
    assert refusal_text(stale, t, ZoneInfo("Asia/Shanghai")).startswith(
        "Ticket ZZ-1 has moved on: it is now in progress."
    )


def test_bad_input_refusals_read_in_both_languages() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    cases = {
        "place.invalid": ("That location is not a real place", "这个位置无效"),
        "duty.bad_location": ("That location is not a real place, so", "这个位置无效，未能签到"),
        "ticket.join_not_offered": ("“Me too” works only", "“我也遇到了”只适用于"),
    }
    for key, (en, zh) in cases.items():
        assert refusal_text(DomainError(key), translator("en"), tz).startswith(en)
        assert refusal_text(DomainError(key), translator("zh-hans"), tz).startswith(zh)
