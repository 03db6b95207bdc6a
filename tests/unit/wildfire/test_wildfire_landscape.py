"""include/wildfire/landscape.py: reproducible synthetic landscapes, their validation and the .npz model.py reads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import wildfire_landscape as landscape
import wildfire_model as model

REGION = {"min_lon": 23.05, "min_lat": 37.22, "max_lon": 23.17, "max_lat": 37.31}


def test_same_region_and_seed_give_a_byte_identical_file(tmp_path):
    a = landscape.save(landscape.generate(REGION, 120, 7), tmp_path / "a.npz")
    b = landscape.save(landscape.generate(dict(REGION), 120, 7), tmp_path / "sub" / "b.npz")
    assert a.read_bytes() == b.read_bytes()
    other_seed = landscape.save(landscape.generate(REGION, 120, 8), tmp_path / "c.npz")
    assert other_seed.read_bytes() != a.read_bytes()
    moved = dict(REGION, min_lon=23.04, max_lon=23.16)
    other_region = landscape.generate(moved, 120, 7)
    assert not np.array_equal(other_region.elevation, landscape.load(a).elevation)


def test_the_file_is_what_model_py_reads(tmp_path):
    land = landscape.generate(REGION, 100, 3)
    path = landscape.save(land, tmp_path / "landscape.npz")
    with np.load(path, allow_pickle=False) as npz:  # no pickled objects
        assert set(npz.files) == {"elevation", "fuel", "density", "water", "cell_size_m", "meta"}
        assert npz["elevation"].dtype == np.float32
        assert npz["fuel"].dtype == np.uint8 and npz["density"].dtype == np.uint8
        assert npz["cell_size_m"].shape == ()
    read = model.load_landscape(path)
    assert read["fuel"].shape == land.shape
    assert read["cell_size_m"] == pytest.approx(land.cell_size_m)
    back = landscape.load(path)
    assert back.region == land.region and back.seed == 3
    assert np.array_equal(back.fuel, land.fuel) and np.array_equal(back.water, land.water)
    assert back.meta["fuel_codes"]["0"].startswith("unburnable")


def test_cell_size_comes_from_the_region():
    land = landscape.generate(REGION, 200, 1)
    mid = math.radians((REGION["min_lat"] + REGION["max_lat"]) / 2)
    width = 6_371_008.8 * math.cos(mid) * math.radians(REGION["max_lon"] - REGION["min_lon"])
    height = 6_371_008.8 * math.radians(REGION["max_lat"] - REGION["min_lat"])
    rows, cols = land.shape
    assert cols == 200  # the longer side (10.6 km east-west vs 10.0 km north-south)
    assert land.cell_size_m == pytest.approx(width / 200)
    assert rows == round(height / land.cell_size_m)
    w_km, h_km = land.extent_km
    assert w_km == pytest.approx(width / 1000) and h_km == pytest.approx(height / 1000, rel=0.01)
    lon, lat = land.cell_lonlat(0, 0)
    assert REGION["min_lon"] < float(lon) < REGION["min_lon"] + 0.001
    assert REGION["max_lat"] - 0.001 < float(lat) < REGION["max_lat"]


def test_landscape_has_terrain_fuels_a_lake_and_a_river_firebreak():
    land = landscape.generate(REGION, 150, 11)
    fuel, water = land.fuel, land.water
    assert set(np.unique(fuel)) == {0, 1, 2, 3}
    assert set(np.unique(land.density[fuel > 0])) == {0, 1, 2}
    assert np.all(fuel[water] == 0)
    assert np.ptp(land.elevation) > 100
    # a river from one edge to the opposite one
    ns = water[0, :].any() and water[-1, :].any()
    we = water[:, 0].any() and water[:, -1].any()
    assert ns or we
    # the river splits the burnable land in (at least) two parts the fire cannot pass between
    parts = sorted(components(fuel > 0), reverse=True)
    assert len(parts) >= 2 and parts[1] > 0.05 * fuel.size


def components(mask: np.ndarray) -> list[int]:
    """Sizes of the 8-connected components of mask (the Moore neighbourhood the fire spreads through)."""
    seen = np.zeros(mask.shape, dtype=bool)
    sizes = []
    rows, cols = mask.shape
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        seen[start] = True
        stack, size = [start], 0
        while stack:
            r, c = stack.pop()
            size += 1
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    nr, nc = r + dr, c + dc
                    if 0 <= nr < rows and 0 <= nc < cols and mask[nr, nc] and not seen[nr, nc]:
                        seen[nr, nc] = True
                        stack.append((nr, nc))
        sizes.append(size)
    return sizes


def test_roughness_scales_the_relief():
    flat = landscape.generate(REGION, 100, 5, roughness=0.0)
    hilly = landscape.generate(REGION, 100, 5, roughness=2.0)
    dry = ~flat.water
    assert np.ptp(flat.elevation[dry]) < 1.0
    assert np.ptp(hilly.elevation) > 300


@pytest.mark.parametrize(
    ("region", "message"),
    [
        ("23,37,24,38", "region must be a dict"),
        ({"min_lon": 23.0, "min_lat": 37.0, "max_lon": 23.1}, "region lacks max_lat"),
        (dict(REGION, min_lon="23"), "min_lon must be a finite number"),
        (dict(REGION, min_lat=float("nan")), "min_lat must be a finite number"),
        (dict(REGION, max_lat=True), "max_lat must be a finite number"),
        (dict(REGION, min_lon=23.2), "min_lon (23.2) must be less than max_lon"),
        (dict(REGION, min_lat=37.31), "must be less than max_lat"),
        (dict(REGION, min_lon=-190.0), "min_lon must be -180..180"),
        (dict(REGION, max_lat=89.0), "max_lat must be -85..85"),
        (dict(REGION, max_lon=30.0), "spans more than 5 degrees"),
        (dict(REGION, max_lat=37.221), "too elongated"),
    ],
)
def test_bad_regions_are_refused(region, message):
    with pytest.raises(ValueError) as e:
        landscape.generate(region, 100, 1)
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("size", "seed", "message"),
    [
        (8, 1, "size must be an integer 16..4000"),
        (100.0, 1, "size must be an integer"),
        (100, -1, "seed must be a non-negative integer"),
        (100, "1", "seed must be a non-negative integer"),
        (40, 1, "cells would be 5"),
    ],
)
def test_bad_size_or_seed_are_refused(size, seed, message):
    region = dict(REGION, max_lon=REGION["min_lon"] + 2.0, max_lat=REGION["min_lat"] + 2.0)
    with pytest.raises(ValueError) as e:
        landscape.generate(region, size, seed)
    assert message in str(e.value)


def test_cells_inside_a_perimeter_with_a_hole():
    land = landscape.generate(REGION, 100, 3)
    lon, lat = land.cell_lonlat(np.arange(100)[:, None], np.arange(100)[None, :])

    # a square of 20 x 20 cell centres around cell (40..59, 30..49), with a 4 x 4 hole in the middle
    def box(r0: int, r1: int, c0: int, c1: int) -> list[tuple[float, float]]:
        w, e = float(lon[0, c0]) - 1e-6, float(lon[0, c1]) + 1e-6
        n, s = float(lat[r0, 0]) + 1e-6, float(lat[r1, 0]) - 1e-6
        return [(w, s), (e, s), (e, n), (w, n), (w, s)]

    cells = landscape.cells_inside(land, [box(40, 59, 30, 49), box(48, 51, 38, 41)])
    assert len(cells) == 20 * 20 - 4 * 4
    assert (40, 30) in cells and (59, 49) in cells and (49, 39) not in cells and (39, 30) not in cells
    assert cells == sorted(cells)
