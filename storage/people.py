"""People as every update meets them: found by their Telegram account; and the roles they
hold."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.dialect import Driver, utc_time
from storage.enums import AssignmentStatus
from storage.models import Department, OrgUnit, Person, RoleAssignment

# Straight to the driver: every update asks, and through the ORM the query cost about 150 us of
# the event loop (SQLAlchemy's statement and loading machinery) where the database takes a few
# (storage.dialect). The row still becomes the session's own Person, as if the ORM had loaded it.
_BY_TELEGRAM_ID = (
    "SELECT id, telegram_id, full_name, username, language, created_at, updated_at "
    "FROM person WHERE telegram_id = ?"
)


async def person_by_telegram_id(session: AsyncSession, telegram_id: int) -> Person | None:
    """The person with this Telegram account, a persistent object of the session (changes to
    it flush as usual), or None."""
    db = await Driver.of(session)
    rows = await db.rows(_BY_TELEGRAM_ID, (telegram_id,))
    if not rows:
        return None
    person_id, telegram_id, full_name, username, language, created_at, updated_at = rows[0]
    known = session.identity_map.get(session.identity_key(Person, person_id))
    if known is not None:
        return known
    person = Person(
        id=person_id,
        telegram_id=telegram_id,
        full_name=full_name,
        username=username,
        language=language,
        created_at=utc_time(created_at),
        updated_at=utc_time(updated_at),
    )
    make_transient_to_detached(person)
    session.add(person)
    return person


class HeldRole(NamedTuple):
    """An active role assignment with the unit or the department it covers (the other None)."""

    assignment: RoleAssignment
    unit: OrgUnit | None
    department: Department | None


async def active_assignments_of(session: AsyncSession, person_id: int) -> list[HeldRole]:
    """The person's active role assignments, in the order they were made."""
    rows = await session.exec(
        select(RoleAssignment, OrgUnit, Department)
        .join(OrgUnit, RoleAssignment.unit_id == OrgUnit.id, isouter=True)
        .join(Department, RoleAssignment.department_id == Department.id, isouter=True)
        .where(RoleAssignment.person_id == person_id)
        .where(RoleAssignment.status == AssignmentStatus.ACTIVE)
        .order_by(RoleAssignment.id)
    )
    return [HeldRole(*row) for row in rows.all()]
