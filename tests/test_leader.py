"""Ticket holders end to end: the running bot against the fake Bot API over loopback HTTP.

Tickets are filed through the domain (the resident's dialog is tested elsewhere); everything
after that goes through Telegram: the cards the outbox sends, the buttons, the dialogs,
/queue. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import FrozenClock
from domain.deadlines import Timing
from domain.reference import load_snapshot
from domain.tickets import events_of, file_ticket
from storage.db import make_engine, make_sessionmaker
from storage.enums import Level, ReturnReason, Role, TicketStatus
from storage.models import AuditEntry, Category, OrgUnit, Person, RoleAssignment, Ticket
from tests.botkit import running_bot
from tests.fake_telegram import Call, FakeTelegram
from views.buttons import (
    Page,
    Redispatch,
    ReturnWhy,
    TicketAction,
    TicketOp,
    TicketToCall,
)

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # a Wednesday, 10:00 in Zhengzhou
CALENDAR = Timing.plain(ZoneInfo("Asia/Shanghai"))
GRID1, GRID2, FAR_GRID, COMMUNITY = "EQ-JZJ-01-G1", "EQ-JZJ-01-G2", "EQ-JZJ-02-G1", "EQ-JZJ-01"
IN_GRID1 = {"latitude": 34.742, "longitude": 113.632}

# Telegram ids of the cast.
LEADER, LEADER_B, LEADER2, SECRETARY, OUTSIDER, RESIDENT = 3001, 3005, 3002, 3003, 3004, 3010


@dataclass
class World:
    """The database seen from the test: the cast, units and categories of the sample city."""

    url: str
    clock: FrozenClock
    people: dict[int, Person] = field(default_factory=dict)
    units: dict[str, OrgUnit] = field(default_factory=dict)
    categories: dict[str, Category] = field(default_factory=dict)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        engine = make_engine(self.url)
        try:
            async with make_sessionmaker(engine)() as session:
                yield session
                await session.commit()  # the setup's owner, as the middleware is an update's
        finally:
            await engine.dispose()

    async def file(
        self,
        *,
        category: str = "GARBAGE",
        grid: str = GRID1,
        photos: tuple[str, ...] = (),
        anonymous: bool = False,
        description: str = "A pile of rubbish by gate 3.",
    ) -> Ticket:
        async with self.session() as session:
            ctx = await file_ticket(
                session=session,
                org=await load_snapshot(session),
                clock=self.clock,
                timing=CALENDAR,
                reporter=self.people[RESIDENT],
                category_id=self.categories[category].id,
                description=description,
                photos=photos,
                grid_id=self.units[grid].id,
                anonymous=anonymous,
                **IN_GRID1,
            )
        return ctx.ticket

    async def ticket(self, ticket_id: int) -> Ticket:
        async with self.session() as session:
            ticket = await session.get(Ticket, ticket_id)
            assert ticket is not None
            return ticket

    async def events(self, ticket_id: int) -> list[tuple[str, str | None, str | None]]:
        async with self.session() as session:
            return [
                (e.kind, e.from_status, e.to_status) for e in await events_of(session, ticket_id)
            ]


async def make_world(url: str, clock: FrozenClock) -> World:
    """The cast (run after the bot loaded the sample city)."""
    world = World(url, clock)
    cast = [
        (LEADER, "Li Lei", "en", Role.GRID_LEADER, GRID1),
        (LEADER_B, "Han Mei", "en", Role.GRID_LEADER, GRID1),
        (LEADER2, "Zhou Qiang", "zh-hans", Role.GRID_LEADER, GRID2),
        (SECRETARY, "Chen Jing", "en", Role.COMMUNITY_SECRETARY, COMMUNITY),
        (OUTSIDER, "Sun Hao", "en", Role.GRID_LEADER, FAR_GRID),
        (RESIDENT, "Wang Fang", "en", None, None),
    ]
    async with world.session() as session:
        for unit in (await session.exec(select(OrgUnit))).all():
            world.units[unit.code] = unit
        for category in (await session.exec(select(Category))).all():
            world.categories[category.code] = category
        for telegram_id, name, language, role, unit in cast:
            person = Person(telegram_id=telegram_id, full_name=name, language=language)
            session.add(person)
            await session.flush()
            if role is not None:
                session.add(
                    RoleAssignment(person_id=person.id, role=role, unit_id=world.units[unit].id)
                )
            world.people[telegram_id] = person
        await session.commit()
    return world


@asynccontextmanager
async def bot_and_world(db_url: str) -> AsyncIterator[tuple[FakeTelegram, World]]:
    clock = FrozenClock(T0)
    async with running_bot(db_url, clock=clock) as running:
        yield running.fake, await make_world(db_url, clock)


async def press(fake: FakeTelegram, user: int, data: str, message_id: int) -> Call:
    """Press a button; the bot's answer to that press."""
    update = fake.push_callback(user, data, message_id, language_code="en")
    query_id = update["callback_query"]["id"]
    return await fake.wait_for_call(
        "answerCallbackQuery",
        lambda c: c.params.get("callback_query_id") == query_id,
        timeout=10,
    )


def is_reply(message: dict) -> bool:
    """A plain text message that is not a card (cards, photos and places come from the outbox)."""
    return message["method"] == "sendMessage" and "📋" not in message.get("text", "")


async def reply(fake: FakeTelegram, user: int) -> dict:
    return await fake.wait_for_message(user, is_reply, timeout=10)


async def say(fake: FakeTelegram, user: int, text: str | None = None, **extra: object) -> str:
    """Send a message; the text of the bot's next reply."""
    fake.push_message(user, text, language_code="en", **extra)
    return (await reply(fake, user))["text"]


def buttons(markup: dict | None) -> list[tuple[str, str]]:
    if not markup:
        return []
    return [(b["text"], b["callback_data"]) for row in markup["inline_keyboard"] for b in row]


def action(op: TicketOp, ticket_id: int) -> str:
    return TicketAction(op=op, id=ticket_id).pack()


async def next_card(fake: FakeTelegram, chat: int) -> dict:
    return await fake.wait_for_message(
        chat, lambda m: m["method"] == "sendMessage" and "📋" in m.get("text", ""), timeout=10
    )


def last_edit(fake: FakeTelegram, chat: int) -> dict:
    return fake.calls_to("editMessageText", chat)[-1].params


STICKER = {
    "file_id": "s1",
    "file_unique_id": "u1",
    "type": "regular",
    "width": 512,
    "height": 512,
    "is_animated": False,
    "is_video": False,
}


# -- the grid leader's path: card, accept, stale button, resolve with a photo -----------------


async def test_card_accept_and_resolve_with_a_photo(db_url: str) -> None:
    async with bot_and_world(db_url) as (fake, world):
        ticket = await world.file(photos=("ph-a", "ph-b"))
        number, tid = ticket.number, ticket.id

        # Both leaders of the grid get the album, the place and the card, in that order.
        for chat in (LEADER, LEADER_B):
            album = [await fake.wait_for_message(chat, timeout=10) for _ in range(2)]
            assert [m["method"] for m in album] == ["sendMediaGroup"] * 2
            assert [m["photo"][0]["file_id"] for m in album] == ["ph-a", "ph-b"]
            assert album[0]["caption"] == f"📷 Photos for ticket {number}"
            venue = await fake.wait_for_message(chat, timeout=10)
            assert venue["method"] == "sendVenue"
            assert venue["venue"]["title"] == "Qingtong Grid 1"
            assert venue["venue"]["address"] == number
            assert venue["location"] == IN_GRID1
            card = await fake.wait_for_message(chat, timeout=10)
            assert card["method"] == "sendMessage"
        text = card["text"]
        assert text.startswith(f"🆕 A new report in your grid\n\n📋 Ticket {number}\n")
        assert "Reported by: Wang Fang" in text
        assert "Status: waiting to be accepted" in text
        assert "Deadline: 2026-11-25 12:00 (2 hours left)" in text
        assert "Report: A pile of rubbish by gate 3." in text
        assert buttons(card["reply_markup"]) == [
            ("✅ Accept", action(TicketOp.ACCEPT, tid)),
            ("↩️ Return", action(TicketOp.RETURN, tid)),
            ("⬆️ Escalate", action(TicketOp.ESCALATE, tid)),
        ]
        card = [m for m in fake.sent(LEADER) if m["method"] == "sendMessage"][0]

        # Accept: recorded, the card changes in place, the reporter hears of it.
        world.clock.advance(timedelta(minutes=20))
        answer = await press(fake, LEADER, action(TicketOp.ACCEPT, tid), card["message_id"])
        assert answer.params["text"] == f"Ticket {number} accepted; the resident has been told."
        accepted = await world.ticket(tid)
        assert accepted.status == TicketStatus.ACCEPTED
        assert accepted.accepted_by_id == world.people[LEADER].id
        assert accepted.accepted_at == T0 + timedelta(minutes=20)
        edit = last_edit(fake, LEADER)
        assert edit["message_id"] == card["message_id"]
        assert "Status: accepted, in progress" in edit["text"]
        assert buttons(edit["reply_markup"]) == [
            ("✔️ Resolve", action(TicketOp.RESOLVE, tid)),
            ("⬆️ Escalate", action(TicketOp.ESCALATE, tid)),
            ("📣 Turn into call", TicketToCall(id=tid).pack()),
        ]
        status = await fake.wait_for_message(RESIDENT, timeout=10)
        assert status["text"] == (
            f"✅ Ticket {number} (Garbage piling up) has been accepted by Qingtong Grid 1 "
            "and is being handled."
        )

        # A stale button (Accept again, and the other leader's old card): nothing changes.
        for chat in (LEADER, LEADER_B):
            old_card = [m for m in fake.sent(chat) if m["method"] == "sendMessage"][0]
            stale = await press(fake, chat, action(TicketOp.ACCEPT, tid), old_card["message_id"])
            assert stale.params["show_alert"] is True
            assert stale.params["text"] == (
                f"Ticket {number} has moved on: it is now in progress. "
                "This button no longer applies; nothing was changed."
            )
        assert await world.events(tid) == [("file", None, "new"), ("accept", "new", "accepted")]
        assert (await world.ticket(tid)).accepted_by_id == world.people[LEADER].id

        # Resolve: a note (bad inputs first), then a photo.
        await press(fake, LEADER, action(TicketOp.RESOLVE, tid), card["message_id"])
        prompt = await reply(fake, LEADER)
        assert prompt["text"].startswith(f"Resolving ticket {number}.\nWhat was done?")
        assert (await say(fake, LEADER, None, sticker=STICKER)).startswith(
            "Please write the note as text (up to 1000 characters)"
        )
        assert await say(fake, LEADER, "   ") == "Please write a short note on what was done."
        assert await say(fake, LEADER, "x" * 1001) == (
            "That is too long: at most 1000 characters, please shorten it."
        )
        fake.push_message(LEADER, "Cleared the rubbish; the bins are emptied.")
        ask_photo = await reply(fake, LEADER)
        assert ask_photo["text"] == "Now send a photo of the result, or press Skip."
        assert [text for text, _ in buttons(ask_photo["reply_markup"])] == ["Skip the photo"]
        assert (await say(fake, LEADER, "here it is")).startswith("Please send a photo")
        photo = [{"file_id": "done-ph", "file_unique_id": "ud", "width": 800, "height": 600}]
        done = await say(fake, LEADER, None, photo=photo)
        assert (
            done == f"Ticket {number} resolved; the resident has been asked whether it is solved."
        )

        resolved = await world.ticket(tid)
        assert resolved.status == TicketStatus.RESOLVED
        assert resolved.resolution_note == "Cleared the rubbish; the bins are emptied."
        assert resolved.resolution_photo == "done-ph"
        assert resolved.resolved_by_id == world.people[LEADER].id
        edit = last_edit(fake, LEADER)
        assert edit["message_id"] == card["message_id"]
        assert "Answer: Cleared the rubbish; the bins are emptied." in edit["text"]
        assert "reply_markup" not in edit  # nothing left to press

        # The reporter: the answer with the photo, and "is it solved?".
        followup = await fake.wait_for_message(RESIDENT, timeout=10)
        assert followup["method"] == "sendPhoto"
        assert followup["photo"][0]["file_id"] == "done-ph"
        assert followup["caption"] == (
            f"✔️ Ticket {number} (Garbage piling up) has been answered by Qingtong Grid 1:\n"
            "Cleared the rubbish; the bins are emptied.\n\nIs the problem solved?"
        )
        assert [text for text, _ in buttons(followup["reply_markup"])] == [
            "✅ Yes, solved",
            "❌ No, not solved",
        ]
        assert await world.events(tid) == [
            ("file", None, "new"),
            ("accept", "new", "accepted"),
            ("resolve", "accepted", "resolved"),
        ]


async def test_resolve_without_a_photo_and_cancel_the_dialog(db_url: str) -> None:
    async with bot_and_world(db_url) as (fake, world):
        ticket = await world.file()
        tid, number = ticket.id, ticket.number
        card = await next_card(fake, LEADER)
        assert fake.calls_to("sendMediaGroup") == fake.calls_to("sendPhoto") == []
        await press(fake, LEADER, action(TicketOp.ACCEPT, tid), card["message_id"])

        # /cancel half-way: nothing changes, and the next text is no note.
        await press(fake, LEADER, action(TicketOp.RESOLVE, tid), card["message_id"])
        await reply(fake, LEADER)
        assert await say(fake, LEADER, "/cancel") == "Stopped; nothing was changed."
        assert "/help" in await say(fake, LEADER, "Cleared.")
        assert (await world.ticket(tid)).status == TicketStatus.ACCEPTED

        await press(fake, LEADER, action(TicketOp.RESOLVE, tid), card["message_id"])
        await reply(fake, LEADER)
        fake.push_message(LEADER, "Cleared.")
        ask_photo = await reply(fake, LEADER)
        (skip,) = buttons(ask_photo["reply_markup"])
        answer = await press(fake, LEADER, skip[1], ask_photo["message_id"])
        assert answer.ok
        assert last_edit(fake, LEADER)["text"] == (
            f"Ticket {number} resolved; the resident has been asked whether it is solved."
        )
        resolved = await world.ticket(tid)
        assert (resolved.status, resolved.resolution_note, resolved.resolution_photo) == (
            TicketStatus.RESOLVED,
            "Cleared.",
            None,
        )
        await fake.wait_for_message(RESIDENT, timeout=10)  # accepted
        followup = await fake.wait_for_message(RESIDENT, timeout=10)
        assert followup["method"] == "sendMessage"
        assert followup["text"].endswith("Cleared.\n\nIs the problem solved?")
        # Skip again: the dialog is over, the button is stale.
        again = await press(fake, LEADER, skip[1], ask_photo["message_id"])
        assert again.params["text"] == "This button no longer works."


# -- return, re-dispatch, close; anonymous ----------------------------------------------------


async def test_return_redispatch_and_close_an_anonymous_report(db_url: str) -> None:
    async with bot_and_world(db_url) as (fake, world):
        ticket = await world.file(photos=("only-ph",), anonymous=True)
        tid, number = ticket.id, ticket.number
        photo = await fake.wait_for_message(LEADER, timeout=10)
        assert photo["method"] == "sendPhoto" and photo["photo"][0]["file_id"] == "only-ph"
        card = await next_card(fake, LEADER)
        assert "Reported by: anonymous" in card["text"]
        assert "Wang" not in card["text"]

        # Return: the reasons replace the card's buttons; one is chosen.
        await press(fake, LEADER, action(TicketOp.RETURN, tid), card["message_id"])
        markup = fake.calls_to("editMessageReplyMarkup", LEADER)[-1].params["reply_markup"]
        assert buttons(markup) == [
            ("not in my grid", ReturnWhy(id=tid, reason="not_my_grid").pack()),
            ("not our remit", ReturnWhy(id=tid, reason="not_our_remit").pack()),
            ("duplicate", ReturnWhy(id=tid, reason="duplicate").pack()),
            ("not a real problem", ReturnWhy(id=tid, reason="not_real").pack()),
            ("« Back", "tb:" + str(tid)),
        ]
        why = ReturnWhy(id=tid, reason=ReturnReason.NOT_MY_GRID.value).pack()
        answer = await press(fake, LEADER, why, card["message_id"])
        assert answer.params["text"] == (
            f"Ticket {number} returned (not in my grid); "
            "the community will re-dispatch or close it."
        )
        returned = await world.ticket(tid)
        assert returned.status == TicketStatus.RETURNED
        assert returned.level == Level.COMMUNITY
        assert returned.holder_unit_id == world.units[COMMUNITY].id
        assert returned.return_reason == ReturnReason.NOT_MY_GRID
        assert "reply_markup" not in last_edit(fake, LEADER)

        # The community secretary gets it (photo, place, card) with Re-dispatch / Close.
        secretary_card = await next_card(fake, SECRETARY)
        assert [m["method"] for m in fake.sent(SECRETARY)] == [
            "sendPhoto",
            "sendVenue",
            "sendMessage",
        ]
        assert secretary_card["text"].startswith("↩️ Returned by the grid")
        assert "Returned because: not in my grid" in secretary_card["text"]
        assert "Reported by: anonymous" in secretary_card["text"]
        assert buttons(secretary_card["reply_markup"]) == [
            ("⬆️ Escalate", action(TicketOp.ESCALATE, tid)),
            ("➡️ Re-dispatch", action(TicketOp.REDISPATCH, tid)),
            ("✖️ Close", action(TicketOp.CANCEL, tid)),
        ]
        told = await fake.wait_for_message(RESIDENT, timeout=10)
        assert told["text"].startswith(f"↩️ Ticket {number} (Garbage piling up) was returned")

        # Re-dispatch: the community's four grids; Grid 2 is chosen.
        await press(fake, SECRETARY, action(TicketOp.REDISPATCH, tid), secretary_card["message_id"])
        markup = fake.calls_to("editMessageReplyMarkup", SECRETARY)[-1].params["reply_markup"]
        grid2 = world.units[GRID2].id
        assert [text for text, _ in buttons(markup)] == [
            "Qingtong Grid 1",
            "Qingtong Grid 2",
            "Qingtong Grid 3",
            "Qingtong Grid 4",
            "« Back",
        ]
        to_grid2 = Redispatch(id=tid, grid=grid2).pack()
        assert ("Qingtong Grid 2", to_grid2) in buttons(markup)
        answer = await press(fake, SECRETARY, to_grid2, secretary_card["message_id"])
        assert answer.params["text"] == f"Ticket {number} sent to Qingtong Grid 2."
        moved = await world.ticket(tid)
        assert (moved.status, moved.level, moved.grid_id, moved.holder_unit_id) == (
            TicketStatus.NEW,
            Level.GRID,
            grid2,
            grid2,
        )
        assert moved.return_reason is None

        # Grid 2's leader reads Chinese.
        leader2_card = await next_card(fake, LEADER2)
        assert leader2_card["text"].startswith("➡️ 社区重新派到本网格的工单\n\n📋 工单")
        assert "反映人：匿名" in leader2_card["text"]
        assert [text for text, _ in buttons(leader2_card["reply_markup"])] == [
            "✅ 签收",
            "↩️ 退单",
            "⬆️ 上报",
        ]
        told = await fake.wait_for_message(RESIDENT, timeout=10)
        assert told["text"] == (
            f"➡️ Ticket {number} (Garbage piling up) has been sent to Qingtong Grid 2."
        )

        # Grid 2 returns it as a duplicate; the secretary closes it with a note.
        why = ReturnWhy(id=tid, reason=ReturnReason.DUPLICATE.value).pack()
        await press(fake, LEADER2, why, leader2_card["message_id"])
        secretary_card = await next_card(fake, SECRETARY)
        assert "Returned because: duplicate" in secretary_card["text"]
        await press(fake, SECRETARY, action(TicketOp.CANCEL, tid), secretary_card["message_id"])
        prompt = await reply(fake, SECRETARY)
        assert prompt["text"].startswith(f"Closing ticket {number}.")
        assert (await say(fake, SECRETARY, None, sticker=STICKER)).startswith(
            "Please write the note as text"
        )
        assert await say(fake, SECRETARY, " \n ") == "Please say why it is cancelled."
        closed = await say(fake, SECRETARY, "Same as the report filed an hour earlier.")
        assert closed == f"Ticket {number} closed; the resident has been told why."
        cancelled = await world.ticket(tid)
        assert cancelled.status == TicketStatus.CANCELLED
        assert cancelled.closed_at == T0
        assert "reply_markup" not in last_edit(fake, SECRETARY)

        await fake.wait_for_message(RESIDENT, timeout=10)  # returned again
        told = await fake.wait_for_message(RESIDENT, timeout=10)
        assert told["text"] == (
            f"✖️ Ticket {number} (Garbage piling up) was closed by Qingtong Community: "
            "Same as the report filed an hour earlier."
        )
        assert await world.events(tid) == [
            ("file", None, "new"),
            ("return", "new", "returned"),
            ("redispatch", "returned", "new"),
            ("return", "new", "returned"),
            ("cancel", "returned", "cancelled"),
        ]


# -- bad input in the dialogs: control characters and numbers no column holds -------------------


async def test_notes_are_cleaned_and_huge_ids_refused_in_the_dialogs(db_url: str) -> None:
    huge = 123456789012345678901234567890
    no_longer_works = ("This button no longer works.", True)
    async with bot_and_world(db_url) as (fake, world):
        ticket = await world.file()
        tid = ticket.id
        card = await next_card(fake, LEADER)
        await press(fake, LEADER, action(TicketOp.ACCEPT, tid), card["message_id"])

        # Resolve: control characters alone are no note; the note is kept cleaned in the
        # dialog's data (PostgreSQL's jsonb cannot hold NUL).
        await press(fake, LEADER, action(TicketOp.RESOLVE, tid), card["message_id"])
        await reply(fake, LEADER)
        assert await say(fake, LEADER, "\x00\x07") == "Please write a short note on what was done."
        fake.push_message(LEADER, "Cleared\x00 the bins.\r\nAll done\x1b", language_code="en")
        ask_photo = await reply(fake, LEADER)
        assert ask_photo["text"] == "Now send a photo of the result, or press Skip."

        # Skip and « Back forged with a number no column holds: refused, the dialog goes on.
        for data in (f"tsk:{huge}", f"tsk:{-huge}", f"tb:{huge}", f"tb:{2**31}"):
            refused = await press(fake, LEADER, data, ask_photo["message_id"])
            assert (refused.params["text"], refused.params["show_alert"]) == no_longer_works
        assert await world.events(tid) == [("file", None, "new"), ("accept", "new", "accepted")]
        (skip,) = buttons(ask_photo["reply_markup"])
        await press(fake, LEADER, skip[1], ask_photo["message_id"])
        resolved = await world.ticket(tid)
        assert (resolved.status, resolved.resolution_note) == (
            TicketStatus.RESOLVED,
            "Cleared the bins.\nAll done",
        )

        # Close: the same for the note of a returned ticket.
        returned = await world.file(description="Another pile of rubbish.")
        card = await next_card(fake, LEADER)
        why = ReturnWhy(id=returned.id, reason=ReturnReason.DUPLICATE.value).pack()
        await press(fake, LEADER, why, card["message_id"])
        secretary_card = await next_card(fake, SECRETARY)
        cancel = action(TicketOp.CANCEL, returned.id)
        await press(fake, SECRETARY, cancel, secretary_card["message_id"])
        await reply(fake, SECRETARY)
        assert await say(fake, SECRETARY, "\x00") == "Please say why it is cancelled."
        closed = await say(fake, SECRETARY, "Same\x00 as ticket\x08 one.")
        assert closed == f"Ticket {returned.number} closed; the resident has been told why."
        async with world.session() as session:
            events = await events_of(session, returned.id)
        assert (events[-1].kind, events[-1].note) == ("cancel", "Same as ticket one.")


# -- escalation, forged buttons, /queue --------------------------------------------------------


async def test_escalate_and_forged_buttons(db_url: str) -> None:
    async with bot_and_world(db_url) as (fake, world):
        ticket = await world.file()
        tid, number = ticket.id, ticket.number
        card = await next_card(fake, LEADER)
        await next_card(fake, LEADER_B)

        # A leader of a grid in another community forges buttons for this ticket.
        for data in (
            action(TicketOp.ACCEPT, tid),
            action(TicketOp.RESOLVE, tid),
            action(TicketOp.OPEN, tid),
            ReturnWhy(id=tid, reason="not_real").pack(),
        ):
            refused = await press(fake, OUTSIDER, data, 1)
            assert refused.params["show_alert"] is True
            assert refused.params["text"] == "You are not allowed to do that here."
        assert fake.sent(OUTSIDER) == []
        assert (await world.ticket(tid)).status == TicketStatus.NEW
        assert await world.events(tid) == [("file", None, "new")]
        async with world.session() as session:
            denied = (
                await session.exec(select(AuditEntry).where(AuditEntry.action == "access.denied"))
            ).all()
        assert {e.actor_id for e in denied} == {world.people[OUTSIDER].id}
        assert sorted(e.data["attempted"] for e in denied) == sorted(
            [
                f"ticket.accept:{number}",
                f"ticket.resolve:{number}",
                f"ticket.view:{number}",
                f"ticket.return:{number}",
            ]
        )
        # A forged reason that is no reason at all: nobody's button.
        bogus = await press(fake, OUTSIDER, ReturnWhy(id=tid, reason="bored").pack(), 1)
        assert bogus.params["text"] == "This button no longer works."

        # Escalate: the community secretary gets the card; the other grid leader is told.
        answer = await press(fake, LEADER, action(TicketOp.ESCALATE, tid), card["message_id"])
        assert answer.params["text"] == f"Ticket {number} escalated to Qingtong Community."
        escalated = await world.ticket(tid)
        assert (escalated.status, escalated.level, escalated.holder_unit_id) == (
            TicketStatus.NEW,
            Level.COMMUNITY,
            world.units[COMMUNITY].id,
        )
        edit = last_edit(fake, LEADER)
        assert "Held by: Qingtong Community (community)" in edit["text"]
        assert "reply_markup" not in edit  # the grid can no longer act on it
        secretary_card = await next_card(fake, SECRETARY)
        assert secretary_card["text"].startswith("⬆️ Escalated to you\n\n")
        assert [text for text, _ in buttons(secretary_card["reply_markup"])] == [
            "✅ Accept",
            "↩️ Return",
            "⬆️ Escalate",
        ]
        moved = await reply(fake, LEADER_B)
        assert moved["text"] == (
            f"⬆️ Ticket {number} (Garbage piling up) was escalated to Qingtong Community "
            "(community); it has left your queue."
        )
        assert [m for m in fake.sent(LEADER) if m["method"] == "sendMessage"] == [card]
        told = await fake.wait_for_message(RESIDENT, timeout=10)
        assert told["text"] == (
            f"⬆️ Ticket {number} (Garbage piling up) has been passed up to "
            "Qingtong Community (community)."
        )

        # The grid leader may still look at it, without buttons; the secretary acts.
        await press(fake, LEADER, action(TicketOp.OPEN, tid), card["message_id"])
        shown = await next_card(fake, LEADER)
        assert "reply_markup" not in shown
        await press(fake, SECRETARY, action(TicketOp.ACCEPT, tid), secretary_card["message_id"])
        assert (await world.ticket(tid)).accepted_by_id == world.people[SECRETARY].id
        assert [kind for kind, _, _ in await world.events(tid)] == ["file", "escalate", "accept"]


async def test_queue_is_ordered_by_deadline_and_paged(db_url: str) -> None:
    async with bot_and_world(db_url) as (fake, world):
        # Filed ten minutes apart; urgent ones must be accepted in 30 min, normal in 2 h,
        # a consultation in a working day.
        plan = ["GARBAGE", "WATER", "ROAD", "STAIRWELL", "NOISE", "WATER", "POLICY"]
        numbers = []
        for minutes, category in enumerate(plan):
            world.clock.set(T0 + timedelta(minutes=10 * minutes))
            numbers.append((await world.file(category=category, grid=GRID2)).number)
        tickets = {}
        async with world.session() as session:
            for row in (await session.exec(select(Ticket))).all():
                tickets[row.number] = row
        expected = [numbers[i] for i in (1, 3, 5, 0, 2, 4, 6)]
        deadlines = [tickets[n].next_deadline for n in expected]
        assert deadlines == sorted(deadlines)
        world.clock.set(T0 + timedelta(minutes=100))

        fake.push_message(LEADER2, "/queue", language_code="en")
        page = await fake.wait_for_message(
            LEADER2, lambda m: m.get("text", "").startswith("您的待办"), timeout=10
        )
        lines = page["text"].split("\n")
        assert lines[0] == "您的待办：共 7 张未办结工单，按时限由近到远（第 1–5 张）："
        shown = [line.split(" · ")[0].split(". ")[1] for line in lines if " · " in line]
        assert shown == expected[:5]
        assert lines[1] == f"1. {expected[0]} · 供水问题 · 待签收"
        assert lines[2] == "    ⚠️ 2026-11-25 10:40，已超时 1小时"
        assert lines[-1] == "    ⏰ 2026-11-25 12:20"  # ROAD, filed 10:20
        keys = buttons(page["reply_markup"])
        assert keys[:5] == [(f"📋 {n}", action(TicketOp.OPEN, tickets[n].id)) for n in expected[:5]]
        assert keys[5:] == [("下一页 »", Page(list="queue", offset=5).pack())]

        await press(fake, LEADER2, keys[5][1], page["message_id"])
        second = last_edit(fake, LEADER2)
        assert second["text"].split("\n")[0].endswith("（第 6–7 张）：")
        keys = buttons(second["reply_markup"])
        assert [k[0] for k in keys] == [f"📋 {expected[5]}", f"📋 {expected[6]}", "« 上一页"]
        assert keys[2][1] == Page(list="queue", offset=0).pack()

        # A button opens the card, with the holder's buttons.
        await press(fake, LEADER2, keys[1][1], page["message_id"])
        card = await fake.wait_for_message(
            LEADER2, lambda m: m.get("text", "").startswith(f"📋 工单 {expected[6]}"), timeout=10
        )
        assert "类别：政策咨询（咨询）" in card["text"]
        assert [text for text, _ in buttons(card["reply_markup"])] == [
            "✅ 签收",
            "↩️ 退单",
            "⬆️ 上报",
        ]

        # Someone who holds nothing: an empty queue.
        assert await say(fake, RESIDENT, "/queue") == (
            "Your queue is empty: there are no open tickets for you to handle."
        )
        # The community secretary sees Grid 2's tickets only once they reach the community.
        assert await say(fake, SECRETARY, "/queue") == (
            "Your queue is empty: there are no open tickets for you to handle."
        )
