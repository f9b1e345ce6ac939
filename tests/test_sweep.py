"""The deadline sweep: reminders, the ladder, the top's repeats, catch-up, two schedulers."""

from __future__ import annotations

import asyncio
import inspect
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlmodel import select

from domain.calendar import WorkCalendar
from domain.clock import FrozenClock
from domain.deadlines import Ladder, Timing
from domain.reference import load_snapshot
from domain.tickets import (
    accept_ticket,
    confirm_ticket,
    events_of,
    file_ticket,
    resolve_ticket,
)
from scheduler.sweep import sweep
from storage.db import make_engine, make_sessionmaker
from storage.enums import Level, ReturnReason, Role, TicketStatus, Urgency
from storage.models import (
    Category,
    DeadlinePolicy,
    OutboxMessage,
    RoleAssignment,
    Ticket,
)
from tests.factories import make_person, make_tree

TZ = ZoneInfo("Asia/Shanghai")
S = TicketStatus
TIMING = Timing(WorkCalendar(TZ), Ladder(top_repeat_minutes=240, top_repeat_times=3))


async def _world(session, *, working_time: bool = False):
    """The tree, a category, 30 min to accept / 4 h to resolve at every level, and its people."""
    tree = await make_tree(session)
    category = Category(
        code="LIGHT", name_zh="路灯", name_en="Street light", urgency=Urgency.NORMAL
    )
    session.add(category)
    for level in Level:
        session.add(
            DeadlinePolicy(
                urgency=Urgency.NORMAL,
                level=level,
                accept_minutes=30,
                resolve_minutes=240,
                working_time=working_time,
                reminders=[0.5],
            )
        )
    people = {}
    for telegram_id, name, role, unit in (
        (200, "leader", Role.GRID_LEADER, tree.grid),
        (300, "secretary", Role.COMMUNITY_SECRETARY, tree.community),
        (400, "officer", Role.STREET_OFFICER, tree.street),
        (500, "district", Role.ADMIN, tree.district),
    ):
        person = await make_person(session, telegram_id, name)
        session.add(RoleAssignment(person_id=person.id, role=role, unit_id=unit.id))
        people[name] = person
    people["resident"] = await make_person(session, 100, "resident")
    await session.commit()
    return tree, category, people


async def _file(session, clock, tree, category, people, timing=TIMING) -> Ticket:
    ctx = await file_ticket(
        session=session,
        org=await load_snapshot(session),
        clock=clock,
        timing=timing,
        reporter=people["resident"],
        category_id=category.id,
        description="路灯不亮",
        grid_id=tree.grid.id,
        latitude=34.742,
        longitude=113.632,
    )
    return ctx.ticket


async def _reload(session, ticket_id: int) -> Ticket:
    """The ticket as the database has it now, not as this session last saw it."""
    statement = (
        select(Ticket).where(Ticket.id == ticket_id).execution_options(populate_existing=True)
    )
    return (await session.exec(statement)).one()


async def _messages(session, *, since: int = 0) -> list[tuple[int, str, str | None]]:
    rows = (
        await session.exec(
            select(OutboxMessage).where(OutboxMessage.id > since).order_by(OutboxMessage.id)
        )
    ).all()
    return [(m.chat_id, m.kind, m.data.get("reason") or m.data.get("event")) for m in rows]


async def _last_outbox_id(session) -> int:
    return (await session.exec(select(sa.func.coalesce(sa.func.max(OutboxMessage.id), 0)))).one()


async def test_a_ticket_nobody_touches_climbs_the_whole_ladder(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree, category, people = await _world(session)
        ticket = await _file(session, clock, tree, category, people)
        ticket_id = ticket.id
        start = clock.now()
        assert ticket.next_deadline == start + timedelta(minutes=30)
        assert ticket.alert_at == start + timedelta(minutes=15)

        # Nothing is due yet.
        assert (await sweep(session=session, clock=clock, timing=TIMING)).total == 0

        # Half-way: the grid leader is reminded, once.
        mark = await _last_outbox_id(session)
        clock.advance(timedelta(minutes=15))
        report = await sweep(session=session, clock=clock, timing=TIMING)
        assert (report.reminded, report.escalated) == (1, 0)
        assert await _messages(session, since=mark) == [(200, "ticket_card", "reminder")]
        assert (await sweep(session=session, clock=clock, timing=TIMING)).total == 0

        # Each missed deadline climbs one level: community, street, district.
        for holder, level, telegram_id, below in (
            (tree.community, Level.COMMUNITY, 300, 200),
            (tree.street, Level.STREET, 400, 300),
            (tree.district, Level.DISTRICT, 500, 400),
        ):
            mark = await _last_outbox_id(session)
            clock.advance(timedelta(minutes=15))
            report = await sweep(session=session, clock=clock, timing=TIMING)
            assert report.escalated == 1
            ticket = await _reload(session, ticket_id)
            assert (ticket.level, ticket.holder_unit_id, ticket.status) == (level, holder.id, S.NEW)
            assert ticket.holder_since == clock.now()
            assert ticket.next_deadline == clock.now() + timedelta(minutes=30)
            sent = await _messages(session, since=mark)
            # The new holder gets the whole card, the level below and the resident are told.
            assert (telegram_id, "ticket_card", "escalated") in sent
            assert (below, "ticket_moved", "escalated") in sent
            assert (100, "ticket_status", "escalated") in sent
            assert (await sweep(session=session, clock=clock, timing=TIMING)).total == 0
            clock.advance(timedelta(minutes=15))
            assert (await sweep(session=session, clock=clock, timing=TIMING)).reminded == 1

        # At the top: overdue at the deadline, then every 4 h, three more times, then silence.
        counts = []
        for _ in range(6):
            clock.advance(timedelta(minutes=15) if not counts else timedelta(hours=4))
            counts.append((await sweep(session=session, clock=clock, timing=TIMING)).overdue_at_top)
        assert counts == [1, 1, 1, 1, 0, 0]
        ticket = await _reload(session, ticket_id)
        assert ticket.alerts == [] and ticket.alert_at is None
        assert ticket.level == Level.DISTRICT

        events = [
            (e.kind, e.actor_id, e.data.get("to_level"))
            for e in await events_of(session, ticket.id)
        ]
        assert events == [
            ("file", people["resident"].id, None),
            ("escalate", None, "community"),
            ("escalate", None, "street"),
            ("escalate", None, "district"),
        ]


async def test_after_downtime_each_missed_alert_happens_once_in_deadline_order(
    sessionmaker, clock
) -> None:
    async with sessionmaker() as session:
        tree, category, people = await _world(session)
        first = await _file(session, clock, tree, category, people)
        clock.advance(timedelta(minutes=5))
        second = await _file(session, clock, tree, category, people)
        accepted = await _file(session, clock, tree, category, people)
        await accept_ticket(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=people["leader"],
            ticket_id=accepted.id,
        )
        mark = await _last_outbox_id(session)

        # The bot was down for ten hours: sixty sweeps were missed.
        clock.advance(timedelta(hours=10))
        report = await sweep(session=session, clock=clock, timing=TIMING)
        # Each new ticket: its reminder, then its escalation (which replaced the rest of the
        # grid's schedule). The accepted one: its reminder, then its escalation at 4 h.
        assert (report.reminded, report.escalated) == (3, 3)
        assert (await sweep(session=session, clock=clock, timing=TIMING)).total == 0

        sent = [m for m in await _messages(session, since=mark) if m[0] in (200, 300)]
        assert sent[0] == (200, "ticket_card", "reminder")
        escalations = (
            await session.exec(
                select(sa.func.count()).select_from(Ticket).where(Ticket.level == Level.COMMUNITY)
            )
        ).one()
        assert escalations == 3
        # In deadline order: the first ticket's events come before the second's.
        ids = {}
        for ticket in (first, second, accepted):
            ids[ticket.id] = [
                e.id for e in await events_of(session, ticket.id) if e.kind == "escalate"
            ]
        assert ids[first.id][0] < ids[second.id][0] < ids[accepted.id][0]
        # The community's new deadlines run from the sweep that caught up, not from the past.
        for ticket in (first, second, accepted):
            ticket = await _reload(session, ticket.id)
            assert ticket.holder_since == clock.now()
            assert ticket.next_deadline == clock.now() + timedelta(minutes=30)


async def test_an_unanswered_follow_up_closes_the_ticket_unrated(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree, category, people = await _world(session)
        ticket = await _file(session, clock, tree, category, people)
        ticket_id = ticket.id
        await accept_ticket(
            session=session, clock=clock, timing=TIMING, actor=people["leader"], ticket_id=ticket_id
        )
        await resolve_ticket(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=people["leader"],
            ticket_id=ticket_id,
            note="换了灯泡",
        )
        resolved_at = clock.now()
        clock.advance(timedelta(days=3) - timedelta(minutes=1))
        assert (await sweep(session=session, clock=clock, timing=TIMING)).total == 0
        mark = await _last_outbox_id(session)
        clock.advance(timedelta(minutes=1))
        report = await sweep(session=session, clock=clock, timing=TIMING)
        assert report.closed_unrated == 1
        ticket = await _reload(session, ticket_id)
        assert (ticket.status, ticket.rating, ticket.closed_at) == (
            S.CLOSED,
            None,
            resolved_at + timedelta(days=3),
        )
        assert ticket.alert_at is None and ticket.next_deadline is None
        assert await _messages(session, since=mark) == [
            (100, "ticket_status", "closed_unrated"),
            (200, "ticket_status", "closed_unrated"),
        ]
        assert [e.kind for e in await events_of(session, ticket_id)][-1] == "expire"


async def test_a_ticket_closed_in_time_is_never_touched_by_the_sweep(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree, category, people = await _world(session)
        ticket = await _file(session, clock, tree, category, people)
        await accept_ticket(
            session=session, clock=clock, timing=TIMING, actor=people["leader"], ticket_id=ticket.id
        )
        await resolve_ticket(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=people["leader"],
            ticket_id=ticket.id,
            note="好了",
        )
        await confirm_ticket(
            session=session, clock=clock, actor=people["resident"], ticket_id=ticket.id
        )
        clock.advance(timedelta(days=30))
        assert (await sweep(session=session, clock=clock, timing=TIMING)).total == 0


async def test_working_time_deadlines_skip_the_weekend_and_the_night(sessionmaker) -> None:
    """A ticket filed on Friday evening is due on Monday morning when time counts in work hours."""
    timing = Timing(
        WorkCalendar(TZ, working_hours=[(time(9), time(12)), (time(13), time(17))]), Ladder()
    )
    friday_evening = datetime(2026, 11, 27, 19, 30, tzinfo=TZ).astimezone(UTC)
    clock = FrozenClock(friday_evening)
    async with sessionmaker() as session:
        tree, category, people = await _world(session, working_time=True)
        ticket = await _file(session, clock, tree, category, people, timing=timing)
        monday = datetime(2026, 11, 30, tzinfo=TZ)
        assert ticket.next_deadline == (monday + timedelta(hours=9, minutes=30)).astimezone(UTC)
        assert ticket.alert_at == (monday + timedelta(hours=9, minutes=15)).astimezone(UTC)
        clock.advance(timedelta(days=2))  # Sunday evening: still nothing due
        assert (await sweep(session=session, clock=clock, timing=timing)).total == 0


@pytest.mark.postgres
async def test_two_schedulers_never_handle_a_ticket_twice(postgres_db_url, clock) -> None:
    """Two schedulers (each its own engine) sweep the same due tickets at once (PostgreSQL)."""
    db_url = postgres_db_url
    engines = [make_engine(db_url) for _ in range(2)]
    makers = [make_sessionmaker(e) for e in engines]
    try:
        async with makers[0]() as session:
            tree, category, people = await _world(session)
            tickets = [await _file(session, clock, tree, category, people) for _ in range(120)]
            await session.commit()
        clock.advance(timedelta(minutes=31))

        async def run(maker):
            async with maker() as session:
                return await sweep(session=session, clock=clock, timing=TIMING, batch=7)

        reports = await asyncio.gather(run(makers[0]), run(makers[1]))
        # Together they did all of it, each ticket once (small batches interleave).
        assert sum(r.escalated for r in reports) == len(tickets)
        assert sum(r.reminded for r in reports) == len(tickets)
        async with makers[0]() as session:
            counts = (
                await session.exec(
                    sa.text(
                        "SELECT ticket_id, count(*) FROM ticket_event WHERE kind = 'escalate' "
                        "GROUP BY ticket_id"
                    )
                )
            ).all()
            assert len(counts) == len(tickets) and {c for _, c in counts} == {1}
            cards = (
                await session.exec(
                    sa.text(
                        "SELECT count(*) FROM outbox WHERE kind = 'ticket_card' "
                        "AND data->>'reason' = 'escalated'"
                    )
                )
            ).one()
            assert cards[0] == len(tickets)
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_second_session_shares_the_sweep_on_postgresql(db_url, clock) -> None:
    """The job's second session takes batches of its own on PostgreSQL, none on SQLite; either
    way every due ticket is escalated once."""
    engine = make_engine(db_url)
    maker = make_sessionmaker(engine)
    try:
        async with maker() as session:
            tree, category, people = await _world(session)
            tickets = [await _file(session, clock, tree, category, people) for _ in range(40)]
            await session.commit()
        clock.advance(timedelta(minutes=31))
        claimed: list[str] = []
        async with maker() as session, maker() as second:

            @sa.event.listens_for(second.sync_session, "do_orm_execute")
            def seen(state) -> None:
                if state.is_select:
                    claimed.append("select")

            report = await sweep(
                session=session, clock=clock, timing=TIMING, batch=5, also=[second]
            )
        assert report.escalated == len(tickets)
        if engine.dialect.name == "postgresql":
            assert claimed, "the second session never claimed a batch"
        else:
            assert claimed == []
        async with maker() as session:
            counts = (
                await session.exec(
                    sa.text(
                        "SELECT ticket_id, count(*) FROM ticket_event WHERE kind = 'escalate' "
                        "GROUP BY ticket_id"
                    )
                )
            ).all()
            assert len(counts) == len(tickets) and {c for _, c in counts} == {1}
    finally:
        await engine.dispose()


@pytest.mark.parametrize("step", ["escalate", "remind"])
async def test_a_column_a_step_starts_setting_reaches_the_database(
    sessionmaker, clock, monkeypatch, step
) -> None:
    """Whatever a sweep step sets in a ticket is written with the batch: here the step also
    sets columns that no step sets today (text, number, JSON, enum and time), as a future
    escalate or remind might."""
    import domain.sweep

    later = clock.now() + timedelta(hours=1)
    real = getattr(domain.sweep, step)

    async def and_more(*args, **kwargs):
        result = await real(*args, **kwargs)
        ticket = inspect.signature(real).bind(*args, **kwargs).arguments["ticket"]
        ticket.resolution_note = f"set by {step}"
        ticket.reopen_count = 7
        ticket.photos = ["from-the-sweep"]
        ticket.return_reason = ReturnReason.NOT_OUR_REMIT
        ticket.accepted_at = later
        return result

    monkeypatch.setattr(domain.sweep, step, and_more)
    async with sessionmaker() as session:
        tree, category, people = await _world(session)
        ticket_id = (await _file(session, clock, tree, category, people)).id
        # The reminder is due at 15 minutes, the escalation at 30.
        clock.advance(timedelta(minutes=15 if step == "remind" else 31))
        report = await sweep(session=session, clock=clock, timing=TIMING)
        assert (report.reminded if step == "remind" else report.escalated) == 1

    async with sessionmaker() as session:
        ticket = (await session.exec(select(Ticket).where(Ticket.id == ticket_id))).one()
        assert ticket.resolution_note == f"set by {step}"
        assert ticket.reopen_count == 7
        assert ticket.photos == ["from-the-sweep"]
        assert ticket.return_reason == ReturnReason.NOT_OUR_REMIT
        assert ticket.accepted_at == later
        # And what the step itself set.
        if step == "escalate":
            assert (ticket.level, ticket.holder_unit_id) == (Level.COMMUNITY, tree.community.id)
        assert ticket.alert_at is not None and ticket.alert_at > clock.now()
