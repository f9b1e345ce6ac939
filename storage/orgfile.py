"""The organisation file: YAML in, validated plain objects out (no database here).

The format is documented at the top of storage/sample/zhengzhou.yaml. Validation never stops
at the first mistake: it collects every problem as (location, reason) and refuses the whole
file, because a city's administrator fixes a 50,000-grid file in one pass, not fifty.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import shapely
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)
from pydantic import Field as PydanticField
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from storage.enums import PARENT_KIND, Level, UnitKind, Urgency

logger = logging.getLogger(__name__)

# Two polygons that share more area than this overlap; below it is digitising noise.
OVERLAP_TOLERANCE_M2 = 1.0
# A child may stick out of its ancestor's boundary by this much (coordinates from two sources).
WITHIN_TOLERANCE_M = 1.0
DEFAULT_REMINDERS = (0.5, 0.8)
REQUIRED_KEYS = ("city", "units", "departments", "categories", "deadlines")
# Without these sections the defaults apply: whole working days, no operator-listed days, the
# ladder's built-in timing (domain.deadlines.Ladder), and 12345's weights for ranking units
# (domain.figures.Weights).
OPTIONAL_KEYS = ("calendar", "ladder", "posts", "figures")
TOP_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS
MAX_TOP_REPEAT_TIMES = 100
MAX_POST_PLACES = 10_000
DEPARTMENT_UNIT_KINDS = (UnitKind.DISTRICT, UnitKind.STREET)

_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON_AT_EQUATOR = 111_320.0
_DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?$")
_PERIOD = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Problem = tuple[str, str]


class OrgFileError(ValueError):
    """The organisation file was refused; `problems` lists every (location, reason)."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        return "\n".join(f"{where}: {reason}" for where, reason in self.problems)


@dataclass(frozen=True, slots=True)
class UnitSpec:
    """A city, district, street, community or grid as the file describes it."""

    code: str
    kind: UnitKind
    parent: str | None
    name_zh: str
    name_en: str
    # Normalised GeoJSON geometry (Polygon or MultiPolygon, float [lon, lat]) or None.
    boundary: dict[str, Any] | None = None
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class DepartmentSpec:
    code: str
    name_zh: str
    name_en: str
    unit: str
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class CategorySpec:
    code: str
    name_zh: str
    name_en: str
    urgency: Urgency
    departments: tuple[str, ...]
    position: int
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class DeadlineSpec:
    urgency: Urgency
    category: str | None
    level: Level
    accept_minutes: int
    resolve_minutes: int
    working_time: bool
    reminders: tuple[float, ...]
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class CalendarSpec:
    """Working hours and the operator's own holidays and make-up working days."""

    # ("09:00", "12:00") periods in order, not overlapping; () means the whole day counts.
    working_hours: tuple[tuple[str, str], ...] = ()
    holidays: tuple[date, ...] = ()
    workdays: tuple[date, ...] = ()

    def setting(self) -> dict[str, Any]:
        """The org_setting value (domain.deadlines.calendar_from_setting reads it)."""
        return {
            "working_hours": [[start, end] for start, end in self.working_hours],
            "holidays": [day.isoformat() for day in self.holidays],
            "workdays": [day.isoformat() for day in self.workdays],
        }


@dataclass(frozen=True, slots=True)
class LadderSpec:
    """The top of the ladder's repeated reminders and the follow-up's end; None: the default."""

    top_repeat_minutes: int | None = None
    top_repeat_times: int | None = None
    followup_close_minutes: int | None = None

    def setting(self) -> dict[str, int]:
        """The org_setting value (domain.deadlines.Ladder.from_setting reads it)."""
        values = ((f.name, getattr(self, f.name)) for f in fields(self))
        return {name: value for name, value in values if value is not None}


@dataclass(frozen=True, slots=True)
class FiguresSpec:
    """How /stats and the monthly ranking weigh the three rates into one score."""

    response: float
    resolution: float
    satisfaction: float

    def setting(self) -> dict[str, dict[str, float]]:
        """The org_setting value (domain.figures.Weights.from_setting reads it)."""
        return {"weights": {f.name: getattr(self, f.name) for f in fields(self)}}


@dataclass(frozen=True, slots=True)
class PostSpec:
    """A standing service post (认岗) offered in every community, or in those listed."""

    code: str
    name_zh: str
    name_en: str
    places: int
    # Only these communities (codes); () means every community in the file.
    communities: tuple[str, ...] = ()
    # Per-community places instead of `places`: ((community code, places), ...).
    places_in: tuple[tuple[str, int], ...] = ()
    where: str = field(default="", compare=False)

    def places_for(self, community: str) -> int | None:
        """The places this post has in a community, or None if it is not offered there."""
        if self.communities and community not in self.communities:
            return None
        return dict(self.places_in).get(community, self.places)


@dataclass(frozen=True, slots=True)
class Organisation:
    """A validated organisation file: the whole tree, departments, categories, deadlines and
    the optional calendar and ladder (None when the file leaves them out)."""

    city: UnitSpec
    units: tuple[UnitSpec, ...]
    departments: tuple[DepartmentSpec, ...]
    categories: tuple[CategorySpec, ...]
    deadlines: tuple[DeadlineSpec, ...]
    calendar: CalendarSpec | None = None
    ladder: LadderSpec | None = None
    # None: the file has no posts section, and the stored posts are left as they are.
    posts: tuple[PostSpec, ...] | None = None
    figures: FiguresSpec | None = None

    @property
    def all_units(self) -> tuple[UnitSpec, ...]:
        """The city first, then the units in file order."""
        return (self.city, *self.units)

    def count(self, kind: UnitKind) -> int:
        return sum(1 for unit in self.all_units if unit.kind == kind)

    def community_posts(self) -> dict[str, list[tuple[PostSpec, int]]]:
        """Each community's posts (in file order) with their places; empty without posts."""
        communities = [u.code for u in self.units if u.kind == UnitKind.COMMUNITY]
        offered: dict[str, list[tuple[PostSpec, int]]] = {code: [] for code in communities}
        for post in self.posts or ():
            for code in communities:
                places = post.places_for(code)
                if places is not None:
                    offered[code].append((post, places))
        return offered


# --- reading ---------------------------------------------------------------------------


def read_org_file(path: str | Path) -> Organisation:
    """Read and validate an organisation file; OSError if it can't be read at all."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise OrgFileError([("(file)", reason)]) from None
    return parse_org(text)


def parse_org(text: str) -> Organisation:
    """Parse and validate the YAML (or JSON) text of an organisation file."""
    if text.lstrip().startswith("{"):
        # JSON is YAML too, and json parses a generated 50,000-grid file ten times faster.
        duplicates: list[str] = []
        try:
            data = json.loads(text, object_pairs_hook=_pairs_noting(duplicates))
        except json.JSONDecodeError as exc:
            raise OrgFileError([(f"line {exc.lineno}", f"JSON syntax error: {exc.msg}")]) from None
        if duplicates:
            raise OrgFileError(("(file)", f"duplicate key '{key}'") for key in duplicates)
        return validate_org(data)
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise OrgFileError([_yaml_problem(exc)]) from None
    finally:
        loader.dispose()
    if loader.duplicate_keys:
        raise OrgFileError(
            (f"line {line}", f"duplicate key '{key}'") for line, key in loader.duplicate_keys
        )
    return validate_org(data)


def validate_org(data: Any) -> Organisation:
    """Validate already-parsed data (a mapping as YAML gives it) into an Organisation."""
    return _Validator().run(data)


def parse_duration(text: str) -> int:
    """Minutes in a duration such as "30m", "2h", "3d" or "1d12h"; ValueError if malformed."""
    match = _DURATION.fullmatch(text.strip().lower().replace(" ", ""))
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a duration like 30m, 2h, 3d or 1d12h")
    days, hours, minutes = (int(match.group(k) or 0) for k in ("d", "h", "m"))
    return days * 1440 + hours * 60 + minutes


def format_duration(minutes: int) -> str:
    """The shortest "1d2h30m"-style text for a number of minutes."""
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    text = "".join(f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (mins, "m")) if n)
    return text or "0m"


def _pairs_noting(duplicates: list[str]) -> Any:
    """A json object hook that notes repeated keys instead of keeping the last silently."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                duplicates.append(key)
            result[key] = value
        return result

    return pairs


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Safe YAML loading (libyaml when present) that notices duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicate_keys: list[tuple[int, str]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        # PyYAML keeps the last of two equal keys silently; a typo'd file must not half-load.
        seen: set[str] = set()
        for key_node, _value in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    self.duplicate_keys.append((key_node.start_mark.line + 1, key_node.value))
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)

    def construct_day_or_text(self, node: yaml.ScalarNode) -> Any:
        # An impossible date such as 2027-02-30 stays text, so the validator can name its place
        # (PyYAML would raise a bare ValueError with no line).
        try:
            return self.construct_yaml_timestamp(node)
        except ValueError:
            return self.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_day_or_text)


def _yaml_problem(exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    reason = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    if mark is None:
        return ("(file)", reason)
    return (f"line {mark.line + 1}", f"{reason} at column {mark.column + 1}")


# --- shapes of the entries (structure only; meaning is checked by _Validator) ---------

Code = Annotated[StrictStr, PydanticField(min_length=1, max_length=64, pattern=r"^\S+$")]
Name = Annotated[StrictStr, PydanticField(min_length=1, max_length=200)]
Fraction = Annotated[float, Strict()]
RepeatTimes = Annotated[StrictInt, PydanticField(ge=0, le=MAX_TOP_REPEAT_TIMES)]
Places = Annotated[StrictInt, PydanticField(ge=1, le=MAX_POST_PLACES)]
# A rate's weight in the ranking score: a share of the whole, 0 to 1.
Weight = Annotated[float, PydanticField(ge=0, le=1, allow_inf_nan=False)]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _CityIn(_Entry):
    code: Code
    name_zh: Name
    name_en: Name
    boundary: Any = None


class _UnitIn(_Entry):
    code: Code
    kind: Literal["district", "street", "community", "grid"]
    parent: Code
    name_zh: Name
    name_en: Name
    boundary: Any = None


class _DepartmentIn(_Entry):
    code: Code
    name_zh: Name
    name_en: Name
    unit: Code


class _CategoryIn(_Entry):
    code: Code
    name_zh: Name
    name_en: Name
    urgency: Literal["urgent", "normal", "consultation"]
    departments: list[Code] = []
    position: StrictInt | None = None


class _DeadlineIn(_Entry):
    urgency: Literal["urgent", "normal", "consultation"]
    category: Code | None = None
    level: Literal["grid", "community", "street", "district", "department"]
    accept: StrictStr
    resolve: StrictStr
    working_time: StrictBool = False
    reminders: list[Fraction] = list(DEFAULT_REMINDERS)


class _CalendarIn(_Entry):
    # Items are checked one by one (text periods; dates as YAML dates or ISO text).
    working_hours: list[Any] = []
    holidays: list[Any] = []
    workdays: list[Any] = []


class _LadderIn(_Entry):
    top_repeat: StrictStr | None = None
    top_repeat_times: RepeatTimes | None = None
    followup_close: StrictStr | None = None


class _WeightsIn(_Entry):
    response: Weight
    resolution: Weight
    satisfaction: Weight

    @field_validator("*", mode="before")
    @classmethod
    def not_a_yes_or_no(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number from 0 to 1")
        return value


class _FiguresIn(_Entry):
    weights: _WeightsIn | None = None


class _PostIn(_Entry):
    code: Code
    name_zh: Name
    name_en: Name
    places: Places
    communities: list[Code] = []
    places_in: dict[Code, Places] = {}


_WHERE = re.compile(r"^(\w+)(?:\[(\d+)\])?")
# A field of an optional section: "calendar.holidays[3]" -> ("holidays", "3").
_FIELD = re.compile(r"^\w+\.(\w+)(?:\[(\d+)\])?")


def _file_order(problem: Problem) -> tuple[int, int]:
    match = _WHERE.match(problem[0])
    if match is None or match.group(1) not in TOP_KEYS:
        return (-1, -1)
    return (TOP_KEYS.index(match.group(1)), int(match.group(2) or -1))


def _loc(prefix: str, loc: tuple[int | str, ...]) -> str:
    text = prefix
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _reason(error: Mapping[str, Any]) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "string_type":
        return f"must be text, got {value!r} (quote it in YAML)"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return f"must not contain spaces, got {value!r}"
    message = error["msg"]
    if kind == "value_error":  # a validator's own words, without pydantic's prefix
        message = message.removeprefix("Value error, ")
    message = message.replace("Input should be", "should be").replace("String should", "should")
    if isinstance(value, (str, int, float, bool)) or value is None:
        message += f", got {value!r}"
    return message


# --- geometry ---------------------------------------------------------------------------


def _m2_per_deg2(lat: float) -> float:
    return _M_PER_DEG_LAT * _M_PER_DEG_LON_AT_EQUATOR * max(math.cos(math.radians(lat)), 1e-6)


def _square_metres(geom: BaseGeometry, area_deg2: float | None = None) -> float:
    """Approximate area in m² of a small [lon, lat] geometry (good enough for messages)."""
    area = geom.area if area_deg2 is None else area_deg2
    if geom.is_empty:
        return 0.0
    return area * _m2_per_deg2(geom.centroid.y)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class _GeometryError(ValueError):
    pass


def _ring(value: Any, where: str, out_of_range: list[str]) -> list[list[float]]:
    if not isinstance(value, list) or len(value) < 4:
        raise _GeometryError(f"ring {where} needs at least 4 positions (the first repeated last)")
    ring: list[list[float]] = []
    for i, position in enumerate(value):
        if (
            not isinstance(position, list)
            or len(position) not in (2, 3)
            or not all(_number(v) for v in position)
        ):
            raise _GeometryError(f"position {where}[{i}] must be [longitude, latitude] numbers")
        lon, lat = float(position[0]), float(position[1])
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            out_of_range.append(f"{where}[{i}] = [{position[0]}, {position[1]}]")
        ring.append([lon, lat])
    if ring[0] != ring[-1]:
        raise _GeometryError(f"ring {where} is not closed (last position must repeat the first)")
    return ring


def _polygon_rings(value: Any, where: str, out_of_range: list[str]) -> list[list[list[float]]]:
    if not isinstance(value, list) or not value:
        raise _GeometryError(f"polygon {where or 'coordinates'} must be a list of rings")
    return [_ring(ring, f"{where}[{i}]", out_of_range) for i, ring in enumerate(value)]


def parse_geometry(value: Any) -> tuple[dict[str, Any], BaseGeometry]:
    """A GeoJSON Polygon/MultiPolygon as (normalised dict, shapely geometry); ValueError if bad."""
    if not isinstance(value, Mapping):
        raise _GeometryError("must be a GeoJSON geometry: {type: Polygon, coordinates: [...]}")
    gtype = value.get("type")
    if gtype == "Feature":
        raise _GeometryError("give the geometry object itself, not a GeoJSON Feature")
    unknown = sorted(str(k) for k in value if k not in ("type", "coordinates", "bbox"))
    if unknown:
        raise _GeometryError(f"unknown key {unknown[0]!r} (expected type and coordinates)")
    if gtype not in ("Polygon", "MultiPolygon"):
        raise _GeometryError(f"type must be Polygon or MultiPolygon, got {gtype!r}")
    if "coordinates" not in value:
        raise _GeometryError("coordinates missing")
    coords = value["coordinates"]
    out_of_range: list[str] = []
    if gtype == "Polygon":
        rings = _polygon_rings(coords, "", out_of_range)
        normalised: Any = rings
    else:
        if not isinstance(coords, list) or not coords:
            raise _GeometryError("a MultiPolygon's coordinates must be a list of polygons")
        normalised = [_polygon_rings(p, f"[{i}]", out_of_range) for i, p in enumerate(coords)]
    if out_of_range:
        more = f" and {len(out_of_range) - 1} more" if len(out_of_range) > 1 else ""
        raise _GeometryError(
            f"coordinates out of range at {out_of_range[0]}{more} "
            "(GeoJSON order is [longitude, latitude])"
        )
    if gtype == "Polygon":
        geom: BaseGeometry = Polygon(normalised[0], normalised[1:])
    else:
        geom = MultiPolygon([Polygon(p[0], p[1:]) for p in normalised])
    if not geom.is_valid:
        raise _GeometryError(f"polygon is not valid ({explain_validity(geom)})")
    if geom.area <= 0:
        raise _GeometryError("polygon has no area")
    return {"type": gtype, "coordinates": normalised}, geom


# --- meaning ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Unit:
    spec: UnitSpec
    geom: BaseGeometry | None = None
    parent_ok: bool = False


class _Validator:
    """Collects every problem in one pass over the file."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, where: str, reason: str) -> None:
        self.problems.append((where, reason))

    def run(self, data: Any) -> Organisation:
        if data is None:
            raise OrgFileError([("(file)", "the file is empty")])
        if not isinstance(data, Mapping):
            raise OrgFileError(
                [
                    (
                        "(file)",
                        f"must be a mapping with the keys {', '.join(REQUIRED_KEYS)} "
                        f"(and optionally {', '.join(OPTIONAL_KEYS)})",
                    )
                ]
            )
        for key in data:
            if key not in TOP_KEYS:
                self.problem(str(key), f"unknown key (expected {', '.join(TOP_KEYS)})")
        for key in REQUIRED_KEYS:
            if key not in data:
                self.problem(key, "missing")

        city = self._city(data["city"]) if "city" in data else None
        units = self._units(city, self._entries(data, "units", _UnitIn))
        departments = self._departments(units, self._entries(data, "departments", _DepartmentIn))
        categories = self._categories(departments, self._entries(data, "categories", _CategoryIn))
        deadlines = self._deadlines(categories, self._entries(data, "deadlines", _DeadlineIn))
        calendar = self._calendar(data["calendar"]) if "calendar" in data else None
        ladder = self._ladder(data["ladder"]) if "ladder" in data else None
        posts = self._posts(units, data["posts"]) if "posts" in data else None
        figures = self._figures(data["figures"]) if "figures" in data else None

        if self.problems or city is None:
            # In file order, whatever order the checks ran in.
            raise OrgFileError(sorted(self.problems, key=_file_order))
        return Organisation(
            city=city.spec,
            units=tuple(u.spec for u in units.values() if u.spec.kind != UnitKind.CITY),
            departments=tuple(departments.values()),
            categories=tuple(categories.values()),
            deadlines=tuple(deadlines),
            calendar=calendar,
            ladder=ladder,
            posts=posts,
            figures=figures,
        )

    def _model(self, model: type[BaseModel], value: Any, where: str) -> Any | None:
        if not isinstance(value, Mapping):
            self.problem(where, f"must be a mapping of fields, got {type(value).__name__}")
            return None
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                self.problem(_loc(where, error["loc"]), _reason(error))
            return None

    def _entries(self, data: Mapping, key: str, model: type[BaseModel]) -> list[tuple[str, Any]]:
        items = data.get(key)
        if items is None:
            return []
        if not isinstance(items, list):
            self.problem(key, f"must be a list, got {type(items).__name__}")
            return []
        entries = []
        for i, item in enumerate(items):
            where = f"{key}[{i}]"
            parsed = self._model(model, item, where)
            if parsed is not None:
                entries.append((where, parsed))
        return entries

    def _geometry(self, where: str, value: Any) -> tuple[dict | None, BaseGeometry | None]:
        if value is None:
            return None, None
        try:
            return parse_geometry(value)
        except _GeometryError as exc:
            self.problem(f"{where}.boundary", str(exc))
            return None, None

    def _city(self, value: Any) -> _Unit | None:
        if value is None:
            self.problem("city", "is empty: give its code, name_zh and name_en")
            return None
        parsed = self._model(_CityIn, value, "city")
        if parsed is None:
            return None
        boundary, geom = self._geometry("city", parsed.boundary)
        spec = UnitSpec(
            parsed.code, UnitKind.CITY, None, parsed.name_zh, parsed.name_en, boundary, "city"
        )
        return _Unit(spec, geom, parent_ok=True)

    def _units(self, city: _Unit | None, entries: list[tuple[str, _UnitIn]]) -> dict[str, _Unit]:
        units: dict[str, _Unit] = {}
        if city is not None:
            units[city.spec.code] = city
        for where, parsed in entries:
            kind = UnitKind(parsed.kind)
            boundary, geom = self._geometry(where, parsed.boundary)
            if kind == UnitKind.GRID and parsed.boundary is None:
                self.problem(f"{where}.boundary", "missing: a grid needs its polygon")
            if parsed.code in units:
                first = units[parsed.code].spec.where
                self.problem(f"{where}.code", f"duplicate code '{parsed.code}' (first at {first})")
                continue
            spec = UnitSpec(
                parsed.code, kind, parsed.parent, parsed.name_zh, parsed.name_en, boundary, where
            )
            units[parsed.code] = _Unit(spec, geom)

        # Kinds nest strictly (city > district > street > community > grid), so checking each
        # parent's kind also rules out cycles: every step up climbs one rank.
        for unit in units.values():
            spec = unit.spec
            if spec.kind == UnitKind.CITY:
                continue
            parent = units.get(spec.parent or "")
            expected = PARENT_KIND[spec.kind]
            if parent is None:
                self.problem(f"{spec.where}.parent", f"unknown unit '{spec.parent}'")
            elif parent.spec.kind != expected:
                self.problem(
                    f"{spec.where}.parent",
                    f"a {spec.kind} must sit under a {expected}; "
                    f"'{spec.parent}' is a {parent.spec.kind}",
                )
            else:
                unit.parent_ok = True

        for kind in UnitKind:
            self._check_overlaps([u for u in units.values() if u.spec.kind == kind and u.geom])
        self._check_within(units)
        return units

    def _check_overlaps(self, units: list[_Unit]) -> None:
        """Polygons of one kind must not share area; an STRtree keeps this near-linear."""
        if len(units) < 2:
            return
        geoms = np.array([u.geom for u in units], dtype=object)
        tree = shapely.STRtree(geoms)
        left, right = tree.query(geoms, predicate="intersects")
        keep = left < right
        left, right = left[keep], right[keep]
        if not len(left):
            return
        # Neighbours that only share an edge are the common case: the interior test is cheaper
        # than computing every intersection.
        inner = shapely.relate_pattern(geoms[left], geoms[right], "T********")
        left, right = left[inner], right[inner]
        if not len(left):
            return
        shared = shapely.intersection(geoms[left], geoms[right])
        areas = shapely.area(shared)
        for a, b, overlap, area in zip(left, right, shared, areas, strict=True):
            square_metres = _square_metres(overlap, float(area))
            if square_metres <= OVERLAP_TOLERANCE_M2:
                continue
            first, second = units[int(a)].spec, units[int(b)].spec
            self.problem(
                f"{second.where}.boundary",
                f"overlaps {first.kind} '{first.code}' ({first.where}) "
                f"by about {square_metres:,.0f} m²",
            )

    def _check_within(self, units: dict[str, _Unit]) -> None:
        """A unit with a boundary lies inside the nearest ancestor that has one."""
        children: dict[str, list[_Unit]] = {}
        for unit in units.values():
            if unit.geom is None:
                continue
            ancestor = self._nearest_bounded_ancestor(unit, units)
            if ancestor is not None:
                children.setdefault(ancestor.spec.code, []).append(unit)
        for code, inside in children.items():
            ancestor = units[code]
            assert ancestor.geom is not None
            lat = ancestor.geom.centroid.y
            metres_per_degree = _M_PER_DEG_LON_AT_EQUATOR * max(math.cos(math.radians(lat)), 1e-6)
            allowed = ancestor.geom.buffer(WITHIN_TOLERANCE_M / metres_per_degree)
            shapely.prepare(allowed)
            geoms = np.array([u.geom for u in inside], dtype=object)
            ok = shapely.contains(allowed, geoms)
            for unit, fits in zip(inside, ok, strict=True):
                if fits:
                    continue
                assert unit.geom is not None
                outside = _square_metres(unit.geom.difference(ancestor.geom))
                self.problem(
                    f"{unit.spec.where}.boundary",
                    f"lies outside the boundary of {ancestor.spec.kind} '{code}' "
                    f"({ancestor.spec.where}) by about {outside:,.0f} m²",
                )

    @staticmethod
    def _nearest_bounded_ancestor(unit: _Unit, units: dict[str, _Unit]) -> _Unit | None:
        current = unit
        while current.parent_ok and current.spec.parent is not None:
            current = units[current.spec.parent]
            if current.geom is not None:
                return current
        return None

    def _departments(
        self, units: dict[str, _Unit], entries: list[tuple[str, _DepartmentIn]]
    ) -> dict[str, DepartmentSpec]:
        departments: dict[str, DepartmentSpec] = {}
        for where, parsed in entries:
            if parsed.code in departments:
                first = departments[parsed.code].where
                self.problem(f"{where}.code", f"duplicate code '{parsed.code}' (first at {first})")
                continue
            unit = units.get(parsed.unit)
            if unit is None:
                self.problem(f"{where}.unit", f"unknown unit '{parsed.unit}'")
            elif unit.spec.kind not in DEPARTMENT_UNIT_KINDS:
                self.problem(
                    f"{where}.unit",
                    f"a department sits at a district or street; "
                    f"'{parsed.unit}' is a {unit.spec.kind}",
                )
            departments[parsed.code] = DepartmentSpec(
                parsed.code, parsed.name_zh, parsed.name_en, parsed.unit, where
            )
        return departments

    def _categories(
        self, departments: dict[str, DepartmentSpec], entries: list[tuple[str, _CategoryIn]]
    ) -> dict[str, CategorySpec]:
        categories: dict[str, CategorySpec] = {}
        for index, (where, parsed) in enumerate(entries):
            if parsed.code in categories:
                first = categories[parsed.code].where
                self.problem(f"{where}.code", f"duplicate code '{parsed.code}' (first at {first})")
                continue
            seen: dict[str, int] = {}
            for i, code in enumerate(parsed.departments):
                if code in seen:
                    self.problem(
                        f"{where}.departments[{i}]",
                        f"department '{code}' listed twice (first at departments[{seen[code]}])",
                    )
                elif code not in departments:
                    self.problem(f"{where}.departments[{i}]", f"unknown department '{code}'")
                seen.setdefault(code, i)
            position = parsed.position if parsed.position is not None else index
            categories[parsed.code] = CategorySpec(
                parsed.code,
                parsed.name_zh,
                parsed.name_en,
                Urgency(parsed.urgency),
                tuple(seen),
                position,
                where,
            )
        return categories

    def _duration(self, where: str, text: str) -> int | None:
        try:
            minutes = parse_duration(text)
        except ValueError as exc:
            self.problem(where, str(exc))
            return None
        if minutes <= 0:
            self.problem(where, f"must be longer than zero, got {text!r}")
            return None
        return minutes

    def _deadlines(
        self, categories: dict[str, CategorySpec], entries: list[tuple[str, _DeadlineIn]]
    ) -> list[DeadlineSpec]:
        deadlines: list[DeadlineSpec] = []
        first_at: dict[tuple[str, str | None, str], str] = {}
        for where, parsed in entries:
            ok = True
            if parsed.category is not None and parsed.category not in categories:
                self.problem(f"{where}.category", f"unknown category '{parsed.category}'")
                ok = False
            key = (parsed.urgency, parsed.category, parsed.level)
            if key in first_at:
                label = "/".join(k for k in key if k is not None)
                self.problem(where, f"duplicate policy {label} (first at {first_at[key]})")
                ok = False
            first_at.setdefault(key, where)
            accept = self._duration(f"{where}.accept", parsed.accept)
            resolve = self._duration(f"{where}.resolve", parsed.resolve)
            if accept is None or resolve is None:
                ok = False
            elif accept > resolve:
                self.problem(
                    where,
                    f"accept ({parsed.accept}) is longer than resolve ({parsed.resolve})",
                )
                ok = False
            for i, fraction in enumerate(parsed.reminders):
                if not 0.0 < fraction < 1.0:
                    self.problem(
                        f"{where}.reminders[{i}]",
                        f"must be a fraction between 0 and 1 (exclusive), got {fraction!r}",
                    )
                    ok = False
            if ok:
                assert accept is not None and resolve is not None
                deadlines.append(
                    DeadlineSpec(
                        Urgency(parsed.urgency),
                        parsed.category,
                        Level(parsed.level),
                        accept,
                        resolve,
                        parsed.working_time,
                        tuple(sorted(set(parsed.reminders))),
                        where,
                    )
                )
        return deadlines

    def _section(self, key: str, value: Any, model: type[BaseModel]) -> Any | None:
        """An optional top-level mapping; present but empty is a mistake, not a default.

        A field with a wrong type (or an unknown one) does not hide the others: they are still
        parsed, so their own problems are listed too. The caller checks whether any were found.
        """
        names = list(model.model_fields)
        if value is None or (isinstance(value, Mapping) and not value):
            some = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
            self.problem(key, f"is empty: give {some}, or leave the section out")
            return None
        if not isinstance(value, Mapping):
            self.problem(key, f"must be a mapping of fields, got {type(value).__name__}")
            return None
        known = {name: item for name, item in value.items() if name in model.model_fields}
        for name in value:
            if name not in known:
                self.problem(f"{key}.{name}", f"unknown field (expected {', '.join(names)})")
        try:
            return model.model_validate(known)
        except ValidationError as exc:
            bad = set()
            for error in exc.errors(include_url=False):
                self.problem(_loc(key, error["loc"]), _reason(error))
                bad.add(error["loc"][0])
        return model.model_validate({name: item for name, item in known.items() if name not in bad})

    def _calendar(self, value: Any) -> CalendarSpec | None:
        before = len(self.problems)
        parsed = self._section("calendar", value, _CalendarIn)
        if parsed is None:
            return None
        hours = self._working_hours("calendar.working_hours", parsed.working_hours)
        holidays = self._days("calendar.holidays", parsed.holidays)
        workdays = self._days("calendar.workdays", parsed.workdays, holidays)
        if self._in_field_order(before, _CalendarIn):
            return None
        return CalendarSpec(tuple(hours), tuple(sorted(holidays)), tuple(sorted(workdays)))

    def _working_hours(self, prefix: str, items: list[Any]) -> list[tuple[str, str]]:
        """Valid "HH:MM-HH:MM" periods, normalised; every malformed one is a problem."""
        periods: list[tuple[str, str]] = []
        previous: tuple[int, str, str] | None = None  # (end in minutes, text, where)
        for i, item in enumerate(items):
            where = f"{prefix}[{i}]"
            if not isinstance(item, str):
                self.problem(
                    where, f'must be text like "09:00-12:00", got {item!r} (quote it in YAML)'
                )
                continue
            match = _PERIOD.fullmatch(item.strip())
            if match is None:
                self.problem(where, f"{item!r} is not a period like 09:00-12:00")
                continue
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            wrong = [f"{h}:{m:02d}" for h, m in ((h1, m1), (h2, m2)) if h > 23 or m > 59]
            if wrong:
                self.problem(where, f"{item!r}: {wrong[0]} is not a time of day (00:00 to 23:59)")
                continue
            start, end = h1 * 60 + m1, h2 * 60 + m2
            if start >= end:
                self.problem(where, f"{item!r} does not start before it ends")
                continue
            if previous is not None and start < previous[0]:
                self.problem(
                    where,
                    f"{item!r} starts before the previous period {previous[1]!r} "
                    f"({previous[2]}) ends: list periods in order, without overlaps",
                )
                continue
            previous = (end, item, where)
            periods.append((f"{h1:02d}:{m1:02d}", f"{h2:02d}:{m2:02d}"))
        return periods

    def _days(
        self, prefix: str, items: list[Any], holidays: Mapping[date, str] | None = None
    ) -> dict[date, str]:
        """Valid days with where each is listed; bad and repeated ones are problems, and so
        are workdays that are also listed as holidays."""
        days: dict[date, str] = {}
        for i, item in enumerate(items):
            where = f"{prefix}[{i}]"
            day = self._day(where, item)
            if day is None:
                continue
            if day in days:
                self.problem(where, f"{day.isoformat()} listed twice (first at {days[day]})")
                continue
            if holidays is not None and day in holidays:
                self.problem(
                    where,
                    f"{day.isoformat()} is listed both as a workday and as a holiday "
                    f"({holidays[day]})",
                )
            days[day] = where
        return days

    def _day(self, where: str, value: Any) -> date | None:
        if isinstance(value, datetime):
            self.problem(where, f"must be a day like 2027-01-01, got a time too: {value}")
            return None
        if isinstance(value, date):
            return value
        if not isinstance(value, str):
            self.problem(where, f"must be a date like 2027-01-01, got {value!r}")
            return None
        text = value.strip()
        if not _ISO_DAY.fullmatch(text):
            self.problem(where, f"{value!r} is not a date like 2027-01-01")
            return None
        try:
            return date.fromisoformat(text)
        except ValueError as exc:
            self.problem(where, f"{value!r} is not a real date ({exc})")
            return None

    def _ladder(self, value: Any) -> LadderSpec | None:
        before = len(self.problems)
        parsed = self._section("ladder", value, _LadderIn)
        if parsed is None:
            return None
        for name in parsed.model_fields_set:
            if getattr(parsed, name) is None:
                self.problem(f"ladder.{name}", "has no value: give one, or leave the key out")
        top_repeat, followup_close = (
            None if text is None else self._duration(f"ladder.{name}", text)
            for name, text in (
                ("top_repeat", parsed.top_repeat),
                ("followup_close", parsed.followup_close),
            )
        )
        if self._in_field_order(before, _LadderIn):
            return None
        return LadderSpec(top_repeat, parsed.top_repeat_times, followup_close)

    def _figures(self, value: Any) -> FiguresSpec | None:
        before = len(self.problems)
        if isinstance(value, Mapping) and "weights" in value:
            weights = value["weights"]
            if not isinstance(weights, Mapping):
                self.problem(
                    "figures.weights",
                    f"must be a mapping of response, resolution and satisfaction, "
                    f"got {type(weights).__name__}",
                )
                return None
        parsed = self._section("figures", value, _FiguresIn)
        if parsed is None or len(self.problems) > before:
            return None
        weights = parsed.weights
        if weights is None:
            self.problem("figures.weights", "missing: give response, resolution and satisfaction")
            return None
        if weights.response + weights.resolution + weights.satisfaction <= 0:
            self.problem("figures.weights", "are all 0: at least one rate must count")
            return None
        return FiguresSpec(weights.response, weights.resolution, weights.satisfaction)

    def _in_field_order(self, since: int, model: type[BaseModel]) -> bool:
        """Sort a section's problems (those after `since`) by field and item; any found?"""
        names = list(model.model_fields)

        def order(problem: Problem) -> tuple[int, int]:
            match = _FIELD.match(problem[0])
            if match is None or match.group(1) not in names:
                return (-1, -1)
            return (names.index(match.group(1)), int(match.group(2) or -1))

        self.problems[since:] = sorted(self.problems[since:], key=order)
        return len(self.problems) > since

    def _posts(self, units: dict[str, _Unit], value: Any) -> tuple[PostSpec, ...] | None:
        """The service posts; `posts: []` is allowed (no posts), a bare `posts:` is not."""
        if value is None:
            self.problem(
                "posts", "is empty: list the posts, write posts: [] for none, or leave it out"
            )
            return None
        posts: dict[str, PostSpec] = {}
        for where, parsed in self._entries({"posts": value}, "posts", _PostIn):
            if parsed.code in posts:
                first = posts[parsed.code].where
                self.problem(f"{where}.code", f"duplicate code '{parsed.code}' (first at {first})")
                continue
            ok = True
            seen: dict[str, int] = {}
            for i, code in enumerate(parsed.communities):
                if code in seen:
                    self.problem(
                        f"{where}.communities[{i}]",
                        f"community '{code}' listed twice (first at communities[{seen[code]}])",
                    )
                    ok = False
                elif not self._is_community(units, f"{where}.communities[{i}]", code):
                    ok = False
                seen.setdefault(code, i)
            for code in parsed.places_in:
                if not self._is_community(units, f"{where}.places_in.{code}", code):
                    ok = False
                elif seen and code not in seen:
                    self.problem(
                        f"{where}.places_in.{code}",
                        f"'{code}' is not among this post's communities",
                    )
                    ok = False
            if ok:
                posts[parsed.code] = PostSpec(
                    parsed.code,
                    parsed.name_zh,
                    parsed.name_en,
                    parsed.places,
                    tuple(seen),
                    tuple(sorted(parsed.places_in.items())),
                    where,
                )
        return tuple(posts.values())

    def _is_community(self, units: dict[str, _Unit], where: str, code: str) -> bool:
        unit = units.get(code)
        if unit is None:
            self.problem(where, f"unknown community '{code}'")
            return False
        if unit.spec.kind != UnitKind.COMMUNITY:
            self.problem(where, f"'{code}' is a {unit.spec.kind}, not a community")
            return False
        return True
