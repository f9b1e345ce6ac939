"""The organisation as every update reads it: units, grids' shapes, categories and deadline
policies, held in memory and read again only when the organisation changes.

Residents' dialogs look these up at almost every step (the category buttons, the grid a
location falls in, the names on the summary, the policy a new ticket's deadlines come from);
read from the database each time they were most of a step's cost. They change only when an
organisation file is loaded, which bumps a revision number (`storage.org_loader`), so a
snapshot stays good until the revision moves. The revision is read at most once every
`max_age` seconds: a load made by another process (`gridbot org load`) reaches a running bot
within that time; `invalidate()` makes the next use read it at once.

Snapshot objects are shared by every update: read them, never change them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.deadlines import Policies
from domain.errors import NotFound
from domain.geo import GridLocator, load_locator
from domain.lookups import ancestor_ids
from domain.places import GridPlace
from storage.deadlines import deadline_policies, settings
from storage.enums import UnitKind
from storage.models import Category, OrgUnit
from storage.org_loader import FIGURES_KEY, read_revision
from storage.reference import all_categories, all_units, detach

logger = logging.getLogger(__name__)

MAX_AGE_S = 2.0  # how stale a snapshot may be before the revision is read again


@dataclass(eq=False)
class OrgSnapshot:
    """One revision of the organisation; lookups are dictionary reads."""

    revision: int
    units: dict[int, OrgUnit]
    categories: dict[int, Category]  # active and inactive, by id
    active_categories: list[Category]  # in the order residents see them
    policies: Policies
    locator: GridLocator
    # The organisation file's figures section as stored (domain.figures.weights_of reads it).
    figures: dict[str, Any] = field(default_factory=dict)
    _places: dict[int, list[OrgUnit]] = field(default_factory=dict, repr=False)

    def unit(self, unit_id: int) -> OrgUnit:
        found = self.units.get(unit_id)
        if found is None:
            raise NotFound("unit.unknown", code=str(unit_id))
        return found

    def category(self, category_id: int | None, *, active: bool = True) -> Category:
        """The category; NotFound when unknown (or inactive, unless `active` is False)."""
        found = self.categories.get(category_id) if category_id is not None else None
        if found is None or (active and not found.active):
            raise NotFound("category.unknown")
        return found

    def chain(self, unit: OrgUnit) -> list[OrgUnit]:
        """The unit and those above it, city first."""
        found = self._places.get(unit.id)
        if found is None:
            found = [self.units[i] for i in ancestor_ids(unit) if i in self.units]
            self._places[unit.id] = found
        return found

    def ancestor(self, unit: OrgUnit, kind: UnitKind) -> OrgUnit:
        """The unit of `kind` above (or at) `unit`."""
        for candidate in self.chain(unit):
            if candidate.kind == kind:
                return candidate
        raise NotFound("unit.no_ancestor", code=unit.code, kind=kind.value)

    def grid_place(self, grid_id: int) -> GridPlace:
        """The grid with this id and its community; NotFound if it is not a grid."""
        grid = self.units.get(grid_id)
        if grid is None or grid.kind != UnitKind.GRID or grid.parent_id is None:
            raise NotFound("unit.unknown", code=str(grid_id))
        community = self.units.get(grid.parent_id)
        if community is None or community.kind != UnitKind.COMMUNITY:
            raise NotFound("unit.unknown", code=grid.code)
        return GridPlace(grid, community)

    def place_of(self, lat: float, lon: float) -> list[OrgUnit] | None:
        """The units containing a point, city first and grid last; None outside the area."""
        hit = self.locator.locate(lat, lon)
        if hit is None:
            return None
        grid = self.units.get(hit.grid_id)
        return None if grid is None else self.chain(grid)


async def load_snapshot(session: AsyncSession) -> OrgSnapshot:
    """Everything the snapshot holds, read in one transaction."""
    revision = await read_revision(session)
    units = await all_units(session)
    categories = await all_categories(session)
    policies = await deadline_policies(session)
    locator = await load_locator(session)
    stored = await settings(session, [FIGURES_KEY])
    detach(session, [*units, *categories, *policies])
    return OrgSnapshot(
        revision=revision,
        units={u.id: u for u in units},
        categories={c.id: c for c in categories},
        active_categories=[c for c in categories if c.active],
        policies=Policies(policies),
        locator=locator,
        figures=stored.get(FIGURES_KEY, {}),
    )


class Reference:
    """The current snapshot, read again when the organisation's revision has moved."""

    def __init__(
        self, *, max_age: float = MAX_AGE_S, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_age = max_age
        self._monotonic = monotonic
        self._snapshot: OrgSnapshot | None = None
        self._checked_at = -float("inf")

    def invalidate(self) -> None:
        """Check the revision at the next use (after a load made in this process)."""
        self._checked_at = -float("inf")

    async def get(self, session: AsyncSession) -> OrgSnapshot:
        """The snapshot; ends the read transaction it may have opened on `session`."""
        now = self._monotonic()
        snapshot = self._snapshot
        if snapshot is not None and now - self._checked_at < self._max_age:
            return snapshot
        revision = await read_revision(session)
        if snapshot is None or revision != snapshot.revision:
            snapshot = await load_snapshot(session)
            logger.info(
                "organisation revision %d: %d units, %d categories",
                snapshot.revision,
                len(snapshot.units),
                len(snapshot.categories),
            )
            self._snapshot = snapshot
        self._checked_at = now
        return snapshot
