"""What choosing a place asks for (domain.places, domain.queues, domain.geo): communities found
by name, a community's grids, and every grid's boundary for the locator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.enums import UnitKind
from storage.models import OrgUnit


@dataclass(frozen=True)
class CommunityChoice:
    """A community as a list shows it: with its street, since names repeat across streets."""

    community: OrgUnit
    street: OrgUnit | None


def _like_pattern(query: str) -> str:
    """`%query%` with LIKE's wildcards in the query taken literally (escape character `\\`)."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def communities_matching(
    session: AsyncSession, query: str, *, offset: int, limit: int
) -> tuple[list[CommunityChoice], int]:
    """Communities whose Chinese or English name (or code) contains `query`, whatever its
    case, by code: one page (from `offset`, up to `limit`) and how many there are in all.
    An empty query matches every community."""
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
    street = aliased(OrgUnit)
    rows = (
        await session.exec(
            select(OrgUnit, street)
            .join(street, OrgUnit.parent_id == street.id, isouter=True)
            .where(OrgUnit.id.in_(statement.with_only_columns(OrgUnit.id)))
            .order_by(OrgUnit.code)
            .offset(offset)
            .limit(limit)
        )
    ).all()
    return [CommunityChoice(community, parent) for community, parent in rows], total


async def grid_count(session: AsyncSession, community_id: int) -> int:
    """How many grids the community has."""
    return (
        await session.exec(
            select(sa.func.count())
            .select_from(OrgUnit)
            .where(OrgUnit.kind == UnitKind.GRID, OrgUnit.parent_id == community_id)
        )
    ).one()


async def grids_in(
    session: AsyncSession, community_id: int, *, offset: int = 0, limit: int | None = None
) -> list[OrgUnit]:
    """The community's grids by code: all of them, or up to `limit` from `offset`."""
    statement = (
        select(OrgUnit)
        .where(OrgUnit.kind == UnitKind.GRID, OrgUnit.parent_id == community_id)
        .order_by(OrgUnit.code)
    )
    if limit is not None:
        statement = statement.offset(offset).limit(limit)
    return list((await session.exec(statement)).all())


class GridShape(NamedTuple):
    """A grid's id and code, and its boundary as GeoJSON."""

    grid_id: int
    code: str
    boundary: dict[str, Any]


async def grid_shapes(session: AsyncSession) -> list[GridShape]:
    """Every grid that has a boundary."""
    rows = (
        await session.exec(
            select(OrgUnit.id, OrgUnit.code, OrgUnit.boundary).where(OrgUnit.kind == UnitKind.GRID)
        )
    ).all()
    # Filtered here rather than in SQL: a missing boundary may be SQL NULL or JSON null.
    return [GridShape(grid_id, code, boundary) for grid_id, code, boundary in rows if boundary]
