"""include/wildfire/model.py: the physics of the automaton, member reproducibility, the CLI and its errors.

The physics tests run the automaton in-process on hand-made grids (50 m cells); the CLI tests run the
script as the batch jobs do, with both the venv python (numpy 2.x) and the system python3 (numpy 1.24)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wildfire_model as model

MODEL_SCRIPT = Path(__file__).resolve().parents[3] / "include" / "wildfire" / "model.py"

CELL = 50.0
N = 201
C = N // 2


def run(
    *,
    wind: float = 0.0,
    wind_from: float = 0.0,
    moisture: float = 0.05,
    elevation: np.ndarray | None = None,
    fuel: np.ndarray | None = None,
    steps: int = 50,
    seed: int = 0,
    ignition: tuple[int, int] = (C, C),
) -> np.ndarray:
    """Arrival grid of one run on an N x N grid of shrubs of normal density (p = p_h = 0.58 flat, calm)."""
    f = np.full((N, N), 2, dtype=np.uint8) if fuel is None else fuel
    d = np.ones((N, N), dtype=np.uint8)
    e = np.zeros((N, N)) if elevation is None else elevation
    p = model.spread_probabilities(e, f, d, CELL, wind, wind_from, moisture)
    arrival, _ = model.simulate(p, f > 0, ignition, steps, np.random.default_rng([seed, 1]))
    return arrival


def reach(arrival: np.ndarray, centre: tuple[int, int] = (C, C)) -> dict[str, int]:
    """How far (cells) the burned area extends from the ignition north, south, west and east."""
    rows, cols = np.nonzero(arrival >= 0)
    r, c = centre
    return {
        "N": r - int(rows.min()),
        "S": int(rows.max()) - r,
        "W": c - int(cols.min()),
        "E": int(cols.max()) - c,
    }


# ---------------------------------------------------------------------------------------------------
# physics


def test_reference_probability_is_p_h():
    # calm, flat, shrubs of normal density at the reference moisture: p = p_h (axial), p_h / sqrt(2) diagonal
    p = model.spread_probabilities(
        np.zeros((5, 5)), np.full((5, 5), 2, np.uint8), np.ones((5, 5), np.uint8), CELL, 0.0, 0.0, 0.05
    )
    axial = [k for k, (dr, dc) in enumerate(model.NEIGHBOURS) if not (dr and dc)]
    diagonal = [k for k, (dr, dc) in enumerate(model.NEIGHBOURS) if dr and dc]
    assert np.allclose(p[axial], 0.58)
    assert np.allclose(p[diagonal], 0.58 / math.sqrt(2))


def test_wind_factor_follows_the_meteorological_convention():
    # wind FROM the west (270) blows east: spreading east (d_col +1) is favoured, west is damped
    east = model.wind_factor(10.0, 270.0, 0, 1)
    west = model.wind_factor(10.0, 270.0, 0, -1)
    north = model.wind_factor(10.0, 270.0, -1, 0)
    assert east == pytest.approx(math.exp(0.045 * 10))
    assert west == pytest.approx(math.exp(0.045 * 10) * math.exp(0.131 * 10 * -2))
    assert north == pytest.approx(math.exp(0.045 * 10) * math.exp(0.131 * 10 * -1))
    # wind from the north blows south (d_row +1)
    assert model.wind_factor(10.0, 0.0, 1, 0) == pytest.approx(math.exp(0.45))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spreads_further_downwind_than_upwind(seed):
    arrival = run(wind=10.0, wind_from=270.0, steps=40, seed=seed)  # from the west: blows east
    r = reach(arrival)
    assert r["E"] > 2 * max(r["W"], 1), r
    assert r["E"] >= 30, r  # downwind p = 0.58 * e^0.45 = 0.91: nearly a cell a step


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spreads_faster_uphill(seed):
    # a uniform 10 degree slope rising to the north (row 0), no wind: p_s = e^(0.078 * 10) = 2.2 up the
    # slope, 0.46 down it. (A wide front still creeps downhill: many burning cells try each cell.)
    rise = CELL * math.tan(math.radians(10.0))
    elevation = (N - 1 - np.arange(N, dtype=np.float64))[:, None] * rise * np.ones((1, N))
    arrival = run(elevation=elevation, steps=40, seed=seed, moisture=0.10)
    r = reach(arrival)
    assert r["N"] == 40, r  # a cell a step uphill
    assert r["N"] >= r["S"] + 8, r
    # cells 20 rows up the slope burn earlier than cells 20 rows down it
    up = arrival[C - 20, C - 5 : C + 6].astype(float)
    down = arrival[C + 20, C - 5 : C + 6].astype(float)
    down[down < 0] = np.inf
    assert np.all(up >= 0)
    assert np.median(up) + 5 < np.median(down)


def test_does_not_cross_an_unburnable_line_three_cells_wide():
    fuel = np.full((N, N), 3, dtype=np.uint8)  # dense-ish forest, strong wind towards the break
    fuel[:, 130:133] = 0
    for seed in range(3):
        arrival = run(wind=10.0, wind_from=270.0, fuel=fuel, steps=150, seed=seed)
        assert np.any(arrival[:, 129] >= 0), "the fire should reach the break"
        assert not np.any(arrival[:, 133:] >= 0), "the fire crossed the break"


def test_calm_flat_uniform_fire_is_roughly_isotropic():
    for seed in range(3):
        arrival = run(steps=60, seed=seed)
        burned = arrival >= 0
        r = reach(arrival)
        assert max(r.values()) <= 1.15 * min(r.values()), r
        # boundary cells: median distance from the ignition along the diagonals vs along the axes
        inner = burned.copy()
        inner[1:-1, 1:-1] = (
            burned[1:-1, 1:-1] & burned[:-2, 1:-1] & burned[2:, 1:-1] & burned[1:-1, :-2] & burned[1:-1, 2:]
        )
        rows, cols = np.nonzero(burned & ~inner)
        x, y = cols - C, C - rows
        angle = np.degrees(np.arctan2(y, x)) % 90.0
        radius = np.hypot(x, y)
        axial = np.median(radius[(angle < 15) | (angle > 75)])
        diagonal = np.median(radius[(angle > 30) & (angle < 60)])
        assert 0.9 < diagonal / axial < 1.12, (diagonal, axial)
        # second moments: no preferred direction
        rr, cc = np.nonzero(burned)
        eig = np.linalg.eigvalsh(np.cov(np.vstack([rr, cc]).astype(float)))
        assert eig.max() / eig.min() < 1.15


def test_no_spread_at_the_moisture_of_extinction():
    arrival = run(moisture=model.MOISTURE_OF_EXTINCTION, steps=20)
    assert np.count_nonzero(arrival >= 0) == 1
    assert model.moisture_factor(0.05) == pytest.approx(1.0)
    assert model.moisture_factor(0.02) > 1.0 > model.moisture_factor(0.15) > 0.0


def test_fire_stays_on_the_grid_and_arrival_is_consistent():
    arrival = run(wind=10.0, wind_from=270.0, steps=120, ignition=(C, N - 3))
    assert arrival.dtype == np.int16
    assert arrival[C, N - 3] == 0
    burned = arrival >= 0
    # every burned cell other than the ignition has a neighbour that caught fire exactly one step before
    for r, c in zip(*np.nonzero(burned), strict=True):
        if arrival[r, c] == 0:
            continue
        window = arrival[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2]
        assert np.any(window == arrival[r, c] - 1)


# ---------------------------------------------------------------------------------------------------
# the script: inputs, outputs, reproducibility


def write_landscape(
    path: Path, n: int = 40, fuel_code: int = 2, unburnable: list[tuple[int, int]] | None = None
) -> Path:
    fuel = np.full((n, n), fuel_code, dtype=np.uint8)
    for r, c in unburnable or []:
        fuel[r, c] = 0
    np.savez(
        path,
        elevation=np.zeros((n, n), dtype=np.float32),
        fuel=fuel,
        density=np.ones((n, n), dtype=np.uint8),
        cell_size_m=np.array(30.0),
    )
    return path


def scenario(**overrides: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "ignition": [20, 20],
        "wind_speed_ms": 5.0,
        "wind_direction_deg": 225.0,
        "fuel_moisture": 0.06,
        "duration_steps": 30,
        "minutes_per_step": 5.0,
        "base_seed": 1234,
        "perturbation": {"wind_speed_sd_ms": 1.5, "wind_direction_sd_deg": 20.0, "fuel_moisture_sd": 0.01},
        "incident": "unit test",
    }
    s.update(overrides)
    return s


def run_cli(python: str, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, str(MODEL_SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    land = write_landscape(tmp_path / "landscape.npz", unburnable=[(0, 0)])
    sc = tmp_path / "scenario.json"
    sc.write_text(json.dumps(scenario()))
    return land, sc


def arrival_of(out: Path, member: int) -> np.ndarray:
    with np.load(out / f"member-{member}.npz") as npz:
        return npz["arrival"]


def test_cli_writes_member_outputs(python, inputs, tmp_path):
    land, sc = inputs
    out = tmp_path / "out"
    proc = run_cli(python, "--landscape", land, "--scenario", sc, "--member", "3", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("member 3:")
    arrival = arrival_of(out, 3)
    assert arrival.dtype == np.int16 and arrival.shape == (40, 40)
    assert arrival[20, 20] == 0 and arrival.min() == -1
    info = json.loads((out / "member-3.json").read_text())
    assert info["member"] == 3
    assert info["seed"] == [1234, 3]
    assert set(info["weather"]) == {"wind_speed_ms", "wind_direction_deg", "fuel_moisture"}
    assert info["weather"]["wind_speed_ms"] != 5.0  # perturbed (member 0 is the control)
    assert info["burned_cells"] == int(np.count_nonzero(arrival >= 0))
    assert info["burned_area_ha"] == pytest.approx(info["burned_cells"] * 30.0**2 / 10000.0)
    # the run stops one step after the last ignition, or at duration_steps (30) while still burning
    assert info["steps_run"] == min(30, int(arrival.max()) + 1)
    assert info["runtime_s"] >= 0
    assert not list(out.glob(".*tmp"))


def test_member_zero_is_the_control_run(inputs, tmp_path):
    land, sc = inputs
    info = model.run_member(land, sc, 0, tmp_path / "out")
    assert info["weather"] == {"wind_speed_ms": 5.0, "wind_direction_deg": 225.0, "fuel_moisture": 0.06}


def test_same_member_is_reproducible_and_members_differ(python, inputs, tmp_path):
    land, sc = inputs
    for out in ("a", "b"):
        for member in (1, 2):
            proc = run_cli(
                python,
                "--landscape",
                land,
                "--scenario",
                sc,
                "--member",
                str(member),
                "--out",
                tmp_path / out,
            )
            assert proc.returncode == 0, proc.stderr
    assert np.array_equal(arrival_of(tmp_path / "a", 1), arrival_of(tmp_path / "b", 1))
    assert not np.array_equal(arrival_of(tmp_path / "a", 1), arrival_of(tmp_path / "a", 2))
    a = json.loads((tmp_path / "a" / "member-1.json").read_text())
    b = json.loads((tmp_path / "b" / "member-1.json").read_text())
    assert a["weather"] == b["weather"]


def test_same_member_is_identical_on_numpy_1_24_and_2(system_python, inputs, tmp_path):
    """PCG64 streams and the arithmetic agree across the HPC's numpy 1.24 and the worker's 2.x: a member
    can be re-run on either side with the same result."""
    land, sc = inputs
    for python, out in ((system_python, "hpc"), (sys.executable, "worker")):
        proc = run_cli(
            python, "--landscape", land, "--scenario", sc, "--member", "5", "--out", tmp_path / out
        )
        assert proc.returncode == 0, proc.stderr
    assert np.array_equal(arrival_of(tmp_path / "hpc", 5), arrival_of(tmp_path / "worker", 5))


def test_200x200_for_120_steps_runs_in_a_few_seconds(python, tmp_path):
    # dense forest, calm: the whole grid burns (the most work per step the model ever does)
    n = 200
    land = tmp_path / "landscape.npz"
    np.savez(
        land,
        elevation=np.zeros((n, n), dtype=np.float32),
        fuel=np.full((n, n), 3, dtype=np.uint8),
        density=np.full((n, n), 2, dtype=np.uint8),
        cell_size_m=np.array(50.0),
    )
    sc = tmp_path / "scenario.json"
    sc.write_text(json.dumps(scenario(ignition=[100, 100], duration_steps=120, wind_speed_ms=0.0)))
    proc = run_cli(python, "--landscape", land, "--scenario", sc, "--member", "0", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    info = json.loads((tmp_path / "out" / "member-0.json").read_text())
    assert info["burned_cells"] > 0.9 * n * n
    assert info["runtime_s"] < 5.0


BAD_SCENARIOS = [
    ({"ignition": [40, 3]}, "outside the 40x40 grid"),
    ({"ignition": [-1, 3]}, "outside the 40x40 grid"),
    ({"ignition": [0, 0]}, "unburnable"),
    ({"ignition": "middle"}, "'ignition' must be"),
    ({"wind_speed_ms": -3}, "'wind_speed_ms' must be 0..60"),
    ({"wind_speed_ms": "fast"}, "'wind_speed_ms' must be a finite number"),
    ({"wind_direction_deg": 400}, "'wind_direction_deg'"),
    ({"fuel_moisture": 1.5}, "'fuel_moisture' must be a fraction"),
    ({"duration_steps": 0}, "'duration_steps' must be 1.."),
    ({"duration_steps": 2.5}, "'duration_steps' must be an integer"),
    ({"minutes_per_step": 0}, "'minutes_per_step' must be > 0"),
    ({"base_seed": -1}, "'base_seed' must be >= 0"),
    ({"perturbation": {"wind_sd": 1}}, "unknown key(s) wind_sd"),
    ({"perturbation": {"wind_speed_sd_ms": -1}}, "must be >= 0"),
]


@pytest.mark.parametrize(("change", "message"), BAD_SCENARIOS, ids=[m for _, m in BAD_SCENARIOS])
def test_cli_rejects_bad_scenarios_with_one_clear_line(python, tmp_path, change, message):
    land = write_landscape(tmp_path / "landscape.npz", unburnable=[(0, 0)])
    sc = tmp_path / "scenario.json"
    sc.write_text(json.dumps(scenario(**change)))
    proc = run_cli(python, "--landscape", land, "--scenario", sc, "--member", "1", "--out", tmp_path / "out")
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("model.py: error: ")
    assert message in lines[0]
    assert not (tmp_path / "out").exists()


def test_cli_rejects_bad_files_with_one_clear_line(python, tmp_path):
    land = write_landscape(tmp_path / "landscape.npz")
    sc = tmp_path / "scenario.json"
    sc.write_text(json.dumps(scenario()))
    not_json = tmp_path / "broken.json"
    not_json.write_text("{ignition: [1, 2]")
    not_npz = tmp_path / "broken.npz"
    not_npz.write_text("not a zip")
    lacking = tmp_path / "lacking.npz"
    np.savez(lacking, elevation=np.zeros((4, 4)))
    missing_key = tmp_path / "missing.json"
    missing_key.write_text(json.dumps({k: v for k, v in scenario().items() if k != "fuel_moisture"}))
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = [
        (["--landscape", tmp_path / "nope.npz", "--scenario", sc], "landscape file not found"),
        (["--landscape", land, "--scenario", tmp_path / "nope.json"], "scenario file not found"),
        (["--landscape", land, "--scenario", not_json], "is not valid JSON"),
        (["--landscape", not_npz, "--scenario", sc], "is not a readable .npz"),
        (["--landscape", lacking, "--scenario", sc], "lacks array(s) fuel, density, cell_size_m"),
        (["--landscape", land, "--scenario", missing_key], "scenario lacks 'fuel_moisture'"),
    ]
    for args, message in cases:
        proc = run_cli(python, *args, "--member", "1", "--out", tmp_path / "out")
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, (message, proc.stderr)
    for args, message in [
        (
            ["--landscape", land, "--scenario", sc, "--member", "-1", "--out", tmp_path / "out"],
            "--member must be >= 0",
        ),
        (
            ["--landscape", land, "--scenario", sc, "--member", "x", "--out", tmp_path / "out"],
            "invalid int value",
        ),
        (["--landscape", land, "--scenario", sc, "--member", "1"], "required: --out"),
        (["--landscape", land, "--scenario", sc, "--member", "1", "--out", a_file], "is not a directory"),
    ]:
        proc = run_cli(python, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, (message, proc.stderr)


def test_cells_given_as_burning_start_at_step_zero_and_spread(python, tmp_path):
    land = write_landscape(tmp_path / "landscape.npz", unburnable=[(5, 5)])
    block = [[r, c] for r in range(30, 34) for c in range(30, 34)] + [[5, 5]]
    sc = tmp_path / "scenario.json"
    sc.write_text(json.dumps(scenario(ignition=[10, 10], burning=block, duration_steps=3)))
    out = tmp_path / "out"
    proc = run_cli(python, "--landscape", land, "--scenario", sc, "--member", "0", "--out", out)
    assert proc.returncode == 0, proc.stderr
    arrival = arrival_of(out, 0)
    assert arrival[10, 10] == 0 and all(arrival[r, c] == 0 for r, c in block[:-1])
    assert arrival[5, 5] == -1, "an unburnable cell given as burning stays unburnable"
    around = arrival[28:36, 28:36].copy()
    around[2:6, 2:6] = -1
    assert (around >= 1).any(), "the observed fire spreads from its perimeter"


@pytest.mark.parametrize(
    ("burning", "message"),
    [
        ([[1, 2, 3]], "[row, col] integer pairs"),
        ({"row": 1}, "a list of at most"),
        ([[0, 99]], "burning cell (row 0, col 99) is outside the 40x40 grid"),
    ],
)
def test_bad_burning_cells_are_refused(python, tmp_path, burning, message):
    land = write_landscape(tmp_path / "landscape.npz")
    sc = tmp_path / "scenario.json"
    sc.write_text(json.dumps(scenario(burning=burning)))
    proc = run_cli(python, "--landscape", land, "--scenario", sc, "--member", "0", "--out", tmp_path / "o")
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
