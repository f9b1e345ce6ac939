"""What issuing and redeeming invitations (domain.invitations) ask for: units and departments by
code, the city, an invitation by its code's hash, the claim on it, and an assignment the person
may already hold."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.enums import AssignmentStatus, Role, UnitKind
from storage.models import Department, Invitation, OrgUnit, RoleAssignment


async def unit_by_code(session: AsyncSession, code: str) -> OrgUnit | None:
    return (await session.exec(select(OrgUnit).where(OrgUnit.code == code))).first()


async def department_by_code(session: AsyncSession, code: str) -> Department | None:
    return (await session.exec(select(Department).where(Department.code == code))).first()


async def the_city(session: AsyncSession) -> OrgUnit | None:
    """The city unit (the first, should there be more), or None before any is loaded."""
    return (await session.exec(select(OrgUnit).where(OrgUnit.kind == UnitKind.CITY))).first()


async def invitation_by_hash(session: AsyncSession, code_hash: str) -> Invitation | None:
    return (await session.exec(select(Invitation).where(Invitation.code_hash == code_hash))).first()


async def claim_invitation(
    session: AsyncSession, invitation_id: int, *, person_id: int, now: datetime
) -> bool:
    """Mark the invitation used by the person, if it is still unused; whether it was.

    One conditional UPDATE: of two transactions claiming it at once, exactly one changes the
    row (the other waits for it, then finds it used)."""
    claimed = await session.exec(
        sa.update(Invitation)
        .where(Invitation.id == invitation_id, Invitation.used_at.is_(None))
        .values(used_at=now, used_by_id=person_id)
    )
    return claimed.rowcount == 1


async def active_assignment(
    session: AsyncSession,
    *,
    person_id: int,
    role: Role,
    unit_id: int | None,
    department_id: int | None,
) -> RoleAssignment | None:
    """The person's active assignment of exactly this role, unit and department (a None one
    matches only None), if any."""
    return (
        await session.exec(
            select(RoleAssignment).where(
                RoleAssignment.person_id == person_id,
                RoleAssignment.role == role,
                RoleAssignment.unit_id == unit_id,
                RoleAssignment.department_id == department_id,
                RoleAssignment.status == AssignmentStatus.ACTIVE,
            )
        )
    ).first()
