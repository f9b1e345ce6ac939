"""Party members register for duty (党员报到) with the community where they live; the
community's secretary (or an administrator above it) approves or rejects them. Also the
communities a person may choose from when they will not share a location.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.access import require_role
from domain.clock import Clock
from domain.errors import DomainError, NotFound
from domain.outbox import enqueue
from domain.roles import approving_roles, member_hearing_roles
from domain.text import clean_text
from storage.enums import (
    Lane,
    MemberStatus,
    UnitKind,
)
from storage.members import (
    chats_holding_roles_in,
    communities_in_street,
    member_of_person,
    streets_having_communities,
)
from storage.models import (
    Member,
    OrgUnit,
    Person,
)

NAME_LIMIT = 100
BRANCH_LIMIT = 200
# The kinds of service a member may offer (stored in Member.services by these codes; their
# names are the locale keys member.service.<code>). Append only: a toggle names its index.
SERVICE_KINDS = (
    "building",
    "patrol",
    "environment",
    "policy",
    "elderly",
    "mediation",
    "emergency",
    "professional",
)


async def community_unit(session: AsyncSession, community_id: int) -> OrgUnit:
    community = await session.get(OrgUnit, community_id)
    if community is None or community.kind != UnitKind.COMMUNITY:
        raise NotFound("unit.unknown", code=str(community_id))
    return community


async def member_of(session: AsyncSession, person: Person) -> Member | None:
    return await member_of_person(session, person.id)


# -- registration ------------------------------------------------------------------------------


async def register_member(
    *,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    full_name: str,
    branch: str,
    community_id: int,
    grid_id: int | None = None,
    skills: Sequence[str] = (),
    services: Sequence[str] = (),
    phone: str | None = None,
) -> Member:
    """Report for duty with the community where the person lives; the secretary decides.

    A rejected member may register again (the same row, pending once more).
    """
    full_name, branch = clean_text(full_name).strip(), clean_text(branch).strip()
    skills = [s for s in (clean_text(skill).strip() for skill in skills) if s]
    if phone is not None:
        phone = clean_text(phone).strip() or None
    if not full_name or len(full_name) > NAME_LIMIT:
        raise DomainError("duty.name_invalid", limit=NAME_LIMIT)
    if not branch or len(branch) > BRANCH_LIMIT:
        raise DomainError("duty.branch_invalid", limit=BRANCH_LIMIT)
    community = await community_unit(session, community_id)
    if grid_id is not None:
        grid = await session.get(OrgUnit, grid_id)
        if grid is None or grid.parent_id != community.id:
            raise DomainError("duty.grid_not_in_community")
    now = clock.now()
    member = await member_of(session, person)
    if member is not None and member.status != MemberStatus.REJECTED:
        raise DomainError("duty.already_registered", status=member.status.value)
    member = member or Member(person_id=person.id, created_at=now)
    member.full_name, member.branch = full_name, branch
    member.community_id, member.grid_id = community.id, grid_id
    member.skills, member.services, member.phone = list(skills), list(services), phone
    member.status, member.reject_reason = MemberStatus.PENDING, None
    member.decided_by_id = member.decided_at = None
    member.updated_at = now
    session.add(member)
    await session.flush()
    data = await registration_data(session, member)
    for chat_id in await chats_holding_roles_in(session, community.id, member_hearing_roles()):
        enqueue(
            session,
            clock=clock,
            chat_id=chat_id,
            kind="member_registration",
            lane=Lane.INTERACTIVE,
            data=data,
        )
    await session.flush()
    return member


async def registration_data(session: AsyncSession, member: Member) -> dict[str, Any]:
    """A registration as the secretary reads it (the outbox row's data): who, their branch,
    what they offer, and where they live (community and grid), so the secretary knows whose
    neighbour it is."""
    community = await session.get(OrgUnit, member.community_id)
    grid = await session.get(OrgUnit, member.grid_id) if member.grid_id is not None else None
    return {
        "member_id": member.id,
        "full_name": member.full_name,
        "branch": member.branch,
        "services": list(member.services),
        "skills": list(member.skills),
        "community_zh": community.name_zh if community else None,
        "community_en": community.name_en if community else None,
        "grid_zh": grid.name_zh if grid else None,
        "grid_en": grid.name_en if grid else None,
    }


async def _pending_member(
    session: AsyncSession, clock: Clock, actor: Person, member_id: int
) -> Member:
    """Lock the registration; the actor must be its community's secretary, and it pending."""
    member = await session.get(Member, member_id, with_for_update=True)
    if member is None:
        raise NotFound("duty.member_unknown")
    community = await community_unit(session, member.community_id)
    await require_role(
        session,
        clock=clock,
        person_id=actor.id,
        roles=approving_roles(),
        unit=community,
        action=f"duty.decide:{member_id}",
    )
    if member.status != MemberStatus.PENDING:
        raise DomainError("duty.already_decided", status=member.status.value)
    return member


async def check_decide(
    *, session: AsyncSession, clock: Clock, actor: Person, member_id: int
) -> Member:
    """Whether the actor may decide the registration now, before a dialog asks for a reason.

    The same checks as decide_member (NotAllowed, audited; or already decided); nothing is
    changed (the row lock the check took goes when the update's transaction ends, before
    the dialog asks).
    """
    return await _pending_member(session, clock, actor, member_id)


async def decide_member(
    *,
    session: AsyncSession,
    clock: Clock,
    actor: Person,
    member_id: int,
    approve: bool,
    reason: str | None = None,
) -> Member:
    """The community secretary approves or rejects (with a reason); the member is told."""
    member = await _pending_member(session, clock, actor, member_id)
    reason = clean_text(reason or "").strip()
    if not approve and not reason:
        raise DomainError("duty.reason_needed")
    now = clock.now()
    member.status = MemberStatus.APPROVED if approve else MemberStatus.REJECTED
    member.reject_reason = None if approve else reason
    member.decided_by_id, member.decided_at, member.updated_at = actor.id, now, now
    session.add(member)
    person = await session.get(Person, member.person_id)
    assert person is not None
    enqueue(
        session,
        clock=clock,
        chat_id=person.telegram_id,
        kind="member_decision",
        lane=Lane.INTERACTIVE,
        data={"status": member.status.value, "reason": member.reject_reason},
    )
    await session.flush()
    return member


async def approved_member(session: AsyncSession, person: Person) -> Member:
    member = await member_of(session, person)
    if member is None or member.status != MemberStatus.APPROVED:
        raise DomainError("duty.not_approved")
    return member


# -- communities to choose from (the /duty dialog) ----------------------------------------


async def streets_with_communities(session: AsyncSession) -> list[OrgUnit]:
    """Streets that have communities, by code (the first step of choosing one by hand)."""
    return await streets_having_communities(session)


async def communities_of_street(
    session: AsyncSession, street_id: int
) -> tuple[OrgUnit, list[OrgUnit]]:
    """A street and its communities, by code; NotFound if it is not a street."""
    street = await session.get(OrgUnit, street_id)
    if street is None or street.kind != UnitKind.STREET:
        raise NotFound("unit.unknown", code=str(street_id))
    return street, await communities_in_street(session, street.id)
