"""The ticket card (handlers/cards.py) and the ticket renderers, in both languages."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from views.buttons import FollowUp, TicketAction, TicketOp, TicketToCall
from views.cards import card_keyboard, card_text, duration
from views.i18n import translator
from views.outbox import Place, Rendered, Renderer, RenderError, default_renderer

NUMBER = "ZZ-20261125-0001"


def card(**overrides: object) -> dict:
    """card_data(...) as the domain makes it: filed 10:00 local, 35 minutes ago."""
    data = {
        "ticket_id": 7,
        "number": NUMBER,
        "status": "new",
        "level": "grid",
        "category_zh": "垃圾堆放",
        "category_en": "Garbage piling up",
        "description": "A pile of rubbish by gate 3.",
        "photos": ["p1", "p2"],
        "latitude": 34.742,
        "longitude": 113.632,
        "grid_zh": "青桐社区第1网格",
        "grid_en": "Qingtong Grid 1",
        "community_zh": "青桐社区",
        "community_en": "Qingtong Community",
        "holder_zh": "青桐社区第1网格",
        "holder_en": "Qingtong Grid 1",
        "holder_since": "2026-11-25T02:00:00+00:00",
        "reporter": "Wang Fang",
        "anonymous": False,
        "affected": 1,
        "urgency": "normal",
        "created_at": "2026-11-25T02:00:00+00:00",
        "next_deadline": "2026-11-25T04:00:00+00:00",
        "resolution_note": None,
        "resolution_photo": None,
        "return_reason": None,
        "reopen_count": 0,
        "as_of": "2026-11-25T02:35:00+00:00",
    }
    data.update(overrides)
    return data


def en(data: dict, **kwargs: object) -> str:
    return card_text(data, translator("en"), "en", **kwargs)


def zh(data: dict, **kwargs: object) -> str:
    return card_text(data, translator("zh-hans"), "zh-hans", **kwargs)


def buttons(data: dict, language: str = "en") -> list[tuple[str, str]]:
    markup = card_keyboard(data, translator(language))
    if markup is None:
        return []
    return [(b.text, b.callback_data) for row in markup.inline_keyboard for b in row]


def test_a_new_card_in_english() -> None:
    assert en(card()) == "\n".join(
        [
            f"📋 Ticket {NUMBER}",
            "Category: Garbage piling up (normal)",
            "Status: waiting to be accepted",
            "Held by: Qingtong Grid 1 (grid) since 2026-11-25 10:00",
            "Reported by: Wang Fang",
            "Filed: 2026-11-25 10:00 (35 minutes ago)",
            "Deadline: 2026-11-25 12:00 (1 hour 25 minutes left)",
            "Place: Qingtong Grid 1, Qingtong Community",
            "",
            "Report: A pile of rubbish by gate 3.",
        ]
    )


def test_a_new_card_in_chinese() -> None:
    assert zh(card()) == "\n".join(
        [
            f"📋 工单 {NUMBER}",
            "类别：垃圾堆放（一般）",
            "状态：待签收",
            "承办：青桐社区第1网格（网格），自 2026-11-25 10:00",
            "反映人：Wang Fang",
            "受理时间：2026-11-25 10:00（35分钟前）",
            "办理时限：2026-11-25 12:00（剩余 1小时25分钟）",
            "位置：青桐社区 青桐社区第1网格",
            "",
            "问题描述：A pile of rubbish by gate 3.",
        ]
    )


def test_anonymous_hides_the_name_and_many_affected_are_counted() -> None:
    data = card(anonymous=True, reporter=None, affected=4)
    assert "Reported by: anonymous" in en(data)
    assert "Wang" not in en(data)
    assert "反映人：匿名" in zh(data)
    assert "Residents affected: 4" in en(data)
    assert "涉及居民：4 人" in zh(data)
    # Even if a name slipped into an anonymous snapshot, it is not shown.
    assert "Wang" not in en(card(anonymous=True))
    assert "affected" not in en(card(affected=1))


def test_overdue_deadline_and_age_in_days_at_a_later_moment() -> None:
    later = datetime(2026, 11, 27, 5, 10, tzinfo=UTC)
    text = en(card(), now=later)
    assert "Filed: 2026-11-25 10:00 (2 days 3 hours ago)" in text
    assert "⚠️ Deadline: 2026-11-25 12:00, overdue by 2 days 1 hour" in text
    assert "已超时 2天1小时" in zh(card(), now=later)


def test_times_follow_the_time_zone_given() -> None:
    text = en(card(), tz=ZoneInfo("UTC"))
    assert "Filed: 2026-11-25 02:00" in text
    assert "Deadline: 2026-11-25 04:00" in text


def test_no_deadline_and_no_holder_lines_when_there_are_none() -> None:
    text = en(card(next_deadline=None, holder_zh=None, holder_en=None))
    assert "Deadline" not in text
    assert "Held by" not in text


def test_resolved_returned_and_reopened_details() -> None:
    resolved = card(status="resolved", resolution_note="Cleared; bins emptied.", next_deadline=None)
    assert "Status: answered, waiting for the resident's confirmation" in en(resolved)
    assert en(resolved).endswith("\n\nAnswer: Cleared; bins emptied.")
    assert "答复：Cleared; bins emptied." in zh(resolved)
    # The note is not shown while the ticket is new.
    assert "Answer" not in en(card(resolution_note="old"))

    returned = card(
        status="returned",
        level="community",
        holder_en="Qingtong Community",
        return_reason="not_my_grid",
    )
    assert "Returned because: not in my grid" in en(returned)
    assert "退单原因：不属于本网格" in zh(returned)
    assert "Held by: Qingtong Community (community)" in en(returned)

    reopened = card(
        status="reopened",
        reopen_count=2,
        resolution_note="Cleared.",
        reopen_reason="Still there.",
    )
    text = en(reopened)
    assert "Answer: Cleared." in text
    assert "Reopened by residents 2 times" in text
    assert "The resident says: Still there." in text
    assert "居民已退回重办 2 次" in zh(reopened)


def test_durations() -> None:
    from datetime import timedelta

    t = translator("en")
    assert duration(timedelta(seconds=59), t) == "0 minutes"
    assert duration(timedelta(minutes=61), t) == "1 hour 1 minute"
    assert duration(timedelta(days=3, hours=2, minutes=5), t) == "3 days 2 hours"
    assert duration(timedelta(minutes=-5), t) == "0 minutes"
    # No zero part: "2 days", not "2 days 0 hours".
    assert duration(timedelta(days=2, minutes=30), t) == "2 days"
    assert duration(timedelta(hours=3), t) == "3 hours"
    assert duration(timedelta(days=1, hours=1), t) == "1 day 1 hour"
    zh = translator("zh-hans")
    assert duration(timedelta(days=2, hours=4), zh) == "2天4小时"
    assert duration(timedelta(hours=2), zh) == "2小时"


def _cb(op: TicketOp) -> str:
    return TicketAction(op=op, id=7).pack()


def test_buttons_follow_the_status_and_level() -> None:
    assert buttons(card()) == [
        ("✅ Accept", _cb(TicketOp.ACCEPT)),
        ("↩️ Return", _cb(TicketOp.RETURN)),
        ("⬆️ Escalate", _cb(TicketOp.ESCALATE)),
    ]
    assert [text for text, _ in buttons(card(), "zh-hans")] == ["✅ 签收", "↩️ 退单", "⬆️ 上报"]
    for status in ("accepted", "reopened"):
        assert buttons(card(status=status)) == [
            ("✔️ Resolve", _cb(TicketOp.RESOLVE)),
            ("⬆️ Escalate", _cb(TicketOp.ESCALATE)),
            ("📣 Turn into call", TicketToCall(id=7).pack()),
        ]
    # A returned ticket may go on up the ladder as well as back down to a grid.
    assert buttons(card(status="returned", level="community")) == [
        ("⬆️ Escalate", _cb(TicketOp.ESCALATE)),
        ("➡️ Re-dispatch", _cb(TicketOp.REDISPATCH)),
        ("✖️ Close", _cb(TicketOp.CANCEL)),
    ]
    for status in ("resolved", "closed", "cancelled"):
        assert card_keyboard(card(status=status), translator("en")) is None
    # The top of the ladder: nothing to escalate to; the district may whistle.
    assert [text for text, _ in buttons(card(level="district"))] == [
        "✅ Accept",
        "↩️ Return",
        "📣 Whistle (吹哨)",
    ]
    assert [text for text, _ in buttons(card(level="district", status="accepted"))] == [
        "✔️ Resolve",
        "📣 Whistle (吹哨)",
    ]


def test_the_whistle_is_offered_to_the_street_and_the_district_only() -> None:
    assert buttons(card(level="street", status="accepted")) == [
        ("✔️ Resolve", _cb(TicketOp.RESOLVE)),
        ("⬆️ Escalate", _cb(TicketOp.ESCALATE)),
        ("📣 Whistle (吹哨)", _cb(TicketOp.WHISTLE)),
    ]
    assert [text for text, _ in buttons(card(level="street"), "zh-hans")] == [
        "✅ 签收",
        "↩️ 退单",
        "⬆️ 上报",
        "📣 吹哨",
    ]
    # Departments already on it: more may be summoned, the street may resolve or escalate.
    assert [text for text, _ in buttons(card(level="street", status="summoned"))] == [
        "✔️ Resolve",
        "⬆️ Escalate",
        "📣 Whistle (吹哨)",
    ]
    # Not below the street, and not in a state the table of moves has no whistle for.
    for level in ("grid", "community"):
        for status in ("new", "accepted", "reopened"):
            texts = [text for text, _ in buttons(card(level=level, status=status))]
            assert "📣 Whistle (吹哨)" not in texts
    assert "📣 Whistle (吹哨)" not in [
        text for text, _ in buttons(card(level="street", status="returned"))
    ]
    assert card_keyboard(card(level="street", status="resolved"), translator("en")) is None


def test_a_summoned_card_shows_its_status_in_both_languages() -> None:
    summoned = card(status="summoned", level="street", next_deadline=None)
    assert "Status: departments summoned (whistle), working on it" in en(summoned)
    assert "状态：已吹哨，职能部门协同办理中" in zh(summoned)


# -- renderers -----------------------------------------------------------------------------


def test_the_card_renderer_adds_why_it_came_and_the_buttons() -> None:
    renderer = default_renderer(tz=ZoneInfo("Asia/Shanghai"))
    rendered = renderer.render("ticket_card", card(reason="new"), "en")
    assert rendered.method == "sendMessage"
    assert rendered.text.startswith(f"🆕 A new report in your grid\n\n📋 Ticket {NUMBER}\n")
    assert rendered.reply_markup == card_keyboard(card(), translator("en"))
    returned = renderer.render(
        "ticket_card", card(reason="returned", status="returned", level="community"), "zh-hans"
    )
    assert returned.text.startswith("↩️ 网格已退单")
    assert [b.text for row in returned.reply_markup.inline_keyboard for b in row] == [
        "⬆️ 上报",
        "➡️ 重新派单",
        "✖️ 撤销",
    ]


def test_photos_place_status_moved_and_followup_renderers() -> None:
    renderer = default_renderer()
    one = renderer.render("ticket_photos", {"photos": ["p1"], "number": NUMBER}, "en")
    assert (one.method, one.photos, one.text) == (
        "sendPhoto",
        ("p1",),
        f"📷 Photos for ticket {NUMBER}",
    )
    three = renderer.render(
        "ticket_photos", {"photos": ["a", "b", "c"], "number": NUMBER}, "zh-hans"
    )
    assert (three.method, three.photos) == ("sendMediaGroup", ("a", "b", "c"))
    with pytest.raises(RenderError):
        renderer.render("ticket_photos", {"photos": [], "number": NUMBER}, "en")

    place = {
        "latitude": 34.742,
        "longitude": 113.632,
        "number": NUMBER,
        "grid_zh": "青桐社区第1网格",
        "grid_en": "Qingtong Grid 1",
    }
    venue = renderer.render("ticket_place", place, "en")
    assert venue.method == "sendVenue"
    assert venue.place == Place(34.742, 113.632, title="Qingtong Grid 1", address=NUMBER)
    assert renderer.render("ticket_place", place, "zh-hans").place.title == "青桐社区第1网格"

    status = {
        "ticket_id": 7,
        "number": NUMBER,
        "event": "accepted",
        "status": "accepted",
        "level": "grid",
        "holder_zh": "青桐社区第1网格",
        "holder_en": "Qingtong Grid 1",
        "category_zh": "垃圾堆放",
        "category_en": "Garbage piling up",
    }
    assert renderer.render("ticket_status", status, "en").text == (
        f"✅ Ticket {NUMBER} (Garbage piling up) has been accepted by Qingtong Grid 1 "
        "and is being handled."
    )
    assert renderer.render("ticket_status", status, "zh-hans").text == (
        f"✅ 工单 {NUMBER}（垃圾堆放）已由青桐社区第1网格签收，正在办理。"
    )
    cancelled = status | {"event": "cancelled", "status": "cancelled", "note": "A duplicate."}
    assert renderer.render("ticket_status", cancelled, "en").text.endswith(": A duplicate.")
    rated = status | {"event": "rated", "status": "closed", "rating": 4}
    assert "4 of 5" in renderer.render("ticket_status", rated, "en").text
    odd = status | {"event": "something_new", "status": "closed"}
    assert renderer.render("ticket_status", odd, "en").text.endswith("is now: closed.")

    moved = status | {
        "event": "escalated",
        "status": "new",
        "level": "community",
        "holder_en": "Qingtong Community",
    }
    assert renderer.render("ticket_moved", moved, "en").text == (
        f"⬆️ Ticket {NUMBER} (Garbage piling up) was escalated to Qingtong Community "
        "(community); it has left your queue."
    )

    followup = status | {"event": "resolved", "status": "resolved", "note": "Cleared."}
    asked = renderer.render("ticket_followup", followup | {"photo": None}, "en")
    assert asked.method == "sendMessage"
    assert "Cleared.\n\nIs the problem solved?" in asked.text
    assert [
        (b.text, b.callback_data) for row in asked.reply_markup.inline_keyboard for b in row
    ] == [
        ("✅ Yes, solved", FollowUp(id=7, solved=True).pack()),
        ("❌ No, not solved", FollowUp(id=7, solved=False).pack()),
    ]
    with_photo = renderer.render("ticket_followup", followup | {"photo": "ph1"}, "zh-hans")
    assert (with_photo.method, with_photo.photos) == ("sendPhoto", ("ph1",))
    assert with_photo.text.endswith("问题解决了吗？")
    long_note = followup | {"photo": "ph1", "note": "x" * 1000 + "y" * 500}
    shortened = renderer.render("ticket_followup", long_note, "en")
    assert len(shortened.text) == 1024
    assert "…" in shortened.text and shortened.text.endswith("Is the problem solved?")


def test_rendered_shapes_telegram_would_refuse() -> None:
    renderer = Renderer()
    markup = card_keyboard(card(), translator("en"))
    shapes = {
        "empty": Rendered(""),
        "long_caption": Rendered("x" * 1025, photos=("p",)),
        "album_with_buttons": Rendered("x", photos=("a", "b"), reply_markup=markup),
        "too_many": Rendered("x", photos=tuple("abcdefghijk")),
        "both": Rendered("x", photos=("a",), place=Place(1.0, 2.0)),
    }
    for kind, shape in shapes.items():
        renderer.register(kind, lambda data, language, shape=shape: shape)
        with pytest.raises(RenderError):
            renderer.render(kind, {}, "en")
    renderer.register("location", lambda data, language: Rendered(place=Place(1.0, 2.0)))
    assert renderer.render("location", {}, "en").method == "sendLocation"
    renderer.register("bare_photo", lambda data, language: Rendered(photos=("p",)))
    assert renderer.render("bare_photo", {}, "en").method == "sendPhoto"


def test_leader_locale_files_have_the_same_keys_and_placeholders() -> None:
    locales = Path(__file__).resolve().parents[1] / "views" / "locales"
    zh_table = yaml.safe_load((locales / "zh-hans" / "leader.yaml").read_text(encoding="utf-8"))
    en_table = yaml.safe_load((locales / "en" / "leader.yaml").read_text(encoding="utf-8"))
    assert zh_table.keys() == en_table.keys()

    def fields(template: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name}

    for key in zh_table:
        assert fields(zh_table[key]) == fields(en_table[key]), key
