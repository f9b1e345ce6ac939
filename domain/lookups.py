"""Reads a ticket use case needs (units, people, holders, watchers), cached for a transaction.

One ticket at a time, each read is a query the first time and a dictionary lookup after.
The sweep calls `prefetch` with a whole batch first, so escalating thousands of tickets
costs a handful of queries, not a handful per ticket.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import defer
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.errors import NotFound
from storage.dialect import Driver, utc_time
from storage.enums import AssignmentStatus, Role, UnitKind
from storage.models import (
    Category,
    Department,
    OrgUnit,
    Person,
    Ticket,
    TicketWatcher,
)

_person = Person.__table__
_PERSON_COLUMNS = tuple(_person.columns.keys())
_TIMES = {"created_at", "updated_at"}
# Holders of roles in units (or departments): what filing, moving and sweeping tickets ask
# for, straight to the driver (storage.dialect) rather than built as a query each time.
_HOLDERS_SQL = (
    "SELECT r.{column}, r.role, "
    + ", ".join("p." + c for c in _PERSON_COLUMNS)
    + " FROM role_assignment AS r JOIN person AS p ON r.person_id = p.id"
    " WHERE r.{column} IN ({owners}) AND r.role IN ({roles})"
    f" AND r.status = '{AssignmentStatus.ACTIVE.value}' ORDER BY p.id"
)


class PersonRow:
    """A person as plain attributes (the table's names): what bulk reads hand out.

    Notifications only read ids, chat ids and names, and loading thousands of people this
    way costs a fraction of ORM objects.
    """

    __slots__ = tuple(_person.columns.keys())

    def __init__(self, mapping) -> None:
        for name in self.__slots__:
            setattr(self, name, mapping[name])

    @classmethod
    def from_driver(cls, values: Sequence) -> PersonRow:
        """From a driver row of the person columns, in table order."""
        row = dict(zip(_PERSON_COLUMNS, values, strict=True))
        for name in _TIMES:
            row[name] = utc_time(row[name])
        return cls(row)


def ancestor_ids(unit: OrgUnit) -> list[int]:
    return [int(part) for part in unit.path.strip("/").split("/") if part]


class Lookups:
    """Cached reads for one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._units: dict[int, OrgUnit] = {}
        self._ancestors: dict[tuple[int | None, UnitKind], OrgUnit | None] = {}
        self._categories: dict[int, Category] = {}
        self._people: dict[int, Person] = {}
        self._departments: dict[int, Department] = {}
        self._holders: dict[tuple[str, int, Role], list[Person]] = {}
        self._watchers: dict[int, list[Person]] = {}

    async def unit(self, unit_id: int) -> OrgUnit:
        if unit_id not in self._units:
            unit = await self.session.get(OrgUnit, unit_id)
            if unit is None:
                raise NotFound("unit.unknown", code=str(unit_id))
            self._units[unit_id] = unit
        return self._units[unit_id]

    async def category(self, category_id: int) -> Category:
        if category_id not in self._categories:
            category = await self.session.get(Category, category_id)
            if category is None:
                raise NotFound("category.unknown")
            self._categories[category_id] = category
        return self._categories[category_id]

    async def person(self, person_id: int | None) -> Person | None:
        if person_id is None:
            return None
        if person_id not in self._people:
            person = await self.session.get(Person, person_id)
            if person is None:
                return None
            self._people[person_id] = person
        return self._people[person_id]

    async def department(self, department_id: int) -> Department:
        if department_id not in self._departments:
            department = await self.session.get(Department, department_id)
            if department is None:
                raise NotFound("department.unknown", code=str(department_id))
            self._departments[department_id] = department
        return self._departments[department_id]

    async def ancestor(self, unit: OrgUnit, kind: UnitKind) -> OrgUnit:
        """The unit of `kind` above (or at) `unit`."""
        key = (unit.id, kind)
        if key not in self._ancestors:
            ids = ancestor_ids(unit)
            await self._load_units(ids)
            found = [self._units[i] for i in ids if i in self._units]
            self._ancestors[key] = next((u for u in found if u.kind == kind), None)
        found = self._ancestors[key]
        if found is None:
            raise NotFound("unit.no_ancestor", code=unit.code, kind=kind.value)
        return found

    async def holders(
        self, role: Role, *, unit_id: int | None = None, department_id: int | None = None
    ) -> list[Person]:
        """Active holders of `role` in exactly this unit (or department), by id."""
        key = (
            ("unit", unit_id, role) if unit_id is not None else ("department", department_id, role)
        )
        if key not in self._holders:
            await self._load_holders([key])
        return self._holders[key]

    async def watchers(self, ticket_id: int) -> list[Person]:
        """The reporter and everyone who said "me too", in the order they came."""
        if ticket_id not in self._watchers:
            await self._load_watchers([ticket_id])
        return self._watchers[ticket_id]

    # -- bulk loading -------------------------------------------------------------------------

    async def prefetch(self, tickets: Sequence[Ticket], roles: Iterable[Role] = ()) -> None:
        """Everything escalating or reminding these tickets reads, in a few queries."""
        if not tickets:
            return
        unit_ids = {t.grid_id for t in tickets} | {t.community_id for t in tickets}
        unit_ids |= {t.holder_unit_id for t in tickets if t.holder_unit_id is not None}
        await self._load_units(unit_ids)
        ancestors = {i for uid in unit_ids for i in ancestor_ids(self._units[uid])}
        await self._load_units(ancestors)
        categories = {t.category_id for t in tickets} - self._categories.keys()
        if categories:
            rows = await self.session.exec(select(Category).where(Category.id.in_(categories)))
            self._categories.update({c.id: c for c in rows.all()})
        # Reporters are watchers: their rows come with the watchers'.
        await self._load_watchers([t.id for t in tickets])
        await self._load_people({t.reporter_id for t in tickets if t.reporter_id is not None})
        keys = [("unit", uid, role) for uid in ancestors | unit_ids for role in roles]
        await self._load_holders(keys)

    async def _load_units(self, ids: Iterable[int]) -> None:
        missing = [i for i in set(ids) if i not in self._units]
        for start in range(0, len(missing), 500):
            rows = await self.session.exec(
                select(OrgUnit)
                .where(OrgUnit.id.in_(missing[start : start + 500]))
                # Not the polygons: only the locator reads them, and they are the bulk of a row.
                .options(defer(OrgUnit.boundary, raiseload=True))
            )
            self._units.update({u.id: u for u in rows.all()})

    async def _load_people(self, ids: Iterable[int]) -> None:
        missing = [i for i in set(ids) if i not in self._people]
        for start in range(0, len(missing), 500):
            rows = await self.session.exec(
                sa.select(_person).where(_person.c.id.in_(missing[start : start + 500]))
            )
            self._people.update({p["id"]: PersonRow(p) for p in rows.mappings()})

    async def _load_watchers(self, ticket_ids: Sequence[int]) -> None:
        missing = [i for i in ticket_ids if i not in self._watchers]
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            found: dict[int, list[Person]] = defaultdict(list)
            watcher = TicketWatcher.__table__
            rows = await self.session.exec(
                sa.select(watcher.c.ticket_id.label("watched"), _person)
                .join(_person, watcher.c.person_id == _person.c.id)
                .where(watcher.c.ticket_id.in_(chunk))
                .order_by(watcher.c.created_at, _person.c.id)
            )
            for row in rows.mappings():
                person = self._people.setdefault(row["id"], PersonRow(row))
                found[row["watched"]].append(person)
            for ticket_id in chunk:
                self._watchers[ticket_id] = found.get(ticket_id, [])

    async def _load_holders(self, keys: Sequence[tuple[str, int | None, Role]]) -> None:
        missing = [k for k in set(keys) if k not in self._holders]
        for kind in ("unit", "department"):
            wanted = [k for k in missing if k[0] == kind]
            if not wanted:
                continue
            column = "unit_id" if kind == "unit" else "department_id"
            found: dict[tuple[str, int | None, Role], list[Person]] = defaultdict(list)
            ids = sorted({k[1] for k in wanted})
            roles = sorted({k[2].value for k in wanted})
            db = await Driver.of(self.session)
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                sql = _HOLDERS_SQL.format(
                    column=column,
                    owners=", ".join("?" * len(chunk)),
                    roles=", ".join("?" * len(roles)),
                )
                for owner, held, *values in await db.rows(sql, (*chunk, *roles)):
                    person = PersonRow.from_driver(values)
                    person = self._people.setdefault(person.id, person)
                    found[(kind, owner, Role(held))].append(person)
            for key in wanted:
                self._holders[key] = found.get(key, [])
