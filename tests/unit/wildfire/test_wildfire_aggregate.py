"""include/wildfire/aggregate.py: burn probability and arrival statistics on a hand-made 3-member ensemble,
the data files, and the PNG map of a real (small) ensemble."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wildfire_aggregate as aggregate
import wildfire_landscape as landscape
import wildfire_model as model

REGION = {"min_lon": 23.05, "min_lat": 37.22, "max_lon": 23.17, "max_lat": 37.31}


def tiny_landscape() -> landscape.Landscape:
    """4 x 5 cells of 100 m (1 ha each); cell (3, 4) is water."""
    fuel = np.full((4, 5), 2, dtype=np.uint8)
    fuel[3, 4] = 0
    water = np.zeros((4, 5), dtype=bool)
    water[3, 4] = True
    return landscape.Landscape(
        elevation=np.zeros((4, 5), dtype=np.float32),
        fuel=fuel,
        density=np.ones((4, 5), dtype=np.uint8),
        water=water,
        cell_size_m=100.0,
        region={"min_lon": 10.0, "min_lat": 45.0, "max_lon": 10.006, "max_lat": 45.004},
        seed=0,
    )


def write_member(
    out: Path, member: int, burned: dict[tuple[int, int], int], minutes: float | None = 5.0
) -> Path:
    arrival = np.full((4, 5), -1, dtype=np.int16)
    for cell, step in burned.items():
        arrival[cell] = step
    path = out / f"member-{member}.npz"
    np.savez_compressed(path, arrival=arrival)
    if minutes is not None:
        info: dict[str, Any] = {"member": member, "minutes_per_step": minutes, "duration_steps": 10}
        info["weather"] = {
            "wind_speed_ms": 4.0 + member,
            "wind_direction_deg": 350.0 + 10 * member,
            "fuel_moisture": 0.06,
        }
        (out / f"member-{member}.json").write_text(json.dumps(info))
    return path


@pytest.fixture
def three_members(tmp_path: Path) -> list[Path]:
    return [
        write_member(tmp_path, 0, {(0, 0): 0, (0, 1): 1, (1, 1): 2}),
        write_member(tmp_path, 1, {(0, 0): 0, (0, 1): 2}),
        write_member(tmp_path, 2, {(0, 0): 0, (1, 0): 1, (1, 1): 4, (2, 2): 5}),
    ]


def test_hand_made_three_member_ensemble(three_members):
    r = aggregate.aggregate(three_members, tiny_landscape())
    assert r.members == [0, 1, 2] and r.n_members == 3
    expected = np.zeros((4, 5))
    expected[0, 0] = 1.0
    expected[0, 1] = expected[1, 1] = 2 / 3
    expected[1, 0] = expected[2, 2] = 1 / 3
    assert np.allclose(r.probability, expected)
    # arrival statistics over the members that burned the cell
    assert r.arrival_mean_steps[0, 0] == 0
    assert r.arrival_mean_steps[0, 1] == pytest.approx(1.5)
    assert r.arrival_mean_steps[1, 1] == pytest.approx(3.0)
    assert r.arrival_p50_steps[1, 1] == pytest.approx(3.0)
    assert r.arrival_p10_steps[1, 1] == pytest.approx(2.2)  # linear interpolation between 2 and 4
    assert r.arrival_p90_steps[1, 1] == pytest.approx(3.8)
    assert r.arrival_mean_steps[2, 2] == 5
    assert np.isnan(r.arrival_mean_steps[3, 3]) and np.isnan(r.arrival_p50_steps[3, 3])
    # 1 ha cells: members burned 3, 2 and 4 ha
    assert list(r.burned_area_ha) == [3.0, 2.0, 4.0]
    stats = r.area_stats()
    assert stats["mean_ha"] == pytest.approx(3.0)
    assert stats["mean_ha"] == pytest.approx(r.probability.sum() * 1.0)  # expected area = sum of p
    assert stats["std_ha"] == pytest.approx(1.0)
    assert (stats["min_ha"], stats["p50_ha"], stats["max_ha"]) == (2.0, 3.0, 4.0)
    assert r.minutes_per_step == 5.0
    summary = r.summary()
    assert summary["area_p_ge_50_ha"] == pytest.approx(3.0)
    assert summary["area_p_ge_90_ha"] == pytest.approx(1.0)
    assert summary["cells_p_gt_0"] == 5


def test_save_data_writes_npz_csv_and_geojson(three_members, tmp_path):
    r = aggregate.aggregate(three_members, tiny_landscape())
    npz_path, csv_path, geojson_path = aggregate.save_data(r, tmp_path / "result" / "burn-probability.npz")
    with np.load(npz_path, allow_pickle=False) as npz:
        assert np.allclose(npz["probability"], r.probability)
        assert list(npz["members"]) == [0, 1, 2]
        meta = json.loads(str(npz["meta"]))
    assert meta["cell_size_m"] == 100.0 and "probability" in meta["arrays"]
    assert meta["summary"]["burned_area"]["mean_ha"] == pytest.approx(3.0)
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5
    first = rows[0]
    assert (first["row"], first["col"], first["probability"]) == ("0", "0", "1.0000")
    assert float(first["x_km"]) == pytest.approx(0.05) and float(first["y_km"]) == pytest.approx(0.35)
    assert float(first["lon"]) == pytest.approx(10.0, abs=0.001) and float(first["lat"]) == pytest.approx(
        45.004, abs=0.001
    )
    cell_11 = next(row for row in rows if (row["row"], row["col"]) == ("1", "1"))
    assert float(cell_11["arrival_mean_min"]) == pytest.approx(15.0)
    geo = json.loads(geojson_path.read_text())
    assert geo["type"] == "FeatureCollection"
    assert {f["properties"]["probability"] for f in geo["features"]} <= {0.1, 0.5, 0.9}
    assert all(f["geometry"]["type"] == "MultiLineString" for f in geo["features"])


def test_aggregate_refuses_inconsistent_members(three_members, tmp_path):
    land = tiny_landscape()
    with pytest.raises(ValueError, match="no member files"):
        aggregate.aggregate([], land)
    with pytest.raises(ValueError, match="not found"):
        aggregate.aggregate([tmp_path / "member-9.npz"], land)
    with pytest.raises(ValueError, match="given twice"):
        aggregate.aggregate([three_members[0], three_members[0]], land)
    odd = tmp_path / "odd"
    odd.mkdir()
    np.savez(odd / "member-4.npz", arrival=np.zeros((3, 3), dtype=np.int16))
    with pytest.raises(ValueError, match="the landscape's grid"):
        aggregate.aggregate([odd / "member-4.npz"], land)
    wet = write_member(odd, 5, {(3, 4): 0})
    with pytest.raises(ValueError, match="burned unburnable cells"):
        aggregate.aggregate([wet], land)
    other = write_member(odd, 6, {(0, 0): 0}, minutes=10.0)
    with pytest.raises(ValueError, match="different minutes_per_step"):
        aggregate.aggregate([three_members[0], other], land)


def test_render_png_of_a_real_ensemble(tmp_path):
    land = landscape.generate(REGION, 100, 21)
    land_path = landscape.save(land, tmp_path / "landscape.npz")
    burnable = np.argwhere(land.fuel > 0)
    centre = np.array(land.shape) / 2
    ignition = [int(v) for v in burnable[np.argmin(((burnable - centre) ** 2).sum(axis=1))]]
    scenario = {
        "ignition": ignition,
        "wind_speed_ms": 6.0,
        "wind_direction_deg": 250.0,
        "fuel_moisture": 0.04,
        "duration_steps": 60,
        "minutes_per_step": 5.0,
        "base_seed": 99,
        "perturbation": {"wind_speed_sd_ms": 1.0, "wind_direction_sd_deg": 15.0, "fuel_moisture_sd": 0.01},
    }
    (tmp_path / "scenario.json").write_text(json.dumps(scenario))
    out = tmp_path / "members"
    for member in range(8):
        model.run_member(land_path, tmp_path / "scenario.json", member, out)
    result = aggregate.aggregate(sorted(out.glob("member-*.npz")), landscape.load(land_path))
    assert result.n_members == 8 and result.probability.max() == 1.0  # the ignition burns in every member
    png = aggregate.render_png(
        result, land, ignition, tmp_path / "map" / "burn-probability.png", "Test fire (synthetic)"
    )
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
    # an ensemble where nothing spread still renders (only the ignition cell burned)
    wet = dict(scenario, fuel_moisture=0.35, perturbation={})
    (tmp_path / "wet.json").write_text(json.dumps(wet))
    model.run_member(land_path, tmp_path / "wet.json", 0, tmp_path / "wet")
    quiet = aggregate.aggregate([tmp_path / "wet" / "member-0.npz"], land)
    assert quiet.area_stats()["std_ha"] == 0.0
    png2 = aggregate.render_png(quiet, land, ignition, tmp_path / "quiet.png", "Quiet fire")
    assert png2.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
