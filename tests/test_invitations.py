"""Invitations: single use, expiring, hashed, bound to the right kind of unit."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import select

from domain.errors import DomainError, InvitationRefused, NotAllowed, NotFound
from domain.invitations import create_invitation, hash_code, redeem_invitation
from storage.enums import Role
from storage.models import AuditEntry, Invitation, OutboxMessage, RoleAssignment
from tests.factories import make_person, make_tree
from views.outbox import default_renderer


async def test_invitation_binds_role_once(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree = await make_tree(session)
        issued = await create_invitation(
            session=session, clock=clock, role=Role.GRID_LEADER, unit_code=tree.grid.code
        )
        await session.commit()
        leader = await make_person(session, 1001)
        other = await make_person(session, 1002)

    assert len(issued.code) >= 16
    async with sessionmaker() as session:
        stored = (await session.exec(select(Invitation))).one()
        # Only the hash is kept, never the code itself.
        assert stored.code_hash == hash_code(issued.code)
        assert issued.code not in stored.code_hash
        assert stored.expires_at == clock.now() + timedelta(days=7)

    async with sessionmaker() as session:
        redeemed = await redeem_invitation(
            session=session, clock=clock, person=leader, code=issued.code
        )
        await session.commit()
    assert redeemed.role is Role.GRID_LEADER
    assert redeemed.scope_name_en == tree.grid.name_en
    assert not redeemed.already_had

    async with sessionmaker() as session:
        with pytest.raises(InvitationRefused) as refused:
            await redeem_invitation(session=session, clock=clock, person=other, code=issued.code)
        # The caller keeps a refusal's audit record, as the bot's middleware does.
        await session.commit()
    assert refused.value.key == "invite.used"

    async with sessionmaker() as session:
        roles = (await session.exec(select(RoleAssignment))).all()
        assert [(r.person_id, r.role, r.unit_id) for r in roles] == [
            (leader.id, Role.GRID_LEADER, tree.grid.id)
        ]
        actions = [
            a.action for a in (await session.exec(select(AuditEntry).order_by(AuditEntry.id))).all()
        ]
        assert actions == ["invitation.issued", "invitation.used", "invitation.refused"]


async def test_expired_and_unknown_codes_are_refused(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree = await make_tree(session)
        issued = await create_invitation(
            session=session,
            clock=clock,
            role=Role.COMMUNITY_SECRETARY,
            unit_code=tree.community.code,
            ttl=timedelta(days=1),
        )
        await session.commit()
        person = await make_person(session, 2001)

    clock.advance(timedelta(days=1))
    for code, reason in [
        (issued.code, "invite.expired"),
        ("x" * 24, "invite.unknown"),
        ("not a code!", "invite.unknown"),
        ("", "invite.unknown"),
    ]:
        async with sessionmaker() as session:
            with pytest.raises(InvitationRefused) as refused:
                await redeem_invitation(session=session, clock=clock, person=person, code=code)
            await session.commit()
        assert refused.value.key == reason

    async with sessionmaker() as session:
        assert (await session.exec(select(RoleAssignment))).all() == []
        stored = (await session.exec(select(Invitation))).one()
        assert stored.used_at is None


@pytest.mark.parametrize(
    ("role", "unit_attr", "error"),
    [
        (Role.GRID_LEADER, "community", "invite.wrong_unit_kind"),
        (Role.COMMUNITY_SECRETARY, "grid", "invite.wrong_unit_kind"),
        (Role.STREET_OFFICER, "district", "invite.wrong_unit_kind"),
        (Role.STREET_OFFICER, None, "invite.needs_unit"),
    ],
)
async def test_role_must_match_unit_kind(sessionmaker, clock, role, unit_attr, error) -> None:
    async with sessionmaker() as session:
        tree = await make_tree(session)
        code = getattr(tree, unit_attr).code if unit_attr else None
        with pytest.raises(DomainError) as refused:
            await create_invitation(session=session, clock=clock, role=role, unit_code=code)
        await session.commit()
    assert refused.value.key == error
    async with sessionmaker() as session:
        assert (await session.exec(select(Invitation))).all() == []


async def test_unknown_unit_and_department(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        await make_tree(session)
        with pytest.raises(NotFound) as unit:
            await create_invitation(
                session=session, clock=clock, role=Role.GRID_LEADER, unit_code="NOPE"
            )
        with pytest.raises(NotFound) as department:
            await create_invitation(
                session=session, clock=clock, role=Role.DEPARTMENT_LIAISON, department_code="NOPE"
            )
    assert unit.value.key == "unit.unknown"
    assert department.value.key == "department.unknown"


async def test_department_liaison_and_admin_scopes(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree = await make_tree(session)
        liaison = await create_invitation(
            session=session,
            clock=clock,
            role=Role.DEPARTMENT_LIAISON,
            department_code=tree.department.code,
        )
        admin = await create_invitation(session=session, clock=clock, role=Role.ADMIN)
        await session.commit()
        person = await make_person(session, 3001)
    async with sessionmaker() as session:
        first = await redeem_invitation(
            session=session, clock=clock, person=person, code=liaison.code
        )
        await session.commit()
    async with sessionmaker() as session:
        second = await redeem_invitation(
            session=session, clock=clock, person=person, code=admin.code
        )
        await session.commit()
    assert first.scope_name_en == tree.department.name_en
    assert second.scope_name_en == tree.city.name_en
    async with sessionmaker() as session:
        roles = (await session.exec(select(RoleAssignment).order_by(RoleAssignment.id))).all()
    assert [(r.role, r.unit_id, r.department_id) for r in roles] == [
        (Role.DEPARTMENT_LIAISON, None, tree.department.id),
        (Role.ADMIN, tree.city.id, None),
    ]


async def test_inviter_is_told_through_the_outbox(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree = await make_tree(session)
        admin = await make_person(session, 4001, "Admin")
        session.add(RoleAssignment(person_id=admin.id, role=Role.ADMIN, unit_id=tree.district.id))
        await session.commit()
        issued = await create_invitation(
            session=session,
            clock=clock,
            role=Role.STREET_OFFICER,
            unit_code=tree.street.code,
            created_by_id=admin.id,
        )
        await session.commit()
        officer = await make_person(session, 4002, "Officer")
    async with sessionmaker() as session:
        await redeem_invitation(session=session, clock=clock, person=officer, code=issued.code)
        await session.commit()
    async with sessionmaker() as session:
        rows = (await session.exec(select(OutboxMessage))).all()
    assert [(r.chat_id, r.kind, r.data["person"]) for r in rows] == [
        (4001, "invitation_used", "Officer")
    ]
    renderer = default_renderer()
    assert renderer.render("invitation_used", rows[0].data, "en").text == (
        f"Officer accepted your invitation and is now street officer of {tree.street.name_en}."
    )
    assert renderer.render("invitation_used", rows[0].data, "zh-hans").text == (
        f"Officer 已接受您的邀请，成为【{tree.street.name_zh}】的街道工作人员。"
    )


async def test_two_people_racing_for_one_code(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree = await make_tree(session)
        issued = await create_invitation(
            session=session, clock=clock, role=Role.GRID_LEADER, unit_code=tree.grid.code
        )
        await session.commit()
        people = [await make_person(session, 5000 + i) for i in range(5)]

    async def attempt(person):
        # Each racer owns its transaction, as the bot's middleware does: it commits what it
        # did, and a refusal commits its audit record.
        async with sessionmaker() as session:
            try:
                await redeem_invitation(
                    session=session, clock=clock, person=person, code=issued.code
                )
                outcome = "ok"
            except InvitationRefused as exc:
                outcome = exc.key
            await session.commit()
            return outcome

    results = await asyncio.gather(*(attempt(p) for p in people))
    assert sorted(results) == ["invite.used"] * 4 + ["ok"]
    async with sessionmaker() as session:
        assert len((await session.exec(select(RoleAssignment))).all()) == 1
        refusals = (
            await session.exec(select(AuditEntry).where(AuditEntry.action == "invitation.refused"))
        ).all()
        assert len(refusals) == 4


async def test_only_an_admin_of_a_covering_unit_may_invite_in_chat(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree = await make_tree(session)
        stranger = await make_person(session, 6001, "Stranger")
        leader = await make_person(session, 6002, "Leader")
        session.add(
            RoleAssignment(person_id=leader.id, role=Role.GRID_LEADER, unit_id=tree.grid.id)
        )
        await session.commit()
    for actor in (stranger, leader):
        async with sessionmaker() as session:
            with pytest.raises(NotAllowed):
                await create_invitation(
                    session=session,
                    clock=clock,
                    role=Role.GRID_LEADER,
                    unit_code=tree.other_grid.code,
                    created_by_id=actor.id,
                )
            # The caller keeps a refusal's audit record, as the bot's middleware does.
            await session.commit()
    async with sessionmaker() as session:
        assert (await session.exec(select(Invitation))).all() == []
        denied = (
            await session.exec(select(AuditEntry).where(AuditEntry.action == "access.denied"))
        ).all()
        assert [(d.actor_id, d.data["unit"]) for d in denied] == [
            (stranger.id, tree.other_grid.code),
            (leader.id, tree.other_grid.code),
        ]
