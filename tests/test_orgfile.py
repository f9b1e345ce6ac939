"""The organisation file: the sample validates, and every kind of mistake is named and placed."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import shapely
import yaml
from shapely.geometry import shape

from domain.deadlines import Ladder, calendar_from_setting
from storage.enums import Level, UnitKind, Urgency
from storage.org_loader import sample_path
from storage.orgfile import (
    CalendarSpec,
    FiguresSpec,
    LadderSpec,
    OrgFileError,
    format_duration,
    parse_duration,
    parse_org,
    read_org_file,
    validate_org,
)


def rect(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "Polygon", "coordinates": [ring]}


def minimal() -> dict[str, Any]:
    """A small valid city: one of each kind, a community boundary, two grids side by side."""
    return {
        "city": {"code": "C", "name_zh": "市", "name_en": "City"},
        "units": [
            {"code": "D1", "kind": "district", "parent": "C", "name_zh": "区", "name_en": "D"},
            {"code": "S1", "kind": "street", "parent": "D1", "name_zh": "街道", "name_en": "S"},
            {
                "code": "C1",
                "kind": "community",
                "parent": "S1",
                "name_zh": "社区",
                "name_en": "Community",
                "boundary": rect(113.00, 34.00, 113.02, 34.01),
            },
            {
                "code": "G1",
                "kind": "grid",
                "parent": "C1",
                "name_zh": "网格1",
                "name_en": "Grid 1",
                "boundary": rect(113.00, 34.00, 113.01, 34.01),
            },
            {
                "code": "G2",
                "kind": "grid",
                "parent": "C1",
                "name_zh": "网格2",
                "name_en": "Grid 2",
                "boundary": rect(113.01, 34.00, 113.02, 34.01),
            },
        ],
        "departments": [{"code": "UM", "name_zh": "城管", "name_en": "UM", "unit": "D1"}],
        "categories": [
            {
                "code": "GARBAGE",
                "name_zh": "垃圾",
                "name_en": "Garbage",
                "urgency": "normal",
                "departments": ["UM"],
            }
        ],
        "deadlines": [
            {
                "urgency": "normal",
                "level": "grid",
                "accept": "2h",
                "resolve": "3d",
                "working_time": True,
            }
        ],
    }


def refused(data: Any) -> list[tuple[str, str]]:
    with pytest.raises(OrgFileError) as info:
        validate_org(data)
    return info.value.problems


# --- the sample ----------------------------------------------------------------------------


def test_sample_validates_with_the_promised_shape() -> None:
    org = read_org_file(sample_path())

    assert org.city.code == "ZZ" and org.city.name_zh == "郑州市"
    assert [org.count(kind) for kind in UnitKind] == [1, 2, 4, 8, 32]
    names = {u.name_zh for u in org.units}
    assert {"金水区", "二七区", "经八路街道", "花园路街道", "建中街街道", "解放路街道"} <= names
    assert len(org.departments) == 12
    assert len(org.categories) == 10
    urgencies = {c.urgency for c in org.categories}
    assert urgencies == {Urgency.URGENT, Urgency.NORMAL, Urgency.CONSULTATION}
    assert sum(len(c.departments) for c in org.categories) == 24
    assert len(org.deadlines) == 16


def test_sample_deadlines_match_the_policy() -> None:
    org = read_org_file(sample_path())
    general = {(d.urgency, d.level): d for d in org.deadlines if d.category is None}
    assert len(general) == 15
    urgent = general[(Urgency.URGENT, Level.GRID)]
    assert (urgent.accept_minutes, urgent.resolve_minutes, urgent.working_time) == (30, 1440, False)
    normal = general[(Urgency.NORMAL, Level.STREET)]
    assert (normal.accept_minutes, normal.resolve_minutes, normal.working_time) == (120, 4320, True)
    consult = general[(Urgency.CONSULTATION, Level.DEPARTMENT)]
    assert (consult.accept_minutes, consult.resolve_minutes) == (1440, 7200)
    assert all(d.reminders == (0.5, 0.8) for d in org.deadlines)
    (water,) = [d for d in org.deadlines if d.category is not None]
    assert (water.category, water.level, water.accept_minutes) == ("WATER", Level.DEPARTMENT, 15)


def test_sample_grids_tile_their_community_exactly() -> None:
    org = read_org_file(sample_path())
    by_code = {u.code: u for u in org.all_units}
    communities = [u for u in org.units if u.kind == UnitKind.COMMUNITY]
    assert len(communities) == 8
    for community in communities:
        grids = [shape(u.boundary) for u in org.units if u.parent == community.code]
        assert len(grids) == 4
        area = shape(community.boundary).area
        assert shapely.union_all(grids).symmetric_difference(shape(community.boundary)).area == (
            pytest.approx(0.0, abs=area * 1e-9)
        )
        assert by_code[community.parent].kind == UnitKind.STREET
    # Near 34.75N 113.65E, as promised.
    centre = shape(org.city.boundary).centroid
    assert centre.y == pytest.approx(34.75, abs=0.01)
    assert centre.x == pytest.approx(113.65, abs=0.01)


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("30m", 30), ("2h", 120), ("3d", 4320), ("1d12h", 2160), ("1h30m", 90), (" 2H ", 120)],
)
def test_durations_parse(text: str, minutes: int) -> None:
    assert parse_duration(text) == minutes


@pytest.mark.parametrize("text", ["", "2", "2x", "h", "3d2d", "-1h", "1.5h"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_durations_format_back() -> None:
    assert [format_duration(m) for m in (0, 30, 120, 2160, 1441)] == [
        "0m",
        "30m",
        "2h",
        "1d12h",
        "1d1m",
    ]


# --- mistakes, one at a time ---------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        *parents, last = path.split("/")
        target: Any = data
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is _DELETE:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value

    return change


_DELETE = object()
BOWTIE = {
    "type": "Polygon",
    "coordinates": [
        [[113.0, 34.0], [113.01, 34.01], [113.01, 34.0], [113.0, 34.01], [113.0, 34.0]]
    ],
}

CASES: list[tuple[str, Callable[[dict], None], str, str]] = [
    ("missing field", _set("units/0/name_en", _DELETE), "units[0].name_en", "missing"),
    ("extra field", _set("units/0/colour", "red"), "units[0].colour", "unknown field"),
    (
        "unknown kind",
        _set("units/0/kind", "village"),
        "units[0].kind",
        "should be 'district', 'street', 'community' or 'grid', got 'village'",
    ),
    ("code not text", _set("units/1/code", 101), "units[1].code", "must be text, got 101"),
    ("code with space", _set("units/1/code", "S 1"), "units[1].code", "must not contain spaces"),
    ("empty name", _set("units/1/name_zh", ""), "units[1].name_zh", "must not be empty"),
    ("unknown parent", _set("units/2/parent", "ZZ-XX"), "units[2].parent", "unknown unit 'ZZ-XX'"),
    (
        "parent of the wrong kind",
        _set("units/3/parent", "S1"),
        "units[3].parent",
        "a grid must sit under a community; 'S1' is a street",
    ),
    (
        "district not under the city",
        _set("units/0/parent", "D1"),
        "units[0].parent",
        "a district must sit under a city; 'D1' is a district",
    ),
    (
        "duplicate unit code",
        _set("units/4/code", "G1"),
        "units[4].code",
        "duplicate code 'G1' (first at units[3])",
    ),
    (
        "unit code equal to the city's",
        _set("units/1/code", "C"),
        "units[1].code",
        "duplicate code 'C' (first at city)",
    ),
    ("grid without boundary", _set("units/3/boundary", _DELETE), "units[3].boundary", "missing"),
    (
        "self-intersecting polygon",
        _set("units/3/boundary", BOWTIE),
        "units[3].boundary",
        "polygon is not valid (Self-intersection",
    ),
    (
        "latitude and longitude swapped",
        _set("units/3/boundary", rect(34.00, 113.00, 34.01, 113.01)),
        "units[3].boundary",
        "coordinates out of range at [0][0] = [34.0, 113.0] and 4 more "
        "(GeoJSON order is [longitude, latitude])",
    ),
    (
        "ring not closed",
        _set("units/3/boundary/coordinates/0/4", [113.0, 34.005]),
        "units[3].boundary",
        "ring [0] is not closed",
    ),
    (
        "not a polygon",
        _set("units/3/boundary", {"type": "Point", "coordinates": [113.0, 34.0]}),
        "units[3].boundary",
        "type must be Polygon or MultiPolygon, got 'Point'",
    ),
    (
        "a Feature instead of a geometry",
        _set("units/3/boundary", {"type": "Feature", "geometry": rect(0, 0, 1, 1)}),
        "units[3].boundary",
        "give the geometry object itself, not a GeoJSON Feature",
    ),
    (
        "overlapping grids",
        _set("units/4/boundary", rect(113.005, 34.00, 113.02, 34.01)),
        "units[4].boundary",
        "overlaps grid 'G1' (units[3]) by about",
    ),
    (
        "grid outside its community",
        _set("units/4/boundary", rect(113.01, 34.00, 113.03, 34.01)),
        "units[4].boundary",
        "lies outside the boundary of community 'C1' (units[2]) by about",
    ),
    (
        "department at a community",
        _set("departments/0/unit", "C1"),
        "departments[0].unit",
        "a department sits at a district or street; 'C1' is a community",
    ),
    (
        "department at an unknown unit",
        _set("departments/0/unit", "NOPE"),
        "departments[0].unit",
        "unknown unit 'NOPE'",
    ),
    (
        "category with an unknown department",
        _set("categories/0/departments", ["UM", "NOPE"]),
        "categories[0].departments[1]",
        "unknown department 'NOPE'",
    ),
    (
        "category lists a department twice",
        _set("categories/0/departments", ["UM", "UM"]),
        "categories[0].departments[1]",
        "department 'UM' listed twice",
    ),
    (
        "unknown urgency",
        _set("categories/0/urgency", "asap"),
        "categories[0].urgency",
        "should be 'urgent', 'normal' or 'consultation', got 'asap'",
    ),
    (
        "deadline for an unknown category",
        _set("deadlines/0/category", "NOPE"),
        "deadlines[0].category",
        "unknown category 'NOPE'",
    ),
    (
        "malformed duration",
        _set("deadlines/0/accept", "2x"),
        "deadlines[0].accept",
        "'2x' is not a duration",
    ),
    (
        "zero duration",
        _set("deadlines/0/resolve", "0m"),
        "deadlines[0].resolve",
        "must be longer than zero, got '0m'",
    ),
    (
        "accept longer than resolve",
        _set("deadlines/0/accept", "4d"),
        "deadlines[0]",
        "accept (4d) is longer than resolve (3d)",
    ),
    (
        "reminder outside (0, 1)",
        _set("deadlines/0/reminders", [0.5, 1.0]),
        "deadlines[0].reminders[1]",
        "must be a fraction between 0 and 1 (exclusive), got 1.0",
    ),
    (
        "unknown level",
        _set("deadlines/0/level", "city"),
        "deadlines[0].level",
        "should be 'grid', 'community', 'street', 'district' or 'department', got 'city'",
    ),
    ("unknown top-level key", _set("colours", []), "colours", "unknown key"),
    ("empty city", _set("city", None), "city", "is empty: give its code, name_zh and name_en"),
    ("city with a parent", _set("city/parent", "X"), "city.parent", "unknown field"),
    ("missing top-level key", _set("deadlines", _DELETE), "deadlines", "missing"),
    ("section not a list", _set("units", {"a": 1}), "units", "must be a list, got dict"),
    ("entry not a mapping", _set("units/1", "S1"), "units[1]", "must be a mapping of fields"),
]


@pytest.mark.parametrize(
    ("change", "where", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_mistake_is_named_and_placed(change: Callable, where: str, reason: str) -> None:
    data = minimal()
    change(data)
    problems = refused(data)
    matching = [p for p in problems if p[0] == where and p[1].startswith(reason)]
    assert matching, f"expected ({where!r}, {reason!r}...) in {problems}"


def test_minimal_city_is_valid() -> None:
    org = validate_org(minimal())
    assert [u.code for u in org.all_units] == ["C", "D1", "S1", "C1", "G1", "G2"]
    assert org.categories[0].position == 0
    assert org.deadlines[0].reminders == (0.5, 0.8)


def test_duplicate_department_and_category_codes() -> None:
    data = minimal()
    data["departments"].append(copy.deepcopy(data["departments"][0]))
    data["categories"].append(copy.deepcopy(data["categories"][0]))
    data["deadlines"].append(copy.deepcopy(data["deadlines"][0]))
    assert refused(data) == [
        ("departments[1].code", "duplicate code 'UM' (first at departments[0])"),
        ("categories[1].code", "duplicate code 'GARBAGE' (first at categories[0])"),
        ("deadlines[1]", "duplicate policy normal/grid (first at deadlines[0])"),
    ]


def test_every_problem_is_listed_not_just_the_first() -> None:
    data = minimal()
    data["units"][2]["parent"] = "NOPE"
    data["units"][4]["boundary"] = rect(113.005, 34.00, 113.015, 34.01)
    data["departments"][0]["unit"] = "G1"
    data["deadlines"][0]["accept"] = "soon"
    problems = refused(data)
    assert [where for where, _ in problems] == [
        "units[2].parent",
        "units[4].boundary",
        "departments[0].unit",
        "deadlines[0].accept",
    ]
    with pytest.raises(OrgFileError) as info:
        validate_org(data)
    lines = str(info.value).splitlines()
    assert len(lines) == 4
    assert lines[0] == "units[2].parent: unknown unit 'NOPE'"


def test_a_unit_lies_within_its_nearest_bounded_ancestor() -> None:
    data = minimal()
    # No community boundary: the street's boundary is the one the grids must respect.
    del data["units"][2]["boundary"]
    data["units"][1]["boundary"] = rect(113.00, 34.00, 113.015, 34.01)
    problems = refused(data)
    assert len(problems) == 1
    where, reason = problems[0]
    assert where == "units[4].boundary"
    assert reason.startswith("lies outside the boundary of street 'S1' (units[1]) by about ")
    # About half of G2 (0.005 x 0.01 degrees at 34N: ~462 m x ~1106 m).
    area = float(reason.split("by about ")[1].split(" ")[0].replace(",", ""))
    assert 450_000 < area < 570_000


def test_shared_edges_and_tiny_slivers_are_tolerated() -> None:
    data = minimal()
    # G2 pokes ~0.1 m past the community and overlaps G1 by a sliver well under 1 m².
    data["units"][4]["boundary"] = rect(113.0099999999, 34.00, 113.020001, 34.01)
    validate_org(data)


def test_multipolygon_grids_and_holes_are_accepted() -> None:
    data = minimal()
    data["units"][3]["boundary"] = {
        "type": "MultiPolygon",
        "coordinates": [
            rect(113.000, 34.00, 113.005, 34.01)["coordinates"],
            rect(113.006, 34.00, 113.010, 34.01)["coordinates"],
        ],
    }
    org = validate_org(data)
    grid = org.units[3]
    assert grid.boundary is not None and grid.boundary["type"] == "MultiPolygon"
    assert shape(grid.boundary).area == pytest.approx(0.005 * 0.01 + 0.004 * 0.01)


# --- the text itself -----------------------------------------------------------------------


def test_yaml_syntax_error_gives_the_line() -> None:
    text = "city:\n  code: C\n  name_zh: [unclosed\nunits: []\n"
    with pytest.raises(OrgFileError) as info:
        parse_org(text)
    ((where, reason),) = info.value.problems
    assert where == "line 4"
    assert reason.startswith("YAML syntax error:")


def test_duplicate_yaml_keys_are_refused() -> None:
    text = "city:\n  code: C\n  code: D\n  name_zh: 市\n  name_en: City\n"
    with pytest.raises(OrgFileError) as info:
        parse_org(text)
    assert info.value.problems == [("line 3", "duplicate key 'code'")]


def test_empty_file_is_refused() -> None:
    with pytest.raises(OrgFileError) as info:
        parse_org("# nothing here\n")
    assert info.value.problems == [("(file)", "the file is empty")]


def test_json_text_is_accepted() -> None:
    org = parse_org(json.dumps(minimal()))
    assert org.count(UnitKind.GRID) == 2


def test_yaml_and_validation_round_trip_the_minimal_city() -> None:
    org = parse_org(yaml.safe_dump(minimal(), allow_unicode=True))
    assert org == validate_org(minimal())


def test_large_city_validates_in_seconds() -> None:
    """10,000 grids (the overlap check is an STRtree query, not a pairwise loop)."""
    data = minimal()
    data["units"] = data["units"][:3]
    del data["units"][2]["boundary"]
    step = 0.001
    for i in range(100):
        for j in range(100):
            x, y = 113.0 + j * step, 34.0 + i * step
            data["units"].append(
                {
                    "code": f"G{i}-{j}",
                    "kind": "grid",
                    "parent": "C1",
                    "name_zh": "网格",
                    "name_en": "Grid",
                    "boundary": rect(
                        round(x, 6), round(y, 6), round(x + step, 6), round(y + step, 6)
                    ),
                }
            )
    org = validate_org(data)
    assert org.count(UnitKind.GRID) == 10_000

    # And one overlapping grid among them is still found.
    data["units"][-1]["boundary"] = rect(113.0985, 34.0985, 113.0995, 34.0995)
    problems = refused(data)
    last = f"units[{len(data['units']) - 1}].boundary"
    assert {where for where, _ in problems} == {last}
    overlapped = sorted(reason.split("'")[1] for _, reason in problems)
    assert overlapped == ["G98-98", "G98-99", "G99-98"]


def test_problems_come_in_file_order_whatever_found_them() -> None:
    data = minimal()
    data["units"][3]["parent"] = "S1"  # found by the tree check, after every entry is read
    del data["units"][4]["name_en"]  # found while reading the entries
    assert [where for where, _ in refused(data)] == ["units[3].parent", "units[4].name_en"]


def test_json_duplicate_keys_and_syntax_errors_are_refused() -> None:
    with pytest.raises(OrgFileError) as info:
        parse_org('{"city": {"code": "C", "code": "D"}}')
    assert info.value.problems == [("(file)", "duplicate key 'code'")]
    with pytest.raises(OrgFileError) as info:
        parse_org('{"city":\n  {"code": }}')
    assert info.value.problems == [("line 2", "JSON syntax error: Expecting value")]


# --- calendar and ladder -------------------------------------------------------------------

SHANGHAI = ZoneInfo("Asia/Shanghai")


def with_settings() -> dict[str, Any]:
    """The minimal city with both optional sections."""
    data = minimal()
    data["calendar"] = {
        "working_hours": ["09:00-12:00", "13:00-17:00"],
        "holidays": [date(2027, 1, 1), "2027-02-05", date(2027, 2, 20)],
        "workdays": ["2027-02-21"],
    }
    data["ladder"] = {"top_repeat": "4h", "top_repeat_times": 3, "followup_close": "3d"}
    return data


def test_sample_has_a_calendar_and_a_ladder() -> None:
    org = read_org_file(sample_path())
    assert org.calendar is not None and org.ladder is not None
    assert org.calendar.working_hours == (("09:00", "12:00"), ("13:00", "17:00"))
    holidays = org.calendar.holidays
    assert len(holidays) == 23 and org.calendar.workdays == ()
    assert all(day.year == 2027 for day in holidays)
    assert {date(2027, 1, 1), date(2027, 2, 6), date(2027, 10, 7)} <= set(holidays)
    assert org.ladder == LadderSpec(240, 3, 4320)


def test_sample_calendar_round_trips_through_the_domain() -> None:
    org = read_org_file(sample_path())
    assert org.calendar is not None
    value = org.calendar.setting()
    # What the org_setting row holds is plain JSON.
    assert json.loads(json.dumps(value)) == value
    assert value["working_hours"] == [["09:00", "12:00"], ["13:00", "17:00"]]
    assert value["holidays"][:3] == ["2027-01-01", "2027-02-05", "2027-02-06"]
    assert value["workdays"] == []

    calendar = calendar_from_setting(ZoneInfo("Asia/Shanghai"), value)

    assert calendar.day_minutes == 420
    assert calendar.working_hours == ((time(9), time(12)), (time(13), time(17)))
    assert not calendar.is_working_day(date(2027, 1, 1))  # Friday, New Year's Day
    assert not calendar.is_working_day(date(2027, 2, 8))  # Monday in the Spring Festival
    assert calendar.is_working_day(date(2027, 2, 12))  # Friday after it
    assert calendar.is_working_day(date(2027, 1, 4))  # an ordinary Monday
    lunch = datetime(2027, 1, 4, 12, 30, tzinfo=SHANGHAI)
    assert not calendar.is_working_moment(lunch)
    assert calendar.is_working_moment(lunch.replace(hour=13))
    # Thursday 16:00 before New Year's Day plus two working hours: Monday 10:00.
    start = datetime(2026, 12, 31, 16, 0, tzinfo=SHANGHAI)
    assert calendar.add(start, 120, working_time=True) == datetime(
        2027, 1, 4, 10, 0, tzinfo=SHANGHAI
    ).astimezone(UTC)


def test_sample_ladder_round_trips_through_the_domain() -> None:
    org = read_org_file(sample_path())
    assert org.ladder is not None
    value = org.ladder.setting()
    assert value == {
        "top_repeat_minutes": 240,
        "top_repeat_times": 3,
        "followup_close_minutes": 4320,
    }
    assert Ladder.from_setting(json.loads(json.dumps(value))) == Ladder(
        top_repeat_minutes=240, top_repeat_times=3, followup_close_minutes=4320
    )


def test_both_sections_are_optional() -> None:
    org = validate_org(minimal())
    assert org.calendar is None and org.ladder is None


def test_calendar_is_normalised_sorted_and_workdays_round_trip() -> None:
    data = with_settings()
    data["calendar"]["working_hours"] = [" 8:30 - 12:00", "13:00-17:30"]
    org = validate_org(data)
    assert org.calendar == CalendarSpec(
        (("08:30", "12:00"), ("13:00", "17:30")),
        (date(2027, 1, 1), date(2027, 2, 5), date(2027, 2, 20)),
        (date(2027, 2, 21),),
    )
    value = org.calendar.setting()
    assert value == {
        "working_hours": [["08:30", "12:00"], ["13:00", "17:30"]],
        "holidays": ["2027-01-01", "2027-02-05", "2027-02-20"],
        "workdays": ["2027-02-21"],
    }
    calendar = calendar_from_setting(SHANGHAI, value)
    assert calendar.day_minutes == 3 * 60 + 30 + 4 * 60 + 30
    assert calendar.is_working_day(date(2027, 2, 21))  # a Sunday made a working day
    assert not calendar.is_working_day(date(2027, 2, 5))


def test_calendar_keys_are_each_optional() -> None:
    data = minimal()
    data["calendar"] = {"holidays": ["2027-10-01"]}
    org = validate_org(data)
    assert org.calendar is not None
    value = org.calendar.setting()
    assert value == {"working_hours": [], "holidays": ["2027-10-01"], "workdays": []}
    calendar = calendar_from_setting(SHANGHAI, value)
    assert calendar.day_minutes == 1440  # no working hours: the whole day
    assert not calendar.is_working_day(date(2027, 10, 1))


def test_ladder_keys_left_out_keep_the_defaults() -> None:
    data = minimal()
    data["ladder"] = {"top_repeat": "1h30m", "top_repeat_times": 0}
    org = validate_org(data)
    assert org.ladder == LadderSpec(90, 0, None)
    value = org.ladder.setting()
    assert value == {"top_repeat_minutes": 90, "top_repeat_times": 0}
    assert Ladder.from_setting(value) == Ladder(top_repeat_minutes=90, top_repeat_times=0)
    assert Ladder.from_setting(value).followup_close_minutes == Ladder().followup_close_minutes


def test_yaml_dates_and_quoted_dates_are_both_accepted() -> None:
    text = yaml.safe_dump(minimal(), allow_unicode=True) + (
        "calendar:\n"
        '  working_hours: ["09:00-12:00", 13:00-17:00]\n'
        '  holidays: [2027-01-01, "2027-01-02"]\n'
        "  workdays: ['2027-02-20']\n"
    )
    org = parse_org(text)
    assert org.calendar == CalendarSpec(
        (("09:00", "12:00"), ("13:00", "17:00")),
        (date(2027, 1, 1), date(2027, 1, 2)),
        (date(2027, 2, 20),),
    )
    as_json = json.dumps(minimal() | {"calendar": {"holidays": ["2027-01-01", "2027-01-02"]}})
    assert parse_org(as_json).calendar == CalendarSpec((), org.calendar.holidays, ())


def test_an_impossible_yaml_date_is_placed_not_crashed_on() -> None:
    # PyYAML itself raises a bare ValueError for 2027-02-30; the file is refused with its place.
    text = yaml.safe_dump(minimal(), allow_unicode=True) + (
        "calendar:\n  holidays: [2027-01-01, 2027-02-30, 2027-01-01 10:00:00]\n"
    )
    with pytest.raises(OrgFileError) as info:
        parse_org(text)
    assert info.value.problems == [
        (
            "calendar.holidays[1]",
            "'2027-02-30' is not a real date (day is out of range for month)",
        ),
        (
            "calendar.holidays[2]",
            "must be a day like 2027-01-01, got a time too: 2027-01-01 10:00:00",
        ),
    ]


SETTINGS_CASES: list[tuple[str, Callable[[dict], None], str, str]] = [
    (
        "period not like HH:MM-HH:MM",
        _set("calendar/working_hours/0", "9-12"),
        "calendar.working_hours[0]",
        "'9-12' is not a period like 09:00-12:00",
    ),
    (
        "period not text",
        _set("calendar/working_hours/0", 900),
        "calendar.working_hours[0]",
        'must be text like "09:00-12:00", got 900 (quote it in YAML)',
    ),
    (
        "hour out of range",
        _set("calendar/working_hours/1", "13:00-24:00"),
        "calendar.working_hours[1]",
        "'13:00-24:00': 24:00 is not a time of day (00:00 to 23:59)",
    ),
    (
        "minute out of range",
        _set("calendar/working_hours/0", "09:60-12:00"),
        "calendar.working_hours[0]",
        "'09:60-12:00': 9:60 is not a time of day",
    ),
    (
        "period ends before it starts",
        _set("calendar/working_hours/0", "12:00-09:00"),
        "calendar.working_hours[0]",
        "'12:00-09:00' does not start before it ends",
    ),
    (
        "empty period",
        _set("calendar/working_hours/0", "09:00-09:00"),
        "calendar.working_hours[0]",
        "'09:00-09:00' does not start before it ends",
    ),
    (
        "overlapping periods",
        _set("calendar/working_hours", ["09:00-12:00", "11:30-17:00"]),
        "calendar.working_hours[1]",
        "'11:30-17:00' starts before the previous period '09:00-12:00' "
        "(calendar.working_hours[0]) ends: list periods in order, without overlaps",
    ),
    (
        "periods out of order",
        _set("calendar/working_hours", ["13:00-17:00", "09:00-12:00"]),
        "calendar.working_hours[1]",
        "'09:00-12:00' starts before the previous period '13:00-17:00'",
    ),
    (
        "working hours not a list",
        _set("calendar/working_hours", "09:00-17:00"),
        "calendar.working_hours",
        "should be a valid list, got '09:00-17:00'",
    ),
    (
        "holiday not a real date",
        _set("calendar/holidays/1", "2027-02-30"),
        "calendar.holidays[1]",
        "'2027-02-30' is not a real date (day is out of range for month)",
    ),
    (
        "holiday not ISO",
        _set("calendar/holidays/1", "2027/02/05"),
        "calendar.holidays[1]",
        "'2027/02/05' is not a date like 2027-01-01",
    ),
    (
        "holiday a number",
        _set("calendar/holidays/0", 20270101),
        "calendar.holidays[0]",
        "must be a date like 2027-01-01, got 20270101",
    ),
    (
        "holiday with a time",
        _set("calendar/holidays/0", datetime(2027, 1, 1, 10, 0)),  # noqa: DTZ001 (naive, as YAML gives it)
        "calendar.holidays[0]",
        "must be a day like 2027-01-01, got a time too: 2027-01-01 10:00:00",
    ),
    (
        "holiday listed twice (date and text)",
        _set("calendar/holidays/1", "2027-01-01"),
        "calendar.holidays[1]",
        "2027-01-01 listed twice (first at calendar.holidays[0])",
    ),
    (
        "workday listed twice",
        _set("calendar/workdays", ["2027-02-21", date(2027, 2, 21)]),
        "calendar.workdays[1]",
        "2027-02-21 listed twice (first at calendar.workdays[0])",
    ),
    (
        "a day both holiday and workday",
        _set("calendar/workdays", ["2027-02-21", "2027-02-20"]),
        "calendar.workdays[1]",
        "2027-02-20 is listed both as a workday and as a holiday (calendar.holidays[2])",
    ),
    (
        "unknown calendar field",
        _set("calendar/weekends", ["saturday"]),
        "calendar.weekends",
        "unknown field (expected working_hours, holidays, workdays)",
    ),
    (
        "empty calendar",
        _set("calendar", None),
        "calendar",
        "is empty: give working_hours, holidays or workdays, or leave the section out",
    ),
    ("calendar an empty mapping", _set("calendar", {}), "calendar", "is empty: give"),
    (
        "calendar not a mapping",
        _set("calendar", ["09:00-17:00"]),
        "calendar",
        "must be a mapping of fields, got list",
    ),
    (
        "malformed top_repeat",
        _set("ladder/top_repeat", "4 hours"),
        "ladder.top_repeat",
        "'4 hours' is not a duration like 30m, 2h, 3d or 1d12h",
    ),
    (
        "zero top_repeat",
        _set("ladder/top_repeat", "0h"),
        "ladder.top_repeat",
        "must be longer than zero, got '0h'",
    ),
    (
        "top_repeat a bare number",
        _set("ladder/top_repeat", 4),
        "ladder.top_repeat",
        "must be text, got 4 (quote it in YAML)",
    ),
    (
        "negative top_repeat_times",
        _set("ladder/top_repeat_times", -1),
        "ladder.top_repeat_times",
        "should be greater than or equal to 0, got -1",
    ),
    (
        "too many top_repeat_times",
        _set("ladder/top_repeat_times", 101),
        "ladder.top_repeat_times",
        "should be less than or equal to 100, got 101",
    ),
    (
        "top_repeat_times as text",
        _set("ladder/top_repeat_times", "3"),
        "ladder.top_repeat_times",
        "should be a valid integer, got '3'",
    ),
    (
        "top_repeat_times a fraction",
        _set("ladder/top_repeat_times", 2.5),
        "ladder.top_repeat_times",
        "should be a valid integer, got 2.5",
    ),
    (
        "zero followup_close",
        _set("ladder/followup_close", "0m"),
        "ladder.followup_close",
        "must be longer than zero, got '0m'",
    ),
    (
        "malformed followup_close",
        _set("ladder/followup_close", "soon"),
        "ladder.followup_close",
        "'soon' is not a duration",
    ),
    (
        "followup_close without a value",
        _set("ladder/followup_close", None),
        "ladder.followup_close",
        "has no value: give one, or leave the key out",
    ),
    (
        "unknown ladder field",
        _set("ladder/top_repeat_every", "4h"),
        "ladder.top_repeat_every",
        "unknown field (expected top_repeat, top_repeat_times, followup_close)",
    ),
    (
        "empty ladder",
        _set("ladder", None),
        "ladder",
        "is empty: give top_repeat, top_repeat_times or followup_close, or leave the section out",
    ),
]


@pytest.mark.parametrize(
    ("change", "where", "reason"),
    [c[1:] for c in SETTINGS_CASES],
    ids=[c[0] for c in SETTINGS_CASES],
)
def test_each_calendar_and_ladder_mistake_is_named_and_placed(
    change: Callable, where: str, reason: str
) -> None:
    data = with_settings()
    validate_org(data)  # valid before the change
    change(data)
    problems = refused(data)
    matching = [p for p in problems if p[0] == where and p[1].startswith(reason)]
    assert matching, f"expected ({where!r}, {reason!r}...) in {problems}"
    # The text an operator reads carries the place and the reason.
    with pytest.raises(OrgFileError) as info:
        validate_org(data)
    assert f"{where}: {reason}" in str(info.value)


def test_every_calendar_and_ladder_problem_is_listed_in_file_order() -> None:
    data = with_settings()
    data["deadlines"][0]["accept"] = "soon"
    data["calendar"]["working_hours"] = ["13:00-17:00", "09:00-12:00"]
    data["calendar"]["holidays"] = ["2027-13-01", "2027-02-21"]
    data["calendar"]["workdays"] = ["2027-02-21", "nope"]
    data["calendar"]["weekends"] = []
    data["ladder"] = {"top_repeat": "0m", "top_repeat_times": 101, "followup_close": "x"}
    assert [where for where, _ in refused(data)] == [
        "deadlines[0].accept",
        "calendar.weekends",
        "calendar.working_hours[1]",
        "calendar.holidays[0]",
        "calendar.workdays[0]",
        "calendar.workdays[1]",
        "ladder.top_repeat",
        "ladder.top_repeat_times",
        "ladder.followup_close",
    ]


def test_unknown_top_level_key_names_the_optional_sections() -> None:
    data = minimal()
    data["calender"] = {}
    ((where, reason),) = refused(data)
    assert where == "calender"
    assert reason == (
        "unknown key (expected city, units, departments, categories, deadlines, calendar, ladder,"
        " posts, figures)"
    )


# --- figures: how the units below are ranked ----------------------------------------------------


def test_the_sample_weighs_the_rates_as_12345_does() -> None:
    org = read_org_file(sample_path())
    assert org.figures == FiguresSpec(0.10, 0.45, 0.45)
    assert org.figures.setting() == {
        "weights": {"response": 0.10, "resolution": 0.45, "satisfaction": 0.45}
    }
    assert validate_org(minimal()).figures is None


@pytest.mark.parametrize(
    ("figures", "problems"),
    [
        ({}, [("figures", "is empty: give weights, or leave the section out")]),
        ({"weight": 1}, [("figures.weight", "unknown field (expected weights)")]),
        (
            {"weights": 3},
            [
                (
                    "figures.weights",
                    "must be a mapping of response, resolution and satisfaction, got int",
                )
            ],
        ),
        (
            {"weights": {"response": 2, "resolution": "x"}},
            [
                ("figures.weights.response", "should be less than or equal to 1, got 2"),
                (
                    "figures.weights.resolution",
                    "should be a valid number, unable to parse string as a number, got 'x'",
                ),
                ("figures.weights.satisfaction", "missing"),
            ],
        ),
        (
            {"weights": {"response": True, "resolution": 0.5, "satisfaction": 0.5}},
            [("figures.weights.response", "must be a number from 0 to 1, got True")],
        ),
        (
            {"weights": {"response": float("nan"), "resolution": 0.5, "satisfaction": 0.5}},
            [("figures.weights.response", "should be a finite number, got nan")],
        ),
        (
            {"weights": {"response": 0, "resolution": 0, "satisfaction": 0}},
            [("figures.weights", "are all 0: at least one rate must count")],
        ),
    ],
)
def test_bad_weights_are_refused_with_the_place_and_the_reason(figures, problems) -> None:
    data = minimal()
    data["figures"] = figures
    assert refused(data) == problems


# --- service posts ---------------------------------------------------------------------------


def with_posts(*posts: dict[str, Any]) -> dict[str, Any]:
    data = minimal()
    data["units"].append(
        {"code": "C2", "kind": "community", "parent": "S1", "name_zh": "二社区", "name_en": "C2"}
    )
    data["posts"] = list(posts)
    return data


def post(code: str = "PATROL", **extra: Any) -> dict[str, Any]:
    return {"code": code, "name_zh": "平安巡逻", "name_en": "Safety patrol", "places": 3, **extra}


def test_sample_has_the_four_posts_of_the_issue() -> None:
    org = read_org_file(sample_path())
    assert org.posts is not None
    assert [(p.code, p.name_zh) for p in org.posts] == [
        ("BUILDING", "楼栋管家"),
        ("PATROL", "平安巡逻"),
        ("ENVIRONMENT", "环境监督"),
        ("POLICY", "政策宣讲"),
    ]
    offered = org.community_posts()
    assert len(offered) == 8 and all(len(posts) == 4 for posts in offered.values())
    assert [(p.code, n) for p, n in offered["EQ-JZJ-01"]] == [
        ("BUILDING", 6),
        ("PATROL", 8),
        ("ENVIRONMENT", 4),
        ("POLICY", 1),
    ]
    assert dict((p.code, n) for p, n in offered["JS-JBL-01"])["PATROL"] == 12


def test_posts_apply_to_every_community_unless_listed_with_places_per_community() -> None:
    org = validate_org(
        with_posts(
            post("PATROL", places_in={"C2": 5}),
            post("ELDERLY", communities=["C2"]),
        )
    )
    offered = {
        code: [(p.code, n) for p, n in posts] for code, posts in org.community_posts().items()
    }
    assert offered == {"C1": [("PATROL", 3)], "C2": [("PATROL", 5), ("ELDERLY", 3)]}


def test_posts_section_is_optional_and_may_be_empty() -> None:
    assert validate_org(minimal()).posts is None
    assert validate_org(with_posts()).posts == ()


@pytest.mark.parametrize(
    ("posts", "where", "reason"),
    [
        ([post(), post()], "posts[1].code", "duplicate code 'PATROL' (first at posts[0])"),
        ([post(places=0)], "posts[0].places", "should be greater than or equal to 1"),
        ([post(places="3")], "posts[0].places", "should be a valid integer"),
        ([post(name_en=None)], "posts[0].name_en", "must be text"),
        ([{"code": "X", "name_zh": "x", "places": 1}], "posts[0].name_en", "missing"),
        ([post(seats=3)], "posts[0].seats", "unknown field"),
        ([post(communities=["C9"])], "posts[0].communities[0]", "unknown community 'C9'"),
        ([post(communities=["G1"])], "posts[0].communities[0]", "'G1' is a grid, not a community"),
        (
            [post(communities=["C1", "C1"])],
            "posts[0].communities[1]",
            "community 'C1' listed twice (first at communities[0])",
        ),
        ([post(places_in={"S1": 2})], "posts[0].places_in.S1", "'S1' is a street"),
        ([post(places_in={"C1": 0})], "posts[0].places_in.C1", "should be greater than or equal"),
        (
            [post(communities=["C1"], places_in={"C2": 2})],
            "posts[0].places_in.C2",
            "'C2' is not among this post's communities",
        ),
        (None, "posts", "is empty: list the posts"),
        ({"PATROL": 3}, "posts", "must be a list, got dict"),
    ],
)
def test_each_post_mistake_is_named_and_placed(posts: Any, where: str, reason: str) -> None:
    data = with_posts()
    data["posts"] = posts
    problems = refused(data)
    matching = [p for p in problems if p[0] == where and p[1].startswith(reason)]
    assert matching, f"expected ({where!r}, {reason!r}...) in {problems}"


def test_post_problems_come_after_the_other_sections_and_all_are_listed() -> None:
    data = with_posts(post(places=0), post("B", communities=["C9"]))
    data["units"][0]["parent"] = "NOPE"
    problems = refused(data)
    assert [where for where, _ in problems] == [
        "units[0].parent",
        "posts[0].places",
        "posts[1].communities[0]",
    ]
