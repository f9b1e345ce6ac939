"""The organisation snapshot: what it answers, and when it is read again (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from sqlmodel import select

from domain.errors import NotFound
from domain.reference import Reference, load_snapshot
from storage.enums import Level, UnitKind, Urgency
from storage.models import Category, OrgUnit
from storage.org_loader import apply_org, read_revision, sample_path
from storage.orgfile import validate_org


def sample_data() -> dict[str, Any]:
    return yaml.safe_load(sample_path().read_text(encoding="utf-8"))


async def load(sessionmaker, data: dict[str, Any], clock) -> None:
    async with sessionmaker() as session:
        await apply_org(session=session, org=validate_org(data), clock=clock)


class Ticker:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_snapshot_answers_places_categories_and_policies(sessionmaker, clock) -> None:
    await load(sessionmaker, sample_data(), clock)
    async with sessionmaker() as session:
        org = await load_snapshot(session)
        grid = (await session.exec(select(OrgUnit).where(OrgUnit.code == "EQ-JZJ-01-G1"))).one()
        categories = (await session.exec(select(Category))).all()

    chain = org.place_of(34.7425, 113.6325)
    assert chain is not None
    assert chain[-1].code == "EQ-JZJ-01-G1"
    assert [u.kind for u in chain] == [
        UnitKind.CITY,
        UnitKind.DISTRICT,
        UnitKind.STREET,
        UnitKind.COMMUNITY,
        UnitKind.GRID,
    ]
    assert org.place_of(10.0, 10.0) is None  # outside every grid

    place = org.grid_place(grid.id)
    assert place.grid.code == "EQ-JZJ-01-G1"
    assert place.community.id == grid.parent_id
    assert org.ancestor(grid, UnitKind.CITY).code == "ZZ"
    with pytest.raises(NotFound):
        org.grid_place(grid.parent_id)  # a community, not a grid
    with pytest.raises(NotFound):
        org.grid_place(999_999)

    by_position = sorted(categories, key=lambda c: (c.position, c.id))
    assert [c.code for c in org.active_categories] == [c.code for c in by_position]
    assert org.category(by_position[0].id).code == by_position[0].code
    with pytest.raises(NotFound):
        org.category(999_999)
    policy = org.policies.find(Urgency.URGENT, None, Level.GRID)
    assert policy is not None and policy.accept_minutes == 30


async def test_an_inactive_category_is_offered_no_more(sessionmaker, clock) -> None:
    data = sample_data()
    await load(sessionmaker, data, clock)
    dropped = data["categories"].pop(0)["code"]
    await load(sessionmaker, data, clock)  # categories missing from the file become inactive
    async with sessionmaker() as session:
        org = await load_snapshot(session)
    gone = next(c for c in org.categories.values() if c.code == dropped)
    assert dropped not in [c.code for c in org.active_categories]
    with pytest.raises(NotFound):
        org.category(gone.id)
    assert org.category(gone.id, active=False).code == dropped  # old tickets still name it


async def test_a_load_that_changes_something_moves_the_revision(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        assert await read_revision(session) == 0
    data = sample_data()
    await load(sessionmaker, data, clock)
    async with sessionmaker() as session:
        assert await read_revision(session) == 1
    await load(sessionmaker, data, clock)  # the same file: nothing changed
    async with sessionmaker() as session:
        assert await read_revision(session) == 1
    data["categories"][0]["name_en"] = "Renamed"
    await load(sessionmaker, data, clock)
    async with sessionmaker() as session:
        assert await read_revision(session) == 2


async def test_the_cache_reads_again_only_when_the_revision_moved(sessionmaker, clock) -> None:
    data = sample_data()
    await load(sessionmaker, data, clock)
    ticker = Ticker()
    reference = Reference(max_age=2.0, monotonic=ticker)
    async with sessionmaker() as session:
        first = await reference.get(session)
    code = data["categories"][0]["code"]

    data["categories"][0]["name_en"] = "Renamed"
    await load(sessionmaker, data, clock)  # as `gridbot org load` from another process would
    async with sessionmaker() as session:
        ticker.now += 1.0
        # Younger than max_age: the snapshot in hand, not read again.
        assert await reference.get(session) is first
        ticker.now += 1.5
        fresh = await reference.get(session)
    assert fresh is not first
    assert fresh.revision == first.revision + 1
    assert next(c for c in fresh.categories.values() if c.code == code).name_en == "Renamed"

    async with sessionmaker() as session:
        ticker.now += 10.0
        # Old enough to check, but nothing changed: the same snapshot.
        assert await reference.get(session) is fresh

    data["categories"][0]["name_en"] = "Renamed again"
    await load(sessionmaker, data, clock)
    reference.invalidate()  # a load made in this process: no need to wait
    async with sessionmaker() as session:
        latest = await reference.get(session)
    assert next(c for c in latest.categories.values() if c.code == code).name_en == (
        "Renamed again"
    )


async def test_a_changed_grid_is_located_anew(sessionmaker, clock) -> None:
    data = sample_data()
    await load(sessionmaker, data, clock)
    reference = Reference(max_age=0.0)
    point = (34.7440, 113.6340)  # in Qingtong Grid 1's upper right quarter
    async with sessionmaker() as session:
        chain = (await reference.get(session)).place_of(*point)
    assert chain is not None and chain[-1].code == "EQ-JZJ-01-G1"
    grid = next(u for u in data["units"] if u["code"] == "EQ-JZJ-01-G1")
    # The grid shrinks to its lower left quarter: the point is in no grid any more.
    grid["boundary"] = {
        "type": "Polygon",
        "coordinates": [
            [[113.63, 34.74], [113.6325, 34.74], [113.6325, 34.7425], [113.63, 34.7425]]
            + [[113.63, 34.74]]
        ],
    }
    await load(sessionmaker, data, clock)
    async with sessionmaker() as session:
        assert (await reference.get(session)).place_of(*point) is None


async def test_the_snapshot_outlives_a_rollback_of_the_session_that_read_it(
    sessionmaker, clock
) -> None:
    """The snapshot is shared by every update and the scheduler: a refusal or a failure that
    rolls back the session that happened to read it must not expire what it holds."""
    await load(sessionmaker, sample_data(), clock)
    reference = Reference()
    async with sessionmaker() as session:
        org = await reference.get(session)
        await session.rollback()
    grid = next(u for u in org.units.values() if u.kind == UnitKind.GRID)
    assert [u.kind for u in org.chain(grid)][-1] == UnitKind.GRID
    assert grid.code and grid.path and org.active_categories[0].name_en
    async with sessionmaker() as session:
        # Another session reads its own copy of a unit, not the shared one.
        fresh = await session.get(OrgUnit, grid.id)
        assert fresh is not grid and fresh.code == grid.code
