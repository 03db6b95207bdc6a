"""Synthetic landscapes for the wildfire model, generated reproducibly from a region and a seed.

Worker side (numpy 2.x). ``generate(region, size, seed)`` builds a grid of square cells over the region's
bounding box: elevation (m) from octaves of smooth value noise scaled by a terrain roughness, a fuel type
per cell (0 unburnable, 1 grass/agricultural, 2 shrubs, 3 forest; water and bare rock are 0), a vegetation
density class (0 sparse, 1 normal, 2 dense), a lake and a river crossing the whole grid (a firebreak).
``save(landscape, path)`` writes the ``.npz`` that ``model.py`` reads; the same region, size, seed and
roughness give a byte-identical file (fixed zip timestamps, no pickles). ``load(path)`` reads it back.

Grid convention (shared with model.py and aggregate.py): row 0 is the northern edge, column 0 the western
edge; cell (r, c) has its north-west corner at ``origin + (c * dlon, -r * dlat)``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

GENERATOR_VERSION = "1"
EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)
REGION_KEYS = ("min_lon", "min_lat", "max_lon", "max_lat")
MAX_REGION_SPAN_DEG = 5.0
MIN_SIZE, MAX_SIZE = 16, 4000  # cells along the longer side
MIN_SHORT_SIDE = 8  # cells along the shorter side
MIN_CELL_M, MAX_CELL_M = 1.0, 2000.0
FUEL_CODES = {0: "unburnable (water, rock)", 1: "grass / agricultural", 2: "shrubs / thickets", 3: "forest"}
DENSITY_CODES = {0: "sparse", 1: "normal", 2: "dense"}
BASE_RELIEF_M = 120.0  # standard deviation of the elevation noise at roughness 1
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Landscape:
    elevation: npt.NDArray[np.float32]  # metres above sea level
    fuel: npt.NDArray[np.uint8]  # FUEL_CODES
    density: npt.NDArray[np.uint8]  # DENSITY_CODES
    water: npt.NDArray[np.bool_]  # lake and river (a subset of fuel == 0)
    cell_size_m: float
    region: dict[str, float]
    seed: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self.fuel.shape
        return int(rows), int(cols)

    @property
    def extent_km(self) -> tuple[float, float]:
        """(width, height) of the grid in km."""
        rows, cols = self.shape
        return cols * self.cell_size_m / 1000.0, rows * self.cell_size_m / 1000.0

    def cell_lonlat(
        self, rows: npt.ArrayLike, cols: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Longitude and latitude of cell centres (fractional row/col accepted)."""
        d_lon, d_lat = _degrees_per_cell(self.region, self.cell_size_m)
        lon = self.region["min_lon"] + (np.asarray(cols, dtype=np.float64) + 0.5) * d_lon
        lat = self.region["max_lat"] - (np.asarray(rows, dtype=np.float64) + 0.5) * d_lat
        return lon, lat


# ---------------------------------------------------------------------------------------------------
# validation and geometry


def validate_region(region: Any) -> dict[str, float]:
    """The region as {min_lon, min_lat, max_lon, max_lat} floats, or ValueError saying what is wrong."""
    if not isinstance(region, dict):
        raise ValueError(f"region must be a dict with {', '.join(REGION_KEYS)} (got {type(region).__name__})")
    missing = [k for k in REGION_KEYS if k not in region]
    if missing:
        raise ValueError(f"region lacks {', '.join(missing)}")
    out: dict[str, float] = {}
    for k in REGION_KEYS:
        v = region[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"region {k} must be a finite number of degrees (got {v!r})")
        out[k] = float(v)
    for k in ("min_lon", "max_lon"):
        if not -180.0 <= out[k] <= 180.0:
            raise ValueError(f"region {k} must be -180..180 (got {out[k]:g})")
    for k in ("min_lat", "max_lat"):
        if not -85.0 <= out[k] <= 85.0:
            raise ValueError(f"region {k} must be -85..85 (got {out[k]:g})")
    for lo, hi in (("min_lon", "max_lon"), ("min_lat", "max_lat")):
        if out[lo] >= out[hi]:
            raise ValueError(f"region {lo} ({out[lo]:g}) must be less than {hi} ({out[hi]:g})")
        if out[hi] - out[lo] > MAX_REGION_SPAN_DEG:
            raise ValueError(f"region spans more than {MAX_REGION_SPAN_DEG:g} degrees from {lo} to {hi}")
    return out


def region_extent_m(region: dict[str, float]) -> tuple[float, float]:
    """(width, height) of the region in metres (equirectangular at the middle latitude)."""
    mid_lat = math.radians((region["min_lat"] + region["max_lat"]) / 2.0)
    width = EARTH_RADIUS_M * math.cos(mid_lat) * math.radians(region["max_lon"] - region["min_lon"])
    height = EARTH_RADIUS_M * math.radians(region["max_lat"] - region["min_lat"])
    return width, height


def _degrees_per_cell(region: dict[str, float], cell_size_m: float) -> tuple[float, float]:
    mid_lat = math.radians((region["min_lat"] + region["max_lat"]) / 2.0)
    d_lat = math.degrees(cell_size_m / EARTH_RADIUS_M)
    d_lon = math.degrees(cell_size_m / (EARTH_RADIUS_M * math.cos(mid_lat)))
    return d_lon, d_lat


def cells_inside(land: Landscape, rings: list[list[tuple[float, float]]]) -> list[tuple[int, int]]:
    """The cells whose centres lie inside a polygon given as GeoJSON rings of (lon, lat) (the outer ring
    first, holes after; even-odd rule), row-major; e.g. an observed fire perimeter."""
    rows, cols = land.shape
    r, c = np.mgrid[0:rows, 0:cols]
    lon, lat = land.cell_lonlat(r, c)
    inside = np.zeros((rows, cols), dtype=bool)
    for ring in rings:
        xs, ys = np.asarray([p[0] for p in ring], dtype=np.float64), np.asarray([p[1] for p in ring])
        for x0, y0, x1, y1 in zip(xs[:-1], ys[:-1], xs[1:], ys[1:], strict=True):
            if y0 == y1:
                continue
            crosses = (y0 > lat) != (y1 > lat)
            x_at = x0 + (lat - y0) * (x1 - x0) / (y1 - y0)
            inside ^= crosses & (lon < x_at)
    return [(int(a), int(b)) for a, b in np.argwhere(inside)]


def grid_for(region: dict[str, float], size: int) -> tuple[int, int, float]:
    """(rows, cols, cell_size_m): square cells, `size` cells along the longer side of the region."""
    width, height = region_extent_m(region)
    cell = max(width, height) / size
    rows, cols = max(1, round(height / cell)), max(1, round(width / cell))
    if min(rows, cols) < MIN_SHORT_SIDE:
        raise ValueError(
            f"region is too elongated for size {size}: the grid would be {rows}x{cols} cells (need at least "
            f"{MIN_SHORT_SIDE} each way); use a larger size or a squarer region"
        )
    if not MIN_CELL_M <= cell <= MAX_CELL_M:
        raise ValueError(
            f"cells would be {cell:.1f} m wide; need {MIN_CELL_M:g}..{MAX_CELL_M:g} m: "
            f"change size ({size}) or the region ({width / 1000:.1f} x {height / 1000:.1f} km)"
        )
    return rows, cols, cell


def _region_entropy(region: dict[str, float]) -> int:
    text = ",".join(f"{region[k]:.6f}" for k in REGION_KEYS)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


# ---------------------------------------------------------------------------------------------------
# noise


def _value_noise(
    rng: np.random.Generator,
    shape: tuple[int, int],
    octaves: int = 5,
    base_cells: int = 3,
    persistence: float = 0.5,
) -> npt.NDArray[np.float64]:
    """Fractal value noise, zero mean and unit standard deviation: a lattice of Gaussian values per
    octave (base_cells * 2**i lattice cells along the longer side), smoothstep-interpolated."""
    rows, cols = shape
    total = np.zeros(shape, dtype=np.float64)
    amplitude = 1.0
    for i in range(octaves):
        spacing = max(rows, cols) / (base_cells * 2**i)
        y = np.arange(rows, dtype=np.float64) / spacing
        x = np.arange(cols, dtype=np.float64) / spacing
        lattice = rng.standard_normal((int(y[-1]) + 2, int(x[-1]) + 2))
        y0, x0 = y.astype(np.int64), x.astype(np.int64)
        ty, tx = y - y0, x - x0
        ty, tx = ty * ty * (3 - 2 * ty), tx * tx * (3 - 2 * tx)  # smoothstep
        top = lattice[y0][:, x0] * (1 - tx) + lattice[y0][:, x0 + 1] * tx
        bottom = lattice[y0 + 1][:, x0] * (1 - tx) + lattice[y0 + 1][:, x0 + 1] * tx
        total += amplitude * (top * (1 - ty)[:, None] + bottom * ty[:, None])
        amplitude *= persistence
    return (total - total.mean()) / total.std()


def _rank(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each value's quantile in 0..1 (ties broken by position: deterministic)."""
    order = np.argsort(a, axis=None, kind="stable")
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = np.arange(a.size, dtype=np.float64) / max(a.size - 1, 1)
    return ranks.reshape(a.shape)


# ---------------------------------------------------------------------------------------------------
# the landscape


def generate(region: dict[str, float], size: int, seed: int, *, roughness: float = 1.0) -> Landscape:
    """A synthetic landscape over `region` with `size` square cells along its longer side.

    roughness scales the relief (0 = flat, 1 = hills of ~120 m standard deviation, up to 5)."""
    reg = validate_region(region)
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an integer {MIN_SIZE}..{MAX_SIZE} (got {size!r})")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (got {seed!r})")
    if isinstance(roughness, bool) or not isinstance(roughness, (int, float)) or not 0 <= roughness <= 5:
        raise ValueError(f"roughness must be a number 0..5 (got {roughness!r})")
    rows, cols, cell = grid_for(reg, size)
    rng = np.random.default_rng(np.random.SeedSequence([seed, _region_entropy(reg)]))
    shape = (rows, cols)

    # elevation: fractal noise with finer features where the cells are small, plus a regional tilt
    terrain = _value_noise(rng, shape, octaves=5, base_cells=3)
    tilt_dir = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64) / max(rows, cols)
    tilt = (np.cos(tilt_dir) * xx + np.sin(tilt_dir) * yy) * 0.8
    base = float(rng.uniform(50.0, 600.0))
    elevation = base + BASE_RELIEF_M * float(roughness) * (terrain + tilt)
    elevation -= min(0.0, float(elevation.min()))  # keep it above sea level

    water = np.zeros(shape, dtype=bool)
    # a lake in a low part of the interior: an ellipse, its surface flat
    interior = np.zeros(shape, dtype=bool)
    interior[rows // 6 : rows - rows // 6, cols // 6 : cols - cols // 6] = True
    low = np.flatnonzero(interior & (_rank(elevation) < 0.3))
    if low.size == 0:
        low = np.flatnonzero(interior)
    centre = int(low[int(rng.integers(low.size))])
    cy, cx = divmod(centre, cols)
    a, b = rng.uniform(0.05, 0.09, size=2) * min(rows, cols)
    angle = rng.uniform(0, math.pi)
    dy, dx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    dy, dx = dy - cy, dx - cx
    u, v = dx * math.cos(angle) + dy * math.sin(angle), -dx * math.sin(angle) + dy * math.cos(angle)
    lake = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    elevation[lake] = float(np.percentile(elevation[lake], 20))
    water |= lake

    # a river from one edge to the opposite edge, 2-3 cells wide and 4-connected (fire cannot jump it)
    north_south = bool(rng.integers(2))
    length, across = (rows, cols) if north_south else (cols, rows)
    t = np.arange(length, dtype=np.float64)
    walk = np.cumsum(rng.normal(0.0, 0.6, size=length))
    walk -= np.linspace(0.0, float(walk[-1]), length)  # ends where it started (detrended)
    wavelength = rng.uniform(0.4, 0.8) * length
    course = rng.uniform(0.25, 0.75) * across + 0.06 * across * np.sin(2 * math.pi * t / wavelength) + walk
    course = np.clip(np.round(course), 2, across - 3).astype(np.int64)
    width = int(rng.integers(2, 4))
    river = np.zeros((length, across), dtype=bool)
    for i in range(length):
        lo = min(course[i], course[i - 1]) if i else course[i]
        hi = max(course[i], course[i - 1]) if i else course[i]
        river[i, max(lo - width // 2, 0) : min(hi + (width + 1) // 2, across)] = True
    if not north_south:
        river = river.T
    elevation[river] -= 3.0  # a shallow valley
    water |= river

    # fuel: lower ground mostly grass and fields, then shrubs, higher ground forest, bare rock on top
    patches = _value_noise(rng, shape, octaves=4, base_cells=6)
    score = _rank(0.65 * _rank(elevation) + 0.35 * _rank(patches))
    fuel = np.full(shape, 2, dtype=np.uint8)
    fuel[score < 0.3] = 1
    fuel[score >= 0.62] = 3
    rock = (_rank(elevation) > 0.985) & (patches > -0.5)
    fuel[rock | water] = 0

    # density: its own patches, forests a little denser
    dens_noise = _rank(_value_noise(rng, shape, octaves=4, base_cells=5) + 0.5 * (fuel == 3))
    density = np.ones(shape, dtype=np.uint8)
    density[dens_noise < 0.25] = 0
    density[dens_noise >= 0.75] = 2
    density[fuel == 0] = 0

    d_lon, d_lat = _degrees_per_cell(reg, cell)
    meta: dict[str, Any] = {
        "generator": "urgentflow.wildfire.landscape",
        "generator_version": GENERATOR_VERSION,
        "region": reg,
        "size": size,
        "seed": seed,
        "roughness": float(roughness),
        "shape": [rows, cols],
        "cell_size_m": cell,
        "origin_nw_lonlat": [reg["min_lon"], reg["max_lat"]],
        "deg_per_cell": [d_lon, d_lat],
        "row_direction": "south (row 0 is the northern edge)",
        "fuel_codes": {str(k): v for k, v in FUEL_CODES.items()},
        "density_codes": {str(k): v for k, v in DENSITY_CODES.items()},
        "elevation_units": "m",
    }
    return Landscape(
        elevation=elevation.astype(np.float32),
        fuel=fuel,
        density=density,
        water=water,
        cell_size_m=cell,
        region=reg,
        seed=seed,
        meta=meta,
    )


def _npy_bytes(array: npt.NDArray[Any]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array(array, order="C", copy=True), allow_pickle=False)
    return buf.getvalue()


def save(landscape: Landscape, path: str | Path) -> Path:
    """Write the landscape as an .npz readable by numpy.load (and model.py), byte-identical for the
    same landscape: fixed member order and timestamps, no pickled objects."""
    p = Path(path)
    arrays: dict[str, npt.NDArray[Any]] = {
        "elevation": landscape.elevation.astype(np.float32),
        "fuel": landscape.fuel.astype(np.uint8),
        "density": landscape.density.astype(np.uint8),
        "water": landscape.water.astype(np.bool_),
        "cell_size_m": np.array(landscape.cell_size_m, dtype=np.float64),
        "meta": np.array(json.dumps(landscape.meta, sort_keys=True)),
    }
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, _npy_bytes(array))
    tmp.replace(p)
    return p


def load(path: str | Path) -> Landscape:
    """Read a landscape written by save()."""
    with np.load(Path(path), allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"])) if "meta" in npz.files else {}
        fuel = npz["fuel"].astype(np.uint8)
        water = npz["water"].astype(np.bool_) if "water" in npz.files else np.zeros(fuel.shape, dtype=bool)
        region = meta.get("region")
        if region is None:  # a hand-made landscape without metadata: a nominal region at 0, 0
            region = {"min_lon": 0.0, "min_lat": 0.0, "max_lon": 0.0, "max_lat": 0.0}
        return Landscape(
            elevation=npz["elevation"].astype(np.float32),
            fuel=fuel,
            density=npz["density"].astype(np.uint8),
            water=water,
            cell_size_m=float(npz["cell_size_m"]),
            region={k: float(region[k]) for k in REGION_KEYS},
            seed=int(meta.get("seed", -1)),
            meta=meta,
        )
