"""Choosing a place by hand: find a community by (part of) its name, then pick one of its grids.

For residents who will not (or cannot) share a location: a search over community names in both
languages (and codes), a paged list of a community's grids, and the names a summary shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.errors import NotFound
from storage.enums import UnitKind
from storage.models import OrgUnit

# A search term longer than this is cut: nobody types a community name that long.
QUERY_LIMIT = 100


@dataclass(frozen=True)
class CommunityChoice:
    """A community as a list shows it: with its street, since names repeat across streets."""

    community: OrgUnit
    street: OrgUnit | None


@dataclass(frozen=True)
class GridPlace:
    """A grid and the community it belongs to."""

    grid: OrgUnit
    community: OrgUnit


def _like_pattern(query: str) -> str:
    """`%query%` with LIKE's wildcards in the query taken literally (escape character `\\`)."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search_communities(
    session: AsyncSession, *, query: str | None = None, offset: int = 0, limit: int = 6
) -> tuple[list[CommunityChoice], int]:
    """Communities whose Chinese or English name (or code) contains `query`, by code; one page
    and the total. No query (or only spaces): every community."""
    query = (query or "").strip()[:QUERY_LIMIT]
    statement = select(OrgUnit).where(OrgUnit.kind == UnitKind.COMMUNITY)
    if query:
        pattern = _like_pattern(query)
        # ILIKE on PostgreSQL; lower() LIKE lower() on SQLite. Chinese has no case either way.
        statement = statement.where(
            sa.or_(
                OrgUnit.name_zh.ilike(pattern, escape="\\"),
                OrgUnit.name_en.ilike(pattern, escape="\\"),
                OrgUnit.code.ilike(pattern, escape="\\"),
            )
        )
    total = (await session.exec(select(sa.func.count()).select_from(statement.subquery()))).one()
    street = sa.orm.aliased(OrgUnit)
    rows = (
        await session.exec(
            select(OrgUnit, street)
            .join(street, OrgUnit.parent_id == street.id, isouter=True)
            .where(OrgUnit.id.in_(statement.with_only_columns(OrgUnit.id)))
            .order_by(OrgUnit.code)
            .offset(max(0, offset))
            .limit(limit)
        )
    ).all()
    return [CommunityChoice(community, parent) for community, parent in rows], total


async def get_community(session: AsyncSession, community_id: int) -> OrgUnit:
    """The community with this id; NotFound if there is none (or it is not a community)."""
    unit = await session.get(OrgUnit, community_id)
    if unit is None or unit.kind != UnitKind.COMMUNITY:
        raise NotFound("unit.unknown", code=str(community_id))
    return unit


async def grids_of(
    session: AsyncSession, *, community_id: int, offset: int = 0, limit: int = 8
) -> tuple[list[OrgUnit], int]:
    """A community's grids by code, one page and the total; NotFound for an unknown community."""
    await get_community(session, community_id)
    where = (OrgUnit.kind == UnitKind.GRID, OrgUnit.parent_id == community_id)
    total = (await session.exec(select(sa.func.count()).select_from(OrgUnit).where(*where))).one()
    page = (
        await session.exec(
            select(OrgUnit).where(*where).order_by(OrgUnit.code).offset(max(0, offset)).limit(limit)
        )
    ).all()
    return list(page), total
