"""Aggregate the members of a wildfire ensemble into a burn-probability map (worker side: numpy 2.x, matplotlib).

``aggregate(member_files, landscape)`` reads the ``member-N.npz`` files written by ``model.py`` (and their
``member-N.json`` next to them when present) and returns a :class:`Result`: burn probability per cell
(fraction of members that burned it), arrival time statistics over the members that burned the cell, and
the burned area of every member. ``render_png`` draws the map a person reads, ``save_data`` writes the
numbers (``.npz`` + ``.csv`` of the cells with p > 0 + ``.geojson`` of the 10/50/90 % contours).

The landscape is anything with the attributes of ``landscape.Landscape`` (elevation, fuel, water,
cell_size_m, region, shape); this module does not import landscape.py so that either can be loaded alone.
"""

from __future__ import annotations

import csv
import json
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

EARTH_RADIUS_M = 6_371_008.8
CONTOUR_LEVELS = (0.1, 0.5, 0.9)
_MEMBER_RE = re.compile(r"member-(\d+)\.npz$")

FloatArray = npt.NDArray[np.float64]


class LandscapeLike(Protocol):
    @property
    def elevation(self) -> npt.NDArray[Any]: ...
    @property
    def fuel(self) -> npt.NDArray[Any]: ...
    @property
    def water(self) -> npt.NDArray[Any]: ...
    @property
    def cell_size_m(self) -> float: ...
    @property
    def region(self) -> dict[str, float]: ...
    @property
    def shape(self) -> tuple[int, int]: ...


@dataclass(frozen=True)
class Result:
    members: list[int]
    probability: FloatArray  # 0..1, fraction of members that burned the cell
    arrival_mean_steps: FloatArray  # over the members that burned the cell; NaN where none did
    arrival_p10_steps: FloatArray
    arrival_p50_steps: FloatArray
    arrival_p90_steps: FloatArray
    burned_area_ha: FloatArray  # per member, in the order of `members`
    cell_size_m: float
    region: dict[str, float]
    minutes_per_step: float | None = None  # from the members' JSON (None if absent)
    member_info: list[dict[str, Any]] = field(default_factory=list)  # the members' JSON, where present

    @property
    def n_members(self) -> int:
        return len(self.members)

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self.probability.shape
        return int(rows), int(cols)

    def area_stats(self) -> dict[str, float]:
        """Burned area over the members (ha): mean (the expected area), sample standard deviation,
        min, 10/50/90th percentiles, max."""
        a = self.burned_area_ha
        return {
            "mean_ha": float(a.mean()),
            "std_ha": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "min_ha": float(a.min()),
            "p10_ha": float(np.percentile(a, 10)),
            "p50_ha": float(np.percentile(a, 50)),
            "p90_ha": float(np.percentile(a, 90)),
            "max_ha": float(a.max()),
        }

    def summary(self) -> dict[str, Any]:
        """Small JSON-able summary (for an XCom or a catalog row)."""
        cell_ha = self.cell_size_m**2 / 10000.0
        return {
            "members": self.n_members,
            "burned_area": self.area_stats(),
            "area_p_ge_50_ha": float(np.count_nonzero(self.probability >= 0.5) * cell_ha),
            "area_p_ge_90_ha": float(np.count_nonzero(self.probability >= 0.9) * cell_ha),
            "cells_p_gt_0": int(np.count_nonzero(self.probability > 0)),
            "max_probability": float(self.probability.max()),
            "minutes_per_step": self.minutes_per_step,
            "cell_size_m": self.cell_size_m,
        }

    def minutes(self, steps: FloatArray) -> FloatArray | None:
        return None if self.minutes_per_step is None else steps * self.minutes_per_step


def _member_number(path: Path, info: dict[str, Any]) -> int:
    if isinstance(info.get("member"), int):
        return int(info["member"])
    m = _MEMBER_RE.search(path.name)
    if not m:
        raise ValueError(
            f"cannot tell the member number of {path}: name it member-N.npz or add member-N.json"
        )
    return int(m.group(1))


def aggregate(member_files: Iterable[str | Path], landscape: LandscapeLike) -> Result:
    """Combine member-N.npz files (arrival step per cell, -1 = never burned) into a Result."""
    files = [Path(f) for f in member_files]
    if not files:
        raise ValueError("no member files to aggregate")
    rows, cols = landscape.shape
    burnable = np.asarray(landscape.fuel) > 0
    arrivals: list[npt.NDArray[np.int64]] = []
    members: list[int] = []
    infos: list[dict[str, Any]] = []
    minutes: set[float] = set()
    for f in files:
        if not f.is_file():
            raise ValueError(f"member file not found: {f}")
        try:
            with np.load(f, allow_pickle=False) as npz:
                if "arrival" not in npz.files:
                    raise ValueError(f"member file {f} has no 'arrival' array")
                arrival = npz["arrival"]
        except (OSError, EOFError) as e:
            raise ValueError(f"member file {f} is not a readable .npz: {e}") from None
        if arrival.shape != (rows, cols) or not np.issubdtype(arrival.dtype, np.integer):
            raise ValueError(
                f"member file {f}: arrival is {arrival.dtype} {arrival.shape}, expected integers {(rows, cols)} "
                "(the landscape's grid)"
            )
        if np.any((arrival >= 0) & ~burnable):
            raise ValueError(f"member file {f} burned unburnable cells: it was not run on this landscape")
        sidecar = f.with_suffix(".json")
        info: dict[str, Any] = {}
        if sidecar.is_file():
            info = json.loads(sidecar.read_text(encoding="utf-8"))
            if isinstance(info.get("minutes_per_step"), (int, float)):
                minutes.add(float(info["minutes_per_step"]))
        member = _member_number(f, info)
        if member in members:
            raise ValueError(f"member {member} is given twice ({f})")
        members.append(member)
        infos.append(info)
        arrivals.append(arrival.astype(np.int64))
    if len(minutes) > 1:
        raise ValueError(f"the members ran with different minutes_per_step: {sorted(minutes)}")

    stack = np.stack(arrivals)  # (members, rows, cols)
    burned = stack >= 0
    probability = burned.mean(axis=0)
    steps = np.where(burned, stack, np.nan).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells (never burned) give NaN, as meant
        mean = np.nanmean(steps, axis=0)
        p10, p50, p90 = np.nanpercentile(steps, [10, 50, 90], axis=0)
    cell_ha = landscape.cell_size_m**2 / 10000.0
    return Result(
        members=members,
        probability=probability.astype(np.float64),
        arrival_mean_steps=mean,
        arrival_p10_steps=p10,
        arrival_p50_steps=p50,
        arrival_p90_steps=p90,
        burned_area_ha=burned.reshape(len(files), -1).sum(axis=1).astype(np.float64) * cell_ha,
        cell_size_m=float(landscape.cell_size_m),
        region={k: float(v) for k, v in landscape.region.items()},
        minutes_per_step=minutes.pop() if minutes else None,
        member_info=infos,
    )


# ---------------------------------------------------------------------------------------------------
# geography


def _deg_per_cell(region: dict[str, float], cell_size_m: float) -> tuple[float, float]:
    mid_lat = math.radians((region["min_lat"] + region["max_lat"]) / 2.0)
    return (
        math.degrees(cell_size_m / (EARTH_RADIUS_M * math.cos(mid_lat))),
        math.degrees(cell_size_m / EARTH_RADIUS_M),
    )


def _lonlat(
    result: Result, rows: npt.ArrayLike, cols: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Longitude/latitude of (fractional) cell-centre coordinates; row 0 is the northern edge."""
    d_lon, d_lat = _deg_per_cell(result.region, result.cell_size_m)
    lon = result.region["min_lon"] + (np.asarray(cols, dtype=np.float64) + 0.5) * d_lon
    lat = result.region["max_lat"] - (np.asarray(rows, dtype=np.float64) + 0.5) * d_lat
    return lon, lat


# ---------------------------------------------------------------------------------------------------
# the map


def _lat(v: float) -> str:
    return f"{abs(v):.3f}\u00b0{'N' if v >= 0 else 'S'}"


def _lon(v: float) -> str:
    return f"{abs(v):.3f}\u00b0{'E' if v >= 0 else 'W'}"


def _circular_mean_deg(values: Sequence[float]) -> float:
    r = np.radians(np.asarray(values, dtype=np.float64))
    return float(np.degrees(np.arctan2(np.sin(r).mean(), np.cos(r).mean())) % 360.0)


def _nice_length_km(width_km: float) -> float:
    """A round scale-bar length near a fifth of the map width."""
    target = width_km / 5.0
    exponent = math.floor(math.log10(target))
    for m in (5.0, 2.0, 1.0):
        if m * 10**exponent <= target:
            return m * 10**exponent
    return 10**exponent


def render_png(
    result: Result,
    landscape: LandscapeLike,
    ignition: Sequence[int],
    path: str | Path,
    title: str,
) -> Path:
    """Draw the burn-probability map: hill-shaded terrain, water and unburnable cells, the probability
    (0-100 %) with its colour bar and 10/50/90 % contours, the ignition point, a km scale bar, a north
    arrow, axes in km, and the expected burned area. Returns the path of the PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LightSource, ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import PercentFormatter
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    rows, cols = result.shape
    cell_km = result.cell_size_m / 1000.0
    width_km, height_km = cols * cell_km, rows * cell_km
    extent = (0.0, width_km, 0.0, height_km)  # row 0 (north) at the top

    fig = Figure(figsize=(9.0, 7.8), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    elevation = np.asarray(landscape.elevation, dtype=np.float64)
    shade = LightSource(azdeg=315, altdeg=45).hillshade(
        elevation, vert_exag=2.0, dx=result.cell_size_m, dy=result.cell_size_m
    )
    ax.imshow(
        shade, cmap="Greys_r", vmin=-0.3, vmax=1.3, extent=extent, origin="upper", interpolation="nearest"
    )
    water = np.asarray(landscape.water, dtype=bool)
    rock = (np.asarray(landscape.fuel) == 0) & ~water
    ax.imshow(
        np.ma.masked_where(~rock, np.ones(rock.shape)),
        cmap=ListedColormap(["#6e6e6e"]),
        extent=extent,
        origin="upper",
        interpolation="nearest",
        alpha=0.85,
    )
    ax.imshow(
        np.ma.masked_where(~water, np.ones(water.shape)),
        cmap=ListedColormap(["#4a90d9"]),
        extent=extent,
        origin="upper",
        interpolation="nearest",
    )
    probability = np.ma.masked_where(result.probability <= 0, result.probability)
    image = ax.imshow(
        probability, cmap="YlOrRd", vmin=0.0, vmax=1.0, extent=extent, origin="upper", interpolation="nearest"
    )
    if np.any(result.probability > 0):
        x = (np.arange(cols) + 0.5) * cell_km
        y = height_km - (np.arange(rows) + 0.5) * cell_km
        levels = [lv for lv in CONTOUR_LEVELS if result.probability.max() >= lv]
        if levels:
            cs = ax.contour(
                x,
                y,
                result.probability,
                levels=levels,
                colors="black",
                linewidths=[0.6, 1.0, 1.4][: len(levels)],
            )
            ax.clabel(cs, fmt=lambda v: f"{v * 100:.0f} %", fontsize=7)
    colorbar = fig.colorbar(image, ax=ax, shrink=0.85, pad=0.02)
    colorbar.set_label("burn probability (share of ensemble members)")
    colorbar.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))

    r0, c0 = int(ignition[0]), int(ignition[1])
    ix, iy = (c0 + 0.5) * cell_km, height_km - (r0 + 0.5) * cell_km
    ax.plot([ix], [iy], marker="*", markersize=16, color="#00e5ff", markeredgecolor="black", linestyle="none")

    bar_km = _nice_length_km(width_km)
    ax.add_artist(
        AnchoredSizeBar(
            ax.transData,
            bar_km,
            f"{bar_km:g} km",
            loc="lower right",
            pad=0.5,
            borderpad=0.6,
            sep=4,
            frameon=True,
            size_vertical=height_km / 150.0,
            color="black",
        )
    )
    ax.annotate(
        "N",
        xy=(0.05, 0.96),
        xytext=(0.05, 0.86),
        xycoords="axes fraction",
        textcoords="axes fraction",
        ha="center",
        va="center",
        fontsize=13,
        fontweight="bold",
        arrowprops={"facecolor": "black", "width": 4, "headwidth": 11, "headlength": 9},
        bbox={"boxstyle": "circle,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
    )
    stats = result.area_stats()
    text = (
        f"expected burned area {stats['mean_ha']:,.0f} ha (sd {stats['std_ha']:,.0f} ha)\n"
        f"10-90 % of members: {stats['p10_ha']:,.0f}-{stats['p90_ha']:,.0f} ha"
    )
    weather = [i["weather"] for i in result.member_info if isinstance(i.get("weather"), dict)]
    if weather:
        speeds = [float(w["wind_speed_ms"]) for w in weather]
        dirs = [float(w["wind_direction_deg"]) for w in weather]
        text += (
            f"\nwind from {_circular_mean_deg(dirs):.0f} deg at {float(np.mean(speeds)):.1f} m/s "
            f"(members {min(speeds):.1f}-{max(speeds):.1f} m/s)"
        )
    if result.minutes_per_step is not None:
        info = result.member_info[0] if result.member_info else {}
        steps = info.get("duration_steps")
        if isinstance(steps, int):
            text += f"\nsimulated {steps * result.minutes_per_step / 60.0:g} h ({steps} steps)"
    ax.text(
        0.01,
        0.01,
        text,
        transform=ax.transAxes,
        fontsize=8,
        va="bottom",
        ha="left",
        bbox={"boxstyle": "round,pad=0.4", "fc": "white", "ec": "0.5", "alpha": 0.9},
    )
    ax.legend(
        handles=[
            Line2D(
                [],
                [],
                marker="*",
                markersize=12,
                color="#00e5ff",
                markeredgecolor="black",
                linestyle="none",
                label="ignition",
            ),
            Patch(facecolor="#4a90d9", label="water"),
            Patch(facecolor="#6e6e6e", label="unburnable (rock)"),
            Line2D([], [], color="black", linewidth=1.0, label="10 / 50 / 90 % contours"),
        ],
        loc="upper right",
        fontsize=8,
        framealpha=0.9,
    )
    ax.set_xlabel("km east of the western edge")
    ax.set_ylabel("km north of the southern edge")
    ax.set_xlim(0, width_km)
    ax.set_ylim(0, height_km)
    ax.set_aspect("equal")
    region = result.region
    where = ""
    if region.get("max_lat", 0.0) > region.get("min_lat", 0.0):
        where = (
            f"  |  {_lat(region['min_lat'])}..{_lat(region['max_lat'])}, "
            f"{_lon(region['min_lon'])}..{_lon(region['max_lon'])}"
        )
    ax.set_title(f"{title}\nburn probability, {result.n_members} ensemble members{where}", fontsize=11)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, format="png")
    return p


# ---------------------------------------------------------------------------------------------------
# the data


def _contours_geojson(result: Result) -> dict[str, Any]:
    from contourpy import LineType, contour_generator

    features: list[dict[str, Any]] = []
    rows, cols = result.shape
    if rows >= 2 and cols >= 2:
        gen = contour_generator(
            x=np.arange(cols, dtype=np.float64),
            y=np.arange(rows, dtype=np.float64),
            z=result.probability,
            line_type=LineType.Separate,
        )
        for level in CONTOUR_LEVELS:
            lines = []
            for line in gen.lines(level):
                xy = np.asarray(line, dtype=np.float64)
                lon, lat = _lonlat(result, xy[:, 1], xy[:, 0])
                lines.append(
                    [[round(float(a), 6), round(float(b), 6)] for a, b in zip(lon, lat, strict=True)]
                )
            if lines:
                features.append(
                    {
                        "type": "Feature",
                        "properties": {"probability": level, "label": f"{level * 100:.0f} %"},
                        "geometry": {"type": "MultiLineString", "coordinates": lines},
                    }
                )
    return {"type": "FeatureCollection", "features": features}


def save_data(result: Result, path: str | Path) -> list[Path]:
    """Write the result as data: PATH (.npz: arrays + a 'meta' JSON describing them), PATH.csv (one row per
    cell with p > 0) and PATH.geojson (10/50/90 % probability contours, lon/lat). Returns the paths."""
    p = Path(path)
    if p.suffix != ".npz":
        p = p.with_suffix(".npz")
    p.parent.mkdir(parents=True, exist_ok=True)
    d_lon, d_lat = _deg_per_cell(result.region, result.cell_size_m)
    meta = {
        "description": "wildfire ensemble burn probability (urgentflow include/wildfire)",
        "members": result.members,
        "cell_size_m": result.cell_size_m,
        "region": result.region,
        "origin_nw_lonlat": [result.region["min_lon"], result.region["max_lat"]],
        "deg_per_cell": [d_lon, d_lat],
        "grid": "row 0 = northern edge, column 0 = western edge",
        "minutes_per_step": result.minutes_per_step,
        "arrays": {
            "probability": "fraction of members that burned the cell (0..1)",
            "arrival_mean_steps": "mean arrival step over the members that burned the cell (NaN: none)",
            "arrival_p10_steps": "10th percentile of the arrival step, same members",
            "arrival_p50_steps": "median arrival step, same members",
            "arrival_p90_steps": "90th percentile of the arrival step, same members",
            "burned_area_ha": "burned area of each member (ha), in the order of 'members'",
        },
        "summary": result.summary(),
    }
    np.savez_compressed(
        p,
        probability=result.probability,
        arrival_mean_steps=result.arrival_mean_steps,
        arrival_p10_steps=result.arrival_p10_steps,
        arrival_p50_steps=result.arrival_p50_steps,
        arrival_p90_steps=result.arrival_p90_steps,
        burned_area_ha=result.burned_area_ha,
        members=np.asarray(result.members, dtype=np.int64),
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )

    csv_path = p.with_suffix(".csv")
    rr, cc = np.nonzero(result.probability > 0)
    lon, lat = _lonlat(result, rr, cc)
    cell_km = result.cell_size_m / 1000.0
    rows = result.shape[0]
    per_min = result.minutes_per_step
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        header = [
            "row",
            "col",
            "x_km",
            "y_km",
            "lon",
            "lat",
            "probability",
            "arrival_mean_steps",
            "arrival_p50_steps",
        ]
        if per_min is not None:
            header += ["arrival_mean_min", "arrival_p50_min"]
        w.writerow(header)
        for i in range(rr.size):
            r, c = int(rr[i]), int(cc[i])
            mean, p50 = float(result.arrival_mean_steps[r, c]), float(result.arrival_p50_steps[r, c])
            row: list[Any] = [
                r,
                c,
                f"{(c + 0.5) * cell_km:.4f}",
                f"{(rows - r - 0.5) * cell_km:.4f}",
                f"{lon[i]:.6f}",
                f"{lat[i]:.6f}",
                f"{result.probability[r, c]:.4f}",
                f"{mean:.2f}",
                f"{p50:.1f}",
            ]
            if per_min is not None:
                row += [f"{mean * per_min:.1f}", f"{p50 * per_min:.1f}"]
            w.writerow(row)

    geojson_path = p.with_suffix(".geojson")
    geojson_path.write_text(json.dumps(_contours_geojson(result)) + "\n", encoding="utf-8")
    return [p, csv_path, geojson_path]
