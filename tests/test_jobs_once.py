"""Every scheduled job happens once when several schedulers run it at the same time.

Two engines, as two `gridbot run` processes would have (a rolling deploy overlaps two), run
each job at once on the same rows; each effect (an outbox row, a closed check-out, an
escalation) must be there once. On PostgreSQL the two really overlap; on SQLite they take
turns (IMMEDIATE transactions), and the result must be the same.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select

from domain.attendance import ask_attendance, confirm_attendance, send_monthly_summaries
from domain.calendar import WorkCalendar
from domain.calls import (
    answer_call,
    check_in,
    check_out,
    close_forgotten,
    remind_calls,
)
from domain.clock import FrozenClock
from domain.deadlines import Ladder, Timing
from domain.digests import send_digests
from domain.figures import Figures, month_of, roll_up, send_monthly_rankings, tally
from domain.reference import load_snapshot
from domain.summons import whistle
from domain.tickets import accept_ticket, escalate_ticket, resolve_ticket
from scheduler import jobs
from scheduler.sweep import sweep
from storage.db import make_engine, make_sessionmaker
from storage.enums import Role, TicketStatus
from storage.figures import events_between, figures_of_month
from storage.models import (
    CallClaim,
    Department,
    DutyCall,
    JobRun,
    Member,
    OutboxMessage,
    Person,
    RoleAssignment,
    Ticket,
)
from storage.once import claim_once
from tests.factories import make_members, make_person
from tests.test_duty import PLACE, _call
from tests.test_duty import _world as _duty_world
from tests.test_sweep import TIMING, _file
from tests.test_sweep import _world as _ticket_world

TZ = ZoneInfo("Asia/Shanghai")
PROCESSES = 2


def _local(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ).astimezone(UTC)


@asynccontextmanager
async def _processes(url: str) -> AsyncIterator[list[async_sessionmaker]]:
    """A sessionmaker per process, each on its own engine (its own connection pool)."""
    engines = [make_engine(url) for _ in range(PROCESSES)]
    try:
        for engine in engines:  # connected before the race, as a running process is
            async with engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
        yield [make_sessionmaker(engine) for engine in engines]
    finally:
        for engine in engines:
            await engine.dispose()


async def _together(
    maker: async_sessionmaker, table: str, work: list[Awaitable[Any]], *, waiters: int = 0
) -> list:
    """Run the coroutines at once; on PostgreSQL they first meet at `table`.

    The table is locked until `waiters` connections (one per coroutine unless told) wait for
    it, then let go: each reaches the job at the same moment however long the steps before
    took, so the race is run every time, not only when the timing happens to line up.
    """
    async with maker() as gate:
        meet = gate.bind.dialect.name == "postgresql"
        if meet:
            await gate.exec(sa.text(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE'))
        running = [asyncio.ensure_future(w) for w in work]
        if meet:
            while await _waiting_for(gate, table) < (waiters or len(running)):
                if any(task.done() for task in running):
                    break  # one failed before the table: its error is raised below
            await gate.commit()
        return list(await asyncio.gather(*running))


async def _waiting_for(session, table: str) -> int:
    """How many connections wait for a lock on the table (PostgreSQL)."""
    statement = sa.text(
        "SELECT count(*) FROM pg_locks WHERE relation = CAST(:table AS regclass) AND NOT granted"
    )
    return (await session.exec(statement, params={"table": table})).one()[0]


async def _at_once(
    makers: list[async_sessionmaker], table: str, job: Callable[..., Awaitable[Any]]
) -> list:
    """Run `job(session)` in every process at once, meeting at the table the job reads
    first, each committing what it did as run_jobs does; what each returned."""

    async def run(maker: async_sessionmaker) -> Any:
        async with maker() as session:
            result = await job(session)
            await session.commit()
            return result

    return await _together(makers[0], table, [run(maker) for maker in makers])


async def _outbox(session, kind: str) -> list[OutboxMessage]:
    return list(
        (
            await session.exec(
                select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id)
            )
        ).all()
    )


async def _member_ids(session) -> dict[int, int]:
    """person id -> member id."""
    return {m.person_id: m.id for m in (await session.exec(select(Member))).all()}


async def test_a_key_taken_leaves_the_transaction_as_it_was(sessionmaker, clock) -> None:
    """claim_once says whether the key was free, in the caller's transaction: a key taken
    refuses the claim and keeps what the transaction did before; a claim whose work rolled
    back leaves the key free."""
    async with sessionmaker() as session:
        assert await claim_once(session, "digest:2026-12-07", clock.now())
        await session.commit()
        session.add(Person(telegram_id=9001, full_name="staged before the claim", language="en"))
        assert not await claim_once(session, "digest:2026-12-07", clock.now())
        await session.commit()
        staged = select(Person).where(Person.telegram_id == 9001)
        assert (await session.exec(staged)).one().full_name == "staged before the claim"
        assert await claim_once(session, "digest:2026-12-08", clock.now())
        await session.rollback()
        assert await claim_once(session, "digest:2026-12-08", clock.now())
        await session.commit()
        keys = (await session.exec(select(JobRun.key).order_by(JobRun.key))).all()
        assert keys == ["digest:2026-12-07", "digest:2026-12-08"]


async def test_those_coming_are_reminded_once_by_two_schedulers(db_url, clock) -> None:
    makers: list[async_sessionmaker]
    async with _processes(db_url) as makers:
        async with makers[0]() as session:
            tree, _, secretary, _, people = await _duty_world(session, members=5)
            coming: Counter[tuple[int, int]] = Counter()
            for n in range(3):  # three calls, each with three of the five coming
                call, _ = await _call(session, clock, tree, secretary, capacity=5)
                for person in people[n : n + 3]:
                    await answer_call(session=session, clock=clock, person=person, call_id=call.id)
                    coming[(call.id, person.telegram_id)] = 1
            await session.commit()
        clock.advance(timedelta(hours=1, minutes=30))  # each starts in 30 minutes

        sent = await _at_once(
            makers,
            "duty_call",
            lambda s: remind_calls(session=s, clock=clock, before=timedelta(hours=1)),
        )

        async with makers[0]() as session:
            reminders = await _outbox(session, "duty_call_reminder")
            assert Counter((m.data["call_id"], m.chat_id) for m in reminders) == coming
            assert sum(sent) == len(coming) == 9
            calls = (await session.exec(select(DutyCall))).all()
            assert {c.reminded_at for c in calls} == {clock.now()}


async def test_a_member_answering_while_the_call_is_reminded_gets_one_reminder(
    db_url, clock
) -> None:
    """A scheduler reminds a call while members say "I'll come" in other processes: whichever
    goes first, each member coming gets the reminder once (from the scheduler, or at once with
    their answer), and nobody who did not answer gets one."""
    async with _processes(db_url) as makers:
        async with makers[0]() as session:
            tree, _, secretary, _, people = await _duty_world(session, members=5)
            call, _ = await _call(session, clock, tree, secretary, capacity=5)
            await answer_call(session=session, clock=clock, person=people[0], call_id=call.id)
            await session.commit()
        clock.advance(timedelta(hours=1, minutes=30))

        async def answer(maker: async_sessionmaker, person) -> None:
            async with maker() as session:
                await answer_call(session=session, clock=clock, person=person, call_id=call.id)
                await session.commit()

        async def remind(maker: async_sessionmaker) -> None:
            async with maker() as session:
                await remind_calls(session=session, clock=clock, before=timedelta(hours=1))
                await session.commit()

        work = [remind(makers[0]), *(answer(makers[1], p) for p in people[1:4])]
        await _together(makers[0], "duty_call", work)

        async with makers[0]() as session:
            reminders = await _outbox(session, "duty_call_reminder")
            places = await _outbox(session, "duty_call_place")
        coming = Counter(p.telegram_id for p in people[:4])
        assert Counter(m.chat_id for m in reminders) == coming
        # Each reminder comes with the call's place, sent just before it.
        lane = reminders[0].lane
        assert Counter(m.chat_id for m in places if m.lane == lane) == coming


async def test_the_figures_are_rolled_up_once_by_two_schedulers(db_url, clock) -> None:
    """Two schedulers roll the ticket events up at once, twice over: every event is counted
    once (the monthly rows equal a tally of all the events), the first time and after."""
    async with _processes(db_url) as makers:

        async def accepted(session) -> None:
            ticket = await _file(session, clock, tree, category, people)
            leader = people["leader"]
            await accept_ticket(
                session=session, clock=clock, timing=TIMING, actor=leader, ticket_id=ticket.id
            )
            await session.commit()

        async with makers[0]() as session:
            tree, category, people = await _ticket_world(session)
            for _ in range(3):
                await accepted(session)
        for _ in range(2):
            clock.advance(timedelta(minutes=6))
            rolled = await _at_once(
                makers, "figures_mark", lambda s: roll_up(session=s, clock=clock, tz=TZ)
            )
            async with makers[0]() as session:
                everything = tally(await events_between(session, None, None), TZ)
                month = month_of(clock.now(), TZ)
                expected = {u: f for (m, u), f in everything.items() if m == month}
                rows = await figures_of_month(session, "unit", month)
                assert {u: Figures(**counts) for u, counts in rows.items()} == expected
            async with makers[1]() as session:
                await accepted(session)
            assert sorted(rolled)[0] == 0  # one of the two rolled them, the other nothing
        assert expected[tree.grid.id].dispatched == 4


async def test_the_monthly_ranking_is_sent_once_by_two_schedulers(db_url, clock) -> None:
    async with _processes(db_url) as makers:
        async with makers[0]() as session:
            tree, category, people = await _ticket_world(session)
            ticket = await _file(session, clock, tree, category, people)
            await accept_ticket(
                session=session,
                clock=clock,
                timing=TIMING,
                actor=people["leader"],
                ticket_id=ticket.id,
            )
            await session.commit()
            org = await load_snapshot(session)
        clock.set(_local(2026, 12, 1, 9, 30))  # the first working day of December

        sent = await _at_once(
            makers,
            "job_run",
            lambda s: send_monthly_rankings(
                session=s, org=org, clock=clock, timing=TIMING, at=time(9, 0)
            ),
        )

        async with makers[0]() as session:
            rankings = await _outbox(session, "monthly_ranking")
        assert sorted(sent, key=str) == [3, None]
        assert sorted(m.chat_id for m in rankings) == [300, 400, 500]


async def test_a_forgotten_check_out_is_closed_once_by_two_schedulers(db_url, clock) -> None:
    async with _processes(db_url) as makers:
        async with makers[0]() as session:
            tree, _, secretary, _, people = await _duty_world(session, members=5)
            call_ids = []
            for _ in range(3):
                call, _ = await _call(session, clock, tree, secretary, capacity=5)
                call_ids.append(call.id)
                for person in people:
                    await answer_call(session=session, clock=clock, person=person, call_id=call.id)
            clock.advance(timedelta(hours=2))  # the calls start; everyone checks in
            for call_id in call_ids:
                for person in people:
                    await check_in(
                        session=session,
                        clock=clock,
                        person=person,
                        call_id=call_id,
                        latitude=PLACE[0],
                        longitude=PLACE[1],
                    )
            clock.advance(timedelta(minutes=30))  # one checks out of each call in time
            for call_id in call_ids:
                await check_out(session=session, clock=clock, person=people[0], call_id=call_id)
            await session.commit()
        clock.advance(timedelta(hours=2))  # past the end: four of each forgot

        closed = await _at_once(
            makers, "call_claim", lambda s: close_forgotten(session=s, clock=clock)
        )

        async with makers[0]() as session:
            claims = (await session.exec(select(CallClaim))).all()
            assert sorted((c.auto_closed, c.minutes) for c in claims) == sorted(
                [(False, 30)] * 3 + [(True, 120)] * 12
            )
            # Each was closed by one scheduler, not by both.
            assert sum(closed) == 12


async def test_the_organiser_is_asked_for_attendance_once_by_two_schedulers(db_url, clock) -> None:
    async with _processes(db_url) as makers:
        async with makers[0]() as session:
            tree, _, secretary, _, people = await _duty_world(session, members=3)
            call_ids = []
            for _ in range(5):
                call, _ = await _call(session, clock, tree, secretary, capacity=5)
                call_ids.append(call.id)
                for person in people:
                    await answer_call(session=session, clock=clock, person=person, call_id=call.id)
            await session.commit()
        clock.advance(timedelta(hours=4, minutes=5))  # the calls are over

        asked = await _at_once(
            makers, "duty_call", lambda s: ask_attendance(session=s, clock=clock)
        )

        async with makers[0]() as session:
            sent = await _outbox(session, "duty_attendance_due")
            assert Counter(m.data["call_id"] for m in sent) == Counter(call_ids)
            assert {m.chat_id for m in sent} == {secretary.telegram_id}
            assert sum(asked) == len(call_ids)


async def test_last_months_summaries_go_out_once_by_two_schedulers(db_url, clock) -> None:
    async with _processes(db_url) as makers:
        async with makers[0]() as session:
            tree, _, secretary, _, people = await _duty_world(session, members=4)
            call, _ = await _call(session, clock, tree, secretary, capacity=5)
            for person in people[:3]:
                await answer_call(session=session, clock=clock, person=person, call_id=call.id)
            clock.advance(timedelta(hours=2))
            for person in people[:3]:
                await check_in(
                    session=session,
                    clock=clock,
                    person=person,
                    call_id=call.id,
                    latitude=PLACE[0],
                    longitude=PLACE[1],
                )
            clock.advance(timedelta(hours=1))
            for person in people[:3]:
                await check_out(session=session, clock=clock, person=person, call_id=call.id)
            clock.advance(timedelta(hours=2))
            members = await _member_ids(session)
            await confirm_attendance(
                session=session,
                clock=clock,
                actor=secretary,
                call_id=call.id,
                attended={members[p.id]: True for p in people[:3]},
            )
            await session.commit()
        clock.set(_local(2026, 12, 1, 9, 0))

        sent = await _at_once(
            makers, "job_run", lambda s: send_monthly_summaries(session=s, clock=clock, tz=TZ)
        )

        async with makers[0]() as session:
            to_members = await _outbox(session, "duty_month_member")
            to_secretaries = await _outbox(session, "duty_month_secretary")
            assert sorted(m.chat_id for m in to_members) == [p.telegram_id for p in people[:3]]
            assert [m.chat_id for m in to_secretaries] == [secretary.telegram_id]
            assert sorted(sent, key=str) == [4, None]  # one sent them, the other found it done


async def test_the_digest_goes_out_once_by_two_schedulers(db_url) -> None:
    clock = FrozenClock(_local(2026, 11, 25, 7, 0))  # a Wednesday
    async with _processes(db_url) as makers:
        async with makers[0]() as session:
            tree, category, people = await _ticket_world(session)
            tickets = [await _file(session, clock, tree, category, people) for _ in range(3)]
            # One held by the grid, one by the community, one by the street.
            climbs = ([], ["leader"], ["leader", "secretary"])
            for ticket, actors in zip(tickets, climbs, strict=True):
                for actor in actors:
                    await escalate_ticket(
                        session=session,
                        clock=clock,
                        timing=TIMING,
                        actor=people[actor],
                        ticket_id=ticket.id,
                    )
            await session.commit()
        clock.set(_local(2026, 11, 25, 8, 31))

        sent = await _at_once(
            makers,
            "job_run",
            lambda s: send_digests(session=s, clock=clock, timing=TIMING, at=time(8, 30)),
        )

        async with makers[0]() as session:
            digests = await _outbox(session, "digest")
            assert sorted(m.chat_id for m in digests) == [200, 300, 400]
            assert sorted(sent, key=str) == [3, None]


async def _summoned(session, clock, tree, people) -> int:
    """A ticket the street whistled two departments for; the ticket's id."""
    police = Department(code="PS", name_zh="派出所", name_en="Police", unit_id=tree.street.id)
    session.add(police)
    await session.flush()
    for telegram_id, department in ((600, tree.department), (700, police)):
        person = await make_person(session, telegram_id, f"liaison {telegram_id}")
        session.add(
            RoleAssignment(
                person_id=person.id, role=Role.DEPARTMENT_LIAISON, department_id=department.id
            )
        )
    await session.commit()
    ticket = await _file(session, clock, tree, people["category"], people)
    for actor in ("leader", "secretary"):
        await escalate_ticket(
            session=session, clock=clock, timing=TIMING, actor=people[actor], ticket_id=ticket.id
        )
    await whistle(
        session=session,
        clock=clock,
        timing=TIMING,
        actor=people["officer"],
        ticket_id=ticket.id,
        department_ids=[tree.department.id, police.id],
    )
    return ticket.id


async def _event_counts(session, kind: str) -> Counter[int]:
    rows = await session.exec(
        sa.text(
            "SELECT ticket_id, count(*) FROM ticket_event WHERE kind = :kind GROUP BY ticket_id"
        ),
        params={"kind": kind},
    )
    return Counter({ticket_id: count for ticket_id, count in rows})


async def _follow_up_due(session, clock, tree, category, people) -> int:
    """A ticket resolved three days ago that the resident never answered; its id."""
    ticket = await _file(session, clock, tree, category, people)
    for step in (accept_ticket, resolve_ticket):
        extra = {"note": "修好了"} if step is resolve_ticket else {}
        await step(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=people["leader"],
            ticket_id=ticket.id,
            **extra,
        )
    return ticket.id


@pytest.mark.postgres
async def test_the_sweep_escalates_closes_and_chases_once_with_two_schedulers(
    postgres_db_url,
) -> None:
    clock = FrozenClock(_local(2026, 11, 25, 7, 0))
    async with _processes(postgres_db_url) as makers:
        async with makers[0]() as session:
            tree, category, people = await _ticket_world(session)
            people["category"] = category
            follow_ups = [
                await _follow_up_due(session, clock, tree, category, people) for _ in range(5)
            ]
            clock.advance(timedelta(days=3))
            due = [(await _file(session, clock, tree, category, people)).id for _ in range(60)]
            summoned = await _summoned(session, clock, tree, people)
            await session.commit()
        clock.advance(timedelta(minutes=31))

        async def scheduler(maker: async_sessionmaker):
            # Each sweeps with two sessions of its own, as sweep_job does.
            async with maker() as session, maker() as second:
                return await sweep(
                    session=session, clock=clock, timing=TIMING, batch=7, also=[second]
                )

        # Four sessions (two per scheduler) meet at the tickets.
        work = [scheduler(maker) for maker in makers]
        reports = await _together(makers[0], "ticket", work, waiters=2 * PROCESSES)

        async with makers[0]() as session:
            assert sum(r.escalated for r in reports) == sum(r.reminded for r in reports) == len(due)
            assert await _event_counts(session, "escalate") == Counter(
                dict.fromkeys(due, 1) | {summoned: 2}  # the summoned one climbed by hand
            )
            assert sum(r.closed_unrated for r in reports) == len(follow_ups)
            assert await _event_counts(session, "expire") == Counter(dict.fromkeys(follow_ups, 1))
            closed = (
                await session.exec(select(Ticket.id).where(Ticket.status == TicketStatus.CLOSED))
            ).all()
            assert sorted(closed) == sorted(follow_ups)
            assert sum(r.departments_escalated for r in reports) == 2
            assert sum(r.departments_reminded for r in reports) == 2
            assert await _event_counts(session, "department_escalated") == Counter({summoned: 2})
            cards = await _outbox(session, "ticket_card")
            escalated = Counter(
                m.data["ticket_id"] for m in cards if m.data.get("reason") == "escalated"
            )
            # The summoned ticket's two cards are from its climb by hand, before the sweeps.
            assert escalated == Counter(dict.fromkeys(due, 1) | {summoned: 2})


async def _check_in(session, clock, person, call_id) -> None:
    await check_in(
        session=session,
        clock=clock,
        person=person,
        call_id=call_id,
        latitude=PLACE[0],
        longitude=PLACE[1],
    )


@pytest.mark.postgres
async def test_the_whole_job_run_by_two_schedulers_at_once_does_everything_once(
    postgres_db_url,
) -> None:
    """Everything falls due at 09:00 on the 1st of a month (a Tuesday): two schedulers run
    sweep_job's work at that moment, each with its own engine, clock and settings."""
    clock = FrozenClock(_local(2026, 11, 20, 8, 0))
    async with _processes(postgres_db_url) as makers:
        async with makers[0]() as session:
            tree, category, people = await _ticket_world(session)
            people["category"] = category
            secretary = people["secretary"]
            members = await make_members(session, tree, 4)
            member_ids = await _member_ids(session)
            # November: two members serve (the month's summaries).
            served, _ = await _call(session, clock, tree, secretary, capacity=5)  # 10:00-12:00
            for person in members[:2]:
                await answer_call(session=session, clock=clock, person=person, call_id=served.id)
            clock.advance(timedelta(hours=2))
            for person in members[:2]:
                await _check_in(session, clock, person, served.id)
            clock.advance(timedelta(hours=1))
            for person in members[:2]:
                await check_out(session=session, clock=clock, person=person, call_id=served.id)
            clock.advance(timedelta(hours=2))
            await confirm_attendance(
                session=session,
                clock=clock,
                actor=secretary,
                call_id=served.id,
                attended={member_ids[p.id]: True for p in members[:2]},
            )
            # Friday: answers the residents never rated (closed unrated from Monday 10:00).
            clock.set(_local(2026, 11, 27, 10, 0))
            follow_ups = [
                await _follow_up_due(session, clock, tree, category, people) for _ in range(3)
            ]
            # 1 December, 04:30: a call from 06:30 to 08:30; two check in and never check out.
            clock.set(_local(2026, 12, 1, 4, 30))
            over, _ = await _call(session, clock, tree, secretary, capacity=5)
            for person in members[:3]:
                await answer_call(session=session, clock=clock, person=person, call_id=over.id)
            clock.advance(timedelta(hours=2))
            for person in members[:2]:
                await _check_in(session, clock, person, over.id)
            # 07:30: a call from 09:30, four coming (reminded an hour before).
            clock.set(_local(2026, 12, 1, 7, 30))
            ahead, _ = await _call(session, clock, tree, secretary, capacity=5)
            for person in members:
                await answer_call(session=session, clock=clock, person=person, call_id=ahead.id)
            # 08:00: tickets filed (30 minutes to accept), one whistled at the street.
            clock.set(_local(2026, 12, 1, 8, 0))
            due = [(await _file(session, clock, tree, category, people)).id for _ in range(30)]
            summoned = await _summoned(session, clock, tree, people)
            mark = (
                await session.exec(select(sa.func.coalesce(sa.func.max(OutboxMessage.id), 0)))
            ).one()
            await session.commit()

        contexts = [
            jobs.JobContext(
                maker,
                FrozenClock(_local(2026, 12, 1, 9, 0)),
                Timing(WorkCalendar(TZ), Ladder(top_repeat_minutes=240, top_repeat_times=3)),
                time(8, 30),
            )
            for maker in makers
        ]
        # They meet at the call jobs: whichever sweeps less would otherwise be done with them
        # before the other starts. Nothing before them reads the calls' table.
        work = [jobs.run_jobs(ctx) for ctx in contexts]
        reports = await _together(makers[0], "duty_call", work)

        async with makers[0]() as session:
            sent = list(
                (await session.exec(select(OutboxMessage).where(OutboxMessage.id > mark))).all()
            )
            # No message twice, whatever it is.
            twice = Counter((m.chat_id, m.kind, json.dumps(m.data, sort_keys=True)) for m in sent)
            assert [key for key, n in twice.items() if n > 1] == []

            # The sweep: each ticket reminded and escalated once, each follow-up closed once,
            # each silent department brought to the district once.
            assert sum(r.escalated for r in reports) == sum(r.reminded for r in reports) == 30
            assert await _event_counts(session, "escalate") == Counter(
                dict.fromkeys(due, 1) | {summoned: 2}
            )
            assert sum(r.closed_unrated for r in reports) == 3
            assert await _event_counts(session, "expire") == Counter(dict.fromkeys(follow_ups, 1))
            assert sum(r.departments_escalated for r in reports) == 2
            assert await _event_counts(session, "department_escalated") == Counter({summoned: 2})

            # Calls: the four coming reminded once each; the forgotten check-outs closed at the
            # end; the organiser asked once; last month summed up once for each.
            reminders = [m for m in sent if m.kind == "duty_call_reminder"]
            assert sorted((m.data["call_id"], m.chat_id) for m in reminders) == [
                (ahead.id, p.telegram_id) for p in members
            ]
            claims = (
                await session.exec(
                    select(CallClaim.member_id, CallClaim.auto_closed, CallClaim.minutes).where(
                        CallClaim.call_id == over.id
                    )
                )
            ).all()
            assert sorted(claims) == sorted(
                [(member_ids[members[0].id], True, 120), (member_ids[members[1].id], True, 120)]
                + [(member_ids[members[2].id], False, 0)]
            )
            asked = [m for m in sent if m.kind == "duty_attendance_due"]
            assert [(m.chat_id, m.data["call_id"], m.data["claims"]) for m in asked] == [
                (secretary.telegram_id, over.id, 3)
            ]
            assert sorted(m.chat_id for m in sent if m.kind == "duty_month_member") == [1000, 1001]
            assert [m.chat_id for m in sent if m.kind == "duty_month_secretary"] == [300]

            # The digest: once each (who holds what depends on which sweep had committed).
            digests = Counter(m.chat_id for m in sent if m.kind == "digest")
            assert digests and set(digests.values()) == {1}


@pytest.mark.postgres
async def test_attendance_waits_while_another_scheduler_closes_a_forgotten_check_out(
    postgres_db_url, clock
) -> None:
    """The organiser's sheet must be complete when they are told it waits: a check-out another
    scheduler is closing right now holds the message back until a later sweep."""
    async with _processes(postgres_db_url) as makers:
        async with makers[0]() as session:
            tree, _, secretary, _, people = await _duty_world(session, members=2)
            call, _ = await _call(session, clock, tree, secretary, capacity=5)
            call_id = call.id
            for person in people:
                await answer_call(session=session, clock=clock, person=person, call_id=call_id)
            clock.advance(timedelta(hours=2))
            await _check_in(session, clock, people[0], call_id)
            await session.commit()
        clock.advance(timedelta(hours=2, minutes=5))  # over; the check-out was forgotten

        async with makers[0]() as first, makers[1]() as second:
            # The first scheduler has the forgotten claim in hand (not committed yet)...
            await first.exec(
                select(CallClaim)
                .where(CallClaim.call_id == call_id, CallClaim.checked_out_at.is_(None))
                .with_for_update()
            )
            # ...so the second neither closes it nor tells the organiser yet (each job
            # commits what it did, as run_jobs does).
            assert await close_forgotten(session=second, clock=clock) == 0
            await second.commit()
            assert await ask_attendance(session=second, clock=clock) == 0
            await second.commit()
            assert await close_forgotten(session=first, clock=clock) == 1
            await first.commit()
            # The next sweep, with the sheet complete, tells the organiser once.
            assert await ask_attendance(session=second, clock=clock) == 1
            await second.commit()
            assert await ask_attendance(session=first, clock=clock) == 0
            await first.commit()
        async with makers[0]() as session:
            [asked] = await _outbox(session, "duty_attendance_due")
            assert (asked.chat_id, asked.data["claims"]) == (secretary.telegram_id, 2)
