"""The ticket lifecycle in the domain: moves, events, who may act, who is told."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from domain.deadlines import Timing
from domain.errors import DomainError, NotAllowed
from domain.reference import load_snapshot
from domain.tickets import (
    MOVES,
    Action,
    StaleAction,
    accept_ticket,
    cancel_ticket,
    confirm_ticket,
    escalate_ticket,
    events_of,
    file_ticket,
    find_duplicates,
    join_ticket,
    queue_of,
    rate_ticket,
    redispatch_ticket,
    reopen_ticket,
    resolve_ticket,
    return_ticket,
    tickets_of,
)
from storage.enums import Level, ReturnReason, Role, TicketStatus, Urgency
from storage.models import (
    AuditEntry,
    Category,
    DeadlinePolicy,
    OutboxMessage,
    RoleAssignment,
    Ticket,
)
from tests.factories import make_person, make_tree

CAL = Timing.plain(ZoneInfo("Asia/Shanghai"))
S = TicketStatus


async def _world(session):
    tree = await make_tree(session)
    category = Category(code="GARBAGE", name_zh="垃圾", name_en="Garbage", urgency=Urgency.NORMAL)
    session.add(category)
    await session.flush()
    session.add(
        DeadlinePolicy(
            urgency=Urgency.NORMAL,
            level=Level.GRID,
            accept_minutes=120,
            resolve_minutes=3 * 1440,
            working_time=False,
        )
    )
    resident = await make_person(session, 100, "Resident")
    leader = await make_person(session, 200, "Leader")
    other_leader = await make_person(session, 201, "Other leader")
    secretary = await make_person(session, 300, "Secretary")
    session.add_all(
        [
            RoleAssignment(person_id=leader.id, role=Role.GRID_LEADER, unit_id=tree.grid.id),
            RoleAssignment(
                person_id=other_leader.id, role=Role.GRID_LEADER, unit_id=tree.other_grid.id
            ),
            RoleAssignment(
                person_id=secretary.id, role=Role.COMMUNITY_SECRETARY, unit_id=tree.community.id
            ),
        ]
    )
    await session.commit()
    return tree, category, resident, leader, other_leader, secretary


async def _file(session, clock, tree, category, resident, **extra):
    ctx = await file_ticket(
        session=session,
        org=await load_snapshot(session),
        clock=clock,
        timing=CAL,
        reporter=resident,
        category_id=category.id,
        description="楼下垃圾三天没人清",
        photos=["p1", "p2"],
        grid_id=tree.grid.id,
        latitude=34.742,
        longitude=113.632,
        **extra,
    )
    return ctx.ticket


async def _outbox(session):
    return [
        (m.chat_id, m.kind)
        for m in (await session.exec(select(OutboxMessage).order_by(OutboxMessage.id))).all()
    ]


def test_every_move_targets_a_real_status() -> None:
    for (before, action), after in MOVES.items():
        assert isinstance(before, TicketStatus) and isinstance(after, TicketStatus)
        assert isinstance(action, Action)
    # Closed tickets only take a rating; nothing leaves cancelled.
    assert {a for (s, a) in MOVES if s == S.CLOSED} == {Action.RATE}
    assert not [a for (s, a) in MOVES if s == S.CANCELLED]


async def test_the_whole_story(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree, category, resident, leader, _, _ = await _world(session)
        ticket = await _file(session, clock, tree, category, resident)
        assert re.fullmatch(r"ZZ-20261125-0001", ticket.number)
        assert (ticket.status, ticket.level, ticket.holder_unit_id) == (
            S.NEW,
            Level.GRID,
            tree.grid.id,
        )
        assert ticket.accept_deadline == clock.now() + timedelta(hours=2)
        assert ticket.next_deadline == ticket.accept_deadline
        # The grid leader gets photos, place and card; nobody else.
        assert await _outbox(session) == [
            (200, "ticket_photos"),
            (200, "ticket_place"),
            (200, "ticket_card"),
        ]

        clock.advance(timedelta(minutes=10))
        await accept_ticket(
            session=session, clock=clock, timing=CAL, actor=leader, ticket_id=ticket.id
        )
        clock.advance(timedelta(hours=1))
        await resolve_ticket(
            session=session,
            clock=clock,
            timing=CAL,
            actor=leader,
            ticket_id=ticket.id,
            note="已清理",
            photo="after.jpg",
        )
        await reopen_ticket(
            session=session,
            clock=clock,
            timing=CAL,
            actor=resident,
            ticket_id=ticket.id,
            reason="还有一堆没清",
        )
        await resolve_ticket(
            session=session,
            clock=clock,
            timing=CAL,
            actor=leader,
            ticket_id=ticket.id,
            note="全部清完",
        )
        await confirm_ticket(session=session, clock=clock, actor=resident, ticket_id=ticket.id)
        ctx = await rate_ticket(
            session=session, clock=clock, actor=resident, ticket_id=ticket.id, rating=4
        )
        assert (ctx.ticket.status, ctx.ticket.rating, ctx.ticket.reopen_count) == (S.CLOSED, 4, 1)
        assert ctx.ticket.accepted_by_id == leader.id
        assert ctx.ticket.next_deadline is None

        events = await events_of(session, ticket.id)
        assert [(e.kind, e.from_status, e.to_status, e.actor_id) for e in events] == [
            ("file", None, S.NEW, resident.id),
            ("accept", S.NEW, S.ACCEPTED, leader.id),
            ("resolve", S.ACCEPTED, S.RESOLVED, leader.id),
            ("reopen", S.RESOLVED, S.REOPENED, resident.id),
            ("resolve", S.REOPENED, S.RESOLVED, leader.id),
            ("confirm", S.RESOLVED, S.CLOSED, resident.id),
            ("rate", S.CLOSED, S.CLOSED, resident.id),
        ]
        assert events[3].note == "还有一堆没清"
        kinds = await _outbox(session)
        # The resident heard of the acceptance and was asked twice whether it is solved.
        assert kinds.count((100, "ticket_followup")) == 2
        assert (100, "ticket_status") in kinds
        # The reopened ticket went back to the leader as a card; the leader heard of the rating.
        assert kinds.count((200, "ticket_card")) == 2
        assert kinds[-1] == (200, "ticket_status")

        with pytest.raises(StaleAction):
            await rate_ticket(
                session=session, clock=clock, actor=resident, ticket_id=ticket.id, rating=5
            )


async def test_stale_and_forged_actions_change_nothing(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree, category, resident, leader, other_leader, _ = await _world(session)
        ticket = await _file(session, clock, tree, category, resident)
        await session.commit()
        await accept_ticket(
            session=session, clock=clock, timing=CAL, actor=leader, ticket_id=ticket.id
        )
        await session.commit()
        # Each refusal is committed as the bot's middleware would: only its audit is kept.
        with pytest.raises(StaleAction) as stale:
            await accept_ticket(
                session=session, clock=clock, timing=CAL, actor=leader, ticket_id=ticket.id
            )
        await session.commit()
        assert stale.value.params == {"status": "accepted", "number": ticket.number}
        with pytest.raises(NotAllowed):
            await resolve_ticket(
                session=session,
                clock=clock,
                timing=CAL,
                actor=other_leader,
                ticket_id=ticket.id,
                note="不是我的",
            )
        await session.commit()
        with pytest.raises(NotAllowed):
            await confirm_ticket(session=session, clock=clock, actor=leader, ticket_id=ticket.id)
        await session.commit()
    async with sessionmaker() as session:
        stored = await session.get(Ticket, ticket.id)
        assert stored.status == S.ACCEPTED
        assert len(await events_of(session, ticket.id)) == 2
        denied = (
            await session.exec(select(AuditEntry).where(AuditEntry.action == "access.denied"))
        ).all()
        assert [d.actor_id for d in denied] == [other_leader.id, leader.id]


async def test_return_redispatch_and_cancel(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree, category, resident, leader, other_leader, secretary = await _world(session)
        first = await _file(session, clock, tree, category, resident)
        ctx = await return_ticket(
            session=session,
            clock=clock,
            timing=CAL,
            actor=leader,
            ticket_id=first.id,
            reason=ReturnReason.NOT_MY_GRID,
        )
        assert (ctx.ticket.status, ctx.ticket.level, ctx.ticket.holder_unit_id) == (
            S.RETURNED,
            Level.COMMUNITY,
            tree.community.id,
        )
        assert (300, "ticket_card") in await _outbox(session)
        # The leader who returned it no longer holds it: told it moved on, not refused.
        with pytest.raises(StaleAction) as moved:
            await redispatch_ticket(
                session=session,
                clock=clock,
                timing=CAL,
                actor=leader,
                ticket_id=first.id,
                grid_id=tree.other_grid.id,
            )
        assert moved.value.key == "ticket.moved"
        assert moved.value.params["level"] == "community"
        with pytest.raises(DomainError):
            await redispatch_ticket(
                session=session,
                clock=clock,
                timing=CAL,
                actor=secretary,
                ticket_id=first.id,
                grid_id=tree.street.id,
            )
        ctx = await redispatch_ticket(
            session=session,
            clock=clock,
            timing=CAL,
            actor=secretary,
            ticket_id=first.id,
            grid_id=tree.other_grid.id,
        )
        assert (ctx.ticket.status, ctx.ticket.grid_id, ctx.ticket.level) == (
            S.NEW,
            tree.other_grid.id,
            Level.GRID,
        )
        assert (201, "ticket_card") in await _outbox(session)

        second = await _file(session, clock, tree, category, resident)
        assert second.number.endswith("-0002")
        await return_ticket(
            session=session,
            clock=clock,
            timing=CAL,
            actor=leader,
            ticket_id=second.id,
            reason=ReturnReason.NOT_REAL,
        )
        ctx = await cancel_ticket(
            session=session, clock=clock, actor=secretary, ticket_id=second.id, note="核实后不属实"
        )
        assert ctx.ticket.status == S.CANCELLED
        assert (await _outbox(session))[-1] == (100, "ticket_status")


async def test_escalation_by_hand_climbs_one_level_at_a_time(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree, category, resident, leader, _, secretary = await _world(session)
        ticket = await _file(session, clock, tree, category, resident)
        ctx = await escalate_ticket(
            session=session,
            clock=clock,
            timing=CAL,
            actor=leader,
            ticket_id=ticket.id,
            note="需要社区协调",
        )
        assert (ctx.ticket.level, ctx.ticket.holder_unit_id, ctx.ticket.status) == (
            Level.COMMUNITY,
            tree.community.id,
            S.NEW,
        )
        kinds = await _outbox(session)
        assert (300, "ticket_card") in kinds and (100, "ticket_status") in kinds
        # The secretary holds it now; the grid leader's old button says it moved on.
        with pytest.raises(StaleAction):
            await accept_ticket(
                session=session, clock=clock, timing=CAL, actor=leader, ticket_id=ticket.id
            )
        await accept_ticket(
            session=session, clock=clock, timing=CAL, actor=secretary, ticket_id=ticket.id
        )
        ctx = await escalate_ticket(
            session=session, clock=clock, timing=CAL, actor=secretary, ticket_id=ticket.id
        )
        assert ctx.ticket.level == Level.STREET
        # The climb by deadline, and the top of the ladder: tests/test_sweep.py.


async def test_duplicates_and_me_too(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree, category, resident, leader, _, _ = await _world(session)
        neighbour = await make_person(session, 101, "Neighbour")
        ticket = await _file(session, clock, tree, category, resident)
        # ~55 m away: a duplicate; ~300 m away: not.
        near = await find_duplicates(
            session, category_id=category.id, latitude=34.7425, longitude=113.632
        )
        far = await find_duplicates(
            session, category_id=category.id, latitude=34.745, longitude=113.632
        )
        assert [t.id for t in near] == [ticket.id]
        assert far == []
        # The reporter is not offered their own ticket.
        own = await find_duplicates(
            session,
            category_id=category.id,
            latitude=34.7425,
            longitude=113.632,
            exclude_person_id=resident.id,
        )
        assert own == []
        ctx = await join_ticket(session=session, clock=clock, person=neighbour, ticket_id=ticket.id)
        assert ctx.ticket.affected == 2
        await join_ticket(session=session, clock=clock, person=neighbour, ticket_id=ticket.id)
        assert (await session.get(Ticket, ticket.id)).affected == 2
        mine, total = await tickets_of(session, person_id=neighbour.id)
        assert ([t.id for t in mine], total) == ([ticket.id], 1)
        # Everyone who said "me too" hears of every change.
        await accept_ticket(
            session=session, clock=clock, timing=CAL, actor=leader, ticket_id=ticket.id
        )
        kinds = await _outbox(session)
        assert (100, "ticket_status") in kinds and (101, "ticket_status") in kinds


async def test_bad_reports_are_refused(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree, category, resident, _, _, _ = await _world(session)
        for kwargs, key in [
            ({"description": "x" * 1001}, "report.description_too_long"),
            ({"description": "   "}, "report.description_empty"),
            ({"photos": ["a", "b", "c", "d"]}, "report.too_many_photos"),
            ({"grid_id": tree.community.id}, "unit.unknown"),
        ]:
            args = {"description": "ok", "photos": [], "grid_id": tree.grid.id} | kwargs
            with pytest.raises(DomainError) as refused:
                await file_ticket(
                    session=session,
                    org=await load_snapshot(session),
                    clock=clock,
                    timing=CAL,
                    reporter=resident,
                    category_id=category.id,
                    **args,
                )
            assert refused.value.key == key
        assert (await session.exec(select(Ticket))).all() == []


async def test_queue_holds_what_the_person_holds_most_urgent_first(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree, category, resident, leader, other_leader, secretary = await _world(session)
        tickets = []
        for _ in range(3):
            tickets.append(await _file(session, clock, tree, category, resident))
            clock.advance(timedelta(minutes=5))
        # The first one was escalated: the secretary holds it now.
        await escalate_ticket(
            session=session, clock=clock, timing=CAL, actor=leader, ticket_id=tickets[0].id
        )
        page, total = await queue_of(session, person_id=leader.id)
        assert ([t.id for t in page], total) == ([tickets[1].id, tickets[2].id], 2)
        page, total = await queue_of(session, person_id=secretary.id)
        assert ([t.id for t in page], total) == ([tickets[0].id], 1)
        assert await queue_of(session, person_id=other_leader.id) == ([], 0)
        page, total = await queue_of(session, person_id=leader.id, offset=1, limit=1)
        assert ([t.id for t in page], total) == ([tickets[2].id], 2)


async def test_numbers_are_unique_under_concurrency(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree, category, resident, *_ = await _world(session)

    async def one() -> str:
        # Each filer owns its transaction, as the bot's middleware does, and commits.
        async with sessionmaker() as session:
            number = (await _file(session, clock, tree, category, resident)).number
            await session.commit()
            return number

    numbers = await asyncio.gather(*(one() for _ in range(8)))
    assert sorted(numbers) == [f"ZZ-20261125-{i:04d}" for i in range(1, 9)]
