"""The external data interface end to end: data pushed with ``POST /urgentflow/incidents/{id}/data`` is
stored, catalogued and announced; ``ingest_observation`` applies it and re-runs the incident's forecast
with it; bad uploads are refused and leave nothing; a changed object is rejected and recorded. Every
Asset event a test creates is consumed by an ingest run before the test ends."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow_client import AirflowClient, ApiError
from observation_events import consume_observation_events

from operators.catalog.catalog import Catalog
from operators.storage.hook import ObjectStoreHook

pytestmark = pytest.mark.e2e
INCIDENT: dict[str, Any] = {
    "kind": "wildfire",
    "name": "Observed fire, Monchique",
    "ignition": {"lat": 37.30, "lon": -8.55},
    "region": {"min_lon": -8.65, "min_lat": 37.22, "max_lon": -8.45, "max_lat": 37.38},
    "weather": {"wind_speed_ms": 4.0, "wind_direction_deg": 300.0, "fuel_moisture": 0.08},
    "ensemble_size": 2,
    "deadline_minutes": 30,
    "seed": 5,
    "updates": True,
}
PERIMETER: dict[str, Any] = {
    "type": "Feature",
    "properties": {"source": "aerial survey"},
    "geometry": {
        "type": "Polygon",
        "coordinates": [[[-8.57, 37.29], [-8.53, 37.29], [-8.53, 37.32], [-8.57, 37.32], [-8.57, 37.29]]],
    },
}


@pytest.fixture(autouse=True)
def no_events_left_behind(airflow: AirflowClient) -> Iterator[None]:
    since = datetime.now(UTC)
    yield
    consume_observation_events(airflow, since)


def incident(airflow: AirflowClient, **changes: Any) -> dict[str, Any]:
    for dag_id in ("wildfire_forecast", "ingest_observation"):
        airflow.wait_for_dag(dag_id, timeout=120)
        airflow.unpause(dag_id)
    return dict(airflow.request("POST", "/urgentflow/incidents", json={**INCIDENT, **changes}, ok=(201,)))


def push(airflow: AirflowClient, incident_id: str, kind: str, body: bytes, **params: str) -> Any:
    return airflow.http.post(
        f"/urgentflow/incidents/{incident_id}/data",
        params={"kind": kind, **params},
        content=body,
        headers={"Authorization": f"Bearer {airflow.token()}"},
    )


def run_of(incident_id: str, dag_id: str, timeout: float = 120) -> str:
    """The run of ``dag_id`` recorded on the incident (ingest_observation records itself)."""
    catalog, deadline = Catalog(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r["run_id"] for r in catalog.runs_of_incident(incident_id) if r["dag_id"] == dag_id]
        if runs:
            return runs[-1]
        time.sleep(1)
    pytest.fail(f"no {dag_id} run recorded on {incident_id} within {timeout} s")


def wait_for_new_run(airflow: AirflowClient, dag_id: str, run_id: str, timeout: float = 600) -> dict:
    """Wait for a run another task triggers: it may not exist yet."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            airflow.get_run(dag_id, run_id)
            break
        except ApiError as exc:
            if exc.status != 404:
                raise
            time.sleep(1)
    return airflow.wait_for_run(dag_id, run_id, timeout=timeout)


def scenario_of(run_id: str, incident_id: str) -> dict[str, Any]:
    (row,) = [
        d
        for d in Catalog().datasets_of_incident(incident_id)
        if d["run_id"] == run_id and d["key"].endswith("/scenario.json")
    ]
    return dict(json.loads(b"".join(ObjectStoreHook().iter_verified(row["key"]))))


def test_pushed_weather_and_perimeter_rerun_the_forecast(airflow: AirflowClient) -> None:
    created = incident(airflow)
    incident_id = created["incident_id"]
    assert airflow.wait_for_run("wildfire_forecast", created["run_id"], timeout=600)["state"] == "success"

    weather = {"wind_speed_ms": 12.5, "wind_direction_deg": 45.0, "fuel_moisture": 0.05}
    body = json.dumps(weather).encode()
    response = push(airflow, incident_id, "weather", body)
    assert response.status_code == 201, response.text
    pushed = response.json()
    assert pushed["sha256"] == hashlib.sha256(body).hexdigest() and pushed["size"] == len(body)
    assert ObjectStoreHook().stat(pushed["key"]).sha256 == pushed["sha256"]
    assert (Catalog().dataset(pushed["dataset_id"]) or {}).get("incident_id") == incident_id

    ingest_run = run_of(incident_id, "ingest_observation")
    assert airflow.wait_for_run("ingest_observation", ingest_run, timeout=180)["state"] == "success"
    rerun = f"reforecast__{incident_id}__{pushed['observation_id']}"
    assert wait_for_new_run(airflow, "wildfire_forecast", rerun)["state"] == "success"
    scenario = scenario_of(rerun, incident_id)
    assert (scenario["wind_speed_ms"], scenario["wind_direction_deg"]) == (12.5, 45.0)
    assert scenario["burning"] == []

    response = push(airflow, incident_id, "perimeter", json.dumps(PERIMETER).encode())
    assert response.status_code == 201, response.text
    rerun = f"reforecast__{incident_id}__{response.json()['observation_id']}"
    assert wait_for_new_run(airflow, "wildfire_forecast", rerun)["state"] == "success"
    scenario = scenario_of(rerun, incident_id)
    # the polygon spans 0.04 deg x 0.03 deg (~3.5 x 3.3 km) of a ~17.7 x 17.8 km grid of 160 x 160 cells
    assert 800 <= len(scenario["burning"]) <= 1300, len(scenario["burning"])
    assert scenario["wind_speed_ms"] == 12.5, "the earlier weather update is kept"

    found = airflow.request("GET", f"/urgentflow/incidents/{incident_id}")
    assert found["incident"]["perimeter"] == PERIMETER["geometry"]
    assert len(found["observations"]) == 2
    assert {r["run_id"] for r in found["runs"]} >= {created["run_id"], rerun}


def test_bad_uploads_are_refused_and_leave_nothing(airflow: AirflowClient) -> None:
    created = incident(airflow, updates=False, ensemble_size=1)
    incident_id = created["incident_id"]
    prefix = f"incidents/{incident_id}/observations/"
    outside = {**PERIMETER["geometry"], "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    open_ring = {**PERIMETER["geometry"], "coordinates": [[[-8.57, 37.29], [-8.53, 37.29], [-8.53, 37.32]]]}
    cases = [
        ("weather", b"{not json", {}, 422),
        ("weather", b'{"wind_speed_ms": 500, "wind_direction_deg": 0, "fuel_moisture": 0.1}', {}, 422),
        ("weather", b'{"wind_speed_ms": 5, "wind_direction_deg": 0, "fuel_moisture": 0.1, "x": 1}', {}, 422),
        ("perimeter", json.dumps(outside).encode(), {}, 422),
        ("perimeter", json.dumps(open_ring).encode(), {}, 422),
        ("file", b"data", {"name": "../../etc/passwd"}, 422),
        ("file", b"data", {"name": "a;rm -rf ~"}, 422),
        ("file", b"data", {}, 422),
        ("file", b"", {"name": "empty.csv"}, 422),
        ("file", b"x" * (16 * 1024 * 1024 + 1), {"name": "big.bin"}, 413),
        ("sonar", b"{}", {}, 422),
    ]
    for kind, body, params, status in cases:
        response = push(airflow, incident_id, kind, body, **params)
        assert response.status_code == status, (kind, params, response.status_code, response.text[:300])
        assert response.json().get("detail"), response.text[:300]
    mismatch = airflow.http.post(
        f"/urgentflow/incidents/{incident_id}/data",
        params={"kind": "file", "name": "obs.csv"},
        content=b"a,b\n1,2\n",
        headers={"Authorization": f"Bearer {airflow.token()}", "X-Content-SHA256": "0" * 64},
    )
    assert mismatch.status_code == 422
    assert push(airflow, "inc-000000000000", "file", b"x", name="a.csv").status_code == 404
    unauthenticated = airflow.http.post(
        f"/urgentflow/incidents/{incident_id}/data", params={"kind": "file", "name": "a.csv"}, content=b"x"
    )
    assert unauthenticated.status_code == 401
    assert ObjectStoreHook().list_objects(prefix) == [], "a refused upload left an object"
    assert Catalog().datasets_of_incident(incident_id, prefix) == [], "a refused upload left a row"
    assert not [r for r in Catalog().runs_of_incident(incident_id) if r["dag_id"] == "ingest_observation"]

    airflow.request("POST", f"/urgentflow/incidents/{incident_id}/cancel")
    assert push(airflow, incident_id, "file", b"a,b\n", name="late.csv").status_code == 409


def test_an_object_changed_after_its_announcement_is_rejected_and_recorded(airflow: AirflowClient) -> None:
    created = incident(airflow, updates=False, ensemble_size=1)
    incident_id = created["incident_id"]
    accepted = push(airflow, incident_id, "file", b"t,temp\n0,21.5\n", name="station.csv")
    assert accepted.status_code == 201, accepted.text
    first = run_of(incident_id, "ingest_observation")
    assert airflow.wait_for_run("ingest_observation", first, timeout=180)["state"] == "success"

    # an event naming the same object with other bytes' checksum: what a changed object looks like
    assets = airflow.request("GET", "/api/v2/assets", params={"uri_pattern": "x-urgentflow://observations"})
    (asset,) = [a for a in assets["assets"] if a["uri"] == "x-urgentflow://observations"]
    forged = {**accepted.json(), "sha256": hashlib.sha256(b"other bytes").hexdigest()}
    forged.pop("asset_event_id")
    airflow.request("POST", "/api/v2/assets/events", json={"asset_id": asset["id"], "extra": forged})
    deadline = time.monotonic() + 120
    while (second := run_of(incident_id, "ingest_observation")) == first and time.monotonic() < deadline:
        time.sleep(1)
    assert second != first, "the forged event started no ingest run"
    assert airflow.wait_for_run("ingest_observation", second, timeout=240)["state"] == "success"
    (rejected,) = Catalog().rejected_observations(incident_id)
    assert (rejected["run_id"], rejected["observation_id"]) == (second, forged["observation_id"])
    assert "not the one announced" in rejected["reason"]
