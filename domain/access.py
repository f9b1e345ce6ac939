"""Who may act where: a role is valid only inside its unit's subtree; every refusal is audited."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import NoReturn

from sqlmodel.ext.asyncio.session import AsyncSession

from domain import audit
from domain.clock import Clock
from domain.errors import NotAllowed
from storage.access import assignment_at_or_above
from storage.enums import Role
from storage.models import OrgUnit, RoleAssignment

logger = logging.getLogger(__name__)


async def covering_assignment(
    session: AsyncSession, *, person_id: int, roles: Collection[Role], unit: OrgUnit
) -> RoleAssignment | None:
    """The person's active assignment, among `roles`, whose unit is `unit` or an ancestor."""
    return await assignment_at_or_above(
        session, person_id=person_id, roles=roles, unit_path=unit.path
    )


async def require_role(
    session: AsyncSession,
    *,
    clock: Clock,
    person_id: int,
    roles: Collection[Role],
    unit: OrgUnit,
    action: str,
) -> RoleAssignment:
    """The covering assignment, or NotAllowed after recording the refusal in the audit log."""
    assignment = await covering_assignment(session, person_id=person_id, roles=roles, unit=unit)
    if assignment is not None:
        return assignment
    await deny(session, clock=clock, person_id=person_id, unit=unit, action=action, roles=roles)


async def deny(
    session: AsyncSession,
    *,
    clock: Clock,
    person_id: int,
    unit: OrgUnit,
    action: str,
    roles: Collection[Role] = (),
) -> NoReturn:
    """Record the refusal in the audit log, then raise NotAllowed."""
    unit_code = unit.code
    if session.new or session.dirty or session.deleted:
        # A use case checks before it changes anything; one that did not would have its
        # change committed with the refusal. Failing the update instead rolls it all back.
        raise RuntimeError(f"{action} refused after changes were staged")
    audit.record(
        session,
        clock=clock,
        actor_id=person_id,
        action="access.denied",
        attempted=action,
        unit=unit_code,
        roles=sorted(r.value for r in roles),
    )
    await session.flush()
    logger.warning("person %s refused %s in %s", person_id, action, unit_code)
    raise NotAllowed("access.denied")
