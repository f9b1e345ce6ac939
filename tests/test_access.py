"""A role is valid only inside its unit's subtree, and only while active."""

from __future__ import annotations

import pytest
from sqlmodel import select

from domain.access import covering_assignment, require_role
from domain.errors import NotAllowed
from storage.enums import AssignmentStatus, Role, UnitKind
from storage.models import AuditEntry, RoleAssignment
from tests.factories import add_unit, make_person, make_tree


async def test_subtree_rule(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree = await make_tree(session)
        # A sibling district whose path shares a textual prefix with the first one's id.
        other_district = await add_unit(session, UnitKind.DISTRICT, "ZZ-EQ", tree.city)
        other_street = await add_unit(session, UnitKind.STREET, "ZZ-EQ-01", other_district)
        await session.commit()
        admin = await make_person(session, 1)
        secretary = await make_person(session, 2)
        revoked = await make_person(session, 3)
        session.add_all(
            [
                RoleAssignment(person_id=admin.id, role=Role.ADMIN, unit_id=tree.district.id),
                RoleAssignment(
                    person_id=secretary.id,
                    role=Role.COMMUNITY_SECRETARY,
                    unit_id=tree.community.id,
                ),
                RoleAssignment(
                    person_id=revoked.id,
                    role=Role.ADMIN,
                    unit_id=tree.city.id,
                    status=AssignmentStatus.REVOKED,
                ),
            ]
        )
        await session.commit()

        async def covers(person, roles, unit) -> bool:
            found = await covering_assignment(session, person_id=person.id, roles=roles, unit=unit)
            return found is not None

        assert await covers(admin, [Role.ADMIN], tree.grid)
        assert await covers(admin, [Role.ADMIN], tree.district)
        assert not await covers(admin, [Role.ADMIN], tree.city)
        assert not await covers(admin, [Role.ADMIN], other_street)
        assert not await covers(admin, [Role.GRID_LEADER], tree.grid)
        assert await covers(secretary, [Role.COMMUNITY_SECRETARY], tree.other_grid)
        assert not await covers(secretary, [Role.COMMUNITY_SECRETARY], tree.street)
        assert not await covers(revoked, [Role.ADMIN], tree.grid)


async def test_refusal_is_audited(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree = await make_tree(session)
        person = await make_person(session, 9)
        with pytest.raises(NotAllowed) as refused:
            await require_role(
                session,
                clock=clock,
                person_id=person.id,
                roles=[Role.GRID_LEADER],
                unit=tree.grid,
                action="ticket.accept",
            )
        await session.commit()  # as the update's middleware does: the refusal keeps its audit
    assert refused.value.key == "access.denied"
    async with sessionmaker() as session:
        entry = (await session.exec(select(AuditEntry))).one()
    assert (entry.actor_id, entry.action, entry.data["attempted"], entry.data["unit"]) == (
        person.id,
        "access.denied",
        "ticket.accept",
        tree.grid.code,
    )
