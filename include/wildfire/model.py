#!/usr/bin/env python3
"""One ensemble member of a cellular-automaton wildfire spread model (Alexandridis et al., 2008).

Runs as a batch job on an HPC host with the system python3 and numpy only (numpy 1.24 .. 2.x)::

    python3 model.py --landscape landscape.npz --scenario scenario.json --member 3 --out DIR

and writes ``DIR/member-3.npz`` (``arrival``: the step at which each cell caught fire, int16, -1 = never)
and ``DIR/member-3.json`` (the member's seed, perturbed weather, burned area, steps, runtime).

Cell states: 0 unburnable, 1 unburnt (fuel), 2 burning, 3 burnt. A burning cell burns for one step and
tries once to ignite each unburnt cell of its Moore neighbourhood with probability

    p = min(1, p_h (1 + p_veg) (1 + p_den) p_w p_s p_m) * w_d   (w_d = 1/sqrt(2) for diagonals, else 1)

    p_w   = exp(c1 V) exp(c2 V (cos(theta) - 1))     theta: spread direction vs direction the wind blows to
    p_s   = exp(a theta_s), theta_s = atan((E_target - E_source) / l) in degrees, l = cell size or
            cell size * sqrt(2) for a diagonal neighbour
    p_m   = eta_M(M_f) / eta_M(M_ref), eta_M(M) = 1 - 2.59 r + 5.11 r^2 - 3.52 r^3, r = min(1, M / M_x)
            (Rothermel 1972 moisture damping, relative to the calibration's assumed moisture M_ref)

Member N draws all of its randomness (weather perturbation, then spread) from
``numpy.random.default_rng([base_seed, N])``; member 0 is the control run with the unperturbed weather.
See README.md next to this file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

MODEL_NAME = "alexandridis2008-ca"
MODEL_VERSION = "1.0"

# Alexandridis et al. (2008), calibrated on the 1990 Spetses island fire.
P_H = 0.58  # ignition probability of a neighbour in the reference case (no wind, flat, thickets, normal density)
C1 = 0.045  # wind coefficient (s/m)
C2 = 0.131  # wind direction coefficient (s/m)
A_SLOPE = 0.078  # slope coefficient (1/degree)
# vegetation type -> p_veg (fuel code 0 is unburnable)
P_VEG = {1: -0.3, 2: 0.0, 3: 0.4}  # 1 agricultural/grass, 2 shrubs/thickets, 3 pine forest
# vegetation density class -> p_den
P_DEN = {0: -0.4, 1: 0.0, 2: 0.3}  # 0 sparse, 1 normal, 2 dense
# Fuel moisture (not in Alexandridis et al.): Rothermel's (1972) moisture damping coefficient eta_M,
# relative to the dead fuel moisture assumed for the calibration fire (Spetses, August 1990), so p_h keeps
# its calibrated meaning at M_REF; fractions of dry weight.
MOISTURE_OF_EXTINCTION = 0.30  # M_x, typical of Rothermel's / Anderson's (1982) fuel models
MOISTURE_REFERENCE = 0.05  # M_ref, assumed
# Diagonal neighbours are sqrt(2) cells away but reached in the same step: without a correction the Moore
# neighbourhood grows square fires (Caballero 2006). Their probability is weighted by 1/sqrt(2) (as in
# the CA of Wildfires.jl); scenario 'diagonal_weight': 1 gives Alexandridis et al.'s original rule.
DIAGONAL_WEIGHT = 1.0 / math.sqrt(2.0)

UNBURNABLE, UNBURNT, BURNING, BURNT = 0, 1, 2, 3
# Moore neighbourhood: (d_row, d_col) from a burning cell to the cell it may ignite; row 0 is north.
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
MAX_STEPS = 32767  # arrival steps are stored as int16
MAX_BURNING_CELLS = 1_000_000  # cells of an observed perimeter given as burning at the start
MAX_WIND_MS = 60.0
LANDSCAPE_ARRAYS = ("elevation", "fuel", "density", "cell_size_m")
PERTURBATION_KEYS = ("wind_speed_sd_ms", "wind_direction_sd_deg", "fuel_moisture_sd")

Array = Any  # numpy arrays; numpy.typing differs between numpy 1.24 and 2.x, keep the script plain


class InputError(Exception):
    """Bad input: reported as one line on stderr, exit status 2."""


# ---------------------------------------------------------------------------------------------------
# the physics


def moisture_damping(fuel_moisture: float, moisture_of_extinction: float = MOISTURE_OF_EXTINCTION) -> float:
    """Rothermel's (1972) moisture damping coefficient eta_M in [0, 1]; 0 at or above extinction."""
    r = min(1.0, max(0.0, fuel_moisture / moisture_of_extinction))
    return max(0.0, 1.0 - 2.59 * r + 5.11 * r**2 - 3.52 * r**3)


def moisture_factor(fuel_moisture: float, moisture_of_extinction: float = MOISTURE_OF_EXTINCTION) -> float:
    """p_m = eta_M(M_f) / eta_M(M_ref): 1 at the reference moisture, above 1 for drier fuel, 0 at extinction."""
    reference = moisture_damping(
        min(MOISTURE_REFERENCE, 0.5 * moisture_of_extinction), moisture_of_extinction
    )
    return moisture_damping(fuel_moisture, moisture_of_extinction) / reference


def wind_factor(wind_speed_ms: float, wind_from_deg: float, d_row: int, d_col: int) -> float:
    """p_w for spreading by (d_row, d_col) (row 0 north, columns to the east) in a wind blowing FROM
    wind_from_deg (meteorological: 0 = from the north, 90 = from the east)."""
    to = math.radians(wind_from_deg + 180.0)
    wind_east, wind_north = math.sin(to), math.cos(to)
    east, north = float(d_col), float(-d_row)
    cos_theta = (east * wind_east + north * wind_north) / math.hypot(east, north)
    return math.exp(C1 * wind_speed_ms) * math.exp(C2 * wind_speed_ms * (cos_theta - 1.0))


def base_probability(
    fuel: Array, density: Array, fuel_moisture: float, moisture_of_extinction: float
) -> Array:
    """p_h (1 + p_veg)(1 + p_den) p_m per cell (0 on unburnable cells)."""
    veg = np.zeros(fuel.shape, dtype=np.float64)
    for code, value in P_VEG.items():
        veg[fuel == code] = 1.0 + value
    den = np.zeros(fuel.shape, dtype=np.float64)
    for code, value in P_DEN.items():
        den[density == code] = 1.0 + value
    return P_H * veg * den * moisture_factor(fuel_moisture, moisture_of_extinction)


def spread_probabilities(
    elevation: Array,
    fuel: Array,
    density: Array,
    cell_size_m: float,
    wind_speed_ms: float,
    wind_from_deg: float,
    fuel_moisture: float,
    moisture_of_extinction: float = MOISTURE_OF_EXTINCTION,
    diagonal_weight: float = DIAGONAL_WEIGHT,
) -> Array:
    """Array (8, rows, cols): probability that cell (r, c) is ignited by a burning neighbour at
    (r - d_row, c - d_col), for each (d_row, d_col) of NEIGHBOURS. Weather is constant during a run, so
    this is computed once per member."""
    rows, cols = fuel.shape
    base = base_probability(fuel, density, fuel_moisture, moisture_of_extinction)
    elev = np.asarray(elevation, dtype=np.float64)
    padded = np.pad(elev, 1, mode="edge")
    out = np.empty((len(NEIGHBOURS), rows, cols), dtype=np.float64)
    for k, (dr, dc) in enumerate(NEIGHBOURS):
        source = padded[1 - dr : 1 - dr + rows, 1 - dc : 1 - dc + cols]
        distance = cell_size_m * math.hypot(dr, dc)
        slope_deg = np.degrees(np.arctan((elev - source) / distance))
        p = base * wind_factor(wind_speed_ms, wind_from_deg, dr, dc) * np.exp(A_SLOPE * slope_deg)
        out[k] = np.clip(p, 0.0, 1.0) * (diagonal_weight if dr and dc else 1.0)
    return out


def simulate(
    probabilities: Array,
    burnable: Array,
    ignition: tuple[int, int],
    steps: int,
    rng: np.random.Generator,
    burning: Sequence[tuple[int, int]] = (),
) -> tuple[Array, int]:
    """Run the automaton for at most `steps` steps from one ignited cell (plus the cells `burning`,
    e.g. inside an observed fire perimeter; unburnable ones among them are left alone).

    Returns (arrival, steps_run): arrival[r, c] is the step at which the cell caught fire (0 for the
    ignition and the burning cells, -1 if it never burned); steps_run is the number of steps simulated
    (the run stops early when nothing burns any more). Only the window around the burning cells is
    updated each step."""
    rows, cols = burnable.shape
    state = np.where(burnable, UNBURNT, UNBURNABLE).astype(np.int8)
    arrival = np.full((rows, cols), -1, dtype=np.int16)
    for r0, c0 in [ignition, *burning]:
        if burnable[r0, c0]:
            state[r0, c0] = BURNING
            arrival[r0, c0] = 0
    steps_run = 0
    for step in range(1, steps + 1):
        burning_rows, burning_cols = np.nonzero(state == BURNING)
        if burning_rows.size == 0:
            break
        steps_run = step
        # window: the burning cells plus one cell all round, clipped to the grid
        top, bottom = max(int(burning_rows.min()) - 1, 0), min(int(burning_rows.max()) + 2, rows)
        left, right = max(int(burning_cols.min()) - 1, 0), min(int(burning_cols.max()) + 2, cols)
        height, width = bottom - top, right - left
        window_state = state[top:bottom, left:right]
        burning = np.zeros(
            (height + 2, width + 2), dtype=bool
        )  # padded by one: fire never enters from outside
        burning[1:-1, 1:-1] = window_state == BURNING
        no_ignition = np.ones((height, width), dtype=np.float64)
        for k, (dr, dc) in enumerate(NEIGHBOURS):
            source_burning = burning[1 - dr : 1 - dr + height, 1 - dc : 1 - dc + width]
            p = probabilities[k, top:bottom, left:right]
            no_ignition *= np.where(source_burning, 1.0 - p, 1.0)
        candidates = (window_state == UNBURNT) & (no_ignition < 1.0)
        index = np.flatnonzero(candidates)
        draws = rng.random(index.size)
        ignite_flat = index[draws < 1.0 - no_ignition.ravel()[index]]
        ignite = np.zeros(height * width, dtype=bool)
        ignite[ignite_flat] = True
        ignite = ignite.reshape(height, width)
        window_state[window_state == BURNING] = BURNT
        window_state[ignite] = BURNING
        arrival[top:bottom, left:right][ignite] = step
    return arrival, steps_run


# ---------------------------------------------------------------------------------------------------
# inputs


def _number(scenario: dict[str, Any], key: str, where: str = "scenario") -> float:
    if key not in scenario:
        raise InputError(f"{where} lacks '{key}'")
    value = scenario[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where} '{key}' must be a finite number (got {value!r})")
    return float(value)


def _integer(scenario: dict[str, Any], key: str) -> int:
    if key not in scenario:
        raise InputError(f"scenario lacks '{key}'")
    value = scenario[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"scenario '{key}' must be an integer (got {value!r})")
    return value


def load_landscape(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a landscape .npz (elevation m, fuel code 0..3, density class 0..2, cell_size_m)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"landscape file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as npz:
            missing = [name for name in LANDSCAPE_ARRAYS if name not in npz.files]
            if missing:
                raise InputError(
                    "landscape {} lacks array(s) {} (has: {})".format(
                        p, ", ".join(missing), ", ".join(npz.files)
                    )
                )
            arrays = {name: npz[name] for name in LANDSCAPE_ARRAYS}
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"landscape {p} is not a readable .npz file: {e}") from None
    elevation, fuel, density = arrays["elevation"], arrays["fuel"], arrays["density"]
    if elevation.ndim != 2 or min(elevation.shape) < 3:
        raise InputError(f"landscape {p}: elevation must be a 2-D grid of at least 3x3 cells")
    for name in ("fuel", "density"):
        if arrays[name].shape != elevation.shape:
            raise InputError(
                f"landscape {p}: {name} has shape {arrays[name].shape}, elevation {elevation.shape}"
            )
        if not np.issubdtype(arrays[name].dtype, np.integer):
            raise InputError(f"landscape {p}: {name} must hold integer codes (got {arrays[name].dtype})")
    if not np.issubdtype(elevation.dtype, np.number) or not np.all(np.isfinite(elevation)):
        raise InputError(f"landscape {p}: elevation must be finite numbers (metres)")
    if fuel.min() < 0 or fuel.max() > max(P_VEG):
        raise InputError(f"landscape {p}: fuel codes must be 0..{max(P_VEG)}")
    if density.min() < 0 or density.max() > max(P_DEN):
        raise InputError(f"landscape {p}: density classes must be 0..{max(P_DEN)}")
    cell = arrays["cell_size_m"]
    if (
        cell.size != 1
        or not np.issubdtype(cell.dtype, np.number)
        or not (0 < float(cell.reshape(-1)[0]) < 1e5)
    ):
        raise InputError(f"landscape {p}: cell_size_m must be one positive number of metres")
    return {
        "elevation": elevation,
        "fuel": fuel,
        "density": density,
        "cell_size_m": float(cell.reshape(-1)[0]),
    }


def load_scenario(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check scenario.json; returns a normalised dict (ignition as a (row, col) tuple)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"scenario file not found: {p}")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read scenario {p}: {e}") from None
    except json.JSONDecodeError as e:
        raise InputError(f"scenario {p} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise InputError(f"scenario {p} must hold a JSON object")
    ignition = raw.get("ignition")
    if isinstance(ignition, dict) and set(ignition) >= {"row", "col"}:
        ignition = [ignition["row"], ignition["col"]]
    if (
        not isinstance(ignition, (list, tuple))
        or len(ignition) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) for v in ignition)
    ):
        raise InputError('scenario \'ignition\' must be [row, col] or {"row": r, "col": c} with integers')
    s: dict[str, Any] = {"ignition": (int(ignition[0]), int(ignition[1]))}
    s["wind_speed_ms"] = _number(raw, "wind_speed_ms")
    if not 0.0 <= s["wind_speed_ms"] <= MAX_WIND_MS:
        raise InputError(
            "scenario 'wind_speed_ms' must be 0..{:g} m/s (got {:g})".format(MAX_WIND_MS, s["wind_speed_ms"])
        )
    s["wind_direction_deg"] = _number(raw, "wind_direction_deg")
    if not 0.0 <= s["wind_direction_deg"] <= 360.0:
        raise InputError(
            "scenario 'wind_direction_deg' (direction the wind blows from) must be 0..360 (got {:g})".format(
                s["wind_direction_deg"]
            )
        )
    s["fuel_moisture"] = _number(raw, "fuel_moisture")
    if not 0.0 <= s["fuel_moisture"] <= 1.0:
        raise InputError(
            "scenario 'fuel_moisture' must be a fraction 0..1 (got {:g})".format(s["fuel_moisture"])
        )
    s["duration_steps"] = _integer(raw, "duration_steps")
    if not 1 <= s["duration_steps"] <= MAX_STEPS:
        raise InputError(f"scenario 'duration_steps' must be 1..{MAX_STEPS} (got {s['duration_steps']})")
    s["minutes_per_step"] = _number(raw, "minutes_per_step")
    if s["minutes_per_step"] <= 0:
        raise InputError("scenario 'minutes_per_step' must be > 0 (got {:g})".format(s["minutes_per_step"]))
    s["base_seed"] = _integer(raw, "base_seed")
    if s["base_seed"] < 0:
        raise InputError(f"scenario 'base_seed' must be >= 0 (got {s['base_seed']})")
    s["moisture_of_extinction"] = MOISTURE_OF_EXTINCTION
    if "moisture_of_extinction" in raw:
        s["moisture_of_extinction"] = _number(raw, "moisture_of_extinction")
        if not 0.0 < s["moisture_of_extinction"] <= 1.0:
            raise InputError("scenario 'moisture_of_extinction' must be in (0, 1]")
    s["diagonal_weight"] = DIAGONAL_WEIGHT
    if "diagonal_weight" in raw:
        s["diagonal_weight"] = _number(raw, "diagonal_weight")
        if not 0.0 <= s["diagonal_weight"] <= 1.0:
            raise InputError("scenario 'diagonal_weight' must be 0..1")
    perturbation = raw.get("perturbation", {})
    if not isinstance(perturbation, dict):
        raise InputError(
            "scenario 'perturbation' must be an object with {}".format(", ".join(PERTURBATION_KEYS))
        )
    unknown = sorted(set(perturbation) - set(PERTURBATION_KEYS))
    if unknown:
        raise InputError(
            "scenario 'perturbation' has unknown key(s) {} (known: {})".format(
                ", ".join(unknown), ", ".join(PERTURBATION_KEYS)
            )
        )
    s["perturbation"] = {}
    for key in PERTURBATION_KEYS:
        value = _number(perturbation, key, "scenario 'perturbation'") if key in perturbation else 0.0
        if value < 0:
            raise InputError(f"scenario 'perturbation' '{key}' must be >= 0 (got {value:g})")
        s["perturbation"][key] = value
    s["incident"] = str(raw.get("incident", ""))
    s["burning"] = _cells(raw.get("burning", []))
    return s


def _cells(raw: Any) -> list[tuple[int, int]]:
    """The optional 'burning' list: [[row, col], ...] cells already burning at the start."""
    if not isinstance(raw, list) or len(raw) > MAX_BURNING_CELLS:
        raise InputError(f"scenario 'burning' must be a list of at most {MAX_BURNING_CELLS} [row, col] pairs")
    for cell in raw:
        if (
            not isinstance(cell, list)
            or len(cell) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in cell)
        ):
            raise InputError(f"scenario 'burning' entries must be [row, col] integer pairs (got {cell!r})")
    return [(int(r), int(c)) for r, c in raw]


def check_ignition(ignition: tuple[int, int], fuel: Array, burning: Sequence[tuple[int, int]] = ()) -> None:
    rows, cols = fuel.shape
    for what, (r, c) in [("ignition", ignition)] + [("burning cell", cell) for cell in burning]:
        if not (0 <= r < rows and 0 <= c < cols):
            raise InputError(
                f"{what} (row {r}, col {c}) is outside the {rows}x{cols} grid"
                f" (rows 0..{rows - 1}, cols 0..{cols - 1})"
            )
    r, c = ignition
    if fuel[r, c] == 0:
        raise InputError(f"ignition (row {r}, col {c}) is on an unburnable cell (fuel code 0)")


def member_weather(scenario: dict[str, Any], member: int, rng: np.random.Generator) -> dict[str, float]:
    """The weather of a member: member 0 the scenario's own, others Gaussian perturbations of it
    (standard deviations from scenario['perturbation']). Always draws three normals, so the spread that
    follows uses the same stream position in every member."""
    z = rng.standard_normal(3)
    pert = scenario["perturbation"]
    speed, direction, moisture = (
        scenario["wind_speed_ms"],
        scenario["wind_direction_deg"],
        scenario["fuel_moisture"],
    )
    if member > 0:
        speed = min(MAX_WIND_MS, max(0.0, speed + pert["wind_speed_sd_ms"] * float(z[0])))
        direction = (direction + pert["wind_direction_sd_deg"] * float(z[1])) % 360.0
        moisture = min(1.0, max(0.0, moisture + pert["fuel_moisture_sd"] * float(z[2])))
    return {"wind_speed_ms": speed, "wind_direction_deg": direction, "fuel_moisture": moisture}


# ---------------------------------------------------------------------------------------------------
# one member


def run_member(
    landscape_path: str | os.PathLike[str],
    scenario_path: str | os.PathLike[str],
    member: int,
    out_dir: str | os.PathLike[str],
) -> dict[str, Any]:
    """Run member `member` and write DIR/member-N.npz and DIR/member-N.json; returns the summary."""
    started = time.perf_counter()
    if member < 0:
        raise InputError(f"--member must be >= 0 (got {member})")
    land = load_landscape(landscape_path)
    scenario = load_scenario(scenario_path)
    check_ignition(scenario["ignition"], land["fuel"], scenario["burning"])
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")

    seed = [scenario["base_seed"], member]
    rng = np.random.default_rng(seed)
    weather = member_weather(scenario, member, rng)
    probabilities = spread_probabilities(
        land["elevation"],
        land["fuel"],
        land["density"],
        land["cell_size_m"],
        weather["wind_speed_ms"],
        weather["wind_direction_deg"],
        weather["fuel_moisture"],
        scenario["moisture_of_extinction"],
        scenario["diagonal_weight"],
    )
    arrival, steps_run = simulate(
        probabilities,
        land["fuel"] > 0,
        scenario["ignition"],
        scenario["duration_steps"],
        rng,
        scenario["burning"],
    )
    burned = int(np.count_nonzero(arrival >= 0))
    summary: dict[str, Any] = {
        "member": member,
        "seed": seed,
        "seed_note": "numpy.random.default_rng([base_seed, member])",
        "incident": scenario["incident"],
        "weather": weather,
        "ignition": list(scenario["ignition"]),
        "grid": list(arrival.shape),
        "cell_size_m": land["cell_size_m"],
        "burned_cells": burned,
        "burned_area_ha": burned * land["cell_size_m"] ** 2 / 10000.0,
        "duration_steps": scenario["duration_steps"],
        "steps_run": steps_run,
        "minutes_per_step": scenario["minutes_per_step"],
        "runtime_s": 0.0,
        "model": {
            "name": MODEL_NAME,
            "version": MODEL_VERSION,
            "p_h": P_H,
            "c1": C1,
            "c2": C2,
            "a": A_SLOPE,
            "moisture_of_extinction": scenario["moisture_of_extinction"],
            "moisture_reference": MOISTURE_REFERENCE,
            "diagonal_weight": scenario["diagonal_weight"],
            "moisture_factor": moisture_factor(weather["fuel_moisture"], scenario["moisture_of_extinction"]),
        },
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        npz_path, json_path = out / f"member-{member}.npz", out / f"member-{member}.json"
        tmp = out / f".member-{member}.npz.tmp"
        with open(tmp, "wb") as f:
            np.savez_compressed(f, arrival=arrival)
        os.replace(tmp, npz_path)
        summary["runtime_s"] = round(time.perf_counter() - started, 4)
        tmp = out / f".member-{member}.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, json_path)
    except OSError as e:
        raise OSError(f"cannot write the outputs to {out}: {e}") from None
    return summary


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="model.py", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--landscape", required=True, help="landscape .npz (elevation, fuel, density, cell_size_m)"
    )
    parser.add_argument("--scenario", required=True, help="scenario .json (ignition, weather, steps, seed)")
    parser.add_argument(
        "--member", required=True, type=int, help="ensemble member number (>= 0; 0 = control)"
    )
    parser.add_argument("--out", required=True, help="output directory (created if missing)")
    args = parser.parse_args(argv)
    try:
        summary = run_member(args.landscape, args.scenario, args.member, args.out)
    except InputError as e:
        sys.stderr.write(f"model.py: error: {e}\n")
        return 2
    except OSError as e:
        sys.stderr.write(f"model.py: error: {e}\n")
        return 1
    print(
        f"member {summary['member']}: {summary['burned_cells']} cells burned"
        f" ({summary['burned_area_ha']:.1f} ha) in {summary['steps_run']} steps, {summary['runtime_s']:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
