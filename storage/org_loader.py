"""Apply a validated organisation to the database: upsert by code, in one transaction.

Rows are matched by code, compared, and written only when something differs, so loading the
same file twice touches nothing. Units and departments that vanished from the file are kept,
because tickets and roles refer to them. The optional calendar and ladder sections are one
org_setting row each; a file without the section removes its row, so the defaults apply.
Service posts are rows per community and code, updated in place so their holders stay; a file
without a posts section leaves them alone.
Bulk statements keep a 50,000-grid city to a few round trips per table instead of one per row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.enums import UnitKind
from storage.models import (
    Category,
    CategoryDepartment,
    DeadlinePolicy,
    Department,
    OrgSetting,
    OrgUnit,
    ServicePost,
)

# The file reader (YAML, shapely, pydantic models) is imported where a file is applied: the
# running bot imports this module for read_revision, and a restart applies no file.
if TYPE_CHECKING:
    from storage.orgfile import Organisation

logger = logging.getLogger(__name__)

# Parents are written before their children, so a child's parent_id always exists.
KIND_ORDER = (
    UnitKind.CITY,
    UnitKind.DISTRICT,
    UnitKind.STREET,
    UnitKind.COMMUNITY,
    UnitKind.GRID,
)
_MAX_DEPTH = 32
# The org_setting keys domain.deadlines reads (CALENDAR_KEY, LADDER_KEY).
CALENDAR_KEY = "calendar"
LADDER_KEY = "ladder"
FIGURES_KEY = "figures"
# Bumped by every load that changed something, so running bots know to read the
# organisation again (domain.reference); value {"n": <revision>}.
REVISION_KEY = "revision"


class Clock(Protocol):
    """What the loader needs from domain.clock (storage may not import domain)."""

    def now(self) -> datetime: ...


@dataclass(slots=True)
class Counts:
    """What happened to one kind of row."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    # In the database but not in the file, and left there.
    kept: int = 0


@dataclass(slots=True)
class LoadReport:
    """What a load changed, per entity type."""

    city: str
    units: Counts = field(default_factory=Counts)
    departments: Counts = field(default_factory=Counts)
    categories: Counts = field(default_factory=Counts)
    links: Counts = field(default_factory=Counts)
    deadlines: Counts = field(default_factory=Counts)
    # One row each: at most one of created, updated, unchanged or removed is 1.
    calendar: Counts = field(default_factory=Counts)
    ladder: Counts = field(default_factory=Counts)
    figures: Counts = field(default_factory=Counts)
    # One per community and post; `kept`: gone from the file but still held by members.
    posts: Counts = field(default_factory=Counts)
    posts_not_in_file: list[str] = field(default_factory=list)  # "COMMUNITY/POST", kept
    units_not_in_file: list[str] = field(default_factory=list)
    departments_not_in_file: list[str] = field(default_factory=list)
    categories_not_in_file: list[str] = field(default_factory=list)

    def _all(self) -> tuple[Counts, ...]:
        return (
            self.units,
            self.departments,
            self.categories,
            self.links,
            self.deadlines,
            self.calendar,
            self.ladder,
            self.figures,
            self.posts,
        )

    @property
    def created(self) -> int:
        return sum(c.created for c in self._all())

    @property
    def updated(self) -> int:
        return sum(c.updated for c in self._all())

    @property
    def removed(self) -> int:
        return sum(c.removed for c in self._all())

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed)

    def summary(self) -> str:
        """One line for the operator."""

        def part(name: str, c: Counts) -> str:
            return f"{name} {c.created} created, {c.updated} updated, {c.unchanged} unchanged"

        def setting(name: str, c: Counts) -> str:
            if c.removed:
                return f"{name} removed (defaults apply)"
            for state in ("created", "updated", "unchanged"):
                if getattr(c, state):
                    return f"{name} {state}"
            return f"{name} not set (defaults apply)"

        links = self.links
        parts = [
            part("units", self.units),
            part("departments", self.departments),
            part("categories", self.categories),
            f"category links {links.created} added, {links.removed} removed, "
            f"{links.unchanged} unchanged",
            part("deadlines", self.deadlines) + f", {self.deadlines.removed} removed",
            part("posts", self.posts) + f", {self.posts.removed} removed",
            setting("calendar", self.calendar),
            setting("ladder", self.ladder),
            setting("figures", self.figures),
        ]
        line = f"Organisation {self.city}: " + "; ".join(parts)
        kept = [
            f"{name} {len(codes)}{note}"
            for name, codes, note in (
                ("units", self.units_not_in_file, ""),
                ("departments", self.departments_not_in_file, ""),
                ("categories", self.categories_not_in_file, " (now inactive)"),
                ("posts", self.posts_not_in_file, " (still held)"),
            )
            if codes
        ]
        if kept:
            line += "; not in file, kept: " + ", ".join(kept)
        return line

    def __str__(self) -> str:
        return self.summary()


def sample_path() -> Path:
    """The bundled sample city (a synthetic slice of Zhengzhou)."""
    return Path(__file__).parent / "sample" / "zhengzhou.yaml"


async def org_is_empty(session: AsyncSession) -> bool:
    """True when no organisation unit has been loaded yet."""
    first = (await session.exec(select(OrgUnit.id).limit(1))).first()
    return first is None


async def apply_org(*, session: AsyncSession, org: Organisation, clock: Clock) -> LoadReport:
    """Bring the database in line with the file and commit; on any error nothing is kept."""
    now = clock.now()
    report = LoadReport(city=org.city.code)
    try:
        unit_ids = await _apply_units(session, org, now, report)
        department_ids = await _apply_departments(session, org, unit_ids, now, report)
        category_ids = await _apply_categories(session, org, now, report)
        await _apply_links(session, org, category_ids, department_ids, report)
        await _apply_deadlines(session, org, category_ids, report)
        await _apply_posts(session, org, unit_ids, now, report)
        await _apply_settings(session, org, now, report)
        if report.changed:
            await _bump_revision(session, now)
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
    logger.info("%s", report.summary())
    return report


async def read_revision(session: AsyncSession) -> int:
    """The organisation's revision: 0 before any load, one more after each load that changed it."""
    value = (
        await session.exec(select(OrgSetting.value).where(OrgSetting.key == REVISION_KEY))
    ).first()
    return int((value or {}).get("n", 0))


async def _bump_revision(session: AsyncSession, now: datetime) -> None:
    revision = await read_revision(session)
    if revision == 0:
        await session.exec(
            sa.insert(OrgSetting).values(key=REVISION_KEY, value={"n": 1}, updated_at=now)
        )
        return
    await session.exec(
        sa.update(OrgSetting)
        .where(OrgSetting.key == REVISION_KEY)
        .values(value={"n": revision + 1}, updated_at=now)
    )


async def _insert_returning_ids(
    session: AsyncSession, model: type, rows: Sequence[dict[str, Any]]
) -> dict[str, int]:
    """Insert rows in bulk; their ids by code."""
    if not rows:
        return {}
    statement = sa.insert(model).returning(model.id, model.code, sort_by_parameter_order=True)
    result = await session.exec(statement, params=list(rows))
    return {code: row_id for row_id, code in result.all()}


async def _update_by_id(session: AsyncSession, model: type, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.exec(sa.update(model), params=list(rows))


async def _apply_units(
    session: AsyncSession, org: Organisation, now: datetime, report: LoadReport
) -> dict[str, int]:
    columns = (
        OrgUnit.id,
        OrgUnit.code,
        OrgUnit.kind,
        OrgUnit.parent_id,
        OrgUnit.name_zh,
        OrgUnit.name_en,
        OrgUnit.boundary,
        OrgUnit.path,
    )
    existing = {
        row.code: dict(row._mapping) for row in (await session.exec(select(*columns))).all()
    }
    in_file = {spec.code for spec in org.all_units}

    # A grid that became a community would strand its tickets; refuse instead of guessing.
    problems = [
        (
            f"{spec.where}.kind",
            f"'{spec.code}' is a {existing[spec.code]['kind']} in the database; "
            f"a unit's kind cannot change (give it a new code)",
        )
        for spec in org.all_units
        if spec.code in existing and existing[spec.code]["kind"] != spec.kind
    ]
    if problems:
        from storage.orgfile import OrgFileError

        raise OrgFileError(problems)

    ids = {code: row["id"] for code, row in existing.items()}
    created: set[str] = set()
    dirty: set[str] = set()
    for kind in KIND_ORDER:
        inserts = []
        for spec in org.all_units:
            if spec.kind != kind:
                continue
            wanted = {
                "name_zh": spec.name_zh,
                "name_en": spec.name_en,
                "parent_id": ids[spec.parent] if spec.parent else None,
                "boundary": spec.boundary,
            }
            row = existing.get(spec.code)
            if row is None:
                inserts.append(
                    {"code": spec.code, "kind": kind, "path": "", **wanted}
                    | {"created_at": now, "updated_at": now}
                )
            elif any(row[key] != value for key, value in wanted.items()):
                row.update(wanted)
                dirty.add(spec.code)
        new_ids = await _insert_returning_ids(session, OrgUnit, inserts)
        for values in inserts:
            code = values["code"]
            ids[code] = new_ids[code]
            existing[code] = {"id": new_ids[code], **values}
            created.add(code)

    absent = sorted(code for code in existing if code not in in_file)
    for code in absent:
        row = existing[code]
        # A grid gone from the file no longer owns territory; without its polygon it stops
        # catching new reports, while old tickets keep pointing at it.
        if row["kind"] == UnitKind.GRID and row["boundary"] is not None:
            row["boundary"] = None
            dirty.add(code)

    # Materialised paths, recomputed for every row: a moved unit drags its whole subtree
    # (including units not in the file) along.
    by_id = {row["id"]: row for row in existing.values()}
    paths: dict[int, str] = {}

    def path_of(unit_id: int) -> str:
        chain: list[int] = []
        current: int | None = unit_id
        while current is not None and current not in paths:
            chain.append(current)
            if len(chain) > _MAX_DEPTH:
                raise RuntimeError(f"org_unit parents form a cycle through id {unit_id}")
            current = by_id[current]["parent_id"]
        prefix = paths[current] if current is not None else "/"
        for node in reversed(chain):
            prefix = f"{prefix}{node}/"
            paths[node] = prefix
        return paths[unit_id]

    path_only: list[dict[str, Any]] = []
    for code, row in existing.items():
        path = path_of(row["id"])
        if path == row["path"]:
            continue
        row["path"] = path
        if code in created:
            path_only.append({"id": row["id"], "path": path})
        else:
            dirty.add(code)

    await _update_by_id(session, OrgUnit, path_only)
    await _update_by_id(
        session,
        OrgUnit,
        [
            {
                "id": existing[code]["id"],
                "name_zh": existing[code]["name_zh"],
                "name_en": existing[code]["name_en"],
                "parent_id": existing[code]["parent_id"],
                "boundary": existing[code]["boundary"],
                "path": existing[code]["path"],
                "updated_at": now,
            }
            for code in sorted(dirty)
        ],
    )

    counts = report.units
    counts.created = len(created)
    counts.updated = len(dirty & in_file)
    counts.unchanged = len(in_file) - counts.created - counts.updated
    counts.kept = len(absent)
    report.units_not_in_file = absent
    return ids


async def _apply_departments(
    session: AsyncSession,
    org: Organisation,
    unit_ids: dict[str, int],
    now: datetime,
    report: LoadReport,
) -> dict[str, int]:
    columns = (
        Department.id,
        Department.code,
        Department.name_zh,
        Department.name_en,
        Department.unit_id,
    )
    existing = {
        row.code: dict(row._mapping) for row in (await session.exec(select(*columns))).all()
    }
    inserts, updates = [], []
    for spec in org.departments:
        wanted = {"name_zh": spec.name_zh, "name_en": spec.name_en, "unit_id": unit_ids[spec.unit]}
        row = existing.get(spec.code)
        if row is None:
            inserts.append({"code": spec.code, **wanted, "created_at": now, "updated_at": now})
        elif any(row[key] != value for key, value in wanted.items()):
            updates.append({"id": row["id"], **wanted, "updated_at": now})
    new_ids = await _insert_returning_ids(session, Department, inserts)
    await _update_by_id(session, Department, updates)

    in_file = {spec.code for spec in org.departments}
    counts = report.departments
    counts.created, counts.updated = len(inserts), len(updates)
    counts.unchanged = len(in_file) - counts.created - counts.updated
    report.departments_not_in_file = sorted(set(existing) - in_file)
    counts.kept = len(report.departments_not_in_file)
    return {code: row["id"] for code, row in existing.items()} | new_ids


async def _apply_categories(
    session: AsyncSession, org: Organisation, now: datetime, report: LoadReport
) -> dict[str, int]:
    columns = (
        Category.id,
        Category.code,
        Category.name_zh,
        Category.name_en,
        Category.urgency,
        Category.position,
        Category.active,
    )
    existing = {
        row.code: dict(row._mapping) for row in (await session.exec(select(*columns))).all()
    }
    in_file = {spec.code for spec in org.categories}
    inserts, updates = [], []
    for spec in org.categories:
        wanted = {
            "name_zh": spec.name_zh,
            "name_en": spec.name_en,
            "urgency": spec.urgency,
            "position": spec.position,
            "active": True,
        }
        row = existing.get(spec.code)
        if row is None:
            inserts.append({"code": spec.code, **wanted, "created_at": now, "updated_at": now})
        elif any(row[key] != value for key, value in wanted.items()):
            updates.append({"id": row["id"], **wanted, "updated_at": now})
    counts = report.categories
    counts.created, counts.updated = len(inserts), len(updates)
    counts.unchanged = len(in_file) - counts.created - counts.updated

    absent = sorted(set(existing) - in_file)
    # Old tickets keep their category; residents just can't pick it any more.
    updates += [
        {"id": existing[code]["id"], "active": False, "updated_at": now}
        for code in absent
        if existing[code]["active"]
    ]
    new_ids = await _insert_returning_ids(session, Category, inserts)
    await _update_by_id(session, Category, updates)
    report.categories_not_in_file = absent
    counts.kept = len(absent)
    return {code: row["id"] for code, row in existing.items()} | new_ids


async def _apply_links(
    session: AsyncSession,
    org: Organisation,
    category_ids: dict[str, int],
    department_ids: dict[str, int],
    report: LoadReport,
) -> None:
    rows = (
        await session.exec(select(CategoryDepartment.category_id, CategoryDepartment.department_id))
    ).all()
    existing = {(row[0], row[1]) for row in rows}
    wanted = {
        (category_ids[spec.code], department_ids[code])
        for spec in org.categories
        for code in spec.departments
    }
    # Links of categories that left the file are not ours to change.
    managed = {category_ids[spec.code] for spec in org.categories}
    stale = sorted(pair for pair in existing if pair[0] in managed and pair not in wanted)
    missing = sorted(wanted - existing)
    if stale:
        table = CategoryDepartment.__table__
        statement = table.delete().where(
            table.c.category_id == sa.bindparam("cat_id"),
            table.c.department_id == sa.bindparam("dep_id"),
        )
        await session.exec(statement, params=[{"cat_id": c, "dep_id": d} for c, d in stale])
    if missing:
        await session.exec(
            sa.insert(CategoryDepartment),
            params=[{"category_id": c, "department_id": d} for c, d in missing],
        )
    counts = report.links
    counts.created, counts.removed = len(missing), len(stale)
    counts.unchanged = len(wanted) - len(missing)


async def _apply_deadlines(
    session: AsyncSession, org: Organisation, category_ids: dict[str, int], report: LoadReport
) -> None:
    columns = (
        DeadlinePolicy.id,
        DeadlinePolicy.urgency,
        DeadlinePolicy.category_id,
        DeadlinePolicy.level,
        DeadlinePolicy.accept_minutes,
        DeadlinePolicy.resolve_minutes,
        DeadlinePolicy.working_time,
        DeadlinePolicy.reminders,
    )
    existing = {
        (row.urgency, row.category_id, row.level): dict(row._mapping)
        for row in (await session.exec(select(*columns))).all()
    }
    inserts, updates, seen = [], [], set()
    for spec in org.deadlines:
        key = (spec.urgency, category_ids[spec.category] if spec.category else None, spec.level)
        seen.add(key)
        wanted = {
            "accept_minutes": spec.accept_minutes,
            "resolve_minutes": spec.resolve_minutes,
            "working_time": spec.working_time,
            "reminders": list(spec.reminders),
        }
        row = existing.get(key)
        if row is None:
            inserts.append({"urgency": key[0], "category_id": key[1], "level": key[2], **wanted})
        elif any(row[name] != value for name, value in wanted.items()):
            updates.append({"id": row["id"], **wanted})
    stale_ids = sorted(row["id"] for key, row in existing.items() if key not in seen)
    if stale_ids:
        await session.exec(sa.delete(DeadlinePolicy).where(DeadlinePolicy.id.in_(stale_ids)))
    if inserts:
        await session.exec(sa.insert(DeadlinePolicy), params=inserts)
    await _update_by_id(session, DeadlinePolicy, updates)
    counts = report.deadlines
    counts.created, counts.updated, counts.removed = len(inserts), len(updates), len(stale_ids)
    counts.unchanged = len(org.deadlines) - counts.created - counts.updated


async def _apply_posts(
    session: AsyncSession,
    org: Organisation,
    unit_ids: dict[str, int],
    now: datetime,
    report: LoadReport,
) -> None:
    """Each community's posts, matched by (community, code) and updated in place.

    Holders are never lost: places below the members holding a post refuse the load (with the
    post's place in the file), and a post gone from the file is removed only where nobody holds
    it. Without a posts section nothing here changes.
    """
    if org.posts is None:
        return
    columns = (
        ServicePost.id,
        ServicePost.community_id,
        ServicePost.code,
        ServicePost.name_zh,
        ServicePost.name_en,
        ServicePost.places,
        ServicePost.held,
    )
    existing = {
        (row.community_id, row.code): dict(row._mapping)
        for row in (await session.exec(select(*columns))).all()
    }
    codes = {unit_id: code for code, unit_id in unit_ids.items()}
    inserts, updates, problems, seen = [], [], [], set()
    for community, offered in org.community_posts().items():
        community_id = unit_ids[community]
        for spec, places in offered:
            key = (community_id, spec.code)
            seen.add(key)
            wanted = {"name_zh": spec.name_zh, "name_en": spec.name_en, "places": places}
            row = existing.get(key)
            if row is None:
                inserts.append(
                    {"community_id": community_id, "code": spec.code, **wanted}
                    | {"held": 0, "created_at": now}
                )
            elif places < row["held"]:
                where = f"{spec.where}.places_in.{community}"
                if community not in dict(spec.places_in):
                    where = f"{spec.where}.places"
                problems.append(
                    (
                        where,
                        f"{row['held']} members hold '{spec.code}' in community '{community}'; "
                        f"its places cannot go below {row['held']} (got {places})",
                    )
                )
            elif any(row[name] != value for name, value in wanted.items()):
                updates.append({"id": row["id"], **wanted})
    if problems:
        from storage.orgfile import OrgFileError

        raise OrgFileError(problems)
    gone = [row for key, row in existing.items() if key not in seen]
    stale_ids = sorted(row["id"] for row in gone if row["held"] == 0)
    if stale_ids:
        await session.exec(sa.delete(ServicePost).where(ServicePost.id.in_(stale_ids)))
    if inserts:
        await session.exec(sa.insert(ServicePost), params=inserts)
    await _update_by_id(session, ServicePost, updates)
    counts = report.posts
    counts.created, counts.updated, counts.removed = len(inserts), len(updates), len(stale_ids)
    counts.unchanged = len(seen) - counts.created - counts.updated
    report.posts_not_in_file = sorted(
        f"{codes.get(row['community_id'], row['community_id'])}/{row['code']}"
        for row in gone
        if row["held"] > 0
    )
    counts.kept = len(report.posts_not_in_file)


async def _apply_settings(
    session: AsyncSession, org: Organisation, now: datetime, report: LoadReport
) -> None:
    """The calendar, ladder and figures rows: written when they differ, removed when not in
    the file."""
    sections = (
        (CALENDAR_KEY, org.calendar, report.calendar),
        (LADDER_KEY, org.ladder, report.ladder),
        (FIGURES_KEY, org.figures, report.figures),
    )
    rows = await session.exec(
        select(OrgSetting.key, OrgSetting.value).where(
            OrgSetting.key.in_([key for key, _, _ in sections])
        )
    )
    existing = {key: value for key, value in rows.all()}
    for key, spec, counts in sections:
        current = existing.get(key)
        if spec is None:
            if current is not None:
                await session.exec(sa.delete(OrgSetting).where(OrgSetting.key == key))
                counts.removed = 1
            continue
        wanted = spec.setting()
        if current is None:
            await session.exec(sa.insert(OrgSetting).values(key=key, value=wanted, updated_at=now))
            counts.created = 1
        elif current != wanted:
            await session.exec(
                sa.update(OrgSetting)
                .where(OrgSetting.key == key)
                .values(value=wanted, updated_at=now)
            )
            counts.updated = 1
        else:
            counts.unchanged = 1
