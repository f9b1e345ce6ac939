"""What Party members' registration asks for: a person's registration, who hears of a
community's new ones, and the streets and communities a person may choose from by hand."""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.enums import Role, UnitKind
from storage.models import Member, OrgUnit, Person, RoleAssignment


async def member_of_person(session: AsyncSession, person_id: int) -> Member | None:
    """The person's registration (whatever its status), or None."""
    return (await session.exec(select(Member).where(Member.person_id == person_id))).first()


async def chats_holding_roles_in(
    session: AsyncSession, unit_id: int, roles: Collection[Role]
) -> list[int]:
    """The Telegram chats of everyone assigned one of `roles` in this unit (whatever the
    assignment's status)."""
    return list(
        (
            await session.exec(
                select(Person.telegram_id)
                .join(RoleAssignment, RoleAssignment.person_id == Person.id)
                .where(RoleAssignment.unit_id == unit_id, RoleAssignment.role.in_(roles))
            )
        ).all()
    )


async def streets_having_communities(session: AsyncSession) -> list[OrgUnit]:
    """Streets that have communities, by code."""
    community = sa.orm.aliased(OrgUnit)
    return list(
        (
            await session.exec(
                select(OrgUnit)
                .where(
                    OrgUnit.kind == UnitKind.STREET,
                    sa.exists().where(
                        community.parent_id == OrgUnit.id,
                        community.kind == UnitKind.COMMUNITY,
                    ),
                )
                .order_by(OrgUnit.code)
            )
        ).all()
    )


async def communities_in_street(session: AsyncSession, street_id: int) -> list[OrgUnit]:
    """The street's communities, by code."""
    return list(
        (
            await session.exec(
                select(OrgUnit)
                .where(OrgUnit.parent_id == street_id, OrgUnit.kind == UnitKind.COMMUNITY)
                .order_by(OrgUnit.code)
            )
        ).all()
    )
