"""Location -> grid: which grid a shared Telegram location falls in; and what a place is.

Telegram's Location accepts any float, and a forged webhook update can carry NaN or
infinity: every place the bot takes from a person is checked by `valid_point` first.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.errors import DomainError
from storage.places import grid_shapes

logger = logging.getLogger(__name__)


class NotAPlace(DomainError, ValueError):
    """Coordinates that are no place on Earth (out of range, NaN or infinite)."""


def valid_point(lat: float, lon: float) -> bool:
    """Whether (lat, lon) is a place on Earth: finite, latitude -90..90, longitude -180..180."""
    return (
        math.isfinite(lat)
        and math.isfinite(lon)
        and -90.0 <= lat <= 90.0
        and -180.0 <= lon <= 180.0
    )


def require_point(lat: float, lon: float) -> None:
    """NotAPlace ("place.invalid") unless (lat, lon) is a valid point."""
    if not valid_point(lat, lon):
        raise NotAPlace("place.invalid")


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    r = 6_371_000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


@dataclass(frozen=True, slots=True)
class GridHit:
    """The grid a point belongs to."""

    grid_id: int
    code: str


class GridLocator:
    """Finds the grid containing a point; built once, then read-only and thread-safe."""

    def __init__(self, grids: Iterable[tuple[int, str, Mapping[str, Any]]]) -> None:
        # Sorted by code so that "lowest index among the hits" is "lowest code": a point on a
        # shared border always lands in the same grid.
        items = sorted(grids, key=lambda item: item[1])
        self._hits = [GridHit(grid_id, code) for grid_id, code, _ in items]
        self._geoms = np.array([shape(geometry) for _, _, geometry in items], dtype=object)
        # Prepared polygons make each point-in-polygon test a few microseconds.
        shapely.prepare(self._geoms)
        self._tree = shapely.STRtree(self._geoms)

    def __len__(self) -> int:
        return len(self._hits)

    def locate(self, lat: float, lon: float) -> GridHit | None:
        """The grid containing (lat, lon), or None outside the service area; NotAPlace for
        coordinates that are no place at all."""
        require_point(lat, lon)
        if not self._hits:
            return None
        candidates = self._tree.query(shapely.Point(lon, lat))
        if not len(candidates):
            return None
        # intersects, not contains: a point exactly on a boundary still belongs somewhere.
        inside = candidates[shapely.intersects_xy(self._geoms[candidates], lon, lat)]
        if not len(inside):
            return None
        return self._hits[int(inside.min())]


async def load_locator(session: AsyncSession) -> GridLocator:
    """A locator over every grid in the database that has a boundary."""
    locator = GridLocator(await grid_shapes(session))
    logger.info("grid locator built over %d grids", len(locator))
    return locator
