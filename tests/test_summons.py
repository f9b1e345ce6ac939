"""The street's whistle: departments summoned, reporting in, returning, finishing, and the sweep
chasing a silent one up to the district."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from domain.errors import DomainError, NotAllowed
from domain.summons import (
    finish_summons,
    insist,
    proposed_departments,
    release,
    report_in,
    return_summons,
    summonses_of,
    whistle,
)
from domain.tickets import StaleAction, escalate_ticket, events_of
from scheduler.sweep import sweep
from storage.enums import Level, Role, SummonsReturnReason, SummonsStatus, TicketStatus
from storage.models import (
    AuditEntry,
    CategoryDepartment,
    Department,
    OutboxMessage,
    RoleAssignment,
)
from tests.factories import make_person
from tests.test_sweep import TIMING, _file, _reload, _world

S = TicketStatus
SS = SummonsStatus


async def _at_the_street(session, clock):
    """A ticket escalated by hand to the street, two departments with a liaison each."""
    tree, category, people = await _world(session)
    police = Department(code="PS", name_zh="派出所", name_en="Police", unit_id=tree.street.id)
    session.add(police)
    await session.flush()
    session.add(CategoryDepartment(category_id=category.id, department_id=tree.department.id))
    for telegram_id, name, department in ((600, "urban", tree.department), (700, "police", police)):
        person = await make_person(session, telegram_id, name)
        session.add(
            RoleAssignment(
                person_id=person.id, role=Role.DEPARTMENT_LIAISON, department_id=department.id
            )
        )
        people[name] = person
    await session.commit()
    ticket = await _file(session, clock, tree, category, people)
    for actor in ("leader", "secretary"):
        await escalate_ticket(
            session=session, clock=clock, timing=TIMING, actor=people[actor], ticket_id=ticket.id
        )
    return tree, police, people, ticket.id


async def _outbox_since(session, mark: int) -> list[tuple[int, str, str | None]]:
    rows = (
        await session.exec(
            select(OutboxMessage).where(OutboxMessage.id > mark).order_by(OutboxMessage.id)
        )
    ).all()
    return [(m.chat_id, m.kind, m.data.get("reason") or m.data.get("event")) for m in rows]


async def _mark(session) -> int:
    rows = (await session.exec(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()))).first()
    return rows or 0


async def test_whistle_two_departments_one_returns_the_other_finishes(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree, police, people, ticket_id = await _at_the_street(session, clock)
        ticket = await _reload(session, ticket_id)
        assert ticket.level == Level.STREET
        responsible, others = await proposed_departments(session, ticket)
        assert [d.code for d in responsible] == ["CG"] and [d.code for d in others] == ["PS"]

        # Only the street (or above) may whistle; the secretary's old button says it moved on.
        with pytest.raises(StaleAction):
            await whistle(
                session=session,
                clock=clock,
                timing=TIMING,
                actor=people["secretary"],
                ticket_id=ticket_id,
                department_ids=[police.id],
            )
        mark = await _mark(session)
        ctx, summoned = await whistle(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=people["officer"],
            ticket_id=ticket_id,
            department_ids=[tree.department.id, police.id],
        )
        assert ctx.ticket.status == S.SUMMONED
        assert ctx.ticket.alert_at is None  # the departments' clocks run, not the street's
        assert {(s.department_id, s.status) for s in summoned} == {
            (tree.department.id, SS.SUMMONED),
            (police.id, SS.SUMMONED),
        }
        for s in summoned:
            assert s.accept_deadline == clock.now() + timedelta(minutes=30)
            assert s.finish_deadline == clock.now() + timedelta(minutes=240)
        sent = await _outbox_since(session, mark)
        assert (600, "summons_card", "summoned") in sent
        assert (700, "summons_card", "summoned") in sent
        assert (100, "ticket_status", "whistled") in sent
        urban_id, police_id = (
            next(s.id for s in summoned if s.department_id == d)
            for d in (tree.department.id, police.id)
        )

        # A liaison of another department cannot answer for this one (audited).
        with pytest.raises(NotAllowed):
            await report_in(
                session=session,
                clock=clock,
                timing=TIMING,
                actor=people["police"],
                summons_id=urban_id,
            )
        assert (await session.exec(select(AuditEntry))).all()

        clock.advance(timedelta(minutes=10))
        await report_in(
            session=session, clock=clock, timing=TIMING, actor=people["urban"], summons_id=urban_id
        )
        with pytest.raises(StaleAction):  # reporting in twice
            await report_in(
                session=session,
                clock=clock,
                timing=TIMING,
                actor=people["urban"],
                summons_id=urban_id,
            )
        mark = await _mark(session)
        _, returned = await return_summons(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=people["police"],
            summons_id=police_id,
            reason=SummonsReturnReason.NOT_OUR_REMIT,
            note="不是治安问题",
        )
        assert returned.status == SS.RETURNED
        assert (400, "summons_card", "department_returned") in await _outbox_since(session, mark)
        # While a return waits for the street, the street's own clock runs again.
        ticket = await _reload(session, ticket_id)
        assert ticket.next_deadline == clock.now() + timedelta(minutes=30)

        # The street arbitrates: the police must take it after all; then releases it instead.
        await insist(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=people["officer"],
            summons_id=police_id,
        )
        assert (await _reload(session, ticket_id)).alert_at is None
        await return_summons(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=people["police"],
            summons_id=police_id,
            reason=SummonsReturnReason.NOT_OUR_AREA,
            note="不在辖区",
        )
        await release(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=people["officer"],
            summons_id=police_id,
        )
        ticket = await _reload(session, ticket_id)
        assert ticket.status == S.SUMMONED  # urban management is still at work

        mark = await _mark(session)
        ctx, _ = await finish_summons(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=people["urban"],
            summons_id=urban_id,
            note="已修复路灯",
        )
        # The last department finished: resolved, and the resident gets the follow-up visit.
        assert ctx.ticket.status == S.RESOLVED
        assert "已修复路灯" in ctx.ticket.resolution_note
        assert (100, "ticket_followup", "resolved") in await _outbox_since(session, mark)
        kinds = [e.kind for e in await events_of(session, ticket_id)]
        assert kinds == [
            "file",
            "escalate",
            "escalate",
            "whistle",
            "department_accepted",
            "department_returned",
            "whistle",
            "department_returned",
            "department_released",
            "department_finished",
            "resolve",
        ]
        assert {s.status for s in await summonses_of(session, ticket_id)} == {
            SS.FINISHED,
            SS.WITHDRAWN,
        }


async def test_releasing_every_department_hands_the_ticket_back_to_the_street(
    sessionmaker, clock
) -> None:
    async with sessionmaker() as session:
        tree, police, people, ticket_id = await _at_the_street(session, clock)
        _, [summons] = await whistle(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=people["officer"],
            ticket_id=ticket_id,
            department_ids=[police.id],
        )
        with pytest.raises(DomainError):  # a note is required
            await return_summons(
                session=session,
                clock=clock,
                timing=TIMING,
                actor=people["police"],
                summons_id=summons.id,
                reason=SummonsReturnReason.NOT_OUR_REMIT,
                note="  ",
            )
        await return_summons(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=people["police"],
            summons_id=summons.id,
            reason=SummonsReturnReason.NOT_OUR_REMIT,
            note="不归我们",
        )
        ctx, _ = await release(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=people["officer"],
            summons_id=summons.id,
        )
        assert (ctx.ticket.status, ctx.ticket.level) == (S.ACCEPTED, Level.STREET)
        assert ctx.ticket.next_deadline == clock.now() + timedelta(minutes=240)


async def test_a_silent_department_is_reminded_then_brought_to_the_district(
    sessionmaker, clock
) -> None:
    async with sessionmaker() as session:
        tree, police, people, ticket_id = await _at_the_street(session, clock)
        _, [summons] = await whistle(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=people["officer"],
            ticket_id=ticket_id,
            department_ids=[police.id],
        )
        summons_id = summons.id
        mark = await _mark(session)
        clock.advance(timedelta(minutes=15))
        report = await sweep(session=session, clock=clock, timing=TIMING)
        assert report.departments_reminded == 1
        assert await _outbox_since(session, mark) == [(700, "summons_card", "reminder")]

        mark = await _mark(session)
        clock.advance(timedelta(minutes=15))
        report = await sweep(session=session, clock=clock, timing=TIMING)
        assert report.departments_escalated == 1
        sent = await _outbox_since(session, mark)
        assert (700, "summons_card", "overdue") in sent
        assert (500, "summons_card", "department_silent") in sent  # the district
        assert (await sweep(session=session, clock=clock, timing=TIMING)).total == 0

        # Still silent: chased at the ladder's interval (4 h), three times, then no more.
        chased = []
        for _ in range(4):
            clock.advance(timedelta(hours=4))
            chased.append((await sweep(session=session, clock=clock, timing=TIMING)).total)
        assert chased == [1, 1, 1, 0]
        kinds = [e.kind for e in await events_of(session, ticket_id)]
        assert kinds.count("department_escalated") == 1

        # Reporting in late still works; its clock is now the one to finish.
        _, summons = await report_in(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=people["police"],
            summons_id=summons_id,
        )
        assert summons.status == SS.ACCEPTED and summons.escalated
