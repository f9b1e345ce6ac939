"""Reads that filing, moving and sweeping tickets ask for, by the batch: units, categories,
people, a ticket's watchers and who holds a role where (domain.lookups caches them).

Every read hands out the session's own ORM objects, so a person or a unit found here is the
same object `session.get` would give and its changes flush as usual. Long id lists are read
in chunks, so that no statement carries more values than a database takes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any, Literal, TypeVar

from sqlalchemy.orm import defer
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.enums import AssignmentStatus, Role
from storage.models import Category, OrgUnit, Person, RoleAssignment, TicketWatcher

CHUNK = 500

Owner = Literal["unit", "department"]
_Row = TypeVar("_Row", OrgUnit, Category, Person)


def _chunks(ids: Iterable[int]) -> list[list[int]]:
    ordered = sorted(set(ids))
    return [ordered[start : start + CHUNK] for start in range(0, len(ordered), CHUNK)]


async def _by_id(
    session: AsyncSession, model: type[_Row], ids: Iterable[int], *options: Any
) -> list[_Row]:
    found: list[_Row] = []
    for chunk in _chunks(ids):
        statement = select(model).where(col(model.id).in_(chunk)).options(*options)
        found.extend((await session.exec(statement)).all())
    return found


async def units_by_id(session: AsyncSession, ids: Iterable[int]) -> list[OrgUnit]:
    """The units with these ids (unknown ids left out), without their boundaries."""
    # Not the polygons: only the locator reads them, and they are the bulk of a row.
    return await _by_id(session, OrgUnit, ids, defer(OrgUnit.boundary, raiseload=True))


async def categories_by_id(session: AsyncSession, ids: Iterable[int]) -> list[Category]:
    return await _by_id(session, Category, ids)


async def people_by_id(session: AsyncSession, ids: Iterable[int]) -> list[Person]:
    return await _by_id(session, Person, ids)


async def watchers_of(session: AsyncSession, ticket_ids: Iterable[int]) -> list[tuple[int, Person]]:
    """(ticket id, person) for the reporter and everyone who said "me too" of these tickets,
    each ticket's in the order they came."""
    found: list[tuple[int, Person]] = []
    for chunk in _chunks(ticket_ids):
        rows = await session.exec(
            select(TicketWatcher.ticket_id, Person)
            .join(Person, col(TicketWatcher.person_id) == col(Person.id))
            .where(col(TicketWatcher.ticket_id).in_(chunk))
            .order_by(col(TicketWatcher.created_at), col(Person.id))
        )
        found.extend((ticket_id, person) for ticket_id, person in rows.all())
    return found


async def holders_in(
    session: AsyncSession, owner: Owner, ids: Collection[int], roles: Sequence[Role]
) -> list[tuple[int, Role, Person]]:
    """(unit or department id, role, person) for every active holder of one of `roles` in
    exactly these units (owner "unit") or departments, by person id."""
    if not ids or not roles:
        return []
    column = col(RoleAssignment.unit_id if owner == "unit" else RoleAssignment.department_id)
    found: list[tuple[int, Role, Person]] = []
    for chunk in _chunks(ids):
        rows = await session.exec(
            select(column, RoleAssignment.role, Person)
            .join(Person, col(RoleAssignment.person_id) == col(Person.id))
            .where(
                column.in_(chunk),
                col(RoleAssignment.role).in_(sorted(set(roles))),
                col(RoleAssignment.status) == AssignmentStatus.ACTIVE,
            )
            .order_by(col(Person.id))
        )
        found.extend((owner_id, Role(role), person) for owner_id, role, person in rows.all())
    return found
