"""The params of the DAGs the API triggers refuse what the API refuses, for a run triggered any other way
(Airflow's REST API, the UI): booleans and strings for integers and numbers, numbers for booleans, and
non-finite numbers (JSON schema's bounds catch the infinities; NaN passes every bound and is refused by
``operators.jsoninput.NOT_NAN``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.exceptions import ParamValidationError

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
NAN, INF = float("nan"), float("inf")
WEATHER = {"wind_speed_ms": 4.0, "wind_direction_deg": 300.0, "fuel_moisture": 0.08}
RING = [[-8.56, 37.29], [-8.54, 37.29], [-8.54, 37.31], [-8.56, 37.29]]


@pytest.fixture(scope="module")
def dags() -> dict[str, Any]:
    bag = DagBag(dag_folder=str(DAGS_DIR / "wildfire_forecast.py"))
    bag.process_file(str(DAGS_DIR / "analytics_order.py"))
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags


def coordinates(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[[lon, lat], *RING[1:-1], [lon, lat]]]}


GOOD = [
    ("wildfire_forecast", "ensemble_size", 8),
    ("wildfire_forecast", "updates", True),
    ("wildfire_forecast", "weather", WEATHER),
    ("wildfire_forecast", "weather", {**WEATHER, "wind_speed_ms": 4}),
    ("wildfire_forecast", "ignition", {"lat": 37.3, "lon": -8.55}),
    ("wildfire_forecast", "perimeter", coordinates(-8.56, 37.29)),
    ("wildfire_forecast", "perimeter", None),
    ("analytics_order", "input_dataset_ids", [1, 2]),
]
BAD = [
    *[("wildfire_forecast", name, v) for name in ("ensemble_size", "seed") for v in (True, False, "8", NAN)],
    *[("wildfire_forecast", "updates", v) for v in (1, 0, "true", None)],
    *[
        ("wildfire_forecast", "weather", {**WEATHER, field: v})
        for field in WEATHER
        for v in (NAN, INF, -INF, True, "4")
    ],
    *[("wildfire_forecast", "ignition", {"lat": v, "lon": -8.55}) for v in (NAN, INF, False)],
    ("wildfire_forecast", "region", {"min_lon": NAN, "min_lat": 37.2, "max_lon": -8.4, "max_lat": 37.4}),
    ("wildfire_forecast", "perimeter", coordinates(NAN, 37.29)),
    ("wildfire_forecast", "perimeter", coordinates(-8.56, True)),
    *[("analytics_order", "input_dataset_ids", [v]) for v in (True, "1", NAN)],
]


@pytest.mark.parametrize(("dag_id", "name", "value"), GOOD)
def test_good_values_are_accepted(dags: dict[str, Any], dag_id: str, name: str, value: Any) -> None:
    dags[dag_id].params[name] = value


@pytest.mark.parametrize(("dag_id", "name", "value"), BAD)
def test_coerced_and_non_finite_values_are_refused(
    dags: dict[str, Any], dag_id: str, name: str, value: Any
) -> None:
    with pytest.raises(ParamValidationError):
        dags[dag_id].params[name] = value
