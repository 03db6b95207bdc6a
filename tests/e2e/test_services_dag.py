"""Service containers from a real DAG run: opened, used, linked from the task, closed by the teardown
(also when the run fails), kept alive over the plugin API, reaped by service_reaper."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow_client import AirflowClient

from operators.catalog.catalog import Catalog
from operators.services.hook import ServiceHook
from operators.storage.hook import ObjectStoreHook

pytestmark = pytest.mark.e2e
DAG = "service_drill"


def start(airflow: AirflowClient, conf: dict[str, Any]) -> str:
    airflow.wait_for_dag(DAG, timeout=90)
    airflow.unpause(DAG)
    return str(airflow.trigger(DAG, conf)["dag_run_id"])


def service_of(airflow: AirflowClient, run_id: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {t["task_id"]: t["state"] for t in airflow.task_instances(DAG, run_id)}
        if states.get("start_service") == "success":
            return dict(airflow.xcom(DAG, run_id, "start_service"))
        if states.get("start_service") in ("failed", "upstream_failed"):
            pytest.fail(f"start_service {states['start_service']}")
        time.sleep(1)
    pytest.fail("start_service did not succeed in time")


def test_viewer_is_linked_used_and_removed(airflow: AirflowClient) -> None:
    run_id = start(airflow, {"service": "viewer"})
    assert airflow.wait_for_run(DAG, run_id, timeout=180)["state"] == "success"
    service = airflow.xcom(DAG, run_id, "start_service")
    assert airflow.xcom(DAG, run_id, "use")["status"] == 200
    links = airflow.request("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/start_service/links")
    assert links["extra_links"].get("Open service") == service["url"], links
    assert ServiceHook().find(service["service_id"]) is None, "the teardown left the container"
    assert (Catalog().service(service["service_id"]) or {}).get("state") == "stopped"


def test_failed_run_still_closes_its_notebook_and_exports_the_notes(airflow: AirflowClient) -> None:
    run_id = start(airflow, {"service": "notebook", "fail": True})
    final = airflow.wait_for_run(DAG, run_id, timeout=180)
    states = {t["task_id"]: t["state"] for t in airflow.task_instances(DAG, run_id)}
    assert final["state"] == "failed" and states["use"] == "failed" and states["stop_service"] == "success"
    service = airflow.xcom(DAG, run_id, "start_service")
    assert ServiceHook().find(service["service_id"]) is None
    exported = airflow.xcom(DAG, run_id, "stop_service")["exported"]
    (notes,) = [e for e in exported if e["path"] == "notes.md"]
    body = b"".join(ObjectStoreHook().iter_verified(notes["key"]))
    assert b"service_drill was here" in body


def test_keepalive_endpoint_and_reaper_on_ttl(airflow: AirflowClient) -> None:
    run_id = start(airflow, {"service": "viewer", "hold_seconds": 80, "ttl_minutes": 1})
    service = {**service_of(airflow, run_id), "started_at": datetime.now(UTC).isoformat()}
    sid = service["service_id"]
    path = f"/urgentflow/services/{sid}/keepalive"
    assert airflow.http.post(path).status_code == 401
    before = airflow.request("GET", f"/urgentflow/services/{sid}")["last_seen"]
    touched = airflow.request("POST", path)
    assert touched["state"] == "running" and touched["last_seen"] > before
    assert (
        airflow.http.post(
            "/urgentflow/services/svc-000000000000000000000000/keepalive",
            headers={"Authorization": f"Bearer {airflow.token()}"},
        ).status_code
        == 404
    )
    # past its 1-minute TTL the reaper removes it, though the run still holds it
    wait = service_ttl_left(service)
    time.sleep(wait)
    airflow.wait_for_dag("service_reaper", timeout=90)
    reaper_run = airflow.trigger("service_reaper")["dag_run_id"]
    airflow.unpause("service_reaper")  # its own schedule may run first: look at every run since
    assert airflow.wait_for_run("service_reaper", reaper_run, timeout=120)["state"] == "success"
    reaped = [
        item
        for run in airflow.list_runs("service_reaper")
        if run["state"] == "success" and (run.get("queued_at") or "") >= service["started_at"]
        for item in airflow.xcom("service_reaper", run["dag_run_id"], "reap_services")
    ]
    assert {"service_id": sid, "container_id": service["container_id"], "reason": "expired"} in reaped
    assert ServiceHook().find(sid) is None
    assert (Catalog().service(sid) or {}).get("state") == "reaped:expired"
    assert airflow.http.post(path, headers={"Authorization": f"Bearer {airflow.token()}"}).status_code == 409
    # the run goes on and its teardown copes with the container being gone already
    assert airflow.wait_for_run(DAG, run_id, timeout=180)["state"] == "success"


def service_ttl_left(service: dict[str, Any]) -> float:
    expires = datetime.fromisoformat(service["expires_at"])
    return max(0.0, (expires - datetime.now(UTC)).total_seconds() + 1)
