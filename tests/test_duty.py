"""Party members report for duty: registration, posts, calls, check-in, hours and points."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from domain.attendance import confirm_attendance, send_monthly_summaries, service_between
from domain.calls import (
    answer_call,
    check_in,
    check_out,
    close_forgotten,
    create_call,
    remind_calls,
    withdraw,
)
from domain.deadlines import Timing
from domain.errors import DomainError, NotAllowed
from domain.members import decide_member, register_member
from domain.posts import claim_post, leave_post
from domain.reference import load_snapshot
from domain.tickets import file_ticket
from storage.enums import AssignmentStatus, CallStatus, MemberStatus, Role, UnitKind, Urgency
from storage.models import (
    AuditEntry,
    CallClaim,
    Category,
    DutyCall,
    Member,
    OutboxMessage,
    RoleAssignment,
    ServicePost,
)
from tests.factories import add_unit, make_members, make_person, make_tree

PLACE = (34.742, 113.632)
NEAR = (34.7435, 113.632)  # about 170 m north
FAR = (34.7475, 113.632)  # about 610 m north


async def _world(session, members: int = 5):
    """A community with a secretary, a second community with its own, and approved members."""
    tree = await make_tree(session)
    other = await add_unit(session, UnitKind.COMMUNITY, "ZZ-JS-01-02", tree.street)
    secretary = await make_person(session, 300, "Secretary")
    stranger = await make_person(session, 301, "Other secretary")
    session.add_all(
        [
            RoleAssignment(
                person_id=secretary.id, role=Role.COMMUNITY_SECRETARY, unit_id=tree.community.id
            ),
            RoleAssignment(person_id=stranger.id, role=Role.COMMUNITY_SECRETARY, unit_id=other.id),
        ]
    )
    await session.commit()
    people = await make_members(session, tree, members)
    return tree, other, secretary, stranger, people


async def _call(session, clock, tree, secretary, capacity=3, **extra):
    call, sent = await create_call(
        session=session,
        clock=clock,
        actor=secretary,
        community_id=tree.community.id,
        title="清理楼道",
        description="3号楼楼道杂物清理",
        latitude=PLACE[0],
        longitude=PLACE[1],
        starts_at=clock.now() + timedelta(hours=2),
        ends_at=clock.now() + timedelta(hours=4),
        capacity=capacity,
        **extra,
    )
    return call, sent


async def test_registration_waits_for_the_secretary_of_that_community(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree, other, secretary, stranger, _ = await _world(session, members=0)
        person = await make_person(session, 2000, "New member")
        with pytest.raises(DomainError):
            await register_member(
                session=session,
                clock=clock,
                person=person,
                full_name="  ",
                branch="x",
                community_id=tree.community.id,
            )
        member = await register_member(
            session=session,
            clock=clock,
            person=person,
            full_name="王芳",
            branch="某某公司党支部",
            community_id=tree.community.id,
            skills=["急救"],
            services=["building_helper"],
        )
        assert member.status == MemberStatus.PENDING
        sent = (await session.exec(select(OutboxMessage))).all()
        assert [(m.chat_id, m.kind) for m in sent] == [(300, "member_registration")]

        # Another community's secretary may not decide; the refusal is audited.
        with pytest.raises(NotAllowed):
            await decide_member(
                session=session, clock=clock, actor=stranger, member_id=member.id, approve=True
            )
        assert len((await session.exec(select(AuditEntry))).all()) == 1
        with pytest.raises(DomainError) as no_reason:
            await decide_member(
                session=session, clock=clock, actor=secretary, member_id=member.id, approve=False
            )
        assert no_reason.value.key == "duty.reason_needed"
        member = await decide_member(
            session=session,
            clock=clock,
            actor=secretary,
            member_id=member.id,
            approve=False,
            reason="不住本社区",
        )
        assert (member.status, member.reject_reason) == (MemberStatus.REJECTED, "不住本社区")
        # Rejected: may register again, and is approved this time.
        member = await register_member(
            session=session,
            clock=clock,
            person=person,
            full_name="王芳",
            branch="某某公司党支部",
            community_id=tree.community.id,
        )
        member = await decide_member(
            session=session, clock=clock, actor=secretary, member_id=member.id, approve=True
        )
        assert member.status == MemberStatus.APPROVED
        with pytest.raises(DomainError) as twice:
            await register_member(
                session=session,
                clock=clock,
                person=person,
                full_name="王芳",
                branch="x",
                community_id=tree.community.id,
            )
        assert twice.value.key == "duty.already_registered"


async def test_a_post_has_a_number_of_places(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree, _, _, _, people = await _world(session, members=3)
        post = ServicePost(
            community_id=tree.community.id,
            code="PATROL",
            name_zh="安全巡逻",
            name_en="Patrol",
            places=2,
        )
        session.add(post)
        await session.commit()
        for person in people[:2]:
            await claim_post(session=session, clock=clock, person=person, post_id=post.id)
        with pytest.raises(DomainError) as full:
            await claim_post(session=session, clock=clock, person=people[2], post_id=post.id)
        assert full.value.key == "duty.post_full"
        await leave_post(session=session, person=people[0], post_id=post.id)
        post = await claim_post(session=session, clock=clock, person=people[2], post_id=post.id)
        assert post.held == 2


async def test_a_call_for_three_to_five_members(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree, other, secretary, stranger, people = await _world(session)
        outsider = await make_person(session, 3000, "Outsider")
        session.add(
            Member(
                person_id=outsider.id,
                full_name="Outsider",
                branch="x",
                community_id=other.id,
                status=MemberStatus.APPROVED,
            )
        )
        await session.commit()
        with pytest.raises(NotAllowed):  # another community's secretary
            await create_call(
                session=session,
                clock=clock,
                actor=stranger,
                community_id=tree.community.id,
                title="x",
                description="",
                latitude=PLACE[0],
                longitude=PLACE[1],
                starts_at=clock.now() + timedelta(hours=1),
                ends_at=clock.now() + timedelta(hours=2),
                capacity=1,
            )
        call, sent = await _call(session, clock, tree, secretary)
        assert sent == 5  # every approved member of the community, nobody else
        call_id = call.id

        for person in people[:3]:
            await answer_call(session=session, clock=clock, person=person, call_id=call_id)
        with pytest.raises(DomainError) as full:
            await answer_call(session=session, clock=clock, person=people[3], call_id=call_id)
        assert full.value.key == "duty.call_full"
        with pytest.raises(DomainError) as not_yours:
            await answer_call(session=session, clock=clock, person=outsider, call_id=call_id)
        assert not_yours.value.key == "duty.call_not_yours"

        # A withdrawal before the start frees the place for the fourth.
        await withdraw(session=session, clock=clock, person=people[0], call_id=call_id)
        await answer_call(session=session, clock=clock, person=people[3], call_id=call_id)
        call = await session.get(DutyCall, call_id)
        await session.refresh(call)
        assert (call.claimed, call.status) == (3, CallStatus.FULL)

        # Check-in: without a claim, too early, too far, then right.
        with pytest.raises(DomainError) as no_claim:
            await check_in(
                session=session,
                clock=clock,
                person=people[4],
                call_id=call_id,
                latitude=PLACE[0],
                longitude=PLACE[1],
            )
        assert no_claim.value.key == "duty.no_claim"
        with pytest.raises(DomainError) as early:
            await check_in(
                session=session,
                clock=clock,
                person=people[1],
                call_id=call_id,
                latitude=PLACE[0],
                longitude=PLACE[1],
            )
        assert early.value.key == "duty.outside_window"
        clock.advance(timedelta(hours=2, minutes=-10))  # ten minutes before the start
        with pytest.raises(DomainError) as far:
            await check_in(
                session=session,
                clock=clock,
                person=people[1],
                call_id=call_id,
                latitude=FAR[0],
                longitude=FAR[1],
            )
        assert far.value.key == "duty.too_far" and far.value.params["radius"] == 300
        clock.advance(timedelta(minutes=10))
        with pytest.raises(DomainError) as started:  # claims close at the start
            await answer_call(session=session, clock=clock, person=people[4], call_id=call_id)
        assert started.value.key == "duty.call_started"
        with pytest.raises(DomainError) as too_late:  # and so do withdrawals
            await withdraw(session=session, clock=clock, person=people[1], call_id=call_id)
        assert too_late.value.key == "duty.call_started"
        for person in people[1:4]:
            await check_in(
                session=session,
                clock=clock,
                person=person,
                call_id=call_id,
                latitude=NEAR[0],
                longitude=NEAR[1],
            )
        clock.advance(timedelta(minutes=90))
        out = await check_out(session=session, clock=clock, person=people[1], call_id=call_id)
        assert out.minutes == 90
        clock.advance(timedelta(hours=1))  # past the end: the others never checked out
        assert await close_forgotten(session=session, clock=clock) == 2

        members = {m.person_id: m.id for m in (await session.exec(select(Member))).all()}
        claims = await confirm_attendance(
            session=session,
            clock=clock,
            actor=secretary,
            call_id=call_id,
            attended={
                members[people[1].id]: True,
                members[people[2].id]: True,
                members[people[3].id]: False,
            },
        )
        by_member = {c.member_id: c for c in claims}
        assert (
            by_member[members[people[1].id]].points,
            by_member[members[people[1].id]].minutes,
        ) == (1.5, 90)
        # Checked in at the start, closed at the end: the whole two hours, marked for the organiser.
        forgotten = by_member[members[people[2].id]]
        assert (forgotten.minutes, forgotten.auto_closed, forgotten.points) == (120, True, 2.0)
        assert by_member[members[people[3].id]].points == 0

        member = await session.get(Member, members[people[1].id])
        month = await service_between(
            session, member, clock.now() - timedelta(days=30), clock.now() + timedelta(days=1)
        )
        assert (month.minutes, month.points, month.calls) == (90, 1.5, 1)


async def test_two_hundred_claims_at_once_never_overfill_a_call(
    engine, sessionmaker, clock
) -> None:
    async with sessionmaker() as session:
        tree, _, secretary, _, people = await _world(session, members=200)
        call, _ = await _call(session, clock, tree, secretary, capacity=50)
        call_id = call.id
        await session.commit()

    async def claim(person) -> bool:
        async with sessionmaker() as session:
            try:
                await answer_call(session=session, clock=clock, person=person, call_id=call_id)
                await session.commit()  # as the middleware does after the update
            except DomainError as exc:
                assert exc.key == "duty.call_full"
                return False
            return True

    results = await asyncio.gather(*(claim(p) for p in people))
    assert sum(results) == 50
    async with sessionmaker() as session:
        stored = (await session.exec(select(CallClaim))).all()
        assert len(stored) == 50
        call = await session.get(DutyCall, call_id)
        assert (call.claimed, call.status) == (50, CallStatus.FULL)


async def test_a_grid_leader_calls_their_own_grid_and_may_start_from_a_ticket(
    sessionmaker, clock
) -> None:
    async with sessionmaker() as session:
        tree, other, secretary, _, people = await _world(session)
        leader = await make_person(session, 200, "Leader")
        session.add(
            RoleAssignment(person_id=leader.id, role=Role.GRID_LEADER, unit_id=tree.grid.id)
        )
        category = Category(code="HELP", name_zh="帮扶", name_en="Help", urgency=Urgency.NORMAL)
        session.add(category)
        await session.commit()
        ticket = (
            await file_ticket(
                session=session,
                org=await load_snapshot(session),
                clock=clock,
                timing=Timing.plain(ZoneInfo("Asia/Shanghai")),
                reporter=people[0],
                category_id=category.id,
                description="独居老人需要帮忙搬家",
                grid_id=tree.grid.id,
            )
        ).ticket
        ticket_id = ticket.id
        for grids in ([], [tree.other_grid.id]):  # the whole community, or another grid
            with pytest.raises(NotAllowed):
                await _call(session, clock, tree, leader, grid_ids=grids)
        call, sent = await _call(
            session, clock, tree, leader, grid_ids=[tree.grid.id], ticket_id=ticket_id
        )
        assert (call.ticket_id, call.grid_ids, sent) == (ticket_id, [tree.grid.id], 5)
        with pytest.raises(DomainError) as elsewhere:
            await _call(session, clock, tree, secretary, grid_ids=[other.id])
        assert elsewhere.value.key == "duty.grid_not_in_community"


async def test_those_coming_are_reminded_once_before_the_start(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree, _, secretary, _, people = await _world(session, members=3)
        call, _ = await _call(session, clock, tree, secretary)  # starts in 2 h
        call_id = call.id
        for person in people[:2]:
            await answer_call(session=session, clock=clock, person=person, call_id=call_id)
        before = timedelta(hours=1)
        assert await remind_calls(session=session, clock=clock, before=before) == 0
        clock.advance(timedelta(hours=1))
        assert await remind_calls(session=session, clock=clock, before=before) == 2
        assert await remind_calls(session=session, clock=clock, before=before) == 0
        reminders = (
            await session.exec(
                select(OutboxMessage.chat_id).where(OutboxMessage.kind == "duty_call_reminder")
            )
        ).all()
        assert sorted(reminders) == [1000, 1001]


async def test_last_months_service_is_summed_up_once_on_the_first(sessionmaker, clock) -> None:
    tz = ZoneInfo("Asia/Shanghai")
    async with sessionmaker() as session:
        tree, _, secretary, _, people = await _world(session, members=3)
        call, _ = await _call(session, clock, tree, secretary)  # 3 places, in 2 h, for 2 h
        call_id = call.id
        for person in people[:2]:
            await answer_call(session=session, clock=clock, person=person, call_id=call_id)
        clock.advance(timedelta(hours=2))
        await check_in(
            session=session,
            clock=clock,
            person=people[0],
            call_id=call_id,
            latitude=PLACE[0],
            longitude=PLACE[1],
        )
        clock.advance(timedelta(hours=1))
        await check_out(session=session, clock=clock, person=people[0], call_id=call_id)
        clock.advance(timedelta(hours=2))
        members = {m.person_id: m.id for m in (await session.exec(select(Member))).all()}
        await confirm_attendance(
            session=session,
            clock=clock,
            actor=secretary,
            call_id=call_id,
            attended={members[people[0].id]: True, members[people[1].id]: False},
        )
        await session.commit()
        # Still November: nothing to sum up yet (October had nothing, but is claimed). Each
        # run commits what it did, as run_jobs does.
        assert await send_monthly_summaries(session=session, clock=clock, tz=tz) == 0
        await session.commit()
        clock.set(datetime(2026, 12, 1, 9, 0, tzinfo=tz))
        assert await send_monthly_summaries(session=session, clock=clock, tz=tz) == 2
        await session.commit()
        assert await send_monthly_summaries(session=session, clock=clock, tz=tz) is None
        await session.commit()
        rows = (
            await session.exec(
                select(OutboxMessage).where(OutboxMessage.kind.startswith("duty_month"))
            )
        ).all()
        by_kind = {m.kind: (m.chat_id, m.data) for m in rows}
        assert by_kind["duty_month_member"] == (
            1000,
            {"month": "2026-11", "minutes": 60, "points": 1.0, "calls": 1},
        )
        assert by_kind["duty_month_secretary"] == (
            300,
            {
                "month": "2026-11",
                "served": [{"name": "Member 0", "minutes": 60}],
                "unfilled": 1,
                "no_shows": 1,
            },
        )


async def test_a_call_s_points_rule_is_checked(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree, _, secretary, _, _ = await _world(session, members=1)
        for bad in (-1, 10.5):
            with pytest.raises(DomainError) as refused:
                await _call(session, clock, tree, secretary, points_per_hour=bad)
            assert refused.value.key == "duty.points_invalid"
            await session.rollback()
        call, _ = await _call(session, clock, tree, secretary, points_per_hour=2.5)
        assert call.points_per_hour == 2.5


async def test_a_secretary_gets_one_summary_a_revoked_one_none(sessionmaker, clock) -> None:
    """The secretary reappointed (a revoked row and an active one) is sent the month once; the
    one who left is not sent it."""
    tz = ZoneInfo("Asia/Shanghai")
    async with sessionmaker() as session:
        tree, _, secretary, _, people = await _world(session, members=1)
        former = await make_person(session, 302, "Former secretary")
        session.add_all(
            [
                RoleAssignment(
                    person_id=secretary.id,
                    role=Role.COMMUNITY_SECRETARY,
                    unit_id=tree.community.id,
                    status=AssignmentStatus.REVOKED,
                ),
                RoleAssignment(
                    person_id=former.id,
                    role=Role.COMMUNITY_SECRETARY,
                    unit_id=tree.community.id,
                    status=AssignmentStatus.REVOKED,
                ),
            ]
        )
        await session.commit()
        await _call(session, clock, tree, secretary)  # November: one call, nobody came
        clock.set(datetime(2026, 12, 1, 9, 0, tzinfo=tz))
        assert await send_monthly_summaries(session=session, clock=clock, tz=tz) == 1
        [summary] = (
            await session.exec(
                select(OutboxMessage).where(OutboxMessage.kind == "duty_month_secretary")
            )
        ).all()
        assert summary.chat_id == 300 and summary.data["unfilled"] == 1
