"""Choosing a place by hand: find a community by (part of) its name, then pick one of its grids.

For residents who will not (or cannot) share a location: a search over community names in both
languages (and codes), a paged list of a community's grids, and the names a summary shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.errors import NotFound
from storage.enums import UnitKind
from storage.models import OrgUnit
from storage.places import CommunityChoice, communities_matching, grid_count, grids_in

# A search term longer than this is cut: nobody types a community name that long.
QUERY_LIMIT = 100


@dataclass(frozen=True)
class GridPlace:
    """A grid and the community it belongs to."""

    grid: OrgUnit
    community: OrgUnit


async def search_communities(
    session: AsyncSession, *, query: str | None = None, offset: int = 0, limit: int = 6
) -> tuple[list[CommunityChoice], int]:
    """Communities whose Chinese or English name (or code) contains `query`, by code; one page
    and the total. No query (or only spaces): every community."""
    query = (query or "").strip()[:QUERY_LIMIT]
    return await communities_matching(session, query, offset=max(0, offset), limit=limit)


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
    total = await grid_count(session, community_id)
    page = await grids_in(session, community_id, offset=max(0, offset), limit=limit)
    return page, total
