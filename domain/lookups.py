"""Reads a ticket use case needs (units, people, holders, watchers), cached for a transaction.

One ticket at a time, each read is a query the first time and a dictionary lookup after.
The sweep calls `prefetch` with a whole batch first, so escalating thousands of tickets
costs a handful of queries, not a handful per ticket. The queries are storage.lookups'.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.errors import NotFound
from storage import lookups as reads
from storage.enums import Role, UnitKind
from storage.models import Category, Department, OrgUnit, Person, Ticket

HolderKey = tuple[reads.Owner, int | None, Role]


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
        self._holders: dict[HolderKey, list[Person]] = {}
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
        key: HolderKey = (
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
        for category in await reads.categories_by_id(self.session, categories):
            self._categories[category.id] = category
        # Reporters are watchers: their rows come with the watchers'.
        await self._load_watchers([t.id for t in tickets])
        await self._load_people({t.reporter_id for t in tickets if t.reporter_id is not None})
        keys: list[HolderKey] = [
            ("unit", uid, role) for uid in ancestors | unit_ids for role in roles
        ]
        await self._load_holders(keys)

    def _known(self, person: Person) -> Person:
        return self._people.setdefault(person.id, person)

    async def _load_units(self, ids: Iterable[int]) -> None:
        missing = {i for i in ids if i not in self._units}
        for unit in await reads.units_by_id(self.session, missing):
            self._units[unit.id] = unit

    async def _load_people(self, ids: Iterable[int]) -> None:
        missing = {i for i in ids if i not in self._people}
        for person in await reads.people_by_id(self.session, missing):
            self._known(person)

    async def _load_watchers(self, ticket_ids: Sequence[int]) -> None:
        missing = [i for i in ticket_ids if i not in self._watchers]
        if not missing:
            return
        found: dict[int, list[Person]] = defaultdict(list)
        for ticket_id, person in await reads.watchers_of(self.session, missing):
            found[ticket_id].append(self._known(person))
        for ticket_id in missing:
            self._watchers[ticket_id] = found.get(ticket_id, [])

    async def _load_holders(self, keys: Sequence[HolderKey]) -> None:
        missing = [k for k in set(keys) if k not in self._holders]
        for owner in ("unit", "department"):
            wanted = [k for k in missing if k[0] == owner]
            if not wanted:
                continue
            ids = {k[1] for k in wanted if k[1] is not None}
            roles = sorted({k[2] for k in wanted})
            found: dict[HolderKey, list[Person]] = defaultdict(list)
            for owner_id, role, person in await reads.holders_in(self.session, owner, ids, roles):
                found[(owner, owner_id, role)].append(self._known(person))
            for key in wanted:
                self._holders[key] = found.get(key, [])
