"""Creating a call for Party members in chat, end to end: /call by a community secretary and
by a grid leader, refusals, bad times and numbers, /cancel, and Turn into call on a ticket card.

The running bot against the fake Bot API over loopback HTTP, on SQLite and PostgreSQL; the
sample city is loaded by the bot, the cast (organisers and approved members) is created here,
and the call reaches the members through the bot's outbox sender.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import select

from domain.clock import FrozenClock
from domain.deadlines import Timing
from domain.reference import load_snapshot
from domain.tickets import file_ticket
from handlers.call_create import parse_local_time
from storage.enums import MemberStatus, Role
from storage.models import (
    AuditEntry,
    Category,
    DutyCall,
    Member,
    OrgUnit,
    OutboxMessage,
    Person,
    RoleAssignment,
)
from tests.botkit import running_bot
from tests.fake_telegram import Call, FakeTelegram
from tests.test_member_bot import STICKER, buttons, keys, press, reply, say, session_of
from views.buttons import (
    CallAction,
    CallCommunity,
    CallGrid,
    CallGridOp,
    CallOp,
    CallStep,
    TicketAction,
    TicketOp,
    TicketToCall,
)

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # a Wednesday, 10:00 in the city
COMMUNITY, OTHER_COMMUNITY, FAR_COMMUNITY = "EQ-JZJ-01", "EQ-JZJ-02", "EQ-JFL-01"
GRID1, GRID2 = "EQ-JZJ-01-G1", "EQ-JZJ-01-G2"
PLACE = {"latitude": 34.742, "longitude": 113.632}  # in Qingtong Grid 1
VENUE = {
    "location": {"latitude": 34.7425, "longitude": 113.6325},
    "title": "Qingtong Community Centre",
    "address": "Qingtong Road 5",
}

# Telegram ids of the cast.
SECRETARY, LEADER, RESIDENT, OUTSIDER, BOTH = 4201, 4202, 4203, 4204, 4205
G1_MEMBERS, G2_MEMBER, PENDING = (4211, 4212), 4213, 4214
GRID_PICKER = [
    "✅ Whole community",
    "▫️ Qingtong Grid 1",
    "▫️ Qingtong Grid 2",
    "▫️ Qingtong Grid 3",
    "▫️ Qingtong Grid 4",
    "Next ➡️",
    "✖️ Cancel",
]


@dataclass
class World:
    url: str
    clock: FrozenClock
    units: dict[str, OrgUnit] = field(default_factory=dict)
    people: dict[int, Person] = field(default_factory=dict)

    async def calls(self) -> list[DutyCall]:
        async with session_of(self.url) as session:
            return list((await session.exec(select(DutyCall).order_by(DutyCall.id))).all())

    async def call_chats(self) -> set[int]:
        """The chats the outbox has "duty_call" messages for."""
        async with session_of(self.url) as session:
            rows = await session.exec(
                select(OutboxMessage.chat_id).where(OutboxMessage.kind == "duty_call")
            )
            return set(rows.all())


async def make_world(url: str, clock: FrozenClock) -> World:
    """The organisers, a resident, and members of Grid 1 and Grid 2 (one still pending)."""
    world = World(url, clock)
    cast = [
        (SECRETARY, [(Role.COMMUNITY_SECRETARY, COMMUNITY)]),
        (LEADER, [(Role.GRID_LEADER, GRID1)]),
        (RESIDENT, []),
        (OUTSIDER, [(Role.GRID_LEADER, "EQ-JFL-01-G1")]),
        (BOTH, [(Role.GRID_LEADER, GRID2), (Role.COMMUNITY_SECRETARY, OTHER_COMMUNITY)]),
    ]
    members = [(G1_MEMBERS[0], GRID1), (G1_MEMBERS[1], GRID1), (G2_MEMBER, GRID2)]
    async with session_of(url) as session:
        for unit in (await session.exec(select(OrgUnit))).all():
            world.units[unit.code] = unit
        for telegram_id, roles in cast:
            person = Person(telegram_id=telegram_id, full_name=f"P{telegram_id}", language="en")
            session.add(person)
            await session.flush()
            world.people[telegram_id] = person
            for role, code in roles:
                session.add(
                    RoleAssignment(person_id=person.id, role=role, unit_id=world.units[code].id)
                )
        for telegram_id, grid in [*members, (PENDING, GRID1)]:
            person = Person(telegram_id=telegram_id, full_name=f"M{telegram_id}", language="en")
            session.add(person)
            await session.flush()
            world.people[telegram_id] = person
            session.add(
                Member(
                    person_id=person.id,
                    full_name=f"M{telegram_id}",
                    branch="Qingtong Party branch",
                    community_id=world.units[COMMUNITY].id,
                    grid_id=world.units[grid].id,
                    status=MemberStatus.PENDING
                    if telegram_id == PENDING
                    else MemberStatus.APPROVED,
                )
            )
        await session.commit()
    return world


@asynccontextmanager
async def bot(db_url: str) -> AsyncIterator[tuple[FakeTelegram, World]]:
    clock = FrozenClock(T0)
    async with running_bot(db_url, clock=clock) as running:
        world = await make_world(db_url, clock)
        yield running.fake, world


def grid(op: CallGridOp, grid_id: int = 0) -> str:
    return CallGrid(op=op, id=grid_id).pack()


CONFIRM, CANCEL = CallStep(step="ok").pack(), CallStep(step="x").pack()
POINTS = CallStep(step="pts").pack()
NEXT = grid(CallGridOp.DONE)


def last_markup(fake: FakeTelegram, user: int) -> dict:
    return fake.calls_to("editMessageReplyMarkup", user)[-1].params["reply_markup"]


async def answered(fake: FakeTelegram, user: int, data: str, message_id: int) -> str:
    """Press a button; the text of the answer to the press ("" when none)."""
    answer: Call = await press(fake, user, data, message_id)
    return answer.params.get("text", "")


async def up_to_grids(
    fake: FakeTelegram, user: int, *, title: str = "Clear the snow", capacity: str = "3"
) -> dict:
    """The dialog the short way, to the grid picker (which is returned)."""
    await say(fake, user, "/call")
    await say(fake, user, title)
    await say(fake, user, "Skip")
    await say(fake, user, None, location=PLACE)
    await say(fake, user, "2026-11-26 09:00")
    await say(fake, user, "12:00")
    return await say(fake, user, capacity)


async def test_secretary_calls_the_whole_community_then_one_grid(db_url: str) -> None:
    async with bot(db_url) as (fake, world):
        user = SECRETARY
        asked = await say(fake, user, "/call")
        assert asked["text"].startswith("📣 A call to the Party members of Qingtong Community.\n")
        assert keys(asked["reply_markup"]) == [{"text": "✖️ Cancel"}]
        told = await say(fake, user, None, sticker=STICKER)
        assert told["text"] == (
            "Please write the call's title as text (at most 200 characters), or /cancel."
        )
        told = await say(fake, user, "x" * 201)
        assert told["text"].startswith("Please write the call's title as text")
        asked = await say(fake, user, "Clear the snow")
        assert asked["text"].startswith("What is there to do?")
        assert keys(asked["reply_markup"]) == [{"text": "Skip"}, {"text": "✖️ Cancel"}]
        asked = await say(fake, user, "Shovel the paths of buildings 1 to 4.")
        assert asked["text"].startswith("Where do members meet?")
        assert keys(asked["reply_markup"]) == [
            {"text": "📍 Share location", "request_location": True},
            {"text": "✖️ Cancel"},
        ]
        told = await say(fake, user, "By gate 3")
        assert told["text"].startswith("Please press “📍 Share location” below")
        asked = await say(fake, user, None, location=PLACE)
        assert asked["text"] == (
            "When does it start? Write the date and time (local time), e.g. 2026-11-26 09:00, "
            "or 11-28 09:00."
        )

        # Times: unreadable, in the past, then tomorrow 09:00 in the city.
        for bad in ("tomorrow morning", "2026-13-01 09:00", "26.11 25:00"):
            told = await say(fake, user, bad)
            assert told["text"] == (
                "That is not a date and time I can read. Please write it like 2026-11-26 09:00 "
                "(or 11-28 09:00), local time."
            )
        told = await say(fake, user, "2026-11-25 09:30")
        assert told["text"] == (
            "That time has passed (it is now 2026-11-25 10:00). Please write a start in the "
            "future, like 2026-11-26 09:00."
        )
        asked = await say(fake, user, "2026-11-26 09:00")
        assert asked["text"].startswith("Starts 2026-11-26 09:00. When does it end?")
        told = await say(fake, user, "08:00")
        assert told["text"].startswith(
            "The end (2026-11-26 08:00) must come after the start (2026-11-26 09:00)."
        )
        told = await say(fake, user, "noon")
        assert told["text"].startswith("That is not a time I can read. Please write the end like")
        asked = await say(fake, user, "12:00")
        assert asked["text"] == "How many people are needed? Write a number from 1 to 500."

        # How many: 0, 501 and words are refused.
        for bad in ("0", "501", "many", "2.5"):
            told = await say(fake, user, bad)
            assert told["text"] == (
                "Please write the number of people as a whole number from 1 to 500."
            )
        picker = await say(fake, user, "3")
        assert picker["text"].startswith("Which members are called? The whole community")
        assert [text for text, _ in buttons(picker["reply_markup"])] == GRID_PICKER
        told = await say(fake, user, "Grid 1")
        assert told["text"].startswith("Please pick the grids with the buttons above")

        summary = await answered_summary(fake, user, picker["message_id"])
        assert summary["text"] == "\n".join(
            [
                "Please check the call:",
                "Community: Qingtong Community",
                "Title: Clear the snow",
                "Description: Shovel the paths of buildings 1 to 4.",
                "Place: the shared location (34.74200, 113.63200)",
                "Starts: 2026-11-26 09:00",
                "Ends: 2026-11-26 12:00",
                "People needed: 3",
                "Called: Whole community",
                "Points: 1 per confirmed hour.",
            ]
        )
        assert buttons(summary["reply_markup"]) == [
            ("✅ Confirm", CONFIRM),
            ("⭐ Points per hour", POINTS),
            ("✖️ Cancel", CANCEL),
        ]
        # Points per confirmed hour: asked for, bad numbers refused, then the summary again.
        await press(fake, user, POINTS, summary["message_id"])
        asked = await reply(fake, user)
        assert asked["text"] == (
            "How many points per confirmed hour? A number from 0 to 10, e.g. 1 or 1.5."
        )
        for bad in ("eleven", "11", "1.555", "-1"):
            told = await say(fake, user, bad)
            assert told["text"] == (
                "Please send a number from 0 to 10, with at most two decimals, e.g. 1 or 1.5."
            )
        await say(fake, user, "1,5")
        summary = await reply(fake, user)
        assert summary["text"].endswith("Called: Whole community\nPoints: 1.5 per confirmed hour.")
        await press(fake, user, CONFIRM, summary["message_id"])
        posted = await reply(fake, user)
        assert posted["text"] == "📣 Call posted: “Clear the snow” was sent to 3 members."
        assert posted["reply_markup"] == {"remove_keyboard": True}

        # Every approved member of the community gets it, with I'll come / Can't.
        [call] = await world.calls()
        come = CallAction(op=CallOp.COME, id=call.id).pack()
        cant = CallAction(op=CallOp.CANT, id=call.id).pack()
        for member in (*G1_MEMBERS, G2_MEMBER):
            card = await reply(fake, member)
            assert card["text"] == (
                "📣 Your community calls for help: Clear the snow\n"
                "Shovel the paths of buildings 1 to 4.\n"
                "When: 2026-11-26 09:00–12:00\n"
                "Where: the place on the map above"
            )
            assert buttons(card["reply_markup"]) == [("🙋 I'll come", come), ("Can't", cant)]
        assert (call.title, call.capacity, call.grid_ids, call.ticket_id) == (
            "Clear the snow",
            3,
            [],
            None,
        )
        assert call.points_per_hour == 1.5
        assert (call.starts_at, call.ends_at) == (
            datetime(2026, 11, 26, 1, 0, tzinfo=UTC),
            datetime(2026, 11, 26, 4, 0, tzinfo=UTC),
        )
        assert (call.latitude, call.longitude) == (PLACE["latitude"], PLACE["longitude"])
        assert call.organiser_id == world.people[SECRETARY].id
        assert world.people[PENDING].telegram_id not in await world.call_chats()

        # A second call, for Grid 1 only: Grid 2's member does not get it.
        picker = await up_to_grids(fake, user, title="Carry water")
        g1, g2 = world.units[GRID1].id, world.units[GRID2].id
        assert await answered(fake, user, grid(CallGridOp.TOGGLE, g1), picker["message_id"]) == ""
        markup = last_markup(fake, user)
        assert [text for text, _ in buttons(markup)][:3] == [
            "▫️ Whole community",
            "✅ Qingtong Grid 1",
            "▫️ Qingtong Grid 2",
        ]
        await press(fake, user, grid(CallGridOp.TOGGLE, g2), picker["message_id"])
        await press(fake, user, grid(CallGridOp.TOGGLE, g2), picker["message_id"])
        summary = await answered_summary(fake, user, picker["message_id"])
        assert summary["text"].endswith("Called: Qingtong Grid 1\nPoints: 1 per confirmed hour.")
        await press(fake, user, CONFIRM, summary["message_id"])
        posted = await reply(fake, user)
        assert posted["text"] == "📣 Call posted: “Carry water” was sent to 2 members."
        second = (await world.calls())[1]
        assert second.grid_ids == [g1]
        for member in G1_MEMBERS:
            card = await reply(fake, member)
            assert card["text"].startswith("📣 Your community calls for help: Carry water\n")
        async with session_of(db_url) as session:
            rows = await session.exec(
                select(OutboxMessage.chat_id).where(OutboxMessage.kind == "duty_call")
            )
            chats = list(rows.all())
        assert sorted(chats) == sorted([*G1_MEMBERS, G2_MEMBER, *G1_MEMBERS])
        assert not [m for m in fake.sent(G2_MEMBER) if "Carry water" in m.get("text", "")]


async def answered_summary(fake: FakeTelegram, user: int, picker_id: int) -> dict:
    """Next on the grid picker: the summary message."""
    assert await answered(fake, user, NEXT, picker_id) == ""
    return await reply(fake, user)


async def test_a_grid_leader_calls_only_their_own_grid(db_url: str) -> None:
    async with bot(db_url) as (fake, world):
        user = LEADER
        g1, g2 = world.units[GRID1].id, world.units[GRID2].id
        await say(fake, user, "/call")
        await say(fake, user, "Help Mrs Liu move")
        await say(fake, user, "Skip")
        # A venue is a place too.
        asked = await say(fake, user, None, venue=VENUE, location=VENUE["location"])
        assert asked["text"].startswith("When does it start?")
        await say(fake, user, "11-26 14:00")
        await say(fake, user, "2026-11-26 16:30")
        picker = await say(fake, user, "2")
        assert picker["text"] == (
            "Which of your grids' members are called? Pick at least one, then Next."
        )
        # Only their grid (already chosen); no "whole community".
        assert [text for text, _ in buttons(picker["reply_markup"])] == [
            "✅ Qingtong Grid 1",
            "Next ➡️",
            "✖️ Cancel",
        ]
        # Forged presses: the whole community, another grid.
        whole = await answered(fake, user, grid(CallGridOp.WHOLE), picker["message_id"])
        assert whole == "Only the community secretary can call the whole community."
        other = await answered(fake, user, grid(CallGridOp.TOGGLE, g2), picker["message_id"])
        assert other == "That grid is not one you can call."
        # None chosen: Next asks for one.
        await press(fake, user, grid(CallGridOp.TOGGLE, g1), picker["message_id"])
        assert [text for text, _ in buttons(last_markup(fake, user))][0] == "▫️ Qingtong Grid 1"
        assert await answered(fake, user, NEXT, picker["message_id"]) == (
            "Please pick at least one of your grids."
        )
        await press(fake, user, grid(CallGridOp.TOGGLE, g1), picker["message_id"])
        summary = await answered_summary(fake, user, picker["message_id"])
        assert "Place: the shared location (34.74250, 113.63250)" in summary["text"]
        assert "Starts: 2026-11-26 14:00\nEnds: 2026-11-26 16:30" in summary["text"]
        assert summary["text"].endswith("Called: Qingtong Grid 1\nPoints: 1 per confirmed hour.")
        await press(fake, user, CONFIRM, summary["message_id"])
        posted = await reply(fake, user)
        assert posted["text"] == "📣 Call posted: “Help Mrs Liu move” was sent to 2 members."
        [call] = await world.calls()
        assert (call.grid_ids, call.capacity, call.community_id) == (
            [g1],
            2,
            world.units[COMMUNITY].id,
        )
        for member in G1_MEMBERS:
            card = await reply(fake, member)
            assert card["text"].startswith("📣 Your community calls for help: Help Mrs Liu move")
        assert await world.call_chats() == set(G1_MEMBERS)
        # The summary's buttons are gone: pressing the old Confirm again changes nothing.
        stale = await answered(fake, user, CONFIRM, summary["message_id"])
        assert stale == "This step is over; send /call to start again."
        assert len(await world.calls()) == 1


async def test_residents_are_refused_and_several_communities_are_asked_for(db_url: str) -> None:
    async with bot(db_url) as (fake, world):
        told = await say(fake, RESIDENT, "/call")
        assert told["text"] == "Only a community secretary or grid leader can call members."
        # Not in a dialog: a forged dialog button changes nothing.
        stale = await answered(fake, RESIDENT, grid(CallGridOp.DONE), told["message_id"])
        assert stale == "This step is over; send /call to start again."

        # Grid leader in one community, secretary of another: which community first.
        asked = await say(fake, BOTH, "/call")
        assert asked["text"] == "Which community are you calling members of?"
        qingtong, songfeng = world.units[COMMUNITY].id, world.units[OTHER_COMMUNITY].id
        assert buttons(asked["reply_markup"]) == [
            ("Qingtong Community", CallCommunity(id=qingtong).pack()),
            ("Songfeng Community", CallCommunity(id=songfeng).pack()),
            ("✖️ Cancel", CANCEL),
        ]
        told = await say(fake, BOTH, "Qingtong")
        assert told["text"] == "Please press the button of a community above, or /cancel."
        # A community they hold no role in: refused and audited.
        far = CallCommunity(id=world.units[FAR_COMMUNITY].id).pack()
        refused = await answered(fake, BOTH, far, asked["message_id"])
        assert refused == "You are not allowed to do that here."
        async with session_of(db_url) as session:
            denied = (
                await session.exec(
                    select(AuditEntry).where(
                        AuditEntry.action == "access.denied",
                        AuditEntry.actor_id == world.people[BOTH].id,
                    )
                )
            ).all()
        assert [d.data["attempted"] for d in denied] == ["duty.call"]

        await press(fake, BOTH, CallCommunity(id=qingtong).pack(), asked["message_id"])
        title = await reply(fake, BOTH)
        assert title["text"].startswith("📣 A call to the Party members of Qingtong Community.")
        await say(fake, BOTH, "Sweep the yard")
        await say(fake, BOTH, "Skip")
        await say(fake, BOTH, None, location=PLACE)
        await say(fake, BOTH, "2026-11-26 09:00")
        await say(fake, BOTH, "10:00")
        picker = await say(fake, BOTH, "1")
        # In Qingtong they lead Grid 2 only.
        assert [text for text, _ in buttons(picker["reply_markup"])] == [
            "✅ Qingtong Grid 2",
            "Next ➡️",
            "✖️ Cancel",
        ]
        await press(fake, BOTH, CANCEL, picker["message_id"])
        cancelled = await reply(fake, BOTH)
        assert cancelled["text"] == "Cancelled; no call was posted."
        assert await world.calls() == []


async def test_cancel_works_at_every_kind_of_step(db_url: str) -> None:
    async with bot(db_url) as (fake, world):
        user = SECRETARY
        # /cancel while a time is asked for.
        await say(fake, user, "/call")
        await say(fake, user, "Clear the snow")
        await say(fake, user, "Skip")
        await say(fake, user, None, location=PLACE)
        told = await say(fake, user, "/cancel")
        assert told["text"] == "Cancelled; no call was posted."
        assert told["reply_markup"] == {"remove_keyboard": True}
        # The dialog is over: a time now is not taken as a start.
        later = await say(fake, user, "2026-11-26 09:00")
        assert "Starts 2026-11-26 09:00" not in later["text"]

        # The Cancel key on the description step.
        await say(fake, user, "/call")
        await say(fake, user, "Clear the snow")
        told = await say(fake, user, "✖️ Cancel")
        assert told["text"] == "Cancelled; no call was posted."

        # The Cancel button under the summary; the old Confirm then changes nothing.
        picker = await up_to_grids(fake, user)
        summary = await answered_summary(fake, user, picker["message_id"])
        await press(fake, user, CANCEL, summary["message_id"])
        told = await reply(fake, user)
        assert told["text"] == "Cancelled; no call was posted."
        stale = await answered(fake, user, CONFIRM, summary["message_id"])
        assert stale == "This step is over; send /call to start again."
        assert await world.calls() == []
        assert await world.call_chats() == set()


async def test_turn_a_ticket_into_a_call(db_url: str) -> None:
    async with bot(db_url) as (fake, world):
        async with session_of(db_url) as session:
            category = (
                await session.exec(select(Category).where(Category.code == "GARBAGE"))
            ).one()
            ctx = await file_ticket(
                session=session,
                org=await load_snapshot(session),
                clock=world.clock,
                timing=Timing.plain(ZoneInfo("Asia/Shanghai")),
                reporter=world.people[RESIDENT],
                category_id=category.id,
                description="A pile of rubbish by gate 3.",
                grid_id=world.units[GRID1].id,
                **PLACE,
            )
        tid, number = ctx.ticket.id, ctx.ticket.number
        to_call = TicketToCall(id=tid).pack()
        card = await fake.wait_for_message(
            LEADER, lambda m: m["method"] == "sendMessage" and "📋" in m.get("text", ""), 10
        )
        # A new ticket: accept it first; then the card offers Turn into call.
        assert "📣 Turn into call" not in [text for text, _ in buttons(card["reply_markup"])]
        await press(
            fake, LEADER, TicketAction(op=TicketOp.ACCEPT, id=tid).pack(), card["message_id"]
        )
        edit = fake.calls_to("editMessageText", LEADER)[-1].params
        assert buttons(edit["reply_markup"]) == [
            ("✔️ Resolve", TicketAction(op=TicketOp.RESOLVE, id=tid).pack()),
            ("⬆️ Escalate", TicketAction(op=TicketOp.ESCALATE, id=tid).pack()),
            ("📣 Turn into call", to_call),
        ]

        # Someone else's ticket: a forged button is refused.
        refused = await answered(fake, OUTSIDER, to_call, 1)
        assert refused == "You are not allowed to do that here."

        await press(fake, LEADER, to_call, card["message_id"])
        asked = await reply(fake, LEADER)
        assert asked["text"].startswith(
            f"📣 A call to the Party members of Qingtong Community, for ticket {number}.\n"
        )
        proposed = f"Garbage piling up (ticket {number})"
        assert keys(asked["reply_markup"]) == [{"text": proposed}, {"text": "✖️ Cancel"}]
        await say(fake, LEADER, proposed)
        asked = await say(fake, LEADER, "Skip")
        assert keys(asked["reply_markup"]) == [
            {"text": "📍 Share location", "request_location": True},
            {"text": "📌 Use the ticket's place"},
            {"text": "✖️ Cancel"},
        ]
        asked = await say(fake, LEADER, "📌 Use the ticket's place")
        assert asked["text"].startswith("When does it start?")
        await say(fake, LEADER, "2026-11-26 09:00")
        await say(fake, LEADER, "11:00")
        picker = await say(fake, LEADER, "2")
        summary = await answered_summary(fake, LEADER, picker["message_id"])
        assert f"Title: {proposed}" in summary["text"]
        assert "Place: the ticket's place (34.74200, 113.63200)" in summary["text"]
        assert summary["text"].endswith(
            f"Called: Qingtong Grid 1\nFor ticket: {number}\nPoints: 1 per confirmed hour."
        )
        await press(fake, LEADER, CONFIRM, summary["message_id"])
        posted = await reply(fake, LEADER)
        assert posted["text"] == f"📣 Call posted: “{proposed}” was sent to 2 members."
        [call] = await world.calls()
        assert (call.ticket_id, call.grid_ids) == (tid, [world.units[GRID1].id])
        assert (call.latitude, call.longitude) == (PLACE["latitude"], PLACE["longitude"])
        assert call.starts_at == T0 + timedelta(hours=23)
        for member in G1_MEMBERS:
            told = await reply(fake, member)
            assert told["text"].startswith(f"📣 Your community calls for help: {proposed}\n")


def test_times_are_read_in_the_city_s_time_zone() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    today = datetime(2026, 11, 25, tzinfo=tz).date()
    expected = datetime(2026, 11, 28, 9, 0, tzinfo=tz)
    for text in (
        "2026-11-28 09:00",
        "2026/11/28 9:00",
        "11-28 09:00",
        "28.11 9:00",
        "11月28日 9：00",
    ):
        assert parse_local_time(text, day=today, tz=tz) == expected, text
    assert parse_local_time("12:30", day=today, tz=tz) == datetime(2026, 11, 25, 12, 30, tzinfo=tz)
    # Typed in December for January: next year's.
    december = datetime(2026, 12, 20, tzinfo=tz).date()
    assert parse_local_time("01-05 09:00", day=december, tz=tz) == datetime(
        2027, 1, 5, 9, 0, tzinfo=tz
    )
    for bad in ("tomorrow", "2026-02-30 09:00", "24:00", "11-28", "9", ""):
        assert parse_local_time(bad, day=today, tz=tz) is None, bad
