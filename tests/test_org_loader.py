"""Loading an organisation into SQLite and PostgreSQL: by code, idempotent, all or nothing."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import yaml
from sqlmodel import select

import storage.org_loader as org_loader
from domain.clock import FrozenClock
from domain.deadlines import Ladder, load_timing
from domain.geo import GridHit, load_locator
from domain.posts import claim_post
from storage.enums import Level, MemberStatus, UnitKind, Urgency
from storage.models import (
    Category,
    CategoryDepartment,
    DeadlinePolicy,
    Department,
    Member,
    OrgSetting,
    OrgUnit,
    PostHolder,
    ServicePost,
)
from storage.org_loader import Counts, LoadReport, apply_org, org_is_empty, sample_path
from storage.orgfile import Organisation, OrgFileError, validate_org
from tests.factories import make_person

TABLES = (
    OrgUnit,
    Department,
    Category,
    CategoryDepartment,
    DeadlinePolicy,
    OrgSetting,
    ServicePost,
    PostHolder,
)


def sample_data() -> dict[str, Any]:
    return yaml.safe_load(sample_path().read_text(encoding="utf-8"))


def unit(data: dict[str, Any], code: str) -> dict[str, Any]:
    return next(u for u in data["units"] if u["code"] == code)


async def load(sessionmaker, org: Organisation, clock: FrozenClock) -> LoadReport:
    async with sessionmaker() as session:
        return await apply_org(session=session, org=org, clock=clock)


async def snapshot(sessionmaker) -> dict[str, list[tuple]]:
    """Every row of the organisation tables, in key order."""
    tables: dict[str, list[tuple]] = {}
    async with sessionmaker() as session:
        conn = await session.connection()
        for model in TABLES:
            table = model.__table__
            rows = await conn.execute(table.select().order_by(*table.primary_key.columns))
            tables[table.name] = [tuple(row) for row in rows]
    return tables


async def units_by_code(sessionmaker) -> dict[str, OrgUnit]:
    async with sessionmaker() as session:
        return {u.code: u for u in (await session.exec(select(OrgUnit))).all()}


def assert_paths_consistent(units: dict[str, OrgUnit]) -> None:
    by_id = {u.id: u for u in units.values()}
    for u in units.values():
        parent_path = by_id[u.parent_id].path if u.parent_id is not None else "/"
        assert u.path == f"{parent_path}{u.id}/", u.code


@pytest.fixture
def sample_org() -> Organisation:
    return validate_org(sample_data())


async def test_sample_loads_and_counts_match(sessionmaker, clock, sample_org) -> None:
    async with sessionmaker() as session:
        assert await org_is_empty(session)

    report = await load(sessionmaker, sample_org, clock)

    assert (report.units.created, report.units.updated, report.units.unchanged) == (47, 0, 0)
    assert (report.departments.created, report.categories.created) == (12, 10)
    assert (report.links.created, report.deadlines.created) == (24, 16)
    assert report.updated == 0 and report.removed == 0
    assert report.summary().startswith("Organisation ZZ: units 47 created, 0 updated")

    units = await units_by_code(sessionmaker)
    kinds = [u.kind for u in units.values()]
    assert [kinds.count(kind) for kind in UnitKind] == [1, 2, 4, 8, 32]
    assert_paths_consistent(units)
    grid = units["EQ-JZJ-01-G1"]
    ancestors = [units[c].id for c in ("ZZ", "EQ", "EQ-JZJ", "EQ-JZJ-01")]
    assert grid.path == "/" + "/".join(str(i) for i in [*ancestors, grid.id]) + "/"
    assert grid.name_zh == "青桐社区第1网格"
    assert grid.boundary == unit(sample_data(), "EQ-JZJ-01-G1")["boundary"]
    assert grid.created_at == clock.now() and grid.updated_at == clock.now()

    async with sessionmaker() as session:
        assert not await org_is_empty(session)
        police = (
            await session.exec(select(Department).where(Department.code == "JS-POLICE"))
        ).one()
        assert police.unit_id == units["JS"].id
        water = (await session.exec(select(Category).where(Category.code == "WATER"))).one()
        assert (water.urgency, water.active, water.position) == (Urgency.URGENT, True, 60)
        links = (await session.exec(select(CategoryDepartment))).all()
        assert len(links) == 24
        policies = (await session.exec(select(DeadlinePolicy))).all()
        override = [p for p in policies if p.category_id is not None]
        assert [(p.category_id, p.level, p.accept_minutes) for p in override] == [
            (water.id, Level.DEPARTMENT, 15)
        ]
        urgent_grid = next(
            p
            for p in policies
            if (p.urgency, p.level, p.category_id) == (Urgency.URGENT, Level.GRID, None)
        )
        assert (urgent_grid.accept_minutes, urgent_grid.resolve_minutes) == (30, 1440)
        assert urgent_grid.reminders == [0.5, 0.8]


async def test_loading_the_same_file_twice_changes_nothing(sessionmaker, clock, sample_org) -> None:
    await load(sessionmaker, sample_org, clock)
    before = await snapshot(sessionmaker)
    clock.advance(timedelta(hours=1))

    report = await load(sessionmaker, sample_org, clock)

    assert (report.created, report.updated, report.removed) == (0, 0, 0)
    assert not report.changed
    assert (report.units.unchanged, report.links.unchanged, report.deadlines.unchanged) == (
        47,
        24,
        16,
    )
    assert await snapshot(sessionmaker) == before


async def test_a_changed_file_updates_by_code(sessionmaker, clock, sample_org) -> None:
    await load(sessionmaker, sample_org, clock)
    first_load = clock.now()
    data = sample_data()
    grid = unit(data, "EQ-JZJ-01-G1")
    grid["name_zh"] = "青桐社区一号网格"
    grid["parent"] = "EQ-JZJ-02"
    # The grid now lies outside both communities' drawn boundaries; drop them.
    del unit(data, "EQ-JZJ-01")["boundary"]
    del unit(data, "EQ-JZJ-02")["boundary"]
    next(d for d in data["departments"] if d["code"] == "EQ-UM")["name_en"] = "Erqi City Admin"
    noise = next(c for c in data["categories"] if c["code"] == "NOISE")
    noise["urgency"] = "urgent"
    noise["departments"] = ["EQ-ENV"]
    normal_grid = data["deadlines"][5]
    assert (normal_grid["urgency"], normal_grid["level"]) == ("normal", "grid")
    normal_grid["resolve"] = "2d"
    data["deadlines"] = [d for d in data["deadlines"] if d.get("category") != "WATER"]
    clock.advance(timedelta(days=1))

    report = await load(sessionmaker, validate_org(data), clock)

    assert (report.units.created, report.units.updated, report.units.unchanged) == (0, 3, 44)
    assert (report.departments.updated, report.categories.updated) == (1, 1)
    assert (report.links.created, report.links.removed, report.links.unchanged) == (0, 3, 21)
    assert (report.deadlines.updated, report.deadlines.removed) == (1, 1)

    units = await units_by_code(sessionmaker)
    moved = units["EQ-JZJ-01-G1"]
    assert moved.parent_id == units["EQ-JZJ-02"].id
    assert moved.path == f"{units['EQ-JZJ-02'].path}{moved.id}/"
    assert moved.name_zh == "青桐社区一号网格"
    assert moved.updated_at == clock.now()
    assert units["EQ-JZJ-01"].boundary is None
    assert units["EQ-JZJ-01-G2"].updated_at == first_load
    assert_paths_consistent(units)

    async with sessionmaker() as session:
        category = (await session.exec(select(Category).where(Category.code == "NOISE"))).one()
        assert category.urgency == Urgency.URGENT
        linked = (
            await session.exec(
                select(Department.code)
                .join(CategoryDepartment, CategoryDepartment.department_id == Department.id)
                .where(CategoryDepartment.category_id == category.id)
            )
        ).all()
        assert linked == ["EQ-ENV"]
        policies = (await session.exec(select(DeadlinePolicy))).all()
        assert len(policies) == 15
        assert all(p.category_id is None for p in policies)
        grid_policy = next(
            p for p in policies if (p.urgency, p.level) == (Urgency.NORMAL, Level.GRID)
        )
        assert grid_policy.resolve_minutes == 2 * 1440


async def test_moving_a_street_moves_its_whole_subtree(sessionmaker, clock, sample_org) -> None:
    await load(sessionmaker, sample_org, clock)
    data = sample_data()
    unit(data, "EQ-JZJ")["parent"] = "JS"
    del unit(data, "EQ")["boundary"]
    del unit(data, "JS")["boundary"]

    report = await load(sessionmaker, validate_org(data), clock)

    # The street, its 2 communities and 8 grids (new paths), and the 2 districts (boundaries).
    assert report.units.updated == 13
    units = await units_by_code(sessionmaker)
    assert_paths_consistent(units)
    subtree = [u for code, u in units.items() if code.startswith("EQ-JZJ")]
    assert len(subtree) == 11
    assert all(u.path.startswith(units["JS"].path) for u in subtree)
    assert not any(u.path.startswith(units["EQ"].path) for u in subtree)


async def test_what_left_the_file_is_kept(sessionmaker, clock, sample_org) -> None:
    await load(sessionmaker, sample_org, clock)
    data = sample_data()
    data["units"] = [u for u in data["units"] if u["code"] != "EQ-JZJ-01-G4"]
    data["categories"] = [c for c in data["categories"] if c["code"] != "PETS"]
    data["departments"] = [d for d in data["departments"] if d["code"] != "JS-WATER"]
    water = next(c for c in data["categories"] if c["code"] == "WATER")
    water["departments"] = ["EQ-WATER"]
    changed = validate_org(data)

    report = await load(sessionmaker, changed, clock)

    assert report.units_not_in_file == ["EQ-JZJ-01-G4"]
    assert report.departments_not_in_file == ["JS-WATER"]
    assert report.categories_not_in_file == ["PETS"]
    assert (report.units.kept, report.departments.kept, report.categories.kept) == (1, 1, 1)
    assert report.links.removed == 1
    assert report.summary().endswith(
        "; not in file, kept: units 1, departments 1, categories 1 (now inactive)"
    )

    units = await units_by_code(sessionmaker)
    gone = units["EQ-JZJ-01-G4"]
    assert gone.boundary is None
    assert gone.parent_id == units["EQ-JZJ-01"].id
    async with sessionmaker() as session:
        pets = (await session.exec(select(Category).where(Category.code == "PETS"))).one()
        assert pets.active is False
        pet_links = (
            await session.exec(
                select(CategoryDepartment).where(CategoryDepartment.category_id == pets.id)
            )
        ).all()
        assert len(pet_links) == 2
        assert (await session.exec(select(Department).where(Department.code == "JS-WATER"))).one()
        locator = await load_locator(session)
    assert len(locator) == 31
    # The removed grid's territory (its centre) no longer catches reports.
    assert locator.locate(34.7475, 113.6375) is None

    again = await load(sessionmaker, changed, clock)
    assert not again.changed


async def test_the_locator_reads_grids_from_the_database(sessionmaker, clock, sample_org) -> None:
    await load(sessionmaker, sample_org, clock)
    units = await units_by_code(sessionmaker)
    async with sessionmaker() as session:
        locator = await load_locator(session)
    assert len(locator) == 32
    assert locator.locate(34.7425, 113.6325) == GridHit(units["EQ-JZJ-01-G1"].id, "EQ-JZJ-01-G1")
    assert locator.locate(34.7575, 113.6675).code == "JS-HYL-02-G4"
    assert locator.locate(34.80, 113.70) is None


BROKEN = [
    ("unknown parent", lambda d: unit(d, "EQ-JZJ").update(parent="ZZ-XX"), "units[1].parent"),
    (
        "overlapping grid",
        lambda d: unit(d, "EQ-JZJ-01-G2").update(boundary=unit(d, "EQ-JZJ-01-G1")["boundary"]),
        "units[4].boundary",
    ),
    (
        "department at a grid",
        lambda d: d["departments"][0].update(unit="EQ-JZJ-01-G1"),
        "departments[0].unit",
    ),
    (
        "a day both holiday and workday",
        lambda d: d["calendar"].update(workdays=["2027-10-01"]),
        "calendar.workdays[0]",
    ),
    ("ladder without repeats", lambda d: d["ladder"].update(top_repeat="0m"), "ladder.top_repeat"),
]


@pytest.mark.parametrize(("change", "where"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
async def test_a_broken_file_changes_nothing(
    sessionmaker, clock, sample_org, change, where
) -> None:
    await load(sessionmaker, sample_org, clock)
    before = await snapshot(sessionmaker)
    data = sample_data()
    change(data)

    with pytest.raises(OrgFileError) as info:
        await load(sessionmaker, validate_org(data), clock)

    assert [w for w, _ in info.value.problems] == [where]
    assert await snapshot(sessionmaker) == before


async def test_a_unit_cannot_change_kind(sessionmaker, clock, sample_org) -> None:
    await load(sessionmaker, sample_org, clock)
    before = await snapshot(sessionmaker)
    data = sample_data()
    grid = unit(data, "EQ-JZJ-01-G1")
    grid.update(kind="community", parent="EQ-JZJ")
    del grid["boundary"]
    org = validate_org(data)

    with pytest.raises(OrgFileError) as info:
        await load(sessionmaker, org, clock)

    where = next(u.where for u in org.units if u.code == "EQ-JZJ-01-G1")
    assert info.value.problems == [
        (
            f"{where}.kind",
            "'EQ-JZJ-01-G1' is a grid in the database; "
            "a unit's kind cannot change (give it a new code)",
        )
    ]
    assert await snapshot(sessionmaker) == before


async def test_a_failure_midway_leaves_the_database_as_it_was(
    sessionmaker, clock, sample_org, monkeypatch
) -> None:
    await load(sessionmaker, sample_org, clock)
    before = await snapshot(sessionmaker)
    data = sample_data()
    unit(data, "EQ-JZJ-01-G1")["name_en"] = "Renamed"
    data["units"].append({**unit(data, "EQ-JZJ-01"), "code": "EQ-JZJ-03", "name_en": "New"})
    del data["units"][-1]["boundary"]
    changed = validate_org(data)
    reached: list[str] = []
    apply_links = org_loader._apply_links

    async def links_then_fail(*args: Any, **kwargs: Any) -> None:
        # Units, departments, categories and links are written by now; deadlines never are.
        await apply_links(*args, **kwargs)
        reached.append("links")
        raise RuntimeError("disk full")

    monkeypatch.setattr(org_loader, "_apply_links", links_then_fail)
    clock.advance(timedelta(hours=2))

    with pytest.raises(RuntimeError, match="disk full"):
        await load(sessionmaker, changed, clock)

    assert reached == ["links"]
    assert await snapshot(sessionmaker) == before


async def test_a_failure_on_an_empty_database_leaves_it_empty(
    sessionmaker, clock, sample_org, monkeypatch
) -> None:
    async def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(org_loader, "_apply_deadlines", fail)
    with pytest.raises(RuntimeError, match="boom"):
        await load(sessionmaker, sample_org, clock)

    async with sessionmaker() as session:
        assert await org_is_empty(session)
        assert (await session.exec(sa.select(sa.func.count()).select_from(Category))).one() == (0,)


async def settings(sessionmaker) -> dict[str, OrgSetting]:
    async with sessionmaker() as session:
        return {s.key: s for s in (await session.exec(select(OrgSetting))).all()}


async def test_sample_loads_with_both_settings(sessionmaker, clock, sample_org) -> None:
    report = await load(sessionmaker, sample_org, clock)

    assert (report.calendar.created, report.ladder.created) == (1, 1)
    assert "; deadlines 16 created, 0 updated, 0 unchanged, 0 removed; " in report.summary()
    assert report.summary().endswith("; calendar created; ladder created; figures created")
    rows = await settings(sessionmaker)
    assert sorted(rows) == ["calendar", "figures", "ladder", "revision"]
    assert rows["figures"].value == {
        "weights": {"response": 0.1, "resolution": 0.45, "satisfaction": 0.45}
    }
    assert rows["revision"].value == {"n": 1}
    calendar = rows["calendar"]
    assert calendar.value["working_hours"] == [["09:00", "12:00"], ["13:00", "17:00"]]
    assert len(calendar.value["holidays"]) == 23
    assert calendar.value["holidays"][0] == "2027-01-01"
    assert calendar.value["workdays"] == []
    assert calendar.updated_at == clock.now()
    assert rows["ladder"].value == {
        "top_repeat_minutes": 240,
        "top_repeat_times": 3,
        "followup_close_minutes": 4320,
    }

    # What the sweep will read back from the database.
    async with sessionmaker() as session:
        timing = await load_timing(session, ZoneInfo("Asia/Shanghai"))
    assert timing.calendar.day_minutes == 420
    assert not timing.calendar.is_working_day(date(2027, 1, 1))
    assert timing.calendar.is_working_day(date(2027, 1, 4))
    assert timing.ladder == Ladder(240, 3, 4320)


async def test_settings_are_created_updated_kept_and_removed(
    sessionmaker, clock, sample_org
) -> None:
    first = clock.now()
    await load(sessionmaker, sample_org, clock)

    # The same file again: nothing written, updated_at untouched.
    clock.advance(timedelta(hours=1))
    again = await load(sessionmaker, sample_org, clock)
    assert (again.calendar.unchanged, again.ladder.unchanged) == (1, 1)
    assert again.summary().endswith("; calendar unchanged; ladder unchanged; figures unchanged")
    assert not again.changed
    assert {row.updated_at for row in (await settings(sessionmaker)).values()} == {first}

    # One section changed: that row only.
    data = sample_data()
    data["calendar"]["workdays"] = ["2027-02-20"]
    data["calendar"]["holidays"].reverse()  # order in the file does not matter
    clock.advance(timedelta(hours=1))
    changed = await load(sessionmaker, validate_org(data), clock)
    assert (changed.calendar.updated, changed.ladder.unchanged) == (1, 1)
    assert changed.updated == 1 and changed.changed
    assert changed.summary().endswith("; calendar updated; ladder unchanged; figures unchanged")
    rows = await settings(sessionmaker)
    assert rows["calendar"].value["workdays"] == ["2027-02-20"]
    assert rows["calendar"].value["holidays"][0] == "2027-01-01"
    assert rows["calendar"].updated_at == clock.now()
    assert rows["ladder"].updated_at == first

    # A ladder with a key left out stores only what the file says.
    data["ladder"] = {"top_repeat_times": 5}
    report = await load(sessionmaker, validate_org(data), clock)
    assert (report.calendar.unchanged, report.ladder.updated) == (1, 1)
    assert (await settings(sessionmaker))["ladder"].value == {"top_repeat_times": 5}

    # Sections gone from the file: rows removed, defaults apply.
    del data["calendar"], data["ladder"], data["figures"]
    gone = validate_org(data)
    removed = await load(sessionmaker, gone, clock)
    assert (removed.calendar.removed, removed.ladder.removed, removed.figures.removed) == (1, 1, 1)
    assert removed.removed == 3
    assert removed.summary().endswith(
        "; calendar removed (defaults apply); ladder removed (defaults apply)"
        "; figures removed (defaults apply)"
    )
    # Only the organisation's revision is left, moved once by each load that changed something.
    left = await settings(sessionmaker)
    assert list(left) == ["revision"] and left["revision"].value == {"n": 4}
    async with sessionmaker() as session:
        timing = await load_timing(session, ZoneInfo("Asia/Shanghai"))
    assert timing.calendar.day_minutes == 1440 and timing.ladder == Ladder()

    # And again: nothing to remove.
    none = await load(sessionmaker, gone, clock)
    assert not none.changed
    assert none.summary().endswith(
        "; calendar not set (defaults apply); ladder not set (defaults apply)"
        "; figures not set (defaults apply)"
    )

    # Back in the file: created afresh.
    back = await load(sessionmaker, sample_org, clock)
    assert (back.calendar.created, back.ladder.created) == (1, 1)


async def test_a_failure_after_the_settings_leaves_them_as_they_were(
    sessionmaker, clock, sample_org, monkeypatch
) -> None:
    await load(sessionmaker, sample_org, clock)
    before = await snapshot(sessionmaker)
    data = sample_data()
    del data["calendar"]
    data["ladder"]["top_repeat"] = "2h"
    apply_settings = org_loader._apply_settings

    async def settings_then_fail(*args: Any, **kwargs: Any) -> None:
        await apply_settings(*args, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(org_loader, "_apply_settings", settings_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        await load(sessionmaker, validate_org(data), clock)

    assert await snapshot(sessionmaker) == before


# --- service posts ---------------------------------------------------------------------------


async def posts_of(sessionmaker, community: str) -> dict[str, ServicePost]:
    async with sessionmaker() as session:
        rows = await session.exec(
            select(ServicePost)
            .join(OrgUnit, OrgUnit.id == ServicePost.community_id)
            .where(OrgUnit.code == community)
        )
        return {p.code: p for p in rows.all()}


async def hold(sessionmaker, clock, community: str, code: str, telegram_ids: list[int]) -> None:
    """Approved members of the community who claim the post (as /posts does)."""
    posts = await posts_of(sessionmaker, community)
    async with sessionmaker() as session:
        unit_id = (await session.exec(select(OrgUnit.id).where(OrgUnit.code == community))).one()
        for telegram_id in telegram_ids:
            person = await make_person(session, telegram_id)
            session.add(
                Member(
                    person_id=person.id,
                    full_name=f"M{telegram_id}",
                    branch="branch",
                    community_id=unit_id,
                    status=MemberStatus.APPROVED,
                )
            )
            await session.commit()
            await claim_post(session=session, clock=clock, person=person, post_id=posts[code].id)
            await session.commit()  # as the bot does once /posts is handled


async def test_sample_posts_are_created_in_every_community(sessionmaker, clock, sample_org) -> None:
    report = await load(sessionmaker, sample_org, clock)

    assert (report.posts.created, report.posts.updated, report.posts.removed) == (32, 0, 0)
    assert "; posts 32 created, 0 updated, 0 unchanged, 0 removed; " in report.summary()
    qingtong = await posts_of(sessionmaker, "EQ-JZJ-01")
    assert {code: (p.name_zh, p.name_en, p.places, p.held) for code, p in qingtong.items()} == {
        "BUILDING": ("楼栋管家", "Building helper", 6, 0),
        "PATROL": ("平安巡逻", "Safety patrol", 8, 0),
        "ENVIRONMENT": ("环境监督", "Environment watch", 4, 0),
        "POLICY": ("政策宣讲", "Policy explainer", 1, 0),
    }
    assert (await posts_of(sessionmaker, "JS-JBL-01"))["PATROL"].places == 12

    again = await load(sessionmaker, sample_org, clock)
    assert (again.posts.created, again.posts.updated, again.posts.unchanged) == (0, 0, 32)
    assert not again.changed


async def test_posts_update_in_place_and_keep_their_holders(
    sessionmaker, clock, sample_org
) -> None:
    await load(sessionmaker, sample_org, clock)
    await hold(sessionmaker, clock, "EQ-JZJ-01", "PATROL", [901, 902, 903])
    before = await posts_of(sessionmaker, "EQ-JZJ-01")
    data = sample_data()
    patrol = data["posts"][1]
    patrol["name_en"] = "Night patrol"
    patrol["places_in"] = {"EQ-JZJ-01": 3}

    report = await load(sessionmaker, validate_org(data), clock)

    assert (report.posts.created, report.posts.updated, report.posts.unchanged) == (0, 8, 24)
    after = await posts_of(sessionmaker, "EQ-JZJ-01")
    assert after["PATROL"].id == before["PATROL"].id
    assert (after["PATROL"].name_en, after["PATROL"].places, after["PATROL"].held) == (
        "Night patrol",
        3,
        3,
    )
    async with sessionmaker() as session:
        holders = (
            await session.exec(select(PostHolder).where(PostHolder.post_id == after["PATROL"].id))
        ).all()
        assert len(holders) == 3


async def test_places_below_the_holders_are_refused_and_nothing_changes(
    sessionmaker, clock, sample_org
) -> None:
    await load(sessionmaker, sample_org, clock)
    await hold(sessionmaker, clock, "EQ-JZJ-01", "PATROL", [901, 902, 903])
    await hold(sessionmaker, clock, "EQ-JZJ-01", "BUILDING", [904, 905])
    before = await snapshot(sessionmaker)
    posts_before = await posts_of(sessionmaker, "EQ-JZJ-01")
    data = sample_data()
    data["posts"][0]["places"] = 1  # BUILDING everywhere: 2 hold it in Qingtong
    data["posts"][1]["places_in"] = {"EQ-JZJ-01": 2, "JS-JBL-01": 12}
    data["posts"][2]["name_en"] = "Environment"  # a good change, not kept either

    with pytest.raises(OrgFileError) as refused:
        await load(sessionmaker, validate_org(data), clock)

    assert refused.value.problems == [
        (
            "posts[0].places",
            "2 members hold 'BUILDING' in community 'EQ-JZJ-01'; "
            "its places cannot go below 2 (got 1)",
        ),
        (
            "posts[1].places_in.EQ-JZJ-01",
            "3 members hold 'PATROL' in community 'EQ-JZJ-01'; "
            "its places cannot go below 3 (got 2)",
        ),
    ]
    assert await snapshot(sessionmaker) == before
    assert await posts_of(sessionmaker, "EQ-JZJ-01") == posts_before


async def test_a_post_gone_from_the_file_is_removed_unless_held(
    sessionmaker, clock, sample_org
) -> None:
    await load(sessionmaker, sample_org, clock)
    await hold(sessionmaker, clock, "EQ-JZJ-01", "POLICY", [901])
    data = sample_data()
    data["posts"] = [p for p in data["posts"] if p["code"] != "POLICY"]

    report = await load(sessionmaker, validate_org(data), clock)

    assert (report.posts.removed, report.posts.kept, report.posts.unchanged) == (7, 1, 24)
    assert report.posts_not_in_file == ["EQ-JZJ-01/POLICY"]
    assert report.summary().endswith("; not in file, kept: posts 1 (still held)")
    assert "POLICY" in await posts_of(sessionmaker, "EQ-JZJ-01")
    assert "POLICY" not in await posts_of(sessionmaker, "EQ-JZJ-02")

    # A file without the section leaves the posts as they are.
    del data["posts"]
    untouched = await load(sessionmaker, validate_org(data), clock)
    assert untouched.posts == Counts() and not untouched.changed
    assert len(await posts_of(sessionmaker, "EQ-JZJ-02")) == 3
