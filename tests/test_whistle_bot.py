"""The street's whistle end to end: the running bot against the fake Bot API over loopback.

A ticket reaches the street through the domain (filed, escalated twice); from there on
everything goes through Telegram: the street officer's picker, the summons cards the outbox
delivers to each department's liaisons, their buttons and note dialogs, the returned card
back at the street, and the resident's follow-up. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlmodel import select

from domain.clock import FrozenClock
from domain.summons import summonses_of, whistle
from domain.tickets import escalate_ticket
from storage.enums import Level, Role, SummonsReturnReason, SummonsStatus, TicketStatus
from storage.models import (
    AuditEntry,
    Category,
    Department,
    OrgUnit,
    Person,
    RoleAssignment,
    TicketSummons,
)
from tests.botkit import running_bot
from tests.fake_telegram import FakeTelegram
from tests.test_leader import (
    CALENDAR,
    COMMUNITY,
    GRID1,
    STICKER,
    T0,
    World,
    buttons,
    last_edit,
    press,
)
from views.buttons import (
    SummonsAction,
    SummonsOp,
    SummonsReturnWhy,
    TicketAction,
    TicketOp,
    WhistleOp,
    WhistlePick,
)

STREET_CODE = "EQ-JZJ"
UM, ENV, POLICE, WATER = "EQ-UM", "EQ-ENV", "EQ-POLICE", "EQ-WATER"
UM_EN = "Erqi District Urban Management Bureau"
ENV_EN = "Zhengzhou Ecology and Environment Bureau, Erqi Branch"

# Telegram ids of the cast.
LEADER, SECRETARY, STREET, RESIDENT = 3001, 3003, 3020, 3010
LIAISON_UM, LIAISON_ENV, LIAISON_POLICE, LIAISON_WATER = 3021, 3022, 3023, 3024


async def make_world(url: str, clock: FrozenClock) -> tuple[World, dict[str, Department]]:
    world = World(url, clock)
    cast = [
        (LEADER, "Li Lei", "en", Role.GRID_LEADER, GRID1, None),
        (SECRETARY, "Chen Jing", "en", Role.COMMUNITY_SECRETARY, COMMUNITY, None),
        (STREET, "Zhao Min", "en", Role.STREET_OFFICER, STREET_CODE, None),
        (LIAISON_UM, "Qian Yu", "en", Role.DEPARTMENT_LIAISON, None, UM),
        (LIAISON_ENV, "Liu Tao", "zh-hans", Role.DEPARTMENT_LIAISON, None, ENV),
        (LIAISON_POLICE, "Wu Gang", "en", Role.DEPARTMENT_LIAISON, None, POLICE),
        (LIAISON_WATER, "Ma Li", "en", Role.DEPARTMENT_LIAISON, None, WATER),
        (RESIDENT, "Wang Fang", "en", None, None, None),
    ]
    departments: dict[str, Department] = {}
    async with world.session() as session:
        for unit in (await session.exec(select(OrgUnit))).all():
            world.units[unit.code] = unit
        for category in (await session.exec(select(Category))).all():
            world.categories[category.code] = category
        for department in (await session.exec(select(Department))).all():
            departments[department.code] = department
        for telegram_id, name, language, role, unit, department in cast:
            person = Person(telegram_id=telegram_id, full_name=name, language=language)
            session.add(person)
            await session.flush()
            if role is not None:
                session.add(
                    RoleAssignment(
                        person_id=person.id,
                        role=role,
                        unit_id=world.units[unit].id if unit else None,
                        department_id=departments[department].id if department else None,
                    )
                )
            world.people[telegram_id] = person
        await session.commit()
    return world, departments


@asynccontextmanager
async def bot_and_world(
    db_url: str,
) -> AsyncIterator[tuple[FakeTelegram, World, dict[str, Department]]]:
    clock = FrozenClock(T0)
    async with running_bot(db_url, clock=clock) as running:
        world, departments = await make_world(db_url, clock)
        yield running.fake, world, departments


async def at_the_street(world: World) -> tuple[int, str]:
    """A garbage report, escalated by the grid leader, then by the community secretary."""
    ticket = await world.file()
    for actor in (LEADER, SECRETARY):
        async with world.session() as session:
            await escalate_ticket(
                session=session,
                clock=world.clock,
                timing=CALENDAR,
                actor=world.people[actor],
                ticket_id=ticket.id,
            )
    moved = await world.ticket(ticket.id)
    assert (moved.level, moved.status) == (Level.STREET, TicketStatus.NEW)
    return ticket.id, ticket.number


async def card_to(fake: FakeTelegram, chat: int, start: str) -> dict:
    """The next message to `chat` whose text starts with `start` (the outbox delivers it)."""
    return await fake.wait_for_message(
        chat, lambda m: m.get("text", "").startswith(start), timeout=10
    )


async def text_to(fake: FakeTelegram, chat: int, start: str) -> str:
    return (await card_to(fake, chat, start))["text"]


async def summons_rows(world: World, ticket_id: int) -> dict[int, TicketSummons]:
    async with world.session() as session:
        return {s.department_id: s for s in await summonses_of(session, ticket_id)}


def last_markup(fake: FakeTelegram, chat: int) -> dict:
    """The buttons a message in `chat` was last given (a picker toggle, the return reasons)."""
    return fake.calls_to("editMessageReplyMarkup", chat)[-1].params["reply_markup"]


def summons_button(op: SummonsOp, summons_id: int) -> str:
    return SummonsAction(op=op, id=summons_id).pack()


async def denied(world: World) -> list[tuple[int, str]]:
    async with world.session() as session:
        rows = (
            await session.exec(select(AuditEntry).where(AuditEntry.action == "access.denied"))
        ).all()
    return sorted((e.actor_id, e.data["attempted"]) for e in rows)


# -- the whole story -------------------------------------------------------------------------


async def test_whistle_two_departments_one_finishes_one_returns_the_street_releases(
    db_url: str,
) -> None:
    async with bot_and_world(db_url) as (fake, world, departments):
        tid, number = await at_the_street(world)
        um, env = departments[UM], departments[ENV]

        # The street officer's card offers the whistle.
        card = await card_to(fake, STREET, "⬆️ Escalated to you")
        whistle_button = TicketAction(op=TicketOp.WHISTLE, id=tid).pack()
        assert buttons(card["reply_markup"]) == [
            ("✅ Accept", TicketAction(op=TicketOp.ACCEPT, id=tid).pack()),
            ("↩️ Return", TicketAction(op=TicketOp.RETURN, id=tid).pack()),
            ("⬆️ Escalate", TicketAction(op=TicketOp.ESCALATE, id=tid).pack()),
            ("📣 Whistle (吹哨)", whistle_button),
        ]

        # Whistle: the card becomes the picker, the category's departments first.
        answer = await press(fake, STREET, whistle_button, card["message_id"])
        assert answer.ok
        picker = last_edit(fake, STREET)
        assert picker["message_id"] == card["message_id"]
        assert picker["text"].startswith(
            f"📣 Whistle for ticket {number}: choose the departments to summon, then press "
            "Summon.\n★ responsible for Garbage piling up"
        )
        assert f"📋 Ticket {number}" in picker["text"]
        keys = buttons(picker["reply_markup"])
        assert [text for text, _ in keys] == [
            f"▫️ ★ {ENV_EN}",
            f"▫️ ★ {UM_EN}",
            "▫️ Erqi District Housing Security and Real Estate Bureau",
            "▫️ Erqi District Market Regulation Bureau",
            "▫️ Zhengzhou Public Security Bureau, Erqi Branch",
            "▫️ Erqi District Water Affairs Bureau",
            "📣 Summon (0)",
            "✖ Cancel",
        ]
        assert all(len(data.encode()) <= 64 for _, data in keys)

        # Summon with nothing chosen: told so; nothing changes.
        nothing = await press(fake, STREET, keys[6][1], card["message_id"])
        assert nothing.params["show_alert"] is True
        assert nothing.params["text"] == "Choose at least one department to summon."
        assert (await world.ticket(tid)).status == TicketStatus.NEW

        # Choose Urban Management, then Environment: only the buttons change.
        await press(fake, STREET, keys[1][1], card["message_id"])
        keys = buttons(last_markup(fake, STREET))
        assert keys[1][0] == f"✅ ★ {UM_EN}" and keys[6][0] == "📣 Summon (1)"
        await press(fake, STREET, keys[0][1], card["message_id"])
        keys = buttons(last_markup(fake, STREET))
        assert [text for text, _ in keys[:2]] == [f"✅ ★ {ENV_EN}", f"✅ ★ {UM_EN}"]
        assert keys[6][0] == "📣 Summon (2)"

        summoned = await press(fake, STREET, keys[6][1], card["message_id"])
        assert summoned.params["text"] == f"Ticket {number}: summoned {ENV_EN}, {UM_EN}."
        done = last_edit(fake, STREET)
        assert done["text"].startswith(f"📣 Summoned: {ENV_EN}, {UM_EN}.\n\n📋 Ticket {number}\n")
        assert "Status: departments summoned (whistle), working on it" in done["text"]
        assert [text for text, _ in buttons(done["reply_markup"])] == [
            "✔️ Resolve",
            "⬆️ Escalate",
            "📣 Whistle (吹哨)",
        ]
        assert (await world.ticket(tid)).status == TicketStatus.SUMMONED
        rows = await summons_rows(world, tid)
        assert {d: s.status for d, s in rows.items()} == {
            um.id: SummonsStatus.SUMMONED,
            env.id: SummonsStatus.SUMMONED,
        }
        um_id, env_id = rows[um.id].id, rows[env.id].id

        # The resident hears of the whistle.
        told = await text_to(fake, RESIDENT, "📣")
        assert told == (
            f"📣 Ticket {number} (Garbage piling up): Jianzhongjie Subdistrict has summoned "
            f"{ENV_EN}, {UM_EN} to deal with it."
        )

        # Each department's liaison gets the summons card from the outbox.
        um_card = await card_to(fake, LIAISON_UM, "📣 The street has summoned")
        assert um_card["text"].startswith(
            f"📣 The street has summoned {UM_EN} to ticket {number}: report in (签收)"
        )
        assert f"Department: {UM_EN} — summoned, waiting to report in" in um_card["text"]
        assert buttons(um_card["reply_markup"]) == [
            ("✅ Report in (签收)", summons_button(SummonsOp.REPORT_IN, um_id)),
            ("↩️ Return (退单)", summons_button(SummonsOp.RETURN, um_id)),
        ]
        env_card = await card_to(fake, LIAISON_ENV, "📣 街道吹哨")
        assert f"协办部门：{env.name_zh}——已召集，待报到签收" in env_card["text"]
        assert [text for text, _ in buttons(env_card["reply_markup"])] == ["✅ 报到签收", "↩️ 退单"]
        assert [m for m in fake.sent(LIAISON_POLICE)] == []

        # Someone else's liaison (and the street officer) forging Report in: refused, audited.
        for chat in (LIAISON_POLICE, STREET):
            refused = await press(fake, chat, summons_button(SummonsOp.REPORT_IN, um_id), 1)
            assert refused.params["show_alert"] is True
            assert refused.params["text"] == "You are not allowed to do that here."
        assert await denied(world) == sorted(
            (world.people[chat].id, f"summons.{UM}:{number}") for chat in (LIAISON_POLICE, STREET)
        )
        assert (await summons_rows(world, tid))[um.id].status == SummonsStatus.SUMMONED

        # Urban Management reports in: the card keeps Finish and Return; the street is told.
        answer = await press(
            fake, LIAISON_UM, summons_button(SummonsOp.REPORT_IN, um_id), um_card["message_id"]
        )
        assert answer.params["text"] == (
            f"Reported in on ticket {number} for {UM_EN}. Press Finish when your part is done."
        )
        edit = last_edit(fake, LIAISON_UM)
        assert edit["message_id"] == um_card["message_id"]
        assert f"Department: {UM_EN} — reported in, working on it" in edit["text"]
        assert buttons(edit["reply_markup"]) == [
            ("✔️ Finish", summons_button(SummonsOp.FINISH, um_id)),
            ("↩️ Return (退单)", summons_button(SummonsOp.RETURN, um_id)),
        ]
        assert await text_to(fake, STREET, "✅") == (
            f"✅ {UM_EN} reported in on ticket {number} (Garbage piling up)."
        )
        row = (await summons_rows(world, tid))[um.id]
        assert (row.status, row.accepted_by_id) == (
            SummonsStatus.ACCEPTED,
            world.people[LIAISON_UM].id,
        )

        # Finish: a sticker is no note, /cancel stops, then the note.
        finish = summons_button(SummonsOp.FINISH, um_id)
        await press(fake, LIAISON_UM, finish, um_card["message_id"])
        prompt = await card_to(fake, LIAISON_UM, "Finishing")
        assert prompt["text"].startswith(f"Finishing the part of {UM_EN} in ticket {number}.")
        fake.push_message(LIAISON_UM, None, language_code="en", sticker=STICKER)
        assert (await text_to(fake, LIAISON_UM, "Please")).startswith(
            "Please write the note as text (up to 1000 characters)"
        )
        fake.push_message(LIAISON_UM, "/cancel", language_code="en")
        assert await text_to(fake, LIAISON_UM, "Stopped") == "Stopped; nothing was changed."
        assert (await summons_rows(world, tid))[um.id].status == SummonsStatus.ACCEPTED

        await press(fake, LIAISON_UM, finish, um_card["message_id"])
        await card_to(fake, LIAISON_UM, "Finishing")
        fake.push_message(LIAISON_UM, "Cleared the pile and disinfected.", language_code="en")
        assert await text_to(fake, LIAISON_UM, "The part of") == (
            f"The part of {UM_EN} in ticket {number} is finished; the street has been told."
        )
        edit = last_edit(fake, LIAISON_UM)
        assert edit["message_id"] == um_card["message_id"]
        assert edit["text"].endswith(
            "— finished\nThe department's answer: Cleared the pile and disinfected."
        )
        assert "reply_markup" not in edit
        assert await text_to(fake, STREET, "✔️") == (
            f"✔️ {UM_EN} finished its part of ticket {number} (Garbage piling up): "
            "Cleared the pile and disinfected."
        )

        # A stale Report in (the old card's first button): the state now; nothing changes.
        stale = await press(
            fake, LIAISON_UM, summons_button(SummonsOp.REPORT_IN, um_id), um_card["message_id"]
        )
        assert stale.params["show_alert"] is True
        assert stale.params["text"] == (
            f"Ticket {number}, {UM_EN}: now finished. "
            "This button no longer applies; nothing was changed."
        )
        assert (await summons_rows(world, tid))[um.id].status == SummonsStatus.FINISHED
        assert last_edit(fake, LIAISON_UM) == edit

        # Environment returns it (in Chinese): a reason, then a note; a sticker is refused.
        await press(
            fake, LIAISON_ENV, summons_button(SummonsOp.RETURN, env_id), env_card["message_id"]
        )
        reasons = buttons(last_markup(fake, LIAISON_ENV))
        remit = SummonsReturnWhy(id=env_id, reason="not_our_remit").pack()
        assert reasons == [
            ("不属于本部门职责", remit),
            ("不属于本部门辖区", SummonsReturnWhy(id=env_id, reason="not_our_area").pack()),
            ("« 返回", summons_button(SummonsOp.BACK, env_id)),
        ]
        # « Back puts the card's own buttons back; then the reason after all.
        await press(fake, LIAISON_ENV, reasons[2][1], env_card["message_id"])
        assert buttons(last_edit(fake, LIAISON_ENV)["reply_markup"]) == buttons(
            env_card["reply_markup"]
        )
        await press(fake, LIAISON_ENV, remit, env_card["message_id"])
        prompt = await card_to(fake, LIAISON_ENV, "正在退回")
        assert prompt["text"].startswith(f"正在退回工单 {number}（不属于本部门职责）。")
        fake.push_message(LIAISON_ENV, None, sticker=STICKER)
        assert (await text_to(fake, LIAISON_ENV, "请用文字")).startswith("请用文字写办理情况说明")
        note = "垃圾在小区私人地块上，应由业主委员会清理。"
        fake.push_message(LIAISON_ENV, note)
        assert await text_to(fake, LIAISON_ENV, "工单") == (
            f"工单 {number} 已退回街道（不属于本部门职责），由街道决定。"
        )
        edit = last_edit(fake, LIAISON_ENV)
        assert edit["message_id"] == env_card["message_id"]
        assert "reply_markup" not in edit
        row = (await summons_rows(world, tid))[env.id]
        assert (row.status, row.return_reason, row.return_note) == (
            SummonsStatus.RETURNED,
            SummonsReturnReason.NOT_OUR_REMIT,
            note,
        )

        # The street gets the returned card, with its three choices.
        returned = await card_to(fake, STREET, "↩️")
        assert returned["text"].startswith(
            f"↩️ {ENV_EN} returned ticket {number} (not our remit): insist, release it, "
            "or summon other departments\n\n"
        )
        assert f"The department returned it: not our remit. {note}" in returned["text"]
        assert buttons(returned["reply_markup"]) == [
            ("❗ Insist (the department must take it)", summons_button(SummonsOp.INSIST, env_id)),
            ("🆗 Release", summons_button(SummonsOp.RELEASE, env_id)),
            (
                "📣 Summon other departments",
                WhistlePick(op=WhistleOp.START, id=tid, src=env_id).pack(),
            ),
        ]

        # Release: every other department has finished, so the ticket is answered.
        answer = await press(
            fake, STREET, summons_button(SummonsOp.RELEASE, env_id), returned["message_id"]
        )
        assert answer.params["text"] == (
            f"{ENV_EN} released. The other departments have finished: ticket {number} is "
            "answered and the resident asked to confirm."
        )
        resolved = await world.ticket(tid)
        assert resolved.status == TicketStatus.RESOLVED
        assert resolved.resolution_note == (
            f"{um.name_zh} / {UM_EN}: Cleared the pile and disinfected."
        )
        edit = last_edit(fake, STREET)
        assert edit["message_id"] == returned["message_id"]
        assert "— released by the street" in edit["text"]
        assert "reply_markup" not in edit
        assert (await summons_rows(world, tid))[env.id].status == SummonsStatus.WITHDRAWN

        # The resident is asked whether it is solved.
        followup = await card_to(fake, RESIDENT, "✔️")
        assert followup["text"] == (
            f"✔️ Ticket {number} (Garbage piling up) has been answered by Jianzhongjie "
            f"Subdistrict:\n{um.name_zh} / {UM_EN}: Cleared the pile and disinfected.\n\n"
            "Is the problem solved?"
        )
        assert [text for text, _ in buttons(followup["reply_markup"])] == [
            "✅ Yes, solved",
            "❌ No, not solved",
        ]
        assert [kind for kind, _, _ in await world.events(tid)] == [
            "file",
            "escalate",
            "escalate",
            "whistle",
            "department_accepted",
            "department_finished",
            "department_returned",
            "department_released",
            "resolve",
        ]


# -- a return re-assigned, then insisted on; the picker's Cancel -----------------------------


async def test_summon_others_then_insist_and_cancel_the_picker(db_url: str) -> None:
    async with bot_and_world(db_url) as (fake, world, departments):
        tid, number = await at_the_street(world)
        um, water = departments[UM], departments[WATER]
        card = await card_to(fake, STREET, "⬆️ Escalated to you")

        # Open the picker and cancel it: the card is back as it was, nobody summoned.
        whistle_button = TicketAction(op=TicketOp.WHISTLE, id=tid).pack()
        await press(fake, STREET, whistle_button, card["message_id"])
        keys = buttons(last_edit(fake, STREET)["reply_markup"])
        cancelled = await press(fake, STREET, keys[-1][1], card["message_id"])
        assert cancelled.params["text"] == "Nothing was summoned."
        back = last_edit(fake, STREET)
        assert back["text"] == card["text"].split("\n\n", 1)[1]
        assert buttons(back["reply_markup"]) == buttons(card["reply_markup"])
        assert await summons_rows(world, tid) == {}

        # Summon Urban Management alone; it returns it as not its area.
        await press(fake, STREET, whistle_button, card["message_id"])
        keys = buttons(last_edit(fake, STREET)["reply_markup"])
        await press(fake, STREET, keys[1][1], card["message_id"])
        keys = buttons(last_markup(fake, STREET))
        await press(fake, STREET, keys[6][1], card["message_id"])
        um_id = (await summons_rows(world, tid))[um.id].id
        um_card = await card_to(fake, LIAISON_UM, "📣 The street has summoned")
        why = SummonsReturnWhy(id=um_id, reason="not_our_area").pack()
        await press(fake, LIAISON_UM, why, um_card["message_id"])
        await card_to(fake, LIAISON_UM, "Returning")
        fake.push_message(LIAISON_UM, "Outside our district.", language_code="en")
        await text_to(fake, LIAISON_UM, f"Ticket {number} returned to the street (not our area)")

        # The street summons other departments from the returned card: Urban Management is
        # offered again (↩️: choosing it would insist), Water Affairs is chosen.
        returned = await card_to(fake, STREET, "↩️")
        others = WhistlePick(op=WhistleOp.START, id=tid, src=um_id).pack()
        await press(fake, STREET, others, returned["message_id"])
        picker = last_edit(fake, STREET)
        assert picker["message_id"] == returned["message_id"]
        keys = buttons(picker["reply_markup"])
        assert keys[1][0] == f"▫️ ★ ↩️ {UM_EN}"
        assert keys[5][0] == "▫️ Erqi District Water Affairs Bureau"
        await press(fake, STREET, keys[5][1], returned["message_id"])
        keys = buttons(last_markup(fake, STREET))
        answer = await press(fake, STREET, keys[6][1], returned["message_id"])
        assert answer.params["text"] == (
            f"Ticket {number}: summoned Erqi District Water Affairs Bureau."
        )
        # Re-assigning released Urban Management: its returned card has nothing left to decide.
        edit = last_edit(fake, STREET)
        assert edit["text"].startswith("📣 Summoned: Erqi District Water Affairs Bureau.\n\n")
        assert "❗ Insist (the department must take it)" not in [
            text for text, _ in buttons(edit.get("reply_markup"))
        ]
        await card_to(fake, LIAISON_WATER, "📣 The street has summoned")
        rows = await summons_rows(world, tid)
        assert rows[water.id].status == SummonsStatus.SUMMONED
        assert rows[um.id].status == SummonsStatus.WITHDRAWN

        # Insisting from an older copy of the card is stale: the department was released.
        stale = await press(
            fake, STREET, summons_button(SummonsOp.INSIST, um_id), returned["message_id"]
        )
        assert stale.params["text"] == (
            f"Ticket {number}, {UM_EN}: now released by the street. "
            "This button no longer applies; nothing was changed."
        )
        assert (await world.ticket(tid)).status == TicketStatus.SUMMONED


async def test_a_liaison_cannot_use_the_picker_nor_arbitrate(db_url: str) -> None:
    async with bot_and_world(db_url) as (fake, world, departments):
        tid, number = await at_the_street(world)
        forged = [
            TicketAction(op=TicketOp.WHISTLE, id=tid).pack(),
            WhistlePick(op=WhistleOp.SUMMON, id=tid, sel="1", v="0000").pack(),
        ]
        for data in forged:
            refused = await press(fake, LIAISON_POLICE, data, 1)
            assert refused.params["text"] == "You are not allowed to do that here."
        assert await summons_rows(world, tid) == {}
        assert await denied(world) == [
            (world.people[LIAISON_POLICE].id, f"ticket.whistle:{number}"),
            (world.people[LIAISON_POLICE].id, f"ticket.whistle:{number}"),
        ]
        assert fake.sent(LIAISON_POLICE) == []


async def test_a_picker_whose_list_changed_meanwhile_is_redrawn_not_misread(db_url: str) -> None:
    async with bot_and_world(db_url) as (fake, world, departments):
        tid, number = await at_the_street(world)
        card = await card_to(fake, STREET, "⬆️ Escalated to you")
        await press(
            fake, STREET, TicketAction(op=TicketOp.WHISTLE, id=tid).pack(), card["message_id"]
        )
        keys = buttons(last_edit(fake, STREET)["reply_markup"])
        await press(fake, STREET, keys[2][1], card["message_id"])  # Housing
        stale_keys = buttons(last_markup(fake, STREET))
        assert stale_keys[2][0] == "✅ Erqi District Housing Security and Real Estate Bureau"

        # Meanwhile someone else summons Environment: the list (and its order) changes.
        async with world.session() as session:
            await whistle(
                session=session,
                clock=world.clock,
                timing=CALENDAR,
                actor=world.people[STREET],
                ticket_id=tid,
                department_ids=[departments[ENV].id],
            )

        # Summon on the old picker: refused, the picker is redrawn from the new list.
        changed = await press(fake, STREET, stale_keys[6][1], card["message_id"])
        assert changed.params["show_alert"] is True
        assert changed.params["text"] == (
            "The list of departments changed meanwhile; please choose again."
        )
        redrawn = buttons(last_markup(fake, STREET))
        assert [text for text, _ in redrawn][:2] == [
            f"▫️ ★ {UM_EN}",
            "▫️ Erqi District Housing Security and Real Estate Bureau",
        ]
        assert redrawn[-2][0] == "📣 Summon (0)"
        assert set(await summons_rows(world, tid)) == {departments[ENV].id}

        # From the new picker, Housing is summoned as meant.
        await press(fake, STREET, redrawn[1][1], card["message_id"])
        keys = buttons(last_markup(fake, STREET))
        answer = await press(fake, STREET, keys[-2][1], card["message_id"])
        assert answer.params["text"] == (
            f"Ticket {number}: summoned Erqi District Housing Security and Real Estate Bureau."
        )
        assert set(await summons_rows(world, tid)) == {
            departments[ENV].id,
            departments["EQ-HOUSING"].id,
        }
