"""Choosing a place by hand: community search in both languages, a community's grids, paged."""

from __future__ import annotations

import pytest
from sqlmodel import select

from domain.errors import NotFound
from domain.places import get_community, grids_of, search_communities
from storage.models import OrgUnit
from storage.org_loader import apply_org, sample_path
from storage.orgfile import read_org_file


@pytest.fixture
async def city(sessionmaker, clock) -> dict[str, OrgUnit]:
    async with sessionmaker() as session:
        await apply_org(session=session, org=read_org_file(sample_path()), clock=clock)
        return {u.code: u for u in (await session.exec(select(OrgUnit))).all()}


async def test_search_by_part_of_a_name_in_either_language(sessionmaker, city) -> None:
    async with sessionmaker() as session:
        found, total = await search_communities(session, query="青桐")
        assert total == 1
        assert [c.community.code for c in found] == ["EQ-JZJ-01"]
        # The street comes along, to tell apart communities of the same name.
        assert found[0].street.code == "EQ-JZJ"

        found, total = await search_communities(session, query="  songFENG ")
        assert (total, [c.community.code for c in found]) == (1, ["EQ-JZJ-02"])

        # Part of every community's name; never a grid or a street.
        found, total = await search_communities(session, query="社区", limit=100)
        assert total == 8
        assert {c.community.kind.value for c in found} == {"community"}
        assert [c.community.code for c in found] == sorted(c.community.code for c in found)

        # By code, too.
        found, total = await search_communities(session, query="js-hyl")
        assert total == 2
        assert all(c.community.code.startswith("JS-HYL-") for c in found)


async def test_wildcards_are_taken_literally_and_nothing_matches(sessionmaker, city) -> None:
    async with sessionmaker() as session:
        assert await search_communities(session, query="%") == ([], 0)
        assert await search_communities(session, query="_") == ([], 0)
        assert await search_communities(session, query="不存在的社区") == ([], 0)


async def test_every_community_paged(sessionmaker, city) -> None:
    async with sessionmaker() as session:
        first, total = await search_communities(session, query=None, offset=0, limit=6)
        second, total_again = await search_communities(session, query="  ", offset=6, limit=6)
    assert total == total_again == 8
    assert len(first) == 6 and len(second) == 2
    codes = [c.community.code for c in first + second]
    assert codes == sorted(codes)
    assert len(set(codes)) == 8


async def test_grids_of_a_community_paged(sessionmaker, city) -> None:
    community = city["EQ-JZJ-01"]
    async with sessionmaker() as session:
        page, total = await grids_of(session, community_id=community.id, offset=0, limit=3)
        rest, _ = await grids_of(session, community_id=community.id, offset=3, limit=3)
        assert total == 4
        assert [g.code for g in page + rest] == [f"EQ-JZJ-01-G{i}" for i in range(1, 5)]
        with pytest.raises(NotFound):
            await grids_of(session, community_id=city["EQ-JZJ"].id)  # a street
        with pytest.raises(NotFound):
            await get_community(session, 999_999)
