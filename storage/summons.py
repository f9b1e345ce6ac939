"""What the street's whistle and the departments' replies (domain.summons) ask for: a ticket's
summonses, the departments it may summon, whether a person answers for a department, and the
tickets behind the summonses a sweep claimed."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.enums import AssignmentStatus, Role
from storage.models import CategoryDepartment, Department, RoleAssignment, Ticket, TicketSummons


async def summonses_of(session: AsyncSession, ticket_id: int) -> list[TicketSummons]:
    """Every summons of the ticket, whatever its status, in the order they were first made."""
    return list(
        (
            await session.exec(
                select(TicketSummons)
                .where(TicketSummons.ticket_id == ticket_id)
                .order_by(TicketSummons.id)
            )
        ).all()
    )


async def departments_of_units(session: AsyncSession, unit_ids: list[int]) -> list[Department]:
    """The departments belonging to any of these units, by code."""
    return list(
        (
            await session.exec(
                select(Department).where(Department.unit_id.in_(unit_ids)).order_by(Department.code)
            )
        ).all()
    )


async def responsible_department_ids(session: AsyncSession, category_id: int) -> set[int]:
    """The departments that answer for the category."""
    return set(
        (
            await session.exec(
                select(CategoryDepartment.department_id).where(
                    CategoryDepartment.category_id == category_id
                )
            )
        ).all()
    )


async def answers_for_department(
    session: AsyncSession, *, person_id: int, roles: Collection[Role], department_id: int
) -> bool:
    """Whether the person holds one of `roles`, active, in the department."""
    found = (
        await session.exec(
            select(RoleAssignment.id).where(
                RoleAssignment.person_id == person_id,
                RoleAssignment.role.in_(roles),
                RoleAssignment.department_id == department_id,
                RoleAssignment.status == AssignmentStatus.ACTIVE,
            )
        )
    ).first()
    return found is not None


async def tickets_by_id(session: AsyncSession, ticket_ids: Iterable[int]) -> list[Ticket]:
    """The tickets with these ids (unknown ids left out)."""
    return list((await session.exec(select(Ticket).where(Ticket.id.in_(ticket_ids)))).all())
