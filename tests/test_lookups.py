"""Who holds what and who watches what (storage.lookups, cached by domain.lookups): the
session's own people, in their order, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from domain.lookups import Lookups
from storage import lookups
from storage.enums import AssignmentStatus, Role, WatcherKind
from storage.models import Category, Person, RoleAssignment, Ticket, TicketWatcher
from tests.factories import make_person, make_tree


async def test_holders_are_the_active_ones_by_id_and_the_sessions_own(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree = await make_tree(session)
        leader = await make_person(session, 202, "leader")
        deputy = await make_person(session, 201, "deputy")
        revoked = await make_person(session, 203, "former leader")
        liaison = await make_person(session, 204, "liaison")
        session.add_all(
            [
                # The deputy's role first: holders still come by person id.
                RoleAssignment(person_id=deputy.id, role=Role.GRID_LEADER, unit_id=tree.grid.id),
                RoleAssignment(person_id=leader.id, role=Role.GRID_LEADER, unit_id=tree.grid.id),
                RoleAssignment(
                    person_id=revoked.id,
                    role=Role.GRID_LEADER,
                    unit_id=tree.grid.id,
                    status=AssignmentStatus.REVOKED,
                ),
                RoleAssignment(
                    person_id=liaison.id,
                    role=Role.DEPARTMENT_LIAISON,
                    department_id=tree.department.id,
                ),
            ]
        )
        await session.commit()

        found = await lookups.holders_in(
            session, "unit", [tree.grid.id, tree.other_grid.id], [Role.GRID_LEADER]
        )
        # Not the revoked one, and nobody from the other grid (it has no leader).
        assert [(unit_id, role, p.id) for unit_id, role, p in found] == [
            (tree.grid.id, Role.GRID_LEADER, leader.id),
            (tree.grid.id, Role.GRID_LEADER, deputy.id),
        ]
        assert all([p is await session.get(Person, p.id) for _, _, p in found])
        departments = await lookups.holders_in(
            session, "department", [tree.department.id], [Role.DEPARTMENT_LIAISON]
        )
        assert [(owner, p.id) for owner, _, p in departments] == [(tree.department.id, liaison.id)]
        assert await lookups.holders_in(session, "unit", [], [Role.GRID_LEADER]) == []

        # The cache over them hands out the same objects, and none for a unit without holders.
        lk = Lookups(session)
        assert await lk.holders(Role.GRID_LEADER, unit_id=tree.grid.id) == [p for *_, p in found]
        assert await lk.holders(Role.GRID_LEADER, unit_id=tree.other_grid.id) == []
        liaisons = await lk.holders(Role.DEPARTMENT_LIAISON, department_id=tree.department.id)
        assert liaisons == [liaison]


async def test_watchers_come_in_the_order_they_came(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        tree = await make_tree(session)
        category = Category(code="LIGHT", name_zh="路灯", name_en="Street light")
        session.add(category)
        reporter = await make_person(session, 100, "reporter")
        later = await make_person(session, 101, "me too, later")
        earlier = await make_person(session, 102, "me too, earlier")
        tickets = []
        for n in range(2):
            ticket = Ticket(
                number=f"ZZ-{n}",
                category_id=category.id,
                grid_id=tree.grid.id,
                community_id=tree.community.id,
                reporter_id=reporter.id,
                holder_unit_id=tree.grid.id,
            )
            session.add(ticket)
            tickets.append(ticket)
        await session.flush()
        now = clock.now()
        session.add_all(
            [
                TicketWatcher(
                    ticket_id=tickets[0].id,
                    person_id=reporter.id,
                    kind=WatcherKind.REPORTER,
                    created_at=now,
                ),
                TicketWatcher(
                    ticket_id=tickets[0].id,
                    person_id=later.id,
                    kind=WatcherKind.ME_TOO,
                    created_at=now + timedelta(minutes=2),
                ),
                TicketWatcher(
                    ticket_id=tickets[0].id,
                    person_id=earlier.id,
                    kind=WatcherKind.ME_TOO,
                    created_at=now + timedelta(minutes=1),
                ),
            ]
        )
        await session.commit()

        found = await lookups.watchers_of(session, [t.id for t in tickets])
        assert [(ticket_id, p.full_name) for ticket_id, p in found] == [
            (tickets[0].id, "reporter"),
            (tickets[0].id, "me too, earlier"),
            (tickets[0].id, "me too, later"),
        ]
        assert all([p is await session.get(Person, p.id) for _, p in found])

        lk = Lookups(session)
        await lk.prefetch(tickets)
        assert await lk.watchers(tickets[0].id) == [reporter, earlier, later]
        assert await lk.watchers(tickets[1].id) == []
        assert await lk.person(reporter.id) is reporter
