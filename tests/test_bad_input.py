"""Bad input gets a clear answer in chat and changes nothing: impossible locations (also NaN
and infinity, which only a forged webhook update can carry), button data with a number no
database column holds, and text with NUL and other control characters.

The running bot against the fake Bot API, on SQLite and PostgreSQL. Locations that JSON can
only write as NaN or Infinity are fed to the bot's dispatcher as Update objects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from aiogram import Bot, Dispatcher
from aiogram.filters.callback_data import CallbackData
from aiogram.types import Update
from sqlmodel import func, select

from bot.app import build_bot, build_dispatcher, build_throttle
from bot.runtime import seed_sample_city
from domain.calls import answer_call
from domain.clock import FrozenClock
from domain.text import clean_text
from handlers.common import LanguageChoice
from handlers.leader import CardBack, SkipPhoto
from handlers.member import RegisterStep
from storage.db import make_engine, make_sessionmaker
from storage.enums import MemberStatus, Role
from storage.models import (
    AuditEntry,
    CallClaim,
    Invitation,
    Member,
    OrgUnit,
    Person,
    RoleAssignment,
    Ticket,
    TicketWatcher,
)
from tests.botkit import TOKEN, bot_settings, running_bot
from tests.fake_telegram import FakeTelegram
from tests.test_calls_bot import MEMBERS, NEAR, world
from tests.test_member_bot import add_secretary, keys, press, reply, say, session_of
from tests.test_resident import (
    INSIDE,
    Resident,
    buttons,
    confirm,
    start_report,
    to_location_step,
)
from views import buttons as callbacks
from views.buttons import Button, CallAction, CallOp, MemberDecision
from views.report import ReportButton

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # 10:00 in the city
HUGE = 123456789012345678901234567890
NAN, INF = float("nan"), float("inf")
# Each no place on Earth: out of range, not a number, infinite.
IMPOSSIBLE = [(91.0, 113.632), (34.742, 181.0), (-90.5, -180.5), (NAN, 113.632), (34.742, INF)]
NOT_A_PLACE = (
    "That location is not a real place: a latitude lies between -90 and 90 and a longitude "
    "between -180 and 180. Please share the place again."
)
NO_LONGER_WORKS = "This button no longer works."
BUTTONS = [
    value
    for value in vars(callbacks).values()
    if isinstance(value, type)
    and issubclass(value, CallbackData)
    and value not in (Button, CallbackData)
] + [LanguageChoice, RegisterStep, ReportButton, SkipPhoto, CardBack]


def _location(lat: float, lon: float) -> dict:
    return {"latitude": lat, "longitude": lon}


# -- the pure rules ----------------------------------------------------------------------------


def test_clean_text_drops_control_characters_but_keeps_lines_and_tabs() -> None:
    assert clean_text("Rubbish\x00 by the\x07 gate") == "Rubbish by the gate"
    assert clean_text("one\r\ntwo\rthree\nfour\tfive") == "one\ntwo\nthree\nfour\tfive"
    assert clean_text("\x1b[31mred\x7f") == "[31mred"
    # A lone surrogate (only a forged update has one) cannot be stored as UTF-8 at all.
    assert clean_text("a\ud800b") == "ab"
    # Everything else is kept as typed, spaces and all.
    assert clean_text("  小区门口的路灯不亮了 ★ ") == "  小区门口的路灯不亮了 ★ "
    assert clean_text("\x00\x01\x02") == ""


def test_every_button_refuses_numbers_no_column_holds() -> None:
    for data in (
        "t:a:{n}",
        "m:{n}",
        "p:my:{n}",
        "dc:i:{n}",
        "r:1:{n}",
        "ms:{n}",
        "rp:m:{n}",
        "tsk:{n}",
        "tb:{n}",
    ):
        cls = next(c for c in BUTTONS if c.__prefix__ == data.split(":")[0])
        assert cls.unpack(data.format(n=2**31 - 1)) is not None
        assert cls.unpack(data.format(n=-(2**31))) is not None
        for n in (2**31, -(2**31) - 1, HUGE, -HUGE):
            with pytest.raises(ValueError):
                cls.unpack(data.format(n=n))
    # Every kind of button data derives from the one base that checks.
    for cls in BUTTONS:
        assert issubclass(cls, Button), cls


# -- straight through the dispatcher, for what no JSON transport carries ----------------------


class Fed:
    """The bot's dispatcher fed Update objects directly (a forged webhook update parsed with a
    lenient JSON reader can hold NaN or infinity; aiogram's Location takes any float); what the
    bot sends goes to the fake Bot API."""

    def __init__(self, fake: FakeTelegram, bot: Bot, dp: Dispatcher) -> None:
        self.fake, self.bot, self.dp = fake, bot, dp
        self.update_id = 0
        # What a person's Telegram profile says beyond the defaults (a forger's name, say).
        self.profiles: dict[int, dict] = {}

    def _user(self, user: int) -> dict:
        default = {"id": user, "is_bot": False, "first_name": f"U{user}", "language_code": "en"}
        return {**default, **self.profiles.get(user, {})}

    async def _feed(self, update: dict) -> None:
        self.update_id += 1
        await self.dp.feed_update(
            self.bot, Update.model_validate({"update_id": self.update_id, **update})
        )

    async def say(self, user: int, text: str | None = None, **extra: object) -> dict:
        """A message from `user`; the bot's next message to them."""
        message: dict = {
            "message_id": 10_000 + self.update_id,
            "date": 0,
            "chat": {"id": user, "type": "private"},
            "from": self._user(user),
            **extra,
        }
        if text is not None:
            message["text"] = text
            if text.startswith("/"):
                length = len(text.split()[0])
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        await self._feed({"message": message})
        return await reply(self.fake, user)

    async def press(self, user: int, data: str, message_id: int = 1) -> dict:
        """A button press by `user` on the bot's message; the answer's parameters."""
        query_id = f"fed{self.update_id + 1}"
        chat = {"id": user, "type": "private"}
        message = {"message_id": message_id, "date": 0, "chat": chat, "text": ""}
        await self._feed(
            {
                "callback_query": {
                    "id": query_id,
                    "from": self._user(user),
                    "chat_instance": f"ci{user}",
                    "data": data,
                    "message": message,
                }
            }
        )
        call = await self.fake.wait_for_call(
            "answerCallbackQuery",
            lambda c: c.params.get("callback_query_id") == query_id,
            timeout=10,
        )
        return call.params


@asynccontextmanager
async def fed_bot(db_url: str, clock: FrozenClock) -> AsyncIterator[Fed]:
    """The sample city in the database, and the bot's dispatcher to feed."""
    async with FakeTelegram(tokens=[TOKEN]) as fake:
        settings = bot_settings(fake.base_url, db_url)
        engine = make_engine(db_url)
        sessionmaker = make_sessionmaker(engine)
        bot = build_bot(settings, build_throttle(settings))
        try:
            await seed_sample_city(sessionmaker, clock)
            dp = build_dispatcher(settings=settings, sessionmaker=sessionmaker, clock=clock)
            yield Fed(fake, bot, dp)
        finally:
            await bot.session.close()
            await engine.dispose()


# -- impossible locations -----------------------------------------------------------------------


async def test_impossible_locations_in_a_report_are_asked_again(db_url: str) -> None:
    async with running_bot(db_url) as running:
        r = Resident(running.fake, 5102)
        await start_report(r)
        await to_location_step(r, "Bins overflowing")
        for lat, lon in [(91.0, 113.632), (34.742, 181.0), (-91.0, -180.5)]:
            r.say(None, location=_location(lat, lon))
            again = await r.reply()
            assert again["text"] == NOT_A_PLACE
            # Asked again, with the place step's keyboard.
            assert keys(again["reply_markup"])[0] == {
                "text": "📍 Share my location",
                "request_location": True,
            }
        r.say(None, location=INSIDE)
        assert await r.text() == "📍 Qingtong Grid 1, Qingtong Community"
        await confirm(r, await r.reply())

    async with session_of(db_url) as session:
        [ticket] = (await session.exec(select(Ticket))).all()
    assert (ticket.latitude, ticket.longitude) == (INSIDE["latitude"], INSIDE["longitude"])


async def test_nan_and_infinity_outside_a_dialog_and_in_a_report(db_url: str) -> None:
    async with fed_bot(db_url, FrozenClock(T0)) as fed:
        user = 5101
        # Outside any dialog a location is answered with its grid; an impossible one, so.
        for lat, lon in IMPOSSIBLE:
            told = await fed.say(user, None, location=_location(lat, lon))
            assert told["text"] == NOT_A_PLACE
        told = await fed.say(user, None, location=INSIDE)
        assert told["text"].startswith("This place belongs to: ")

        asked = await fed.say(user, "/report")
        category = next(
            b["callback_data"] for b in buttons(asked) if b["text"] == "Garbage piling up"
        )
        await fed.press(user, category, asked["message_id"])
        await reply(fed.fake, user)  # describe it
        photos = await fed.say(user, "Bins overflowing")
        skip = next(b["callback_data"] for b in buttons(photos) if b["text"].startswith("Skip"))
        await fed.press(user, skip, photos["message_id"])
        assert (await reply(fed.fake, user))["text"].startswith("Where is the problem?")
        for lat, lon in [(NAN, 113.632), (34.742, NAN), (INF, 113.632), (34.742, -INF)]:
            again = await fed.say(user, None, location=_location(lat, lon))
            assert again["text"] == NOT_A_PLACE
            assert keys(again["reply_markup"])[0] == {
                "text": "📍 Share my location",
                "request_location": True,
            }
        located = await fed.say(user, None, location=INSIDE)
        assert located["text"] == "📍 Qingtong Grid 1, Qingtong Community"
        summary = await reply(fed.fake, user)
        assert "Place: Qingtong Grid 1, Qingtong Community (from your location)" in summary["text"]


async def test_nan_at_the_duty_and_call_place_steps(db_url: str) -> None:
    async with fed_bot(db_url, FrozenClock(T0)) as fed:
        await add_secretary(db_url)

        # /duty: where the member lives.
        member = 5104
        assert (await fed.say(member, "/duty"))["text"].startswith("Reporting for duty")
        assert (await fed.say(member, "Zhang Wei"))["text"].startswith("Which Party branch")
        asked = await fed.say(member, "Qingtong Party branch")
        assert asked["text"].startswith("Where do you live?")
        for lat, lon in [(NAN, NAN), (91.0, 113.632), (34.742, -INF)]:
            again = await fed.say(member, None, location=_location(lat, lon))
            assert again["text"] == NOT_A_PLACE
            assert keys(again["reply_markup"])[0] == {
                "text": "📍 Share location",
                "request_location": True,
            }
        found = await fed.say(member, None, location=INSIDE)
        assert found["text"] == "Got it: that is where you live."

        # /call: where members meet (the secretary of Qingtong Community).
        secretary = 4001
        assert (await fed.say(secretary, "/call"))["text"].startswith("📣 A call")
        asked = await fed.say(secretary, "Clear the stairwell")
        assert asked["text"].startswith("What is there to do?")
        asked = await fed.say(secretary, "Skip")
        assert asked["text"].startswith("Where do members meet?")
        for lat, lon in [(NAN, 113.632), (34.742, 181.0), (INF, INF)]:
            again = await fed.say(secretary, None, location=_location(lat, lon))
            assert again["text"] == NOT_A_PLACE
            assert keys(again["reply_markup"])[0] == {
                "text": "📍 Share location",
                "request_location": True,
            }
        asked = await fed.say(secretary, None, location=INSIDE)
        assert asked["text"].startswith("When does it start?")


async def test_nan_at_check_in_checks_nobody_in(db_url: str) -> None:
    clock = FrozenClock(T0)
    async with fed_bot(db_url, clock) as fed:
        call_id = await world(db_url, clock)
        user = MEMBERS[0]
        async with session_of(db_url) as session:
            person = (await session.exec(select(Person).where(Person.telegram_id == user))).one()
            await answer_call(session=session, clock=clock, person=person, call_id=call_id)
        clock.set(T0 + timedelta(hours=2))  # the call starts: check-in is open
        check_in = CallAction(op=CallOp.CHECK_IN, id=call_id).pack()

        await fed.press(user, check_in)
        asked = await reply(fed.fake, user)
        assert asked["text"].startswith("Please press “📍 Share location” below to check in")
        # Refused, and asked again: the check-in dialog goes on.
        for lat, lon in [(NAN, 113.632), (91.0, 113.632), (34.742, -INF)]:
            told = await fed.say(user, None, location=_location(lat, lon))
            assert told["text"] == (
                "That location is not a real place, so you are not checked in. "
                "Please share your location again."
            )
            assert keys(told["reply_markup"]) == [
                {"text": "📍 Share location", "request_location": True}
            ]
            async with session_of(db_url) as session:
                claim = (await session.exec(select(CallClaim))).one()
            assert claim.checked_in_at is None

        told = await fed.say(user, None, location=NEAR)
        assert told["text"] == "✅ Checked in. Press “Check out” when you leave."


# -- button data with numbers no column holds ---------------------------------------------------


async def _counts(db_url: str) -> tuple[int, ...]:
    async with session_of(db_url) as session:
        return tuple(
            [
                (await session.exec(select(func.count()).select_from(table))).one()
                for table in (Ticket, TicketWatcher, AuditEntry, Member, CallClaim)
            ]
        )


async def test_huge_ids_in_buttons_no_longer_work(db_url: str) -> None:
    clock = FrozenClock(T0)
    # Many presses in a row: the per-person flood limit is not what this test is about.
    async with running_bot(db_url, clock=clock, flood_rate=1000.0, flood_burst=1000) as running:
        fake = running.fake
        await world(db_url, clock)  # a secretary, members and a call: something to change
        before = await _counts(db_url)
        # Button data as a forger writes it: each number where an id, offset or count goes.
        forged = [
            "t:a:{n}",  # a ticket card's Accept
            "t:o:{n}",
            "tr:{n}:not_mine",
            "td:1:{n}",  # re-dispatch to a grid
            "f:{n}:1",  # "is it solved?"
            "r:1:{n}",  # stars
            "m:{n}",  # me too
            "p:my:{n}",  # paging
            "p:queue:{n}",
            "md:{n}:1",  # approve a member
            "dc:y:{n}",  # I'll come
            "dc:i:{n}",  # check in
            "pp:c:{n}",  # claim a service post
            "as:c:{n}:1:1",  # confirm attendance
            "as:c:1:1:{n}",
            "w:o:{n}:0::0",  # the whistle's picker
            "s:in:{n}",  # a department reports in
            "ntc:{n}",  # turn into call
            "ms:{n}",  # a kind of service
            "tb:{n}",  # back to a ticket's card
            "rp:m:{n}",  # a community in the /report dialog
            "tsk:{n}",  # resolve without a photo
        ]
        for user in (4100, MEMBERS[0], 5105):  # the secretary, a member, a resident
            for data in forged:
                for n in (HUGE, -HUGE, 2**31):
                    answer = await press(fake, user, data.format(n=n), 1)
                    assert (answer.params["text"], answer.params["show_alert"]) == (
                        NO_LONGER_WORKS,
                        True,
                    ), data
        assert await _counts(db_url) == before


async def test_a_huge_community_id_at_the_community_step(db_url: str) -> None:
    async with running_bot(db_url, clock=FrozenClock(T0)) as running:
        fake = running.fake
        r = Resident(fake, 5109)
        await start_report(r, "Damaged road")
        await to_location_step(r, "Pothole")
        r.say("Choose community by hand")
        await r.reply()  # the reply keyboard goes
        r.press(await r.reply(), "List all communities")
        page = await r.reply()
        assert page["text"] == "Communities (1–6 of 8):"
        before = await _counts(db_url)
        for n in (HUGE, -HUGE, 2**31):
            answer = await press(fake, r.id, f"rp:m:{n}", page["message_id"])
            assert (answer.params["text"], answer.params["show_alert"]) == (NO_LONGER_WORKS, True)
        assert await _counts(db_url) == before
        # Still at the community step: a real community is taken.
        r.press(page, "Xinglin Community")
        grids = await r.reply()
        assert grids["text"] == "Which grid of Xinglin Community is it in?"


# -- text with NUL and other control characters ------------------------------------------------


async def test_nul_in_a_description_and_a_search_is_cleaned(db_url: str) -> None:
    async with running_bot(db_url) as running:
        r = Resident(running.fake, 5106)
        await start_report(r)
        await to_location_step(r, "Rubbish\x00 by the\x07 gate\r\nsince Monday\x1b")
        r.say("Choose community by hand")
        await r.reply()  # the reply keyboard goes
        await r.reply()  # type part of its name
        r.say("Qing\x00tong")  # a search typed with a NUL finds Qingtong
        r.press(await r.reply(), "Qingtong Grid 2")
        summary = await r.reply()
        assert "Description: Rubbish by the gate\nsince Monday\n" in summary["text"]
        await confirm(r, summary)
        # Only control characters: no description at all.
        await start_report(r)
        r.say("\x00\x00")
        assert await r.text() == "Please describe the problem in words."

    async with session_of(db_url) as session:
        [ticket] = (await session.exec(select(Ticket))).all()
    assert ticket.description == "Rubbish by the gate\nsince Monday"


async def test_nul_in_a_duty_registration_and_a_rejection_is_cleaned(db_url: str) -> None:
    async with running_bot(db_url, clock=FrozenClock(T0)) as running:
        fake = running.fake
        await add_secretary(db_url)
        member = 5107
        await say(fake, member, "/duty")
        assert (await say(fake, member, "\x00"))["text"].startswith(
            "Please write your full name as text"
        )
        await say(fake, member, "Zhang\x00 Wei")
        await say(fake, member, "Qingtong\x00 Party branch")
        await say(fake, member, None, location=INSIDE)
        asked = await reply(fake, member)  # the kinds of service
        services_done = next(
            b["callback_data"]
            for row in asked["reply_markup"]["inline_keyboard"]
            for b in row
            if b["callback_data"] == "ms:-1"
        )
        await press(fake, member, services_done, asked["message_id"])
        await reply(fake, member)  # skills?
        await say(fake, member, "first aid\x00, elec\x08trician, \x00")
        own = {"phone_number": "+86\x00139\x0000000000", "first_name": "Z", "user_id": member}
        summary = await say(fake, member, None, contact=own)
        assert "Zhang Wei" in summary["text"]
        assert "first aid, electrician" in summary["text"]
        assert "+8613900000000" in summary["text"]
        await press(fake, member, RegisterStep(step="ok").pack(), summary["message_id"])

        registration = await fake.wait_for_message(
            4001, lambda m: "Zhang Wei" in (m.get("text") or ""), timeout=10
        )
        async with session_of(db_url) as session:
            row = (await session.exec(select(Member))).one()
        reject = MemberDecision(id=row.id, ok=False).pack()
        await press(fake, 4001, reject, registration["message_id"])
        await reply(fake, 4001)  # why?
        await say(fake, 4001, "Lives in\x00 another community")

    async with session_of(db_url) as session:
        row = (await session.exec(select(Member))).one()
    assert (row.full_name, row.branch, row.skills, row.phone) == (
        "Zhang Wei",
        "Qingtong Party branch",
        ["first aid", "electrician"],
        "+8613900000000",
    )
    assert (row.status, row.reject_reason) == (MemberStatus.REJECTED, "Lives in another community")


async def test_nul_in_invite_arguments_is_cleaned(db_url: str) -> None:
    async with fed_bot(db_url, FrozenClock(T0)) as fed:
        admin = 5110
        async with session_of(db_url) as session:
            district = (await session.exec(select(OrgUnit).where(OrgUnit.code == "EQ"))).one()
            person = Person(telegram_id=admin, full_name="Admin", language="en")
            session.add(person)
            await session.flush()
            session.add(RoleAssignment(person_id=person.id, role=Role.ADMIN, unit_id=district.id))
            await session.commit()

        told = await fed.say(admin, "/invite grid_leader EQ-JZJ\x00-NOPE")
        assert told["text"] == "There is no unit with code EQ-JZJ-NOPE."
        told = await fed.say(admin, "/invite grid\x00_leader EQ-JZJ-01\x07-G1")
        assert told["text"].startswith("Invitation for grid leader of Qingtong Grid 1:\n")

    async with session_of(db_url) as session:
        assert len((await session.exec(select(Invitation))).all()) == 1


async def test_nul_in_a_telegram_profile_is_cleaned(db_url: str) -> None:
    clock = FrozenClock(T0)
    async with fed_bot(db_url, clock) as fed:
        user, other = 5111, 5112
        # Names no Telegram client sends: only a forged update carries them.
        fed.profiles[user] = {
            "first_name": "Wang\x00",
            "last_name": "Fang\x07",
            "username": "w\x00f",
        }
        fed.profiles[other] = {"first_name": "\x00", "username": "u" * 80}

        async def person(telegram_id: int) -> Person:
            async with session_of(db_url) as session:
                query = select(Person).where(Person.telegram_id == telegram_id)
                return (await session.exec(query)).one()

        for who in (user, other):
            assert (await fed.say(who, "/help"))["text"] != (
                "Sorry, something went wrong and nothing was changed. Please try again later."
            )
        first = await person(user)
        assert (first.full_name, first.username) == ("Wang Fang", "wf")
        assert (await person(other)).full_name == ""
        assert (await person(other)).username == "u" * 64

        # The same profile again is no change (compared cleaned), a new name is.
        clock.advance(timedelta(minutes=5))
        await fed.say(user, "/help")
        assert (await person(user)).updated_at == first.updated_at
        fed.profiles[user] = {"first_name": "Wang\x00", "last_name": "Li", "username": "w\x00f"}
        await fed.say(user, "/help")
        renamed = await person(user)
        assert (renamed.full_name, renamed.updated_at) == ("Wang Li", T0 + timedelta(minutes=5))
