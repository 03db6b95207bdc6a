"""The flagship end to end: an incident over the plugin API -> wildfire_forecast on the real test bed ->
catalogued members and map -> result viewer; the exit handler records how the run ended."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
from airflow_client import AirflowClient

from operators.catalog.catalog import Catalog

pytestmark = pytest.mark.e2e
DAG = "wildfire_forecast"
INCIDENT: dict[str, Any] = {
    "kind": "wildfire",
    "name": "Test fire <b>Monchique</b>; $(touch /tmp/uf-canary)",
    "ignition": {"lat": 37.30, "lon": -8.55},
    "region": {"min_lon": -8.65, "min_lat": 37.22, "max_lon": -8.45, "max_lat": 37.38},
    "weather": {"wind_speed_ms": 8.0, "wind_direction_deg": 300.0, "fuel_moisture": 0.07},
    "ensemble_size": 4,
    "deadline_minutes": 30,
    "seed": 11,
}


def wait_incident(airflow: AirflowClient, incident_id: str, status: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = airflow.request("GET", f"/urgentflow/incidents/{incident_id}")
        if found["status"] == status:
            return dict(found)
        time.sleep(3)
    pytest.fail(f"incident {incident_id} not {status} within {timeout} s: {found}")


def test_incident_to_forecast_map_and_viewer(airflow: AirflowClient) -> None:
    airflow.wait_for_dag(DAG, timeout=120)
    airflow.unpause(DAG)
    assert airflow.http.post("/urgentflow/incidents", json=INCIDENT).status_code == 401
    created = airflow.request("POST", "/urgentflow/incidents", json=INCIDENT, ok=(201,))
    incident_id, run_id = created["incident_id"], created["run_id"]
    final = airflow.wait_for_run(DAG, run_id, timeout=600)
    tis = airflow.task_instances(DAG, run_id)
    assert final["state"] == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]

    found = wait_incident(airflow, incident_id, "succeeded")
    (run,) = found["runs"]
    assert run["state"] == "success" and run["ended_at"]
    assert len([j for j in run["jobs"] if j["state"] == "COMPLETED"]) == 4
    keys = {r["key"].rsplit("/", 1)[-1]: r for r in run["results"]}
    assert {"burn_probability.png", "member-0.npz", "member-3.json"} <= set(keys)
    with urllib.request.urlopen(keys["burn_probability.png"]["download"], timeout=10) as resp:  # noqa: S310
        png = resp.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    catalog = Catalog()
    map_id = keys["burn_probability.png"]["dataset_id"]
    member_ids = {r["dataset_id"] for name, r in keys.items() if name.startswith("member-")}
    assert set(catalog.inputs_of(map_id)) == member_ids, "the map's lineage is every member output"
    # each member's job published its own files: catalogued as the member's task, with the inputs as lineage
    inputs = {r["dataset_id"] for name, r in keys.items() if name in ("landscape.npz", "scenario.json")}
    for name in ("member-0.npz", "member-3.json"):
        row = catalog.dataset(keys[name]["dataset_id"]) or {}
        assert (row.get("task_id"), row.get("map_index")) == ("simulate", int(name[7])), row
        assert inputs <= set(catalog.inputs_of(keys[name]["dataset_id"]))

    (viewer,) = run["services"]
    assert viewer["state"] == "running"
    with urllib.request.urlopen(f"{viewer['url']}/burn_probability.png", timeout=10) as resp:  # noqa: S310
        assert resp.read() == png
    summary = airflow.xcom(DAG, run_id, "aggregate")
    assert summary["members"] == 4 and summary["burned_area"]["mean_ha"] > 0


@pytest.mark.exclusive("catalog")  # compares every incident
def test_bad_incidents_are_refused_with_field_errors_and_leave_nothing(airflow: AirflowClient) -> None:
    before = {i["incident_id"] for i in airflow.request("GET", "/urgentflow/incidents")}
    runs_before = len(airflow.list_runs(DAG))
    headers = {"Authorization": f"Bearer {airflow.token()}"}
    for bad in (
        {**INCIDENT, "ensemble_size": 0},
        {**INCIDENT, "ignition": {"lat": 10.0, "lon": 10.0}},
        {**INCIDENT, "region": {**INCIDENT["region"], "max_lon": -9.0}},
        {**INCIDENT, "extra": "field"},
        {**INCIDENT, "name": "line\nbreak"},
    ):
        response = airflow.http.post("/urgentflow/incidents", json=bad, headers=headers)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["detail"][0]["loc"], response.text
    for body, status in (
        (b"{not json", 422),
        (b"[]", 422),
        (json.dumps({**INCIDENT, "name": "x" * (2 * 1024 * 1024)}).encode(), 413),
    ):
        response = airflow.http.post(
            "/urgentflow/incidents", content=body, headers={**headers, "Content-Type": "application/json"}
        )
        assert response.status_code == status and response.json()["detail"], response.text[:300]
    # plain Airflow REST checks the same rules through the DAG's params schema
    for conf in ({"name": "line\nbreak"}, {"ensemble_size": 0}, {"weather": {"wind_speed_ms": -1}}):
        response = airflow.http.post(
            f"/api/v2/dags/{DAG}/dagRuns", json={"logical_date": None, "conf": conf}, headers=headers
        )
        assert response.status_code == 400, (conf, response.text)
    assert {i["incident_id"] for i in airflow.request("GET", "/urgentflow/incidents")} == before
    assert len(airflow.list_runs(DAG)) == runs_before


def test_a_run_failing_before_any_task_is_recorded_by_the_exit_handler(airflow: AirflowClient) -> None:
    airflow.wait_for_dag(DAG, timeout=120)
    airflow.request("PATCH", f"/api/v2/dags/{DAG}", json={"is_paused": True})
    try:
        created = airflow.request("POST", "/urgentflow/incidents", json=INCIDENT, ok=(201,))
        # the DAG is paused: no task ran; an operator marks the run failed by hand
        airflow.request("PATCH", f"/api/v2/dags/{DAG}/dagRuns/{created['run_id']}", json={"state": "failed"})
        found = wait_incident(airflow, created["incident_id"], "failed", timeout=60)
        assert found["runs"][0]["state"] == "failed" and not found["runs"][0]["jobs"]
    finally:
        airflow.unpause(DAG)


def test_cancel_fails_the_run_and_leaves_nothing_running(airflow: AirflowClient) -> None:
    airflow.wait_for_dag(DAG, timeout=120)
    airflow.unpause(DAG)
    created = airflow.request(
        "POST", "/urgentflow/incidents", json={**INCIDENT, "ensemble_size": 6}, ok=(201,)
    )
    incident_id, run_id = created["incident_id"], created["run_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # cancel while the ensemble is on the machine
        states = [t["state"] for t in airflow.task_instances(DAG, run_id) if t["task_id"] == "simulate"]
        if any(s in ("deferred", "running", "queued") for s in states):
            break
        time.sleep(0.5)
    assert airflow.http.post(f"/urgentflow/incidents/{incident_id}/cancel").status_code == 401
    cancelled = airflow.request("POST", f"/urgentflow/incidents/{incident_id}/cancel")
    assert cancelled["failed_runs"] == [run_id]
    assert airflow.wait_for_run(DAG, run_id, timeout=120)["state"] == "failed"
    found = wait_incident(airflow, incident_id, "cancelled", timeout=30)
    time.sleep(3)  # the exit handler runs after the run's end: the status must stay "cancelled"
    assert airflow.request("GET", f"/urgentflow/incidents/{incident_id}")["status"] == "cancelled"
    from operators.hpc.hook import BatchHook

    jobs = [j for r in found["runs"] for j in r["jobs"]]
    for machine in {j["machine"] for j in jobs}:
        hook = BatchHook(machine)
        for job in jobs:  # the batch system's own lookup of a live (queued or running) job by name
            out = hook.transport.run(hook.adapter.find_command(job["name"], "/nonexistent")).stdout
            assert hook.adapter.parse_find(out) is None, (
                f"job {job['native_id']} of the cancelled run still lives"
            )
    assert not any(s["state"] == "running" for r in found["runs"] for s in r["services"])
