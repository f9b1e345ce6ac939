"""Invitations: one-time codes that bind a Telegram account to a role in a unit."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from domain import audit
from domain.access import require_role
from domain.clock import Clock
from domain.errors import DomainError, InvitationRefused, NotFound
from domain.outbox import enqueue
from domain.roles import inviting_roles, powers
from storage.enums import Lane, Role
from storage.invitations import (
    active_assignment,
    claim_invitation,
    department_by_code,
    invitation_by_hash,
    the_city,
    unit_by_code,
)
from storage.models import Department, Invitation, OrgUnit, Person, RoleAssignment

logger = logging.getLogger(__name__)

# Deep-link payloads allow [A-Za-z0-9_-] and 64 characters; 18 random bytes give 24.
CODE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def hash_code(code: str) -> str:
    return hashlib.sha256(code.encode("ascii", "replace")).hexdigest()


@dataclass(frozen=True)
class IssuedInvitation:
    code: str
    invitation: Invitation
    scope_name_zh: str
    scope_name_en: str


@dataclass(frozen=True)
class Redeemed:
    assignment: RoleAssignment
    role: Role
    scope_name_zh: str
    scope_name_en: str
    already_had: bool


async def _unit_by_code(session: AsyncSession, code: str) -> OrgUnit:
    unit = await unit_by_code(session, code)
    if unit is None:
        raise NotFound("unit.unknown", code=code)
    return unit


async def create_invitation(
    *,
    session: AsyncSession,
    clock: Clock,
    role: Role,
    unit_code: str | None = None,
    department_code: str | None = None,
    ttl: timedelta = timedelta(days=7),
    created_by_id: int | None = None,
) -> IssuedInvitation:
    """Issue a single-use code for `role` in a unit (or department); only its hash is stored.

    `created_by_id` is the administrator issuing it in chat (checked); None is the operator
    at the command line.
    """
    if ttl <= timedelta(0):
        raise DomainError("invite.bad_ttl")
    unit: OrgUnit | None = None
    department: Department | None = None
    row = powers(role)
    expected = row.unit_kind
    if row.department:
        if not department_code:
            raise DomainError("invite.needs_department")
        department = await department_by_code(session, department_code)
        if department is None:
            raise NotFound("department.unknown", code=department_code)
    elif expected is None:
        # Held in any unit: the whole city when none is named.
        if unit_code:
            unit = await _unit_by_code(session, unit_code)
        else:
            unit = await the_city(session)
            if unit is None:
                raise NotFound("unit.no_city")
    else:
        if not unit_code:
            raise DomainError("invite.needs_unit", kind=expected.value)
        unit = await _unit_by_code(session, unit_code)
        if unit.kind != expected:
            raise DomainError(
                "invite.wrong_unit_kind",
                role=role.value,
                expected=expected.value,
                code=unit.code,
                kind=unit.kind.value,
            )
    if created_by_id is not None:
        # Issued in chat: only an administrator of a unit covering the target may invite.
        target = unit
        if department is not None:
            target = await session.get(OrgUnit, department.unit_id)
        assert target is not None
        await require_role(
            session,
            clock=clock,
            person_id=created_by_id,
            roles=inviting_roles(),
            unit=target,
            action=f"invite:{role.value}",
        )
    code = secrets.token_urlsafe(18)
    now = clock.now()
    invitation = Invitation(
        code_hash=hash_code(code),
        role=role,
        unit_id=unit.id if unit else None,
        department_id=department.id if department else None,
        created_by_id=created_by_id,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(invitation)
    await session.flush()
    audit.record(
        session,
        clock=clock,
        actor_id=created_by_id,
        action="invitation.issued",
        invitation_id=invitation.id,
        role=role.value,
        unit=unit.code if unit else None,
        department=department.code if department else None,
    )
    await session.flush()
    scope = unit or department
    assert scope is not None
    return IssuedInvitation(code, invitation, scope.name_zh, scope.name_en)


async def redeem_invitation(
    *, session: AsyncSession, clock: Clock, person: Person, code: str
) -> Redeemed:
    """Bind the person to the invitation's role; a used, expired or unknown code is refused."""
    now = clock.now()
    invitation = None
    if CODE_PATTERN.match(code):
        invitation = await invitation_by_hash(session, hash_code(code))
    reason = None
    if invitation is None:
        reason = "invite.unknown"
    elif invitation.used_at is not None:
        reason = "invite.used"
    elif invitation.expires_at <= now:
        reason = "invite.expired"
    elif not await claim_invitation(session, invitation.id, person_id=person.id, now=now):
        # Claimed atomically: of two people racing for one code, exactly one wins.
        reason = "invite.used"
    if reason is not None:
        # Nothing was changed above (a lost claim updates no row); record the refusal alone.
        audit.record(
            session,
            clock=clock,
            actor_id=person.id,
            action="invitation.refused",
            reason=reason,
            invitation_id=invitation.id if invitation else None,
        )
        await session.flush()
        raise InvitationRefused(reason)

    assert invitation is not None
    existing = await active_assignment(
        session,
        person_id=person.id,
        role=invitation.role,
        unit_id=invitation.unit_id,
        department_id=invitation.department_id,
    )
    assignment = existing or RoleAssignment(
        person_id=person.id,
        role=invitation.role,
        unit_id=invitation.unit_id,
        department_id=invitation.department_id,
        invitation_id=invitation.id,
        created_at=now,
    )
    session.add(assignment)
    if invitation.unit_id is not None:
        scope = await session.get(OrgUnit, invitation.unit_id)
    else:
        scope = await session.get(Department, invitation.department_id)
    assert scope is not None
    audit.record(
        session,
        clock=clock,
        actor_id=person.id,
        action="invitation.used",
        invitation_id=invitation.id,
        role=invitation.role.value,
    )
    if invitation.created_by_id is not None and invitation.created_by_id != person.id:
        creator = await session.get(Person, invitation.created_by_id)
        if creator is not None:
            enqueue(
                session,
                clock=clock,
                chat_id=creator.telegram_id,
                kind="invitation_used",
                lane=Lane.INTERACTIVE,
                data={
                    "person": person.full_name,
                    "role": invitation.role.value,
                    "scope_zh": scope.name_zh,
                    "scope_en": scope.name_en,
                },
            )
    await session.flush()
    logger.info("person %s became %s via invitation %s", person.id, invitation.role, invitation.id)
    return Redeemed(
        assignment=assignment,
        role=invitation.role,
        scope_name_zh=scope.name_zh,
        scope_name_en=scope.name_en,
        already_had=existing is not None,
    )
