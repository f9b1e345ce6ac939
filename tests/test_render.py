"""The outbox renderers for the street's whistle, reminders and the daily digest, in both
languages: headers, texts and the buttons they carry."""

from __future__ import annotations

import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from storage.enums import Role, SummonsReturnReason, SummonsStatus, TicketStatus
from tests.test_cards import NUMBER, card
from views.buttons import (
    SummonsAction,
    SummonsOp,
    TicketAction,
    TicketOp,
    WhistleOp,
    WhistlePick,
)
from views.cards import card_keyboard
from views.i18n import catalogs, translator
from views.outbox import RenderError, default_renderer

RENDERER = default_renderer(tz=ZoneInfo("Asia/Shanghai"))
ROOT = Path(__file__).resolve().parents[1]


def render(kind: str, data: dict, language: str = "en"):
    return RENDERER.render(kind, data, language)


def buttons(rendered) -> list[tuple[str, str]]:
    if rendered.reply_markup is None:
        return []
    return [(b.text, b.callback_data) for row in rendered.reply_markup.inline_keyboard for b in row]


def summons(**overrides: object) -> dict:
    """summons_card data as domain.summons makes it: a street ticket, Urban Management
    summoned at 10:35 local, to report in by 12:35."""
    data = card(
        status="summoned",
        level="street",
        holder_zh="建中街街道",
        holder_en="Jianzhongjie Subdistrict",
        next_deadline=None,
    ) | {
        "department_id": 3,
        "department_code": "EQ-UM",
        "department_zh": "二七区城市管理局",
        "department_en": "Erqi District Urban Management Bureau",
        "summons_id": 11,
        "summons_status": "summoned",
        "summons_deadline": "2026-11-25T04:35:00+00:00",
        "return_reason": None,
        "return_note": None,
        "finish_note": None,
        "reason": "summoned",
    }
    data.update(overrides)
    return data


def _s(op: SummonsOp) -> str:
    return SummonsAction(op=op, id=11).pack()


# -- reminders on the ticket card ----------------------------------------------------------------


def test_reminder_and_overdue_cards_say_which_deadline() -> None:
    reminder = render("ticket_card", card(reason="reminder", deadline="2026-11-25T04:00:00+00:00"))
    assert reminder.text.startswith(
        f"⏰ Reminder: ticket {NUMBER} is due 2026-11-25 12:00\n\n📋 Ticket {NUMBER}\n"
    )
    assert reminder.reply_markup == card_keyboard(card(), translator("en"))
    overdue = render(
        "ticket_card", card(reason="overdue", deadline="2026-11-25T04:00:00+00:00"), "zh-hans"
    )
    assert overdue.text.startswith(
        f"🚨 已超时：工单 {NUMBER} 的办理时限是 2026-11-25 12:00\n\n📋 工单 {NUMBER}\n"
    )
    assert [text for text, _ in buttons(overdue)] == ["✅ 签收", "↩️ 退单", "⬆️ 上报"]
    zh_reminder = render(
        "ticket_card", card(reason="reminder", deadline="2026-11-25T04:00:00+00:00"), "zh-hans"
    )
    assert zh_reminder.text.startswith(f"⏰ 提醒：工单 {NUMBER} 的办理时限是 2026-11-25 12:00\n\n")
    overdue_en = render("ticket_card", card(reason="overdue", deadline="2026-11-25T04:00:00Z"))
    assert overdue_en.text.startswith(f"🚨 Overdue: ticket {NUMBER} was due 2026-11-25 12:00\n\n")


# -- ticket_status: whistled, closed unrated, the summoned status --------------------------------


STATUS = {
    "ticket_id": 7,
    "number": NUMBER,
    "status": "summoned",
    "level": "street",
    "holder_zh": "建中街街道",
    "holder_en": "Jianzhongjie Subdistrict",
    "category_zh": "垃圾堆放",
    "category_en": "Garbage piling up",
}


def test_whistled_and_closed_unrated_news() -> None:
    whistled = STATUS | {
        "event": "whistled",
        "departments_zh": "二七区城市管理局、二七区水务局",
        "departments_en": "Urban Management, Water Affairs",
    }
    assert render("ticket_status", whistled).text == (
        f"📣 Ticket {NUMBER} (Garbage piling up): Jianzhongjie Subdistrict has summoned "
        "Urban Management, Water Affairs to deal with it."
    )
    assert render("ticket_status", whistled, "zh-hans").text == (
        f"📣 工单 {NUMBER}（垃圾堆放）：建中街街道已吹哨，"
        "召集二七区城市管理局、二七区水务局协同办理。"
    )
    unrated = STATUS | {"event": "closed_unrated", "status": "closed"}
    assert render("ticket_status", unrated).text == (
        f"🏁 Ticket {NUMBER} (Garbage piling up) is closed: the follow-up went unanswered in "
        "time, so it counts as solved (without a rating)."
    )
    assert render("ticket_status", unrated, "zh-hans").text.endswith("按已解决处理（未评价）。")
    # A change without its own text names the summoned status in the person's words.
    other = STATUS | {"event": "something_new"}
    assert render("ticket_status", other).text.endswith(
        "is now: departments summoned by the street, working on it."
    )
    assert render("ticket_status", other, "zh-hans").text.endswith("街道已吹哨，职能部门办理中。")


def test_every_ticket_and_summons_status_has_its_words() -> None:
    for language, table in catalogs().items():
        for status in TicketStatus:
            assert f"status.{status.value}" in table, (language, status)
            assert f"card.status.{status.value}" in table, (language, status)
        for status in SummonsStatus:
            assert f"summons.status.{status.value}" in table, (language, status)
        for reason in SummonsReturnReason:
            assert f"summons.return_reason.{reason.value}" in table, (language, reason)
        for role in Role:
            assert f"role.{role.value}" in table, (language, role)


def test_every_key_the_domain_raises_exists_in_both_languages() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "domain").glob("*.py"))
    raised = r'(?:DomainError|NotFound|StaleAction|NotAllowed)\(\s*"([^"]+)"'
    checked = r'clean_note\([^,]+,\s*"([^"]+)"'  # the key a refused note raises
    keys = set(re.findall(raised, source)) | set(re.findall(checked, source))
    assert {"whistle.no_departments", "summons.stale", "duty.call_full", "ticket.stale"} <= keys
    for language, table in catalogs().items():
        missing = {key for key in keys if key not in table}
        assert not missing, (language, missing)


# -- summons_card --------------------------------------------------------------------------------


def test_a_summoned_department_gets_report_in_and_return() -> None:
    rendered = render("summons_card", summons())
    assert rendered.text.startswith(
        "📣 The street has summoned Erqi District Urban Management Bureau to ticket "
        f"{NUMBER}: report in (签收), or return it (退单) with a reason.\n\n📋 Ticket {NUMBER}\n"
    )
    assert "Status: departments summoned (whistle), working on it" in rendered.text
    assert "Held by: Jianzhongjie Subdistrict (street)" in rendered.text
    assert rendered.text.endswith(
        "\n\nDepartment: Erqi District Urban Management Bureau — summoned, waiting to report in\n"
        "Department's deadline: 2026-11-25 12:35 (2 hours left)"
    )
    assert buttons(rendered) == [
        ("✅ Report in (签收)", _s(SummonsOp.REPORT_IN)),
        ("↩️ Return (退单)", _s(SummonsOp.RETURN)),
    ]
    zh = render("summons_card", summons(), "zh-hans")
    assert zh.text.startswith(
        f"📣 街道吹哨，召集二七区城市管理局办理工单 {NUMBER}：请报到签收，或说明原因退单。\n\n"
    )
    assert "协办部门：二七区城市管理局——已召集，待报到签收" in zh.text
    assert "部门时限：2026-11-25 12:35（剩余 2小时）" in zh.text
    assert [text for text, _ in buttons(zh)] == ["✅ 报到签收", "↩️ 退单"]


def test_the_liaisons_work_against_their_own_deadline() -> None:
    # While a return waits for the street the ticket has a deadline of its own: the street's.
    rendered = render("summons_card", summons(next_deadline="2026-11-25T03:00:00+00:00"))
    assert "Deadline: 2026-11-25 11:00" not in rendered.text
    assert "Department's deadline: 2026-11-25 12:35" in rendered.text


def test_an_accepted_department_gets_finish_and_return_then_nothing() -> None:
    accepted = summons(summons_status="accepted", summons_deadline="2026-11-28T02:35:00+00:00")
    rendered = render(
        "summons_card", accepted | {"reason": "reminder", "deadline": accepted["summons_deadline"]}
    )
    assert rendered.text.startswith(
        "⏰ Reminder: Erqi District Urban Management Bureau must act on ticket "
        f"{NUMBER} by 2026-11-28 10:35\n\n"
    )
    assert "— reported in, working on it" in rendered.text
    assert buttons(rendered) == [
        ("✔️ Finish", _s(SummonsOp.FINISH)),
        ("↩️ Return (退单)", _s(SummonsOp.RETURN)),
    ]
    zh = render(
        "summons_card",
        accepted | {"reason": "overdue", "deadline": "2026-11-25T04:35:00Z"},
        "zh-hans",
    )
    assert zh.text.startswith(
        f"🚨 已超时：二七区城市管理局应在 2026-11-25 12:35 前处理工单 {NUMBER}\n\n"
    )
    assert [text for text, _ in buttons(zh)] == ["✔️ 办结", "↩️ 退单"]
    overdue = render("summons_card", summons(reason="overdue", deadline="2026-11-25T04:35:00Z"))
    assert overdue.text.startswith(
        "🚨 Overdue: Erqi District Urban Management Bureau was due to act on ticket "
        f"{NUMBER} by 2026-11-25 12:35\n\n"
    )
    for status in ("returned", "finished", "withdrawn"):
        assert render("summons_card", summons(summons_status=status)).reply_markup is None


def test_a_returned_summons_goes_to_the_street_with_its_three_choices() -> None:
    returned = summons(
        reason="department_returned",
        summons_status="returned",
        summons_deadline=None,
        return_reason="not_our_remit",
        return_note="Private land: the owners' committee must clear it.",
        next_deadline="2026-11-25T05:00:00+00:00",
    )
    rendered = render("summons_card", returned)
    assert rendered.text.startswith(
        f"↩️ Erqi District Urban Management Bureau returned ticket {NUMBER} (not our remit): "
        "insist, release it, or summon other departments\n\n"
    )
    # The street's own clock runs again while the return waits for it.
    assert "Deadline: 2026-11-25 13:00" in rendered.text
    assert rendered.text.endswith(
        "— returned, waiting for the street to decide\n"
        "The department returned it: not our remit. "
        "Private land: the owners' committee must clear it."
    )
    assert buttons(rendered) == [
        ("❗ Insist (the department must take it)", _s(SummonsOp.INSIST)),
        ("🆗 Release", _s(SummonsOp.RELEASE)),
        (
            "📣 Summon other departments",
            WhistlePick(op=WhistleOp.START, id=7, src=11).pack(),
        ),
    ]
    zh = render("summons_card", returned, "zh-hans")
    assert zh.text.startswith(
        f"↩️ 二七区城市管理局退回了工单 {NUMBER}（不属于本部门职责）："
        "请坚持派单、同意退回，或改派其他部门\n\n"
    )
    assert "部门退单原因：不属于本部门职责。Private land" in zh.text
    assert [text for text, _ in buttons(zh)] == [
        "❗ 坚持派给该部门",
        "🆗 同意退回",
        "📣 改派其他部门",
    ]
    # Already decided: nothing left to press.
    released = render("summons_card", returned | {"summons_status": "withdrawn"})
    assert released.reply_markup is None
    assert "— released by the street" in released.text


def test_a_silent_department_is_reported_to_the_district_with_an_open_button() -> None:
    silent = summons(reason="department_silent", deadline="2026-11-25T04:35:00+00:00")
    rendered = render("summons_card", silent)
    assert rendered.text.startswith(
        f"🔕 Erqi District Urban Management Bureau has not acted on ticket {NUMBER}; "
        "its deadline was 2026-11-25 12:35\n\n"
    )
    assert buttons(rendered) == [
        ("📋 Open the ticket", TicketAction(op=TicketOp.OPEN, id=7).pack())
    ]
    zh = render("summons_card", silent, "zh-hans")
    assert zh.text.startswith(
        f"🔕 二七区城市管理局未按时处理工单 {NUMBER}，时限为 2026-11-25 12:35"
    )
    assert [text for text, _ in buttons(zh)] == ["📋 查看工单"]


def test_a_finished_part_shows_the_answer_and_an_unknown_reason_is_refused() -> None:
    finished = summons(summons_status="finished", finish_note="Cleared and disinfected.")
    assert render("summons_card", finished).text.endswith(
        "— finished\nThe department's answer: Cleared and disinfected."
    )
    assert render("summons_card", finished, "zh-hans").text.endswith(
        "——已办结\n部门答复：Cleared and disinfected."
    )
    with pytest.raises(RenderError):
        render("summons_card", summons(reason="bored"))


# -- summons_status ------------------------------------------------------------------------------


def test_the_street_hears_a_department_reported_in_or_finished() -> None:
    accepted = summons(summons_status="accepted", event="department_accepted")
    del accepted["reason"]
    assert render("summons_status", accepted).text == (
        f"✅ Erqi District Urban Management Bureau reported in on ticket {NUMBER} "
        "(Garbage piling up)."
    )
    assert render("summons_status", accepted, "zh-hans").text == (
        f"✅ 二七区城市管理局已报到签收工单 {NUMBER}（垃圾堆放）。"
    )
    finished = accepted | {
        "event": "department_finished",
        "summons_status": "finished",
        "finish_note": "Cleared.",
    }
    assert render("summons_status", finished).text == (
        f"✔️ Erqi District Urban Management Bureau finished its part of ticket {NUMBER} "
        "(Garbage piling up): Cleared."
    )
    assert render("summons_status", finished, "zh-hans").text.endswith("中的本部门事项：Cleared.")
    assert render("summons_status", finished).reply_markup is None
    with pytest.raises(RenderError):
        render("summons_status", accepted | {"event": "department_bored"})


# -- the daily digest ----------------------------------------------------------------------------


DIGEST = {
    "date": "2026-11-25",
    "unit_zh": "青桐社区第1网格",
    "unit_en": "Qingtong Grid 1",
    "role": "grid_leader",
    "open": 3,
    "overdue": 1,
    "due_today": 1,
    "tickets": [
        {
            "ticket_id": 7,
            "number": "ZZ-20261124-0003",
            "category_zh": "供水问题",
            "category_en": "Water supply problem",
            "next_deadline": "2026-11-24T09:00:00+00:00",
            "overdue": True,
        },
        {
            "ticket_id": 9,
            "number": "ZZ-20261125-0001",
            "category_zh": "垃圾堆放",
            "category_en": "Garbage piling up",
            "next_deadline": "2026-11-25T08:00:00+00:00",
            "overdue": False,
        },
        {
            "ticket_id": 12,
            "number": "ZZ-20261125-0002",
            "category_zh": "政策咨询",
            "category_en": "Policy question",
            "next_deadline": None,
            "overdue": False,
        },
    ],
}


def test_the_digest_counts_and_opens_the_most_urgent_tickets() -> None:
    rendered = render("digest", DIGEST)
    assert rendered.text == (
        "📊 Daily digest, 2026-11-25: Qingtong Grid 1 (grid leader)\n"
        "Open: 3 · Overdue: 1 · Due today: 1\n"
        "Most urgent first:"
    )
    assert buttons(rendered) == [
        (
            "⚠️ ZZ-20261124-0003 · Water supply problem · 2026-11-24 17:00",
            TicketAction(op=TicketOp.OPEN, id=7).pack(),
        ),
        (
            "ZZ-20261125-0001 · Garbage piling up · 2026-11-25 16:00",
            TicketAction(op=TicketOp.OPEN, id=9).pack(),
        ),
        (
            "ZZ-20261125-0002 · Policy question · no deadline",
            TicketAction(op=TicketOp.OPEN, id=12).pack(),
        ),
    ]
    zh = render("digest", DIGEST, "zh-hans")
    assert zh.text == (
        "📊 每日简报（2026-11-25）：青桐社区第1网格（网格长）\n"
        "未办结：3 · 已超时：1 · 今日到期：1\n"
        "最紧急的工单："
    )
    assert [text for text, _ in buttons(zh)] == [
        "⚠️ ZZ-20261124-0003 · 供水问题 · 2026-11-24 17:00",
        "ZZ-20261125-0001 · 垃圾堆放 · 2026-11-25 16:00",
        "ZZ-20261125-0002 · 政策咨询 · 无时限",
    ]


def test_an_empty_digest_is_one_line_without_buttons() -> None:
    empty = DIGEST | {
        "open": 0,
        "overdue": 0,
        "due_today": 0,
        "tickets": [],
        "role": "street_officer",
    }
    for language, expected in (
        (
            "en",
            "📊 Daily digest, 2026-11-25: nothing open for Qingtong Grid 1 (street officer). 👍",
        ),
        (
            "zh-hans",
            "📊 每日简报（2026-11-25）：青桐社区第1网格（街道工作人员）目前没有未办结的工单。👍",
        ),
    ):
        rendered = render("digest", empty, language)
        assert rendered.text == expected
        assert rendered.reply_markup is None


REGISTRATION = {
    "member_id": 7,
    "full_name": "张伟",
    "branch": "青桐党支部",
    "services": [],
    "skills": [],
    "community_zh": "青桐社区",
    "community_en": "Qingtong Community",
    "grid_zh": "青桐第一网格",
    "grid_en": "Qingtong Grid 1",
}


def test_a_registration_says_where_the_member_lives() -> None:
    """The secretary reads whose neighbour it is: community and grid, in their language; a
    registration without a grid says so; a row queued before places were carried has none."""
    zh = render("member_registration", REGISTRATION, "zh-hans").text
    assert zh.splitlines()[-1] == "居住：青桐社区 › 青桐第一网格"
    en = render("member_registration", REGISTRATION).text
    assert en.splitlines()[-1] == "Lives in: Qingtong Community › Qingtong Grid 1"
    no_grid = {**REGISTRATION, "grid_zh": None, "grid_en": None}
    assert render("member_registration", no_grid).text.splitlines()[-1] == (
        "Lives in: Qingtong Community (grid not given)"
    )
    old = {k: v for k, v in REGISTRATION.items() if not k.startswith(("community", "grid"))}
    assert "Lives in" not in render("member_registration", old).text


CALL = {
    "call_id": 9,
    "title": "清扫楼道",
    "description": "3号楼",
    "starts_at": "2026-11-25T04:00:00+00:00",
    "ends_at": "2026-11-25T06:30:00+00:00",
    "latitude": 34.742,
    "longitude": 113.632,
}


def test_a_call_says_what_when_and_where_and_its_place_is_a_venue() -> None:
    text = render("duty_call", CALL, "zh-hans").text
    assert text == "📣 社区召集：清扫楼道\n3号楼\n时间：2026-11-25 12:00–14:30\n地点：见上方地图"
    place = render("duty_call_place", CALL, "zh-hans")
    assert place.method == "sendVenue"
    assert (place.place.latitude, place.place.longitude) == (34.742, 113.632)
    assert (place.place.title, place.place.address) == ("清扫楼道", "2026-11-25 12:00–14:30")
    # A call over midnight names both days; a row queued before the end was carried has the
    # start alone, and one without a place does not point to a map.
    overnight = {**CALL, "ends_at": "2026-11-25T17:00:00+00:00"}
    assert "When: 2026-11-25 12:00 – 2026-11-26 01:00" in render("duty_call", overnight).text
    old = {"call_id": 9, "title": "Sweep", "starts_at": CALL["starts_at"]}
    assert render("duty_call", old).text == (
        "📣 Your community calls for help: Sweep\nWhen: 2026-11-25 12:00"
    )
