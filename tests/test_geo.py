"""Location -> grid: inside, outside, on a border, and fast enough for a city."""

from __future__ import annotations

import random
from typing import Any

import pytest

from domain.geo import GridHit, GridLocator, NotAPlace, require_point, valid_point


def rect(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "Polygon", "coordinates": [ring]}


@pytest.fixture
def locator() -> GridLocator:
    # Four grids in a 2 x 2 block (given out of code order on purpose), plus one with a hole.
    return GridLocator(
        [
            (14, "G4", rect(113.01, 34.01, 113.02, 34.02)),
            (11, "G1", rect(113.00, 34.00, 113.01, 34.01)),
            (13, "G3", rect(113.00, 34.01, 113.01, 34.02)),
            (12, "G2", rect(113.01, 34.00, 113.02, 34.01)),
            (
                20,
                "H",
                {
                    "type": "Polygon",
                    "coordinates": [
                        rect(113.10, 34.00, 113.13, 34.03)["coordinates"][0],
                        rect(113.11, 34.01, 113.12, 34.02)["coordinates"][0],
                    ],
                },
            ),
        ]
    )


def test_a_point_inside_a_grid_finds_it(locator: GridLocator) -> None:
    assert locator.locate(34.005, 113.005) == GridHit(11, "G1")
    assert locator.locate(34.015, 113.015) == GridHit(14, "G4")
    assert locator.locate(34.005, 113.015) == GridHit(12, "G2")
    assert len(locator) == 5


def test_lat_and_lon_are_not_swapped(locator: GridLocator) -> None:
    # (lat 34.015, lon 113.005) is G3, the grid to the north of G1, not G2 to its east.
    assert locator.locate(34.015, 113.005) == GridHit(13, "G3")


def test_outside_the_service_area_is_none(locator: GridLocator) -> None:
    assert locator.locate(34.05, 113.05) is None
    assert locator.locate(39.9, 116.4) is None
    # Inside the bounding box of H but in its hole.
    assert locator.locate(34.015, 113.115) is None
    assert locator.locate(34.005, 113.105) == GridHit(20, "H")


def test_points_on_a_border_go_to_the_lowest_code(locator: GridLocator) -> None:
    # The G1/G2 edge, the G1/G3 edge, and the corner all four grids share.
    assert locator.locate(34.005, 113.01) == GridHit(11, "G1")
    assert locator.locate(34.01, 113.005) == GridHit(11, "G1")
    assert locator.locate(34.01, 113.01) == GridHit(11, "G1")
    # The G2/G4 edge: G1 is not involved, so G2.
    assert locator.locate(34.01, 113.015) == GridHit(12, "G2")
    # The outer edge still belongs to the grid.
    assert locator.locate(34.02, 113.015) == GridHit(14, "G4")


def test_an_empty_locator_finds_nothing() -> None:
    assert GridLocator([]).locate(34.0, 113.0) is None


NAN, INF = float("nan"), float("inf")
IMPOSSIBLE = [
    (91.0, 113.0),
    (-90.000001, 113.0),
    (34.0, 181.0),
    (34.0, -180.5),
    (NAN, 113.0),
    (34.0, NAN),
    (INF, 113.0),
    (34.0, -INF),
]


@pytest.mark.parametrize(("lat", "lon"), IMPOSSIBLE)
def test_impossible_locations_are_refused(locator: GridLocator, lat: float, lon: float) -> None:
    assert valid_point(lat, lon) is False
    # A domain refusal (the person is told "place.invalid"), still a ValueError.
    with pytest.raises(NotAPlace) as refused:
        locator.locate(lat, lon)
    assert refused.value.key == "place.invalid"
    assert isinstance(refused.value, ValueError)
    with pytest.raises(NotAPlace):
        require_point(lat, lon)


def test_the_edges_of_the_earth_are_places(locator: GridLocator) -> None:
    for lat, lon in [(90.0, 180.0), (-90.0, -180.0), (0.0, 0.0), (34.005, 113.005)]:
        assert valid_point(lat, lon) is True
        require_point(lat, lon)
    assert locator.locate(90.0, 180.0) is None


def test_lookups_over_ten_thousand_grids_land_in_the_right_one() -> None:
    step = 0.001
    grids = [
        (i * 100 + j, f"G{i:03d}-{j:03d}", rect(113 + j * step, 34 + i * step,
                                                 113 + (j + 1) * step, 34 + (i + 1) * step))
        for i in range(100)
        for j in range(100)
    ]  # fmt: skip
    locator = GridLocator(grids)
    rng = random.Random(7)
    points = [(34 + rng.random() * 0.1, 113 + rng.random() * 0.1) for _ in range(5000)]
    hits = [locator.locate(lat, lon) for lat, lon in points]
    for (lat, lon), hit in zip(points, hits, strict=True):
        assert hit is not None
        i, j = int((lat - 34) / step), int((lon - 113) / step)
        # Points within float noise of a grid line may fall on either side.
        fractions = ((lat - 34) / step % 1, (lon - 113) / step % 1)
        if all(1e-6 < f < 1 - 1e-6 for f in fractions):
            assert hit.grid_id == i * 100 + j
