"""The scheduler's job and the daily digest: once a working day, after its time, never twice;
and the running bot sweeps at start (catching up) and on its interval."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import select

from domain.calendar import WorkCalendar
from domain.calls import answer_call, check_in, create_call
from domain.clock import FrozenClock
from domain.deadlines import Ladder, Timing
from domain.digests import send_digests
from domain.tickets import accept_ticket
from scheduler import jobs
from storage.db import make_engine, make_sessionmaker
from storage.enums import Level, MemberStatus, Role
from storage.models import CallClaim, Member, OrgSetting, OutboxMessage, RoleAssignment
from tests.botkit import running_bot
from tests.factories import make_person, make_tree
from tests.test_sweep import _file, _reload, _world

TZ = ZoneInfo("Asia/Shanghai")
DIGEST_AT = time(8, 30)


async def _digest(session, clock, timing):
    """send_digests as the scheduler's job runs it: one transaction, committed."""
    sent = await send_digests(session=session, clock=clock, timing=timing, at=DIGEST_AT)
    await session.commit()
    return sent


def _local(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ).astimezone(UTC)


async def _digests(session) -> list[OutboxMessage]:
    return list(
        (
            await session.exec(
                select(OutboxMessage)
                .where(OutboxMessage.kind == "digest")
                .order_by(OutboxMessage.id)
            )
        ).all()
    )


async def test_the_digest_goes_out_once_per_working_day_after_its_time(sessionmaker) -> None:
    clock = FrozenClock(_local(2026, 11, 24, 16, 0))  # Tuesday afternoon
    timing = Timing(WorkCalendar(TZ), Ladder())
    async with sessionmaker() as session:
        tree, category, people = await _world(session)
        overdue = await _file(session, clock, tree, category, people, timing=timing)
        # Accepted: its deadline is the resolve one (4 h), so overdue by tomorrow; the one
        # filed tomorrow at 08:10 is due at 08:40: due today, not yet overdue, at 08:31.
        await accept_ticket(
            session=session,
            clock=clock,
            timing=timing,
            actor=people["leader"],
            ticket_id=overdue.id,
        )
        clock.set(_local(2026, 11, 25, 8, 10))
        fresh = await _file(session, clock, tree, category, people, timing=timing)
        expected = [overdue.id, fresh.id]

        # Before its time: nothing.
        assert await _digest(session, clock, timing) is None
        clock.set(_local(2026, 11, 25, 8, 31))
        assert await _digest(session, clock, timing) == 1
        # Again the same day (another sweep, or another scheduler): nothing.
        assert await _digest(session, clock, timing) is None

        [digest] = await _digests(session)
        assert digest.chat_id == 200  # only the grid leader holds anything
        data = digest.data
        assert (data["open"], data["overdue"], data["due_today"]) == (2, 1, 1)
        assert data["date"] == "2026-11-25" and data["role"] == "grid_leader"
        # Most urgent first: the overdue one, then the one due this morning.
        assert [t["ticket_id"] for t in data["tickets"]] == expected
        assert [t["overdue"] for t in data["tickets"]] == [True, False]

        # Saturday is not a working day: no digest.
        clock.set(_local(2026, 11, 28, 9, 0))
        assert await _digest(session, clock, timing) is None
        # Monday: the next one.
        clock.set(_local(2026, 11, 30, 9, 0))
        assert await _digest(session, clock, timing) == 1
        assert len(await _digests(session)) == 2


async def test_a_role_held_twice_in_one_unit_gets_one_digest(sessionmaker) -> None:
    """Two active rows for the same role in the same unit (an invitation accepted twice at
    once) still make one digest."""
    clock = FrozenClock(_local(2026, 11, 25, 8, 0))
    timing = Timing(WorkCalendar(TZ), Ladder())
    async with sessionmaker() as session:
        tree, category, people = await _world(session)
        session.add(
            RoleAssignment(
                person_id=people["leader"].id, role=Role.GRID_LEADER, unit_id=tree.grid.id
            )
        )
        await session.commit()
        await _file(session, clock, tree, category, people, timing=timing)
        clock.set(_local(2026, 11, 25, 8, 31))
        assert await _digest(session, clock, timing) == 1
        assert [d.chat_id for d in await _digests(session)] == [200]


async def test_the_sweep_job_rereads_the_calendar_and_wakes_the_sender(sessionmaker) -> None:
    clock = FrozenClock(_local(2026, 11, 25, 7, 0))
    timing = Timing.plain(TZ)
    woken = []
    async with sessionmaker() as session:
        tree, category, people = await _world(session)
        ticket = await _file(session, clock, tree, category, people, timing=timing)
        ticket_id = ticket.id
        session.add(OrgSetting(key="ladder", value={"top_repeat_minutes": 60}))
        await session.commit()
    jobs.configure(jobs.JobContext(sessionmaker, clock, timing, DIGEST_AT, lambda: woken.append(1)))
    try:
        clock.advance(timedelta(minutes=5))
        report = await jobs.sweep_job()
        assert report.total == 0 and woken == []
        assert timing.ladder.top_repeat_minutes == 60  # the organisation's settings were read
        clock.advance(timedelta(minutes=30))
        report = await jobs.sweep_job()
        assert (report.reminded, report.escalated) == (1, 1)
        assert woken == [1]
    finally:
        jobs.configure(None)
    async with sessionmaker() as session:
        assert (await _reload(session, ticket_id)).level == Level.COMMUNITY


async def test_the_running_bot_sweeps_at_start_and_then_on_its_interval(db_url) -> None:
    """Down while a deadline passed: the first sweep, at start, escalates; the next ones follow."""
    clock = FrozenClock(_local(2026, 11, 25, 7, 0))
    timing = Timing.plain(TZ)
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as session:
            tree, category, people = await _world(session)
            ticket = await _file(session, clock, tree, category, people, timing=timing)
            ticket_id = ticket.id
            await session.commit()
    finally:
        await engine.dispose()
    clock.advance(timedelta(hours=1))  # the grid's 30 minutes passed while the bot was down
    async with running_bot(
        db_url, clock=clock, scheduler=True, sweep_interval=0.05, load_sample_city=False
    ) as running:
        # The community secretary (300) gets the escalated card from the first sweep.
        def is_text(message: dict) -> bool:
            return message["method"] == "sendMessage"

        card = await running.fake.wait_for_message(300, is_text, timeout=20)
        assert "escalated" in card["text"].lower() or "上报" in card["text"]
        # The community's 15-minute reminder comes from a later sweep once the clock moves.
        clock.advance(timedelta(minutes=15))
        reminder = await running.fake.wait_for_message(300, is_text, timeout=20)
        assert reminder["text"].startswith("⏰")
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as session:
            assert (await _reload(session, ticket_id)).level == Level.COMMUNITY
    finally:
        await engine.dispose()


async def test_the_sweep_job_closes_check_outs_members_forgot(sessionmaker) -> None:

    clock = FrozenClock(_local(2026, 11, 25, 9, 0))
    async with sessionmaker() as session:
        tree = await make_tree(session)
        secretary = await make_person(session, 300, "Secretary")
        member_person = await make_person(session, 1000, "Member")
        session.add(
            RoleAssignment(
                person_id=secretary.id, role=Role.COMMUNITY_SECRETARY, unit_id=tree.community.id
            )
        )
        session.add(
            Member(
                person_id=member_person.id,
                full_name="Member",
                branch="支部",
                community_id=tree.community.id,
                status=MemberStatus.APPROVED,
            )
        )
        await session.commit()
        call, _ = await create_call(
            session=session,
            clock=clock,
            actor=secretary,
            community_id=tree.community.id,
            title="巡逻",
            description="",
            latitude=34.742,
            longitude=113.632,
            starts_at=clock.now() + timedelta(hours=1),
            ends_at=clock.now() + timedelta(hours=3),
            capacity=2,
        )
        call_id = call.id
        await answer_call(session=session, clock=clock, person=member_person, call_id=call_id)
        clock.advance(timedelta(hours=1, minutes=30))
        await check_in(
            session=session,
            clock=clock,
            person=member_person,
            call_id=call_id,
            latitude=34.742,
            longitude=113.632,
        )
        await session.commit()
    jobs.configure(jobs.JobContext(sessionmaker, clock, Timing.plain(TZ), DIGEST_AT))
    try:
        await jobs.sweep_job()  # the call is not over: nothing to close
        clock.advance(timedelta(hours=2))
        await jobs.sweep_job()
    finally:
        jobs.configure(None)
    async with sessionmaker() as session:
        [claim] = (await session.exec(select(CallClaim))).all()
        assert (claim.auto_closed, claim.minutes) == (True, 90)


def test_each_bot_run_waits_on_its_own_job_lock() -> None:
    """Bots started one after the other (each on its own event loop, as in these tests, or a
    restart in one process) never share the lock a stopping bot waits on."""

    async def run_once() -> None:
        clock = FrozenClock(datetime(2026, 11, 25, tzinfo=UTC))
        context = jobs.JobContext(None, clock, None, time(8, 30))  # type: ignore[arg-type]
        jobs.configure(context)
        try:
            async with context.running:
                waiter = asyncio.create_task(jobs.wait_idle())  # waits: binds the lock
                await asyncio.sleep(0)
            await waiter
        finally:
            jobs.configure(None)

    asyncio.run(run_once())
    asyncio.run(run_once())
