"""The organiser after a call, end to end: /calls, the card before the end (confirming
refused with the time it ends), "attendance waits" once at the end, the sheet with an
automatically closed check-out, a toggle, Confirm (points only for those confirmed, /me),
confirming again, a stranger's forged buttons, and the monthly summaries.

The running bot against the fake Bot API, on SQLite and PostgreSQL; the sample city is loaded
by the bot; people, the call, the claims and check-ins are made here with domain functions.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from sqlmodel import select

from domain.attendance import ask_attendance, send_monthly_summaries
from domain.calls import answer_call, check_in, check_out, close_forgotten, create_call
from domain.clock import FrozenClock
from domain.deadlines import Timing
from domain.errors import DomainError
from scheduler import jobs
from storage.enums import MemberStatus, Role
from storage.models import (
    AuditEntry,
    CallClaim,
    DutyCall,
    Member,
    OrgUnit,
    OutboxMessage,
    Person,
    RoleAssignment,
)
from tests.botkit import running_bot
from tests.factories import make_person, make_tree
from tests.fake_telegram import FakeTelegram
from tests.test_member_bot import buttons, press, session_of
from views.buttons import Page, Sheet, SheetOp
from views.outbox import default_renderer

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # 10:00 in the city
COMMUNITY = "EQ-JZJ-01"
PLACE = (34.742, 113.632)
SECRETARY = 4200  # the organiser
MEMBERS = [4201, 4202, 4203]  # checks in and out; never checks out; never checks in
STRANGER = 4209
NAMES = ["Member 0", "Member 1", "Member 2"]


async def world(url: str, clock: FrozenClock) -> int:
    """The secretary, three approved members and a call for 3 places, 12:00-14:00; its id."""
    async with session_of(url) as session:
        unit = (await session.exec(select(OrgUnit).where(OrgUnit.code == COMMUNITY))).one()
        secretary = Person(telegram_id=SECRETARY, full_name="Chen Jing", language="en")
        session.add(secretary)
        await session.flush()
        session.add(
            RoleAssignment(person_id=secretary.id, role=Role.COMMUNITY_SECRETARY, unit_id=unit.id)
        )
        for name, telegram_id in zip(NAMES, MEMBERS, strict=True):
            person = Person(telegram_id=telegram_id, full_name=name, language="en")
            session.add(person)
            await session.flush()
            session.add(
                Member(
                    person_id=person.id,
                    full_name=name,
                    branch="Qingtong Party branch",
                    community_id=unit.id,
                    status=MemberStatus.APPROVED,
                )
            )
        await session.commit()
        call, _ = await create_call(
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
        return call.id


async def person(session, telegram_id: int) -> Person:
    return (await session.exec(select(Person).where(Person.telegram_id == telegram_id))).one()


async def claims(url: str, call_id: int) -> list[tuple[str, bool | None, float, int]]:
    """(name, confirmed, points, minutes) per claim, in claim order."""
    async with session_of(url) as session:
        rows = await session.exec(
            select(Member.full_name, CallClaim.confirmed, CallClaim.points, CallClaim.minutes)
            .join(Member, Member.id == CallClaim.member_id)
            .where(CallClaim.call_id == call_id)
            .order_by(CallClaim.id)
        )
        return [tuple(row) for row in rows]


async def told(fake: FakeTelegram, user: int, start: str) -> dict:
    """The next message to the user whose text starts so (others, e.g. calls, are skipped)."""
    return await fake.wait_for_message(
        user, lambda m: (m.get("text") or "").startswith(start), timeout=10
    )


async def ask(fake: FakeTelegram, user: int, text: str, start: str) -> dict:
    """Send a command; the bot's answer (the text it starts with says which)."""
    fake.push_message(user, text, language_code="en")
    return await told(fake, user, start)


def last_edit(fake: FakeTelegram, chat: int) -> dict:
    return fake.calls_to("editMessageText", chat)[-1].params


def sheet(op: SheetOp, call_id: int, sel: str = "", n: int = 0) -> str:
    return Sheet(op=op, id=call_id, sel=sel, n=n).pack()


HEAD = "📋 Clear the stairwell\n🕒 2026-11-25 12:00 – 2026-11-25 14:00\n👥 3/3 places · "
TITLE = "Attendance — press a name to change its mark, then “Confirm attendance”:"
LINE_0 = "1. {} Member 0 — in 12:00, out 13:00, 60 minutes"
LINE_1 = "2. {} Member 1 — in 12:00, ⚠️ never checked out (closed at the end, 14:00), 120 minutes"
LINE_2 = "3. {} Member 2 — did not check in"


async def test_attendance_confirmed_after_the_call(db_url: str) -> None:
    clock = FrozenClock(T0)
    async with running_bot(db_url, clock=clock) as running:
        fake = running.fake
        call_id = await world(db_url, clock)
        told_empty = await ask(fake, STRANGER, "/calls", "You")
        assert told_empty["text"] == (
            "You have not organised any calls, and none of your community's are listed."
        )

        # Three members say "I'll come"; at the start two check in; an hour later one leaves.
        async with session_of(db_url) as session:
            for user in MEMBERS:
                await answer_call(
                    session=session,
                    clock=clock,
                    person=await person(session, user),
                    call_id=call_id,
                )
            clock.set(T0 + timedelta(hours=2))
            for user in MEMBERS[:2]:
                await check_in(
                    session=session,
                    clock=clock,
                    person=await person(session, user),
                    call_id=call_id,
                    latitude=PLACE[0],
                    longitude=PLACE[1],
                )
            clock.advance(timedelta(hours=1))
            await check_out(
                session=session,
                clock=clock,
                person=await person(session, MEMBERS[0]),
                call_id=call_id,
            )

        # Under way: /calls lists it; its card names who is coming; confirming is refused.
        listed = await ask(fake, SECRETARY, "/calls", "Your calls")
        assert listed["text"] == (
            "Your calls (1–1 of 1), latest first:\n"
            "1. Clear the stairwell — 2026-11-25 12:00\n"
            "    3/3 places · under way"
        )
        open_ = sheet(SheetOp.OPEN, call_id)
        assert buttons(listed["reply_markup"]) == [("1. Clear the stairwell", open_)]
        await press(fake, SECRETARY, open_, listed["message_id"])
        card = await told(fake, SECRETARY, "📋")
        assert card["text"] == (
            f"{HEAD}under way\n\nBuilding 3\n\n"
            "Coming: Member 0, Member 1, Member 2\n\n"
            "Attendance can be confirmed after the end (2026-11-25 14:00)."
        )
        assert buttons(card.get("reply_markup")) == []
        early = await press(fake, SECRETARY, sheet(SheetOp.CONFIRM, call_id, "7", 3), 1)
        assert early.params["text"] == (
            "This call ends at 2026-11-25 14:00: attendance can be confirmed after that."
        )
        assert early.params["show_alert"] is True
        assert [c[1] for c in await claims(db_url, call_id)] == [None, None, None]

        # The end passes: the forgotten check-out is closed, the organiser is told once.
        clock.set(T0 + timedelta(hours=4, minutes=1))
        async with session_of(db_url) as session:
            assert await close_forgotten(session=session, clock=clock) == 1
            assert await ask_attendance(session=session, clock=clock) == 1
            assert await ask_attendance(session=session, clock=clock) == 0
            asked = (await session.get(DutyCall, call_id)).attendance_asked_at
            assert asked == clock.now()
        due = await told(fake, SECRETARY, "🕒")
        assert due["text"] == (
            "🕒 Clear the stairwell ended at 2026-11-25 14:00. "
            "3 members said they would come: please confirm who came."
        )
        assert buttons(due["reply_markup"]) == [("📋 Attendance sheet", open_)]

        # The sheet: came if checked in; the automatic check-out is marked.
        await press(fake, SECRETARY, open_, due["message_id"])
        card = await told(fake, SECRETARY, "📋")
        assert card["text"] == (
            f"{HEAD}over: 3 to confirm\n\nBuilding 3\n\n"
            f"{TITLE}\n{LINE_0.format('✅')}\n{LINE_1.format('✅')}\n{LINE_2.format('❌')}"
        )
        assert buttons(card["reply_markup"]) == [
            ("1. Member 0: ✅ came", sheet(SheetOp.TOGGLE, call_id, "2", 3)),
            ("2. Member 1: ✅ came", sheet(SheetOp.TOGGLE, call_id, "1", 3)),
            ("3. Member 2: ❌ did not come", sheet(SheetOp.TOGGLE, call_id, "7", 3)),
            ("✔️ Confirm attendance", sheet(SheetOp.CONFIRM, call_id, "3", 3)),
        ]

        # Member 1 never checked out: the organiser says they did not come, and confirms.
        await press(fake, SECRETARY, sheet(SheetOp.TOGGLE, call_id, "1", 3), card["message_id"])
        edit = last_edit(fake, SECRETARY)
        assert edit["message_id"] == card["message_id"]
        assert (
            f"{LINE_0.format('✅')}\n{LINE_1.format('❌')}\n{LINE_2.format('❌')}" in edit["text"]
        )
        confirm = sheet(SheetOp.CONFIRM, call_id, "1", 3)
        assert buttons(edit["reply_markup"])[1:] == [
            ("2. Member 1: ❌ did not come", sheet(SheetOp.TOGGLE, call_id, "3", 3)),
            ("3. Member 2: ❌ did not come", sheet(SheetOp.TOGGLE, call_id, "5", 3)),
            ("✔️ Confirm attendance", confirm),
        ]
        done = await press(fake, SECRETARY, confirm, card["message_id"])
        assert done.params["text"] == "Attendance confirmed: 1 came, 2 did not; 1 point given."
        assert await claims(db_url, call_id) == [
            ("Member 0", True, 1.0, 60),
            ("Member 1", False, 0.0, 120),
            ("Member 2", False, 0.0, 0),
        ]
        edit = last_edit(fake, SECRETARY)
        assert edit["text"].startswith(f"{HEAD}confirmed\n")
        assert f"{LINE_0.format('✅')} · 1 point\n{LINE_1.format('❌')}\n" in edit["text"]
        assert edit["text"].endswith(
            "Confirmed. You may change the marks and confirm again until the month's summary "
            "goes out."
        )

        me = await ask(fake, MEMBERS[0], "/me", "Member 0")
        assert (
            "This month: 1 hour confirmed, 1 point.\nThis year: 1 hour confirmed, 1 point."
            in me["text"]
        )
        me = await ask(fake, MEMBERS[1], "/me", "Member 1")
        assert "This month: 0 hours confirmed, 0 points." in me["text"]

        # A stranger's forged presses are refused (and audited); nothing changes.
        before = await claims(db_url, call_id)
        for op, sel in ((SheetOp.OPEN, ""), (SheetOp.TOGGLE, "7"), (SheetOp.CONFIRM, "7")):
            refused = await press(fake, STRANGER, sheet(op, call_id, sel, 3), 1)
            assert refused.params["text"] == "You are not allowed to do that here."
            assert refused.params["show_alert"] is True
        assert await claims(db_url, call_id) == before
        async with session_of(db_url) as session:
            stranger = await person(session, STRANGER)
            denied = (
                await session.exec(select(AuditEntry).where(AuditEntry.actor_id == stranger.id))
            ).all()
            assert len(denied) == 3

        # Confirming again replaces the marks: Member 1 came after all.
        await press(fake, SECRETARY, sheet(SheetOp.TOGGLE, call_id, "3", 3), card["message_id"])
        done = await press(
            fake, SECRETARY, sheet(SheetOp.CONFIRM, call_id, "3", 3), card["message_id"]
        )
        assert done.params["text"] == "Attendance confirmed: 2 came, 1 did not; 3 points given."
        assert [c[1:3] for c in await claims(db_url, call_id)] == [
            (True, 1.0),
            (True, 2.0),
            (False, 0.0),
        ]
        # A press made on other lines than the sheet has is not read: the sheet is shown again.
        stale = await press(
            fake, SECRETARY, sheet(SheetOp.CONFIRM, call_id, "1", 2), card["message_id"]
        )
        assert stale.params["text"] == "This sheet has changed since; here it is as it is now."
        assert [c[1] for c in await claims(db_url, call_id)] == [True, True, False]

        # On the 1st, last month's summaries go out; the marks are final from then on.
        clock.set(datetime(2026, 11, 30, 16, 30, tzinfo=UTC))  # 00:30 on 1 December
        async with session_of(db_url) as session:
            tz = running.settings.tz
            assert await send_monthly_summaries(session=session, clock=clock, tz=tz) == 3
        summary = await told(fake, MEMBERS[1], "📊")
        assert summary["text"] == (
            "📊 Your duty in 2026-11: 1 call, 2 hours confirmed, 2 points. Thank you!"
        )
        summary = await told(fake, SECRETARY, "📊")
        assert summary["text"] == (
            "📊 Your community's duty in 2026-11\n"
            "Served (2):\n"
            "• Member 1: 2 hours\n"
            "• Member 0: 1 hour\n"
            "Calls not filled: 0\n"
            "No-shows: 1"
        )
        late = await press(fake, SECRETARY, sheet(SheetOp.CONFIRM, call_id, "1", 3), 1)
        assert late.params["text"] == (
            "These marks are final: the month's summary has already gone out."
        )
        assert [c[1] for c in await claims(db_url, call_id)] == [True, True, False]
        listed = await ask(fake, SECRETARY, "/calls", "Your calls")
        assert listed["text"].endswith("3/3 places · confirmed")


def test_monthly_summaries_render_in_both_languages() -> None:
    renderer = default_renderer()
    member = {"month": "2026-11", "minutes": 90, "points": 1.5, "calls": 2}
    assert renderer.render("duty_month_member", member, "en").text == (
        "📊 Your duty in 2026-11: 2 calls, 1.5 hours confirmed, 1.5 points. Thank you!"
    )
    assert renderer.render("duty_month_member", member, "zh-hans").text == (
        "📊 您 2026-11 的服务：2 次活动，确认 1.5 小时，1.5 积分。谢谢您！"
    )
    nobody = {"month": "2026-11", "served": [], "unfilled": 2, "no_shows": 0}
    assert renderer.render("duty_month_secretary", nobody, "zh-hans").text == (
        "📊 本社区 2026-11 的党员服务\n本月没有确认的服务。\n未满员的活动：2\n未到场：0"
    )
    many = {
        "month": "2026-11",
        "served": [{"name": f"M{n:02}", "minutes": 60} for n in range(60)],
        "unfilled": 0,
        "no_shows": 0,
    }
    text = renderer.render("duty_month_secretary", many, "en").text
    assert "Served (60):\n• M00: 1 hour\n" in text
    assert "• M49: 1 hour\n…and 10 more\n" in text and "M50" not in text


LEADER, OTHER_LEADER = 4210, 4211


async def test_calls_lists_a_leaders_calls_to_them_and_their_secretary_paged(
    db_url: str,
) -> None:
    clock = FrozenClock(T0)
    async with running_bot(db_url, clock=clock) as running:
        fake = running.fake
        await world(db_url, clock)  # the secretary's own call, starting at 12:00
        async with session_of(db_url) as session:
            grids = {
                unit.code: unit
                for unit in (
                    await session.exec(
                        select(OrgUnit).where(OrgUnit.code.in_(["EQ-JZJ-01-G1", "EQ-JZJ-01-G2"]))
                    )
                ).all()
            }
            leaders = {}
            for telegram_id, code in ((LEADER, "EQ-JZJ-01-G1"), (OTHER_LEADER, "EQ-JZJ-01-G2")):
                leader = Person(telegram_id=telegram_id, full_name="Leader", language="en")
                session.add(leader)
                await session.flush()
                session.add(
                    RoleAssignment(
                        person_id=leader.id, role=Role.GRID_LEADER, unit_id=grids[code].id
                    )
                )
                leaders[telegram_id] = leader
            await session.commit()
            grid = grids["EQ-JZJ-01-G1"]
            for day in range(1, 6):  # patrols on the next five days, at 09:00
                await create_call(
                    session=session,
                    clock=clock,
                    actor=leaders[LEADER],
                    community_id=grid.parent_id,
                    title=f"Patrol {day}",
                    description="",
                    latitude=PLACE[0],
                    longitude=PLACE[1],
                    starts_at=T0 + timedelta(days=day, hours=-1),
                    ends_at=T0 + timedelta(days=day, hours=1),
                    capacity=2,
                    grid_ids=[grid.id],
                )

        # The grid leader: their five calls on one page, latest start first.
        mine = await ask(fake, LEADER, "/calls", "Your calls")
        assert mine["text"].startswith(
            "Your calls (1–5 of 5), latest first:\n"
            "1. Patrol 5 — 2026-11-30 09:00\n"
            "    0/2 places · open\n"
            "2. Patrol 4 — 2026-11-29 09:00\n"
        )
        assert [label for label, _ in buttons(mine["reply_markup"])] == [
            f"{n}. Patrol {6 - n}" for n in range(1, 6)
        ]
        # The secretary: theirs and the community's, six, five a page, with Next / Previous.
        first = await ask(fake, SECRETARY, "/calls", "Your calls")
        assert first["text"].startswith("Your calls (1–5 of 6), latest first:\n1. Patrol 5")
        assert buttons(first["reply_markup"])[-1] == ("Next »", Page(list="calls", offset=5).pack())
        await press(fake, SECRETARY, Page(list="calls", offset=5).pack(), first["message_id"])
        page = last_edit(fake, SECRETARY)
        assert page["message_id"] == first["message_id"]
        assert page["text"] == (
            "Your calls (6–6 of 6), latest first:\n"
            "6. Clear the stairwell — 2026-11-25 12:00\n"
            "    0/3 places · open"
        )
        assert [label for label, _ in buttons(page["reply_markup"])] == [
            "6. Clear the stairwell",
            "« Previous",
        ]
        # Another grid's leader has none, and may not open them.
        none = await ask(fake, OTHER_LEADER, "/calls", "You")
        assert none["text"].startswith("You have not organised any calls")
        call_id = Sheet.unpack(buttons(mine["reply_markup"])[0][1]).id
        refused = await press(fake, OTHER_LEADER, sheet(SheetOp.OPEN, call_id), 1)
        assert refused.params["text"] == "You are not allowed to do that here."
        # The secretary opens the leader's call: nobody is coming yet.
        await press(fake, SECRETARY, sheet(SheetOp.OPEN, call_id), first["message_id"])
        card = await told(fake, SECRETARY, "📋")
        assert card["text"] == (
            "📋 Patrol 5\n🕒 2026-11-30 09:00 – 2026-11-30 11:00\n👥 0/2 places · open\n\n"
            "Nobody has said they will come yet.\n\n"
            "Attendance can be confirmed after the end (2026-11-30 11:00)."
        )


async def test_the_sweep_asks_the_organiser_once_for_calls_just_over(sessionmaker) -> None:
    clock = FrozenClock(T0)
    async with sessionmaker() as session:
        tree = await make_tree(session)
        secretary = await make_person(session, 300, "Secretary")
        member = await make_person(session, 1000, "Member")
        session.add(
            RoleAssignment(
                person_id=secretary.id, role=Role.COMMUNITY_SECRETARY, unit_id=tree.community.id
            )
        )
        session.add(
            Member(
                person_id=member.id,
                full_name="Member",
                branch="支部",
                community_id=tree.community.id,
                status=MemberStatus.APPROVED,
            )
        )
        await session.commit()
        ids = []
        for title, starts in (("old", timedelta(hours=1)), ("new", timedelta(days=3, hours=1))):
            call, _ = await create_call(
                session=session,
                clock=clock,
                actor=secretary,
                community_id=tree.community.id,
                title=title,
                description="",
                latitude=PLACE[0],
                longitude=PLACE[1],
                starts_at=T0 + starts,
                ends_at=T0 + starts + timedelta(hours=2),
                capacity=2,
            )
            await answer_call(session=session, clock=clock, person=member, call_id=call.id)
            ids.append(call.id)
        empty, _ = await create_call(  # nobody comes: marked, nobody told
            session=session,
            clock=clock,
            actor=secretary,
            community_id=tree.community.id,
            title="empty",
            description="",
            latitude=PLACE[0],
            longitude=PLACE[1],
            starts_at=T0 + timedelta(days=3),
            ends_at=T0 + timedelta(days=3, hours=2),
            capacity=2,
        )
        await session.commit()
    # The first call ended three days before the sweep (the bot was down): not announced.
    clock.set(T0 + timedelta(days=3, hours=4))
    jobs.configure(jobs.JobContext(sessionmaker, clock, Timing.plain(UTC), time(8, 30)))
    try:
        await jobs.sweep_job()
        await jobs.sweep_job()
    finally:
        jobs.configure(None)
    async with sessionmaker() as session:
        asked = (
            await session.exec(
                select(OutboxMessage).where(OutboxMessage.kind == "duty_attendance_due")
            )
        ).all()
        assert [(m.chat_id, m.data) for m in asked] == [
            (
                300,
                {
                    "call_id": ids[1],
                    "title": "new",
                    "ends_at": (T0 + timedelta(days=3, hours=3)).isoformat(),
                    "claims": 1,
                },
            )
        ]
        calls = {c.id: c for c in (await session.exec(select(DutyCall))).all()}
        assert calls[ids[0]].attendance_asked_at is None
        assert calls[ids[1]].attendance_asked_at == clock.now()
        assert calls[empty.id].attendance_asked_at == clock.now()


async def test_the_organiser_cancels_a_call_before_it_starts(db_url: str) -> None:
    clock = FrozenClock(T0)
    async with running_bot(db_url, clock=clock) as running:
        fake = running.fake
        call_id = await world(db_url, clock)
        async with session_of(db_url) as session:
            for user in MEMBERS[:2]:
                await answer_call(
                    session=session,
                    clock=clock,
                    person=await person(session, user),
                    call_id=call_id,
                )
        listed = await ask(fake, SECRETARY, "/calls", "Your calls")
        await press(fake, SECRETARY, sheet(SheetOp.OPEN, call_id), listed["message_id"])
        card = await told(fake, SECRETARY, "📋")
        cancel = sheet(SheetOp.CANCEL, call_id)
        assert buttons(card["reply_markup"]) == [("✖️ Cancel the call", cancel)]

        # A stranger's forged Cancel is refused, audited, and changes nothing.
        forged = await press(fake, STRANGER, sheet(SheetOp.CANCEL_YES, call_id), 1)
        assert forged.params["text"] == "You are not allowed to do that here."
        async with session_of(db_url) as session:
            assert (await session.get(DutyCall, call_id)).status == "open"
            audit = (await session.exec(select(AuditEntry))).all()
            assert [(a.action, a.data["attempted"]) for a in audit] == [
                ("access.denied", f"duty.cancel:{call_id}")
            ]

        # Asked once more, "No" keeps it; then "Yes" cancels it and tells the two coming.
        await press(fake, SECRETARY, cancel, card["message_id"])
        asked = last_edit(fake, SECRETARY)
        assert asked["text"].endswith("Cancel this call? The 2 members coming will be told.")
        yes, keep = sheet(SheetOp.CANCEL_YES, call_id), sheet(SheetOp.KEEP, call_id)
        assert buttons(asked["reply_markup"]) == [("Yes, cancel it", yes), ("No, keep it", keep)]
        await press(fake, SECRETARY, keep, card["message_id"])
        assert buttons(last_edit(fake, SECRETARY)["reply_markup"]) == [
            ("✖️ Cancel the call", cancel)
        ]
        done = await press(fake, SECRETARY, yes, card["message_id"])
        assert done.params["text"] == "Call cancelled; 2 members told."
        cancelled = last_edit(fake, SECRETARY)
        assert cancelled["text"].startswith(f"{HEAD[: HEAD.index('👥')]}👥 2/3 places · cancelled")
        assert buttons(cancelled.get("reply_markup")) == []
        for user in MEMBERS[:2]:
            note = await told(fake, user, "✖️")
            assert note["text"] == (
                "✖️ The call “Clear the stairwell” (starting 2026-11-25 12:00) has been "
                "cancelled by its organiser. Thank you for offering to come."
            )
        assert not [m for m in fake.sent(MEMBERS[2]) if "cancelled" in (m.get("text") or "")]

        # Cancelled: twice is refused, and so are a late I'll come and a check-in.
        again = await press(fake, SECRETARY, yes, card["message_id"])
        assert again.params["text"] == "This call has been cancelled."
        async with session_of(db_url) as session:
            member = await person(session, MEMBERS[2])
            try:
                await answer_call(session=session, clock=clock, person=member, call_id=call_id)
            except DomainError as exc:
                assert exc.key == "duty.call_cancelled"
            else:
                raise AssertionError("a cancelled call took a claim")
            await session.rollback()
            clock.set(T0 + timedelta(hours=2))
            coming = await person(session, MEMBERS[0])
            try:
                await check_in(
                    session=session,
                    clock=clock,
                    person=coming,
                    call_id=call_id,
                    latitude=PLACE[0],
                    longitude=PLACE[1],
                )
            except DomainError as exc:
                assert exc.key == "duty.call_cancelled"
            else:
                raise AssertionError("a cancelled call took a check-in")


async def test_a_call_that_started_can_no_longer_be_cancelled(db_url: str) -> None:
    clock = FrozenClock(T0)
    async with running_bot(db_url, clock=clock) as running:
        fake = running.fake
        call_id = await world(db_url, clock)
        clock.set(T0 + timedelta(hours=2, minutes=5))
        late = await press(fake, SECRETARY, sheet(SheetOp.CANCEL_YES, call_id), 1)
        assert late.params["text"] == (
            "This call started at 2026-11-25 12:00: it can no longer be cancelled."
        )
        async with session_of(db_url) as session:
            assert (await session.get(DutyCall, call_id)).status == "open"
