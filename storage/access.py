"""What the access checks (domain.access) ask for: a person's assignment that covers a unit."""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.enums import AssignmentStatus, Role
from storage.models import OrgUnit, RoleAssignment


async def assignment_at_or_above(
    session: AsyncSession, *, person_id: int, roles: Collection[Role], unit_path: str
) -> RoleAssignment | None:
    """The person's first active assignment (by id), among `roles`, in the unit whose path is
    `unit_path` or in one above it; None if there is none."""
    assigned_unit = aliased(OrgUnit)
    return (
        await session.exec(
            select(RoleAssignment)
            .join(assigned_unit, RoleAssignment.unit_id == assigned_unit.id)
            .where(
                RoleAssignment.person_id == person_id,
                RoleAssignment.status == AssignmentStatus.ACTIVE,
                RoleAssignment.role.in_(list(roles)),
                # Materialised paths: an ancestor's path is a prefix of the unit's own.
                sa.func.substr(sa.literal(unit_path), 1, sa.func.length(assigned_unit.path))
                == assigned_unit.path,
            )
            .order_by(RoleAssignment.id)
            .limit(1)
        )
    ).first()
