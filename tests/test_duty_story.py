"""Issue 5's story, end to end in chat: Party members report for duty, the community calls,
they come, check in and out, the organiser confirms, and /me shows the hours and points.

Everything happens through the running bot against the fake Bot API over loopback HTTP, on
SQLite and PostgreSQL, with the bot's own scheduler sweeping (reminders, forgotten check-outs,
"attendance waits"). The sample city is loaded by the bot; the only rows made here are what an
administrator would set up: the two community secretaries' roles. The members register with
/duty themselves; rows are only read, to check what the chat said.

Bad inputs on the way: a claim after the call is full, a member of another community, a
check-in before the window, without a claim, too far away, and after the call is over. The
second test holds the refusals that do not fit the story (another community's secretary, a
member posting a call, a pending member, a claim after the start).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from sqlmodel import select

from domain.clock import FrozenClock
from handlers.member import RegisterStep
from storage.enums import MemberStatus, Role
from storage.models import (
    AuditEntry,
    CallClaim,
    DutyCall,
    Member,
    OrgUnit,
    Person,
    RoleAssignment,
)
from tests.botkit import running_bot
from tests.fake_telegram import FakeTelegram
from tests.test_member_bot import buttons, keys, press, reply, say, session_of
from views.buttons import CallAction, CallOp, DutyService, MemberDecision, Sheet, SheetOp

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # Wednesday 10:00 in the city (UTC+8)


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A time on November `day` in the city, as UTC."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


QINGTONG, SONGFENG = "EQ-JZJ-01", "EQ-JZJ-02"
SECRETARY, OTHER_SECRETARY = 4300, 4309
# The five members of Qingtong, where they live (one in each grid, two in Grid 1).
FIVE = {
    4301: ("Li Ming", {"latitude": 34.742, "longitude": 113.632}, "Qingtong Grid 1"),
    4302: ("Wang Fang", {"latitude": 34.742, "longitude": 113.637}, "Qingtong Grid 2"),
    4303: ("Zhao Lei", {"latitude": 34.747, "longitude": 113.632}, "Qingtong Grid 3"),
    4304: ("Sun Li", {"latitude": 34.747, "longitude": 113.637}, "Qingtong Grid 4"),
    4305: ("Zhou Jie", {"latitude": 34.743, "longitude": 113.633}, "Qingtong Grid 1"),
}
LI, WANG, ZHAO, SUN, ZHOU = FIVE
OUTSIDER = 4306  # approved by Songfeng's secretary
OUTSIDER_HOME = {"latitude": 34.742, "longitude": 113.642}  # Songfeng Grid 1

PLACE = {"latitude": 34.742, "longitude": 113.632}  # where the call meets
FAR = {"latitude": 34.7474, "longitude": 113.632}  # 600 m north of it
NEAR = {"latitude": 34.7429, "longitude": 113.632}  # 100 m north of it
TITLE = "Clear the snow"


async def told(fake: FakeTelegram, user: int, start: str) -> dict:
    """The next message to the user whose text starts so (others stay for later)."""
    return await fake.wait_for_message(
        user, lambda m: (m.get("text") or "").startswith(start), timeout=15
    )


def button(message: dict, label: str) -> str:
    """The callback data of the button with that label on a message (it must be there)."""
    found = [data for text, data in buttons(message.get("reply_markup")) if text == label]
    assert found, f"no button {label!r} in {buttons(message.get('reply_markup'))}"
    return found[0]


def last_edit(fake: FakeTelegram, chat: int) -> dict:
    return fake.calls_to("editMessageText", chat)[-1].params


async def add_secretaries(url: str) -> None:
    """What an administrator sets up: a secretary for Qingtong and one for Songfeng."""
    async with session_of(url) as session:
        for telegram_id, code, name in (
            (SECRETARY, QINGTONG, "Chen Jing"),
            (OTHER_SECRETARY, SONGFENG, "Gao Yan"),
        ):
            unit = (await session.exec(select(OrgUnit).where(OrgUnit.code == code))).one()
            person = Person(telegram_id=telegram_id, full_name=name, language="en")
            session.add(person)
            await session.flush()
            session.add(
                RoleAssignment(person_id=person.id, role=Role.COMMUNITY_SECRETARY, unit_id=unit.id)
            )
        await session.commit()


async def member_of(url: str, telegram_id: int) -> Member | None:
    async with session_of(url) as session:
        return (
            await session.exec(
                select(Member)
                .join(Person, Person.id == Member.person_id)
                .where(Person.telegram_id == telegram_id)
            )
        ).first()


async def register(fake: FakeTelegram, user: int, name: str, home: dict, place: str) -> None:
    """/duty in chat: name, branch, the shared location, one service, a skill, no phone."""
    asked = await say(fake, user, "/duty")
    assert asked["text"].startswith("Reporting for duty with your community.")
    asked = await say(fake, user, name)
    assert asked["text"].startswith("Which Party branch or work unit")
    asked = await say(fake, user, "Jianzhongjie Party branch")
    assert asked["text"].startswith("Where do you live?")
    found = await say(fake, user, None, location=home)
    assert found["text"] == "Got it: that is where you live."
    asked = await reply(fake, user)
    assert asked["text"].startswith("What kinds of service can you offer?")
    await press(fake, user, DutyService(i=1).pack(), asked["message_id"])  # Safety patrol
    await press(fake, user, DutyService(i=-1).pack(), asked["message_id"])  # Done
    asked = await reply(fake, user)
    assert asked["text"].startswith("Your skills")
    asked = await say(fake, user, "first aid")
    assert asked["text"].startswith("Your phone number")
    summary = await say(fake, user, "Skip")
    assert summary["text"] == (
        "Please check your registration:\n"
        f"Name: {name}\n"
        "Branch / work unit: Jianzhongjie Party branch\n"
        f"Community: {place}\n"
        "Services: Safety patrol\n"
        "Skills: first aid\n"
        "Phone: —"
    )
    await press(fake, user, RegisterStep(step="ok").pack(), summary["message_id"])
    done = await reply(fake, user)
    assert done["text"].startswith("Thank you! Your registration has been sent")


async def approve(fake: FakeTelegram, secretary: int, user: int, name: str, lives: str) -> None:
    """The secretary gets the registration card (where the member lives too) and presses
    Approve; the member is told."""
    card = await told(fake, secretary, "🙋")
    assert card["text"] == (
        "🙋 A Party member reports for duty with your community\n"
        f"Name: {name}\n"
        "Branch / work unit: Jianzhongjie Party branch\n"
        f"Lives in: {lives}\n"
        "Offers: Safety patrol\n"
        "Skills: first aid"
    )
    answer = await press(fake, secretary, button(card, "✅ Approve"), card["message_id"])
    assert answer.params["text"] == f"{name} approved; they have been told."
    decision = await told(fake, user, "✅")
    assert decision["text"].startswith("✅ Your registration for duty has been approved")


@asynccontextmanager
async def story_bot(db_url: str, clock: FrozenClock) -> AsyncIterator[FakeTelegram]:
    """The bot with its scheduler sweeping often (it reads the frozen clock each time)."""
    async with running_bot(db_url, clock=clock, scheduler=True, sweep_interval=0.05) as running:
        await add_secretaries(db_url)
        yield running.fake


async def post_call(fake: FakeTelegram, *, sent: int = 5) -> None:
    """The secretary's /call: tomorrow 09:00-11:00, 3 people, the whole community."""
    asked = await say(fake, SECRETARY, "/call")
    assert asked["text"].startswith("📣 A call to the Party members of Qingtong Community.")
    asked = await say(fake, SECRETARY, TITLE)
    assert asked["text"].startswith("What is there to do?")
    asked = await say(fake, SECRETARY, "Shovel the paths of buildings 1 to 4.")
    assert asked["text"].startswith("Where do members meet?")
    asked = await say(fake, SECRETARY, None, location=PLACE)
    assert asked["text"].startswith("When does it start?")
    asked = await say(fake, SECRETARY, "2026-11-26 09:00")
    assert asked["text"].startswith("Starts 2026-11-26 09:00. When does it end?")
    asked = await say(fake, SECRETARY, "11:00")
    assert asked["text"] == "How many people are needed? Write a number from 1 to 500."
    picker = await say(fake, SECRETARY, "3")
    assert picker["text"].startswith("Which members are called? The whole community")
    assert buttons(picker["reply_markup"])[0][0] == "✅ Whole community"
    await press(fake, SECRETARY, button(picker, "Next ➡️"), picker["message_id"])
    summary = await reply(fake, SECRETARY)
    assert summary["text"] == "\n".join(
        [
            "Please check the call:",
            "Community: Qingtong Community",
            f"Title: {TITLE}",
            "Description: Shovel the paths of buildings 1 to 4.",
            "Place: the shared location (34.74200, 113.63200)",
            "Starts: 2026-11-26 09:00",
            "Ends: 2026-11-26 11:00",
            "People needed: 3",
            "Called: Whole community",
            "Points: 1 per confirmed hour.",
        ]
    )
    await press(fake, SECRETARY, button(summary, "✅ Confirm"), summary["message_id"])
    posted = await reply(fake, SECRETARY)
    members = "1 member" if sent == 1 else f"{sent} members"
    assert posted["text"] == f"📣 Call posted: “{TITLE}” was sent to {members}."


async def test_party_members_on_duty_the_whole_story(db_url: str) -> None:
    clock = FrozenClock(T0)
    async with story_bot(db_url, clock) as fake:
        # 1-2. Five people register with /duty where they live; the secretary approves each.
        for user, (name, home, place) in FIVE.items():
            await register(fake, user, name, home, f"Qingtong Community › {place}")
            assert (await member_of(db_url, user)).status == MemberStatus.PENDING
            await approve(fake, SECRETARY, user, name, f"Qingtong Community › {place}")
            assert (await member_of(db_url, user)).status == MemberStatus.APPROVED
        # One more registers in Songfeng, and Songfeng's secretary (not Qingtong's) approves.
        await register(
            fake, OUTSIDER, "Wu Gang", OUTSIDER_HOME, "Songfeng Community › Songfeng Grid 1"
        )
        await approve(
            fake, OTHER_SECRETARY, OUTSIDER, "Wu Gang", "Songfeng Community › Songfeng Grid 1"
        )
        assert not [m for m in fake.sent(SECRETARY) if "Wu Gang" in (m.get("text") or "")]

        # 3. The secretary calls: the five get it with I'll come / Can't; Songfeng's does not.
        await post_call(fake)
        async with session_of(db_url) as session:
            call = (await session.exec(select(DutyCall))).one()
        assert (call.starts_at, call.ends_at, call.capacity) == (
            local(26, 9),
            local(26, 11),
            3,
        )
        come = CallAction(op=CallOp.COME, id=call.id).pack()
        cant = CallAction(op=CallOp.CANT, id=call.id).pack()
        cards = {}
        for user in FIVE:
            card = await told(fake, user, "📣")
            assert card["text"] == (
                f"📣 Your community calls for help: {TITLE}\n"
                "Shovel the paths of buildings 1 to 4.\n"
                "When: 2026-11-26 09:00–11:00\n"
                "Where: the place on the map above"
            )
            assert buttons(card["reply_markup"]) == [("🙋 I'll come", come), ("Can't", cant)]
            cards[user] = card["message_id"]
        assert not [m for m in fake.sent(OUTSIDER) if TITLE in (m.get("text") or "")]

        # 4. Three are in; the 4th and a 5th press are told it is full; a forged press from
        # Songfeng is refused; pressing again says so.
        for user in (LI, WANG, ZHAO):
            answer = await press(fake, user, come, cards[user])
            assert answer.params["text"] == "You're in."
            told_in = await told(fake, user, "You're in")
            assert buttons(told_in["reply_markup"]) == [
                ("Withdraw", CallAction(op=CallOp.WITHDRAW, id=call.id).pack())
            ]
        for user in (SUN, ZHOU):
            full = await press(fake, user, come, cards[user])
            assert full.params["text"] == "Sorry, this call is full: all 3 places are taken."
            assert full.params["show_alert"] is True
        forged = await press(fake, OUTSIDER, come, 1)
        assert forged.params["text"] == "This call is for another community or other grids."
        assert forged.params["show_alert"] is True
        again = await press(fake, LI, come, cards[LI])
        assert again.params["text"] == "You have already said you will come."
        async with session_of(db_url) as session:
            assert (await session.get(DutyCall, call.id)).claimed == 3
            claims = (await session.exec(select(CallClaim))).all()
        assert len(claims) == 3

        # The scheduler reminds the three an hour before; Check in is not open yet at 08:10.
        clock.set(local(26, 8, 10))
        check_in = CallAction(op=CallOp.CHECK_IN, id=call.id).pack()
        check_out = CallAction(op=CallOp.CHECK_OUT, id=call.id).pack()
        reminders = {}
        for user in (LI, WANG, ZHAO):
            reminder = await told(fake, user, "⏰")
            assert reminder["text"].startswith(f"⏰ Reminder: {TITLE}\nShovel the paths")
            assert "When: 2026-11-26 09:00–11:00" in reminder["text"]
            assert buttons(reminder["reply_markup"]) == [
                ("📍 Check in", check_in),
                ("Check out", check_out),
            ]
            reminders[user] = reminder["message_id"]
        assert not [m for m in fake.sent(SUN) if (m.get("text") or "").startswith("⏰")]
        early = await press(fake, LI, check_in, reminders[LI])
        assert early.params["text"] == (
            "Check-in is open from 2026-11-26 08:30 until 2026-11-26 11:00."
        )

        # 5. 09:30: Sun (no place) forges Check in: told so. Li: 600 m away is refused, 100 m
        # is accepted. Wang checks in too. Zhao never does.
        clock.set(local(26, 9, 30))
        refused = await press(fake, SUN, check_in, cards[SUN])
        assert refused.params["text"] == "You have not said you will come to this call."
        assert refused.params["show_alert"] is True
        await press(fake, LI, check_in, reminders[LI])
        asked = await told(fake, LI, "Please press")
        assert asked["text"].startswith("Please press “📍 Share location” below to check in")
        assert keys(asked["reply_markup"]) == [
            {"text": "📍 Share location", "request_location": True}
        ]
        too_far = await say(fake, LI, None, location=FAR)
        assert too_far["text"] == (
            "You are 600 m from the call's place; check-in works within 300 m."
        )
        checked = await say(fake, LI, None, location=NEAR)
        assert checked["text"] == "✅ Checked in. Press “Check out” when you leave."
        await press(fake, WANG, check_in, reminders[WANG])
        await told(fake, WANG, "Please press")
        checked = await say(fake, WANG, None, location=NEAR)
        assert checked["text"] == "✅ Checked in. Press “Check out” when you leave."

        # 6. 10:45: Li checks out, 09:30-10:45 counted; Wang never checks out.
        clock.set(local(26, 10, 45))
        out = await press(fake, LI, check_out, reminders[LI])
        assert out.params["text"] == "Checked out: 75 minutes counted. Thank you!"
        assert (await told(fake, LI, "Checked out"))["text"] == out.params["text"]

        # 7. Past the end: the sweep closes Wang's check-out and tells the organiser that
        # attendance waits; Zhao's Check in now is told the call is over.
        clock.set(local(26, 11, 5))
        due = await told(fake, SECRETARY, "🕒")
        assert due["text"] == (
            f"🕒 {TITLE} ended at 2026-11-26 11:00. "
            "3 members said they would come: please confirm who came."
        )
        late = await press(fake, ZHAO, check_in, reminders[ZHAO])
        assert late.params["text"] == "This call ended at 2026-11-26 11:00; check-in is closed."
        assert late.params["show_alert"] is True

        # 8. The secretary's /calls, the call's sheet (Wang's missing check-out marked, Zhao
        # already "did not come"), Confirm.
        listed = await say(fake, SECRETARY, "/calls")
        assert listed["text"] == (
            "Your calls (1–1 of 1), latest first:\n"
            f"1. {TITLE} — 2026-11-26 09:00\n"
            "    3/3 places · over: 3 to confirm"
        )
        await press(fake, SECRETARY, button(listed, f"1. {TITLE}"), listed["message_id"])
        sheet = await told(fake, SECRETARY, "📋")
        assert sheet["text"].endswith(
            "Attendance — press a name to change its mark, then “Confirm attendance”:\n"
            "1. ✅ Li Ming — in 09:30, out 10:45, 75 minutes\n"
            "2. ✅ Wang Fang — in 09:30, ⚠️ never checked out (closed at the end, 11:00), "
            "90 minutes\n"
            "3. ❌ Zhao Lei — did not check in"
        )
        assert [label for label, _ in buttons(sheet["reply_markup"])] == [
            "1. Li Ming: ✅ came",
            "2. Wang Fang: ✅ came",
            "3. Zhao Lei: ❌ did not come",
            "✔️ Confirm attendance",
        ]
        done = await press(
            fake, SECRETARY, button(sheet, "✔️ Confirm attendance"), sheet["message_id"]
        )
        # 75 min and 90 min at one point an hour: 1.25 + 1.5.
        assert done.params["text"] == "Attendance confirmed: 2 came, 1 did not; 2.75 points given."
        assert (
            "1. ✅ Li Ming — in 09:30, out 10:45, 75 minutes · 1.25 points"
            in (last_edit(fake, SECRETARY)["text"])
        )

        # 9. /me: the confirmed hours and points, this month and this year.
        me = await say(fake, LI, "/me")
        # 75 minutes: 1.25 h and 1.25 points, written as the organiser's sheet writes them.
        assert me["text"].startswith(
            "Li Ming: approved, on duty with your community.\n"
            "This month: 1.25 hours confirmed, 1.25 points.\n"
            "This year: 1.25 hours confirmed, 1.25 points.\n"
        )
        assert me["text"].endswith("No calls ahead.")
        me = await say(fake, WANG, "/me")
        assert (
            "This month: 1.5 hours confirmed, 1.5 points.\n"
            "This year: 1.5 hours confirmed, 1.5 points." in me["text"]
        )
        me = await say(fake, ZHAO, "/me")
        assert (
            "This month: 0 hours confirmed, 0 points.\nThis year: 0 hours confirmed, 0 points."
            in (me["text"])
        )

        # The rows behind it: minutes, the automatic check-out, confirmation and points.
        async with session_of(db_url) as session:
            rows = (
                await session.exec(
                    select(
                        Member.full_name,
                        CallClaim.minutes,
                        CallClaim.auto_closed,
                        CallClaim.confirmed,
                        CallClaim.points,
                    )
                    .join(Member, Member.id == CallClaim.member_id)
                    .order_by(CallClaim.id)
                )
            ).all()
        assert [tuple(row) for row in rows] == [
            ("Li Ming", 75, False, True, 1.25),
            ("Wang Fang", 90, True, True, 1.5),
            ("Zhao Lei", 0, False, False, 0.0),
        ]


async def test_refusals_outside_the_story(db_url: str) -> None:
    """Who may not do what: another community's secretary deciding or opening a sheet, a
    member posting a call, a pending member answering, a claim after the start."""
    clock = FrozenClock(T0)
    async with story_bot(db_url, clock) as fake:
        name, home, place = FIVE[LI]
        await register(fake, LI, name, home, f"Qingtong Community › {place}")
        await approve(fake, SECRETARY, LI, name, f"Qingtong Community › {place}")
        name, home, place = FIVE[WANG]
        await register(fake, WANG, name, home, f"Qingtong Community › {place}")
        card = await told(fake, SECRETARY, "🙋")  # Wang stays pending
        wang = await member_of(db_url, WANG)

        # Songfeng's secretary forges Approve on Qingtong's registration: refused, audited.
        forged = await press(fake, OTHER_SECRETARY, MemberDecision(id=wang.id, ok=True).pack(), 1)
        assert forged.params["text"] == "You are not allowed to do that here."
        assert forged.params["show_alert"] is True
        assert (await member_of(db_url, WANG)).status == MemberStatus.PENDING
        assert buttons(card["reply_markup"])[0][0] == "✅ Approve"

        # A member is no organiser.
        refused = await say(fake, LI, "/call")
        assert refused["text"] == "Only a community secretary or grid leader can call members."

        await post_call(fake, sent=1)
        async with session_of(db_url) as session:
            call = (await session.exec(select(DutyCall))).one()
        come = CallAction(op=CallOp.COME, id=call.id).pack()
        await told(fake, LI, "📣")
        assert not [m for m in fake.sent(WANG) if TITLE in (m.get("text") or "")]

        # Pending: not yet a member who can answer.
        pending = await press(fake, WANG, come, 1)
        assert pending.params["text"] == (
            "This is for Party members approved by their community: report for duty first "
            "with /duty."
        )

        # Another community's secretary may not open or confirm Qingtong's sheet.
        for op in (SheetOp.OPEN, SheetOp.CONFIRM):
            forged = await press(fake, OTHER_SECRETARY, Sheet(op=op, id=call.id).pack(), 1)
            assert forged.params["text"] == "You are not allowed to do that here."
        async with session_of(db_url) as session:
            other = (
                await session.exec(select(Person).where(Person.telegram_id == OTHER_SECRETARY))
            ).one()
            denied = (
                await session.exec(
                    select(AuditEntry).where(
                        AuditEntry.actor_id == other.id, AuditEntry.action == "access.denied"
                    )
                )
            ).all()
        assert len(denied) == 3

        # Once the call has started it takes no more answers, even with places left.
        clock.set(local(26, 9, 1))
        late = await press(fake, LI, come, 1)
        assert late.params["text"] == (
            "This call has already started: it no longer takes answers or withdrawals."
        )
        async with session_of(db_url) as session:
            assert (await session.get(DutyCall, call.id)).claimed == 0
            assert (await session.exec(select(CallClaim))).all() == []
