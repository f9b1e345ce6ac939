"""Party members reporting for duty, end to end: the /duty dialog, the secretary's decision, /me.

The running bot against the fake Bot API over loopback HTTP, on SQLite and PostgreSQL; the
sample city is loaded by the bot, the secretary is created here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlmodel import select

from domain.clock import FrozenClock
from handlers.member import RegisterStep
from storage.db import make_engine, make_sessionmaker
from storage.enums import MemberStatus, Role
from storage.models import Member, OrgUnit, Person, RoleAssignment
from tests.botkit import running_bot
from tests.fake_telegram import Call, FakeTelegram
from views.buttons import DutyService, MemberDecision

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
COMMUNITY = "EQ-JZJ-01"
INSIDE = {"latitude": 34.742, "longitude": 113.632}  # in EQ-JZJ-01-G1 (Qingtong Grid 1)
OUTSIDE = {"latitude": 39.9, "longitude": 116.4}  # Beijing: in no grid
SECRETARY, MEMBER, STRANGER = 4001, 4002, 4003

STICKER = {
    "file_id": "s1",
    "file_unique_id": "u1",
    "type": "regular",
    "width": 512,
    "height": 512,
    "is_animated": False,
    "is_video": False,
}


@asynccontextmanager
async def session_of(url: str) -> AsyncIterator:
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            yield session
            await session.commit()  # the setup's owner, as the middleware is an update's
    finally:
        await engine.dispose()


async def add_secretary(url: str) -> None:
    async with session_of(url) as session:
        unit = (await session.exec(select(OrgUnit).where(OrgUnit.code == COMMUNITY))).one()
        person = Person(telegram_id=SECRETARY, full_name="Chen Jing", language="en")
        session.add(person)
        await session.flush()
        session.add(
            RoleAssignment(person_id=person.id, role=Role.COMMUNITY_SECRETARY, unit_id=unit.id)
        )
        await session.commit()


async def member_row(url: str) -> Member | None:
    async with session_of(url) as session:
        return (
            await session.exec(
                select(Member)
                .join(Person, Person.id == Member.person_id)
                .where(Person.telegram_id == MEMBER)
            )
        ).first()


@asynccontextmanager
async def bot(db_url: str) -> AsyncIterator[FakeTelegram]:
    async with running_bot(db_url, clock=FrozenClock(T0)) as running:
        await add_secretary(db_url)
        yield running.fake


async def reply(fake: FakeTelegram, user: int) -> dict:
    return await fake.wait_for_message(user, lambda m: m["method"] == "sendMessage", timeout=10)


async def say(fake: FakeTelegram, user: int, text: str | None = None, **extra: object) -> dict:
    """Send a message; the bot's next reply (the whole message)."""
    fake.push_message(user, text, language_code="en", **extra)
    return await reply(fake, user)


async def press(fake: FakeTelegram, user: int, data: str, message_id: int) -> Call:
    update = fake.push_callback(user, data, message_id, language_code="en")
    query_id = update["callback_query"]["id"]
    return await fake.wait_for_call(
        "answerCallbackQuery",
        lambda c: c.params.get("callback_query_id") == query_id,
        timeout=10,
    )


def buttons(markup: dict | None) -> list[tuple[str, str]]:
    if not markup:
        return []
    return [(b["text"], b["callback_data"]) for row in markup["inline_keyboard"] for b in row]


def keys(markup: dict | None) -> list[dict]:
    return [b for row in (markup or {}).get("keyboard", []) for b in row]


async def register(fake: FakeTelegram, *, skills: str | None = None, phone: bool = False) -> None:
    """The whole /duty dialog, with a few wrong answers on the way (Skip unless given)."""
    asked = await say(fake, MEMBER, "/duty")
    assert asked["text"].startswith("Reporting for duty with your community.")
    told = await say(fake, MEMBER, None, sticker=STICKER)
    assert told["text"] == (
        "Please write your full name as text (at most 100 characters), or /cancel."
    )
    asked = await say(fake, MEMBER, "Zhang Wei")
    assert asked["text"].startswith("Which Party branch or work unit")
    asked = await say(fake, MEMBER, "Qingtong Party branch")
    assert asked["text"].startswith("Where do you live?")
    assert keys(asked["reply_markup"]) == [
        {"text": "📍 Share location", "request_location": True},
        {"text": "🏘 Choose the community"},
    ]
    told = await say(fake, MEMBER, None, sticker=STICKER)
    assert told["text"].startswith("Please press “📍 Share location” or “🏘 Choose the community”")
    # Typed text looks for a community of that name.
    told = await say(fake, MEMBER, "Qingtong Road 5")
    assert told["text"].startswith("Let's choose your community by hand.")
    told = await reply(fake, MEMBER)
    assert told["text"].startswith("No community's name contains “Qingtong Road 5”.")
    told = await say(fake, MEMBER, None, location=OUTSIDE)
    assert told["text"].startswith("That place is outside the service area.")
    found = await say(fake, MEMBER, None, location=INSIDE)
    assert found["text"] == "Got it: that is where you live."
    asked = await reply(fake, MEMBER)
    assert asked["text"].startswith("What kinds of service can you offer?")
    await press(fake, MEMBER, DutyService(i=-1).pack(), asked["message_id"])
    asked = await reply(fake, MEMBER)
    assert asked["text"].startswith("Your skills")
    asked = await say(fake, MEMBER, skills or "Skip")
    assert asked["text"].startswith("Your phone number")
    assert keys(asked["reply_markup"]) == [
        {"text": "📞 Share my phone number", "request_contact": True},
        {"text": "Skip"},
    ]
    someone_else = {"phone_number": "+8613800000000", "first_name": "X", "user_id": STRANGER}
    told = await say(fake, MEMBER, None, contact=someone_else)
    assert told["text"].startswith("Please share your own contact")
    if phone:
        own = {"phone_number": "+8613900000000", "first_name": "Zhang", "user_id": MEMBER}
        summary = await say(fake, MEMBER, None, contact=own)
    else:
        summary = await say(fake, MEMBER, "Skip")
    skills_shown = skills.replace("，", ", ") if skills else "—"
    phone_shown = "+8613900000000" if phone else "—"
    assert summary["text"] == (
        "Please check your registration:\n"
        "Name: Zhang Wei\n"
        "Branch / work unit: Qingtong Party branch\n"
        "Community: Qingtong Community › Qingtong Grid 1\n"
        "Services: —\n"
        f"Skills: {skills_shown}\n"
        f"Phone: {phone_shown}"
    )
    assert buttons(summary["reply_markup"]) == [
        ("✅ Confirm", RegisterStep(step="ok").pack()),
        ("✖️ Cancel", RegisterStep(step="x").pack()),
    ]
    await press(fake, MEMBER, RegisterStep(step="ok").pack(), summary["message_id"])
    done = await reply(fake, MEMBER)
    assert done["text"].startswith("Thank you! Your registration has been sent")


async def test_register_approve_and_me(db_url: str) -> None:
    async with bot(db_url) as fake:
        told = await say(fake, MEMBER, "/me")
        assert told["text"].startswith("You have not reported for duty")
        await register(fake)
        row = await member_row(db_url)
        assert row is not None and row.status == MemberStatus.PENDING
        assert (row.full_name, row.branch, row.skills, row.phone) == (
            "Zhang Wei",
            "Qingtong Party branch",
            [],
            None,
        )
        assert row.grid_id is not None
        told = await say(fake, MEMBER, "/duty")
        assert told["text"] == (
            "Your registration (Zhang Wei) is waiting for your community secretary's decision."
        )

        # The secretary gets the registration with its buttons.
        card = await reply(fake, SECRETARY)
        assert card["text"] == (
            "🙋 A Party member reports for duty with your community\n"
            "Name: Zhang Wei\n"
            "Branch / work unit: Qingtong Party branch\n"
            "Lives in: Qingtong Community › Qingtong Grid 1"
        )
        approve = MemberDecision(id=row.id, ok=True).pack()
        reject = MemberDecision(id=row.id, ok=False).pack()
        assert buttons(card["reply_markup"]) == [("✅ Approve", approve), ("❌ Reject", reject)]

        # A stranger pressing the buttons is refused; nothing changes.
        for data in (approve, reject):
            refused = await press(fake, STRANGER, data, card["message_id"])
            assert refused.params["show_alert"] is True
        assert (await member_row(db_url)).status == MemberStatus.PENDING

        # Approve: the message shows the outcome, the member is told.
        answer = await press(fake, SECRETARY, approve, card["message_id"])
        assert answer.params["text"] == "Zhang Wei approved; they have been told."
        edit = fake.calls_to("editMessageText", SECRETARY)[-1].params
        assert edit["message_id"] == card["message_id"]
        assert edit["text"] == f"{card['text']}\n\n✅ Approved."
        decision = await reply(fake, MEMBER)
        assert decision["text"].startswith("✅ Your registration for duty has been approved")
        assert (await member_row(db_url)).status == MemberStatus.APPROVED

        # A second press: already decided.
        again = await press(fake, SECRETARY, approve, card["message_id"])
        assert again.params["text"] == "This registration has already been decided (approved)."

        me = await say(fake, MEMBER, "/me")
        assert me["text"] == (
            "Zhang Wei: approved, on duty with your community.\n"
            "This month: 0 hours confirmed, 0 points.\n"
            "This year: 0 hours confirmed, 0 points.\n"
            "\n"
            "You hold no service post yet (/posts lists them).\n"
            "No calls ahead."
        )


async def test_reject_with_a_reason_and_cancel(db_url: str) -> None:
    async with bot(db_url) as fake:
        # /cancel in the middle of the dialog: nothing is saved.
        await say(fake, MEMBER, "/duty")
        await say(fake, MEMBER, "Zhang Wei")
        told = await say(fake, MEMBER, "/cancel")
        assert told["text"] == "Cancelled; nothing was saved."
        assert await member_row(db_url) is None

        await register(fake, skills="first aid，plumbing", phone=True)
        row = await member_row(db_url)
        assert (row.skills, row.phone) == (["first aid", "plumbing"], "+8613900000000")
        card = await reply(fake, SECRETARY)
        reject = MemberDecision(id=row.id, ok=False).pack()
        await press(fake, SECRETARY, reject, card["message_id"])
        asked = await reply(fake, SECRETARY)
        assert asked["text"].startswith("Why is this registration rejected?")
        told = await say(fake, SECRETARY, None, sticker=STICKER)
        assert told["text"].startswith("Please write the reason for the rejection as text")
        done = await say(fake, SECRETARY, "Please register where you live.")
        assert done["text"] == "Zhang Wei's registration rejected; they have been told."
        edit = fake.calls_to("editMessageText", SECRETARY)[-1].params
        assert edit["text"].endswith("\n\n❌ Rejected: Please register where you live.")
        decision = await reply(fake, MEMBER)
        assert decision["text"].startswith(
            "❌ Your registration for duty was rejected: Please register where you live."
        )
        # Rejected: /duty says so and asks again.
        told = await say(fake, MEMBER, "/duty")
        assert told["text"].startswith("Your last registration was rejected")
        asked = await reply(fake, MEMBER)
        assert asked["text"].startswith("Reporting for duty with your community.")
