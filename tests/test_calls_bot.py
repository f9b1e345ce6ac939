"""The community's calls to Party members, end to end: I'll come (until full), Can't,
Withdraw, the reminder, check-in by shared location (too far, then near), check-out.

The running bot against the fake Bot API, on SQLite and PostgreSQL; the sample city is loaded
by the bot; the secretary, the members and the call are created here with domain functions,
and the call reaches the members through the bot's outbox sender.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from domain.calls import create_call, remind_calls
from domain.clock import FrozenClock
from storage.enums import MemberStatus, Role
from storage.models import CallClaim, Member, OrgUnit, Person, RoleAssignment
from tests.botkit import running_bot
from tests.test_member_bot import buttons, keys, press, reply, say, session_of
from views.buttons import CallAction, CallOp

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # 10:00 in the city
COMMUNITY = "EQ-JZJ-01"
PLACE = (34.742, 113.632)
NEAR = {"latitude": 34.7435, "longitude": 113.632}  # about 170 m north
FAR = {"latitude": 34.7475, "longitude": 113.632}  # about 610 m north
SECRETARY = 4100
MEMBERS = [4101, 4102, 4103, 4104]
IDLE = 4105  # an approved member who never answers


async def world(url: str, clock: FrozenClock) -> int:
    """The secretary, five approved members and a call for 3 places; the call's id."""
    async with session_of(url) as session:
        unit = (await session.exec(select(OrgUnit).where(OrgUnit.code == COMMUNITY))).one()
        secretary = Person(telegram_id=SECRETARY, full_name="Chen Jing", language="en")
        session.add(secretary)
        await session.flush()
        session.add(
            RoleAssignment(person_id=secretary.id, role=Role.COMMUNITY_SECRETARY, unit_id=unit.id)
        )
        for n, telegram_id in enumerate([*MEMBERS, IDLE]):
            person = Person(telegram_id=telegram_id, full_name=f"Member {n}", language="en")
            session.add(person)
            await session.flush()
            session.add(
                Member(
                    person_id=person.id,
                    full_name=f"Member {n}",
                    branch="Qingtong Party branch",
                    community_id=unit.id,
                    status=MemberStatus.APPROVED,
                )
            )
        await session.commit()
        call, sent = await create_call(
            session=session,
            clock=clock,
            actor=secretary,
            community_id=unit.id,
            title="Clear the stairwell",
            description="Building 3",
            latitude=PLACE[0],
            longitude=PLACE[1],
            starts_at=T0 + timedelta(hours=2),
            ends_at=T0 + timedelta(hours=4),
            capacity=3,
        )
        assert sent == 5
        return call.id


CALL_TEXT = (
    "📣 Your community calls for help: Clear the stairwell\n"
    "Building 3\n"
    "When: 2026-11-25 12:00–14:00\n"
    "Where: the place on the map above"
)
REMINDER_TEXT = (
    "⏰ Reminder: Clear the stairwell\n"
    "Building 3\n"
    "When: 2026-11-25 12:00–14:00\n"
    "Where: the place on the map above\n"
    "On site, press “📍 Check in”; when you leave, “Check out”."
)
VENUE = {
    "location": {"latitude": PLACE[0], "longitude": PLACE[1]},
    "title": "Clear the stairwell",
    "address": "2026-11-25 12:00–14:00",
}


def data(op: CallOp, call_id: int) -> str:
    return CallAction(op=op, id=call_id).pack()


async def test_call_claim_check_in_and_out(db_url: str) -> None:
    clock = FrozenClock(T0)
    async with running_bot(db_url, clock=clock) as running:
        fake = running.fake
        call_id = await world(db_url, clock)
        come, cant = data(CallOp.COME, call_id), data(CallOp.CANT, call_id)
        cards = {}
        for user in [*MEMBERS, IDLE]:
            card = await reply(fake, user)
            assert card["text"] == CALL_TEXT
            assert buttons(card["reply_markup"]) == [("🙋 I'll come", come), ("Can't", cant)]
            cards[user] = card["message_id"]
            # Where: the call's place as a venue, just before the card that points to it.
            assert [m["method"] for m in fake.sent(user)] == ["sendVenue", "sendMessage"]
            assert fake.sent(user)[0]["venue"] == VENUE

        # Three places: the first three are in, the fourth is told the call is full.
        for user in MEMBERS[:3]:
            answer = await press(fake, user, come, cards[user])
            assert answer.params["text"] == "You're in."
            told = await reply(fake, user)
            assert told["text"].startswith("You're in — thank you!")
            assert buttons(told["reply_markup"]) == [("Withdraw", data(CallOp.WITHDRAW, call_id))]
        full = await press(fake, MEMBERS[3], come, cards[MEMBERS[3]])
        assert full.params["text"] == "Sorry, this call is full: all 3 places are taken."
        assert full.params["show_alert"] is True
        thanks = await press(fake, IDLE, cant, cards[IDLE])
        assert thanks.params["text"] == "Thanks for letting us know."

        # The third withdraws; the fourth gets the place after all.
        gone = await press(fake, MEMBERS[2], data(CallOp.WITHDRAW, call_id), cards[MEMBERS[2]])
        assert gone.params["text"] == "You have withdrawn; your place is free again."
        answer = await press(fake, MEMBERS[3], come, cards[MEMBERS[3]])
        assert answer.params["text"] == "You're in."
        await reply(fake, MEMBERS[3])

        # The reminder reaches those coming, with Check in / Check out.
        clock.advance(timedelta(hours=1, minutes=30))
        async with session_of(db_url) as session:
            assert await remind_calls(session=session, clock=clock, before=timedelta(hours=1)) == 3
        check_in, check_out = data(CallOp.CHECK_IN, call_id), data(CallOp.CHECK_OUT, call_id)
        for user in (MEMBERS[0], MEMBERS[1], MEMBERS[3]):
            reminder = await reply(fake, user)
            assert reminder["text"] == REMINDER_TEXT
            assert fake.sent(user)[-2]["venue"] == VENUE
            assert buttons(reminder["reply_markup"]) == [
                ("📍 Check in", check_in),
                ("Check out", check_out),
            ]
        user = MEMBERS[0]

        # At the start: check in far away (too far), then near (accepted).
        clock.set(T0 + timedelta(hours=2))
        await press(fake, user, check_in, reminder["message_id"])
        asked = await reply(fake, user)
        assert asked["text"].startswith("Please press “📍 Share location” below to check in")
        assert keys(asked["reply_markup"]) == [
            {"text": "📍 Share location", "request_location": True}
        ]
        told = await say(fake, user, None, location=FAR)
        assert told["text"].startswith("You are 6")
        assert told["text"].endswith("m from the call's place; check-in works within 300 m.")
        assert keys(told["reply_markup"]) == [
            {"text": "📍 Share location", "request_location": True}
        ]
        told = await say(fake, user, None, location=NEAR)
        assert told["text"] == "✅ Checked in. Press “Check out” when you leave."
        assert told["reply_markup"] == {"remove_keyboard": True}

        # 45 minutes later: check out, the minutes counted.
        clock.advance(timedelta(minutes=45))
        out = await press(fake, user, check_out, reminder["message_id"])
        assert out.params["text"] == "Checked out: 45 minutes counted. Thank you!"
        told = await reply(fake, user)
        assert told["text"] == "Checked out: 45 minutes counted. Thank you!"

        # A member without a place pressing Check in is told so at once, not asked for a place.
        refused = await press(fake, IDLE, check_in, cards[IDLE])
        assert refused.params["text"] == "You have not said you will come to this call."
        assert refused.params["show_alert"] is True
        told = await say(fake, IDLE, None, location=NEAR)  # no check-in dialog was opened
        assert told["text"].startswith("This place belongs to: ")

        # Checked out already: Check in says so.
        again = await press(fake, user, check_in, reminder["message_id"])
        assert again.params["text"] == "You have already checked out."

        # After the end: the call is over, with its end in the city's time.
        clock.set(T0 + timedelta(hours=4))
        late = await press(fake, MEMBERS[1], check_in, reminder["message_id"])
        assert late.params["text"] == ("This call ended at 2026-11-25 14:00; check-in is closed.")
        assert fake.calls_to("sendMessage", MEMBERS[1])[-1].params["text"].startswith("⏰ Reminder")


async def test_check_in_says_at_once_why_not(db_url: str) -> None:
    """Check in is checked before the location is asked for: too early (with the opening
    time), already checked in; only a possible check-in asks for the location."""
    clock = FrozenClock(T0)
    async with running_bot(db_url, clock=clock) as running:
        fake = running.fake
        call_id = await world(db_url, clock)
        user = MEMBERS[0]
        card = await reply(fake, user)
        await press(fake, user, data(CallOp.COME, call_id), card["message_id"])
        await reply(fake, user)
        check_in = data(CallOp.CHECK_IN, call_id)

        early = await press(fake, user, check_in, card["message_id"])
        assert early.params["text"] == (
            "Check-in is open from 2026-11-25 11:30 until 2026-11-25 14:00."
        )
        assert early.params["show_alert"] is True
        assert fake.calls_to("sendMessage", user)[-1].params["text"].startswith("You're in")

        clock.set(T0 + timedelta(hours=1, minutes=30))  # the window opens
        await press(fake, user, check_in, card["message_id"])
        asked = await reply(fake, user)
        assert asked["text"].startswith("Please press “📍 Share location” below to check in")
        told = await say(fake, user, None, location=NEAR)
        assert told["text"] == "✅ Checked in. Press “Check out” when you leave."

        again = await press(fake, user, check_in, card["message_id"])
        assert again.params["text"] == "You are already checked in."
        async with session_of(db_url) as session:
            claim = (await session.exec(select(CallClaim))).one()
            assert claim.checked_in_at == T0 + timedelta(hours=1, minutes=30)


async def _asked_for_a_place(fake, db_url: str, clock: FrozenClock, user) -> dict:
    """A member says "I'll come" to a call, and two hours later presses Check in: the bot's
    request for their location."""
    call_id = await world(db_url, clock)
    card = await reply(fake, user)
    await press(fake, user, data(CallOp.COME, call_id), card["message_id"])
    await reply(fake, user)
    clock.set(T0 + timedelta(hours=2))
    await press(fake, user, data(CallOp.CHECK_IN, call_id), card["message_id"])
    return await reply(fake, user)


async def test_an_impossible_location_at_check_in_is_asked_again(db_url: str) -> None:
    """A location no place on Earth has is refused, and the same check-in asks again."""
    clock = FrozenClock(T0)
    async with running_bot(db_url, clock=clock) as running:
        fake, user = running.fake, MEMBERS[0]
        asked = await _asked_for_a_place(fake, db_url, clock, user)
        assert asked["text"].startswith("Please press “📍 Share location” below to check in")
        for impossible in ({"latitude": 91.0, "longitude": 113.632}, {**NEAR, "longitude": 181.0}):
            told = await say(fake, user, None, location=impossible)
            assert told["text"] == (
                "That location is not a real place, so you are not checked in. "
                "Please share your location again."
            )
            assert keys(told["reply_markup"]) == [
                {"text": "📍 Share location", "request_location": True}
            ]
        # Still checking in: the next location is taken without pressing Check in again.
        told = await say(fake, user, None, location=NEAR)
        assert told["text"] == "✅ Checked in. Press “Check out” when you leave."
        async with session_of(db_url) as session:
            claim = (await session.exec(select(CallClaim))).one()
        assert claim.checked_in_at == T0 + timedelta(hours=2)


async def test_cancel_while_checking_in_says_check_in_was_cancelled(db_url: str) -> None:
    """/cancel at the location step drops the check-in, in its own words (the call itself is
    not cancelled: that text is the organiser's)."""
    clock = FrozenClock(T0)
    async with running_bot(db_url, clock=clock) as running:
        fake, user = running.fake, MEMBERS[0]
        await _asked_for_a_place(fake, db_url, clock, user)
        told = await say(fake, user, "/cancel")
        assert told["text"] == "Check-in cancelled."
        assert told["reply_markup"] == {"remove_keyboard": True}
        # Nobody was checked in.
        async with session_of(db_url) as session:
            claim = (await session.exec(select(CallClaim))).one()
        assert claim.checked_in_at is None


async def test_the_check_in_radius_and_window_come_from_the_settings(db_url: str) -> None:
    clock = FrozenClock(T0)
    async with running_bot(
        db_url, clock=clock, check_in_radius_m=1000, check_in_early_minutes=90
    ) as running:
        fake = running.fake
        call_id = await world(db_url, clock)
        user = MEMBERS[0]
        card = await reply(fake, user)
        await press(fake, user, data(CallOp.COME, call_id), card["message_id"])
        await reply(fake, user)
        check_in = data(CallOp.CHECK_IN, call_id)

        # 95 minutes before the start: still too early with check-in opening 90 minutes before.
        clock.set(T0 + timedelta(minutes=25))
        early = await press(fake, user, check_in, card["message_id"])
        assert early.params["text"] == (
            "Check-in is open from 2026-11-25 10:30 until 2026-11-25 14:00."
        )
        # 80 minutes before: open; and 610 m away is inside a 1,000 m radius.
        clock.set(T0 + timedelta(minutes=40))
        await press(fake, user, check_in, card["message_id"])
        asked = await reply(fake, user)
        assert asked["text"].startswith("Please press “📍 Share location” below to check in")
        told = await say(fake, user, None, location=FAR)
        assert told["text"] == "✅ Checked in. Press “Check out” when you leave."
        async with session_of(db_url) as session:
            claim = (await session.exec(select(CallClaim))).one()
            assert claim.checked_in_at == T0 + timedelta(minutes=40)


async def test_a_member_coming_after_the_reminder_gets_it_at_once(db_url: str) -> None:
    """The reminder goes once, to those coming then; one who says "I'll come" later gets it
    at once (with its venue), so everyone coming has a Check in button."""
    clock = FrozenClock(T0)
    async with running_bot(db_url, clock=clock) as running:
        fake, user = running.fake, MEMBERS[0]
        call_id = await world(db_url, clock)
        card = await reply(fake, user)
        clock.advance(timedelta(hours=1, minutes=30))
        async with session_of(db_url) as session:
            assert await remind_calls(session=session, clock=clock, before=timedelta(hours=1)) == 0

        await press(fake, user, data(CallOp.COME, call_id), card["message_id"])
        told = await reply(fake, user)
        assert told["text"].startswith("You're in — thank you!")
        reminder = await reply(fake, user)
        assert reminder["text"] == REMINDER_TEXT
        assert fake.sent(user)[-2]["venue"] == VENUE
        check_in = data(CallOp.CHECK_IN, call_id)
        assert buttons(reminder["reply_markup"]) == [
            ("📍 Check in", check_in),
            ("Check out", data(CallOp.CHECK_OUT, call_id)),
        ]
        await press(fake, user, check_in, reminder["message_id"])
        asked = await reply(fake, user)
        assert asked["text"].startswith("Please press “📍 Share location” below to check in")
        told = await say(fake, user, None, location=NEAR)
        assert told["text"] == "✅ Checked in. Press “Check out” when you leave."

        # The call was reminded once: a later sweep reminds nobody again.
        async with session_of(db_url) as session:
            assert await remind_calls(session=session, clock=clock, before=timedelta(hours=1)) == 0
        reminders = [m for m in fake.sent(user) if m.get("text") == REMINDER_TEXT]
        assert len(reminders) == 1


async def test_me_shows_each_call_ahead_with_its_place_and_what_may_be_pressed(
    db_url: str,
) -> None:
    """/me lists the calls ahead from when to when, each with a button that shows its place
    and what may be pressed now: Withdraw before the start, Check in once check-in opens."""
    clock = FrozenClock(T0)
    async with running_bot(db_url, clock=clock) as running:
        fake, user = running.fake, MEMBERS[0]
        call_id = await world(db_url, clock)
        card = await reply(fake, user)
        await press(fake, user, data(CallOp.COME, call_id), card["message_id"])
        await reply(fake, user)
        show = data(CallOp.SHOW, call_id)
        withdraw = ("Withdraw", data(CallOp.WITHDRAW, call_id))
        check = [
            ("📍 Check in", data(CallOp.CHECK_IN, call_id)),
            ("Check out", data(CallOp.CHECK_OUT, call_id)),
        ]
        coming = CALL_TEXT.replace("📣 Your community calls for help:", "🙋 You are coming:")

        me = await say(fake, user, "/me")
        assert "Calls ahead:\n• Clear the stairwell: 2026-11-25 12:00–14:00" in me["text"]
        assert buttons(me["reply_markup"]) == [("📍 Clear the stairwell", show)]

        # Before check-in opens: the place, and Withdraw.
        await press(fake, user, show, me["message_id"])
        shown = await reply(fake, user)
        assert shown["text"] == coming
        assert fake.sent(user)[-2]["venue"] == VENUE
        assert buttons(shown["reply_markup"]) == [withdraw]

        # Check-in open, before the start: Check in / Check out, and still Withdraw.
        clock.set(T0 + timedelta(hours=1, minutes=45))
        await press(fake, user, show, me["message_id"])
        shown = await reply(fake, user)
        assert buttons(shown["reply_markup"]) == [*check, withdraw]
        await press(fake, user, check[0][1], shown["message_id"])
        await reply(fake, user)
        await say(fake, user, None, location=NEAR)

        # Checked in: Check out stays (Check in says "already"), Withdraw is gone.
        await press(fake, user, show, me["message_id"])
        shown = await reply(fake, user)
        assert buttons(shown["reply_markup"]) == check

        # Another member, not coming: the button refuses, naming why.
        refused = await press(fake, MEMBERS[1], show, card["message_id"])
        assert refused.params["text"] == "You have not said you will come to this call."
