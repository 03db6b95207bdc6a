"""The machine status DAG, GET /urgentflow/machines and the Machines page, on the real API server."""

from __future__ import annotations

import time

import pytest
from airflow_client import AirflowClient

pytestmark = pytest.mark.e2e


def test_endpoints_refuse_requests_without_a_valid_token(airflow: AirflowClient) -> None:
    for path in ("/urgentflow/machines", "/urgentflow/machines/alpha", "/urgentflow/ui/machines"):
        assert airflow.http.get(path).status_code == 401, path
        bad = airflow.http.get(path, headers={"Authorization": "Bearer not-a-token"})
        assert bad.status_code in (401, 403), (path, bad.status_code)


def test_status_dag_feeds_the_machines_api_and_page(airflow: AirflowClient) -> None:
    airflow.wait_for_dag("machine_status", timeout=90)
    run_id = airflow.trigger("machine_status")["dag_run_id"]
    airflow.unpause("machine_status")
    assert airflow.wait_for_run("machine_status", run_id, timeout=180)["state"] == "success"
    states = airflow.xcom("machine_status", run_id, "probe_machines")
    assert states["alpha"] == "up" and states["local"] == "up", states

    machines = {m["name"]: m for m in airflow.request("GET", "/urgentflow/machines")}
    assert {"alpha", "beta", "local"} <= set(machines)
    alpha = machines["alpha"]
    assert alpha["state"] == "up" and alpha["status"]["latency_ms"] > 0
    assert alpha["status"]["detail"]["partitions"]["debug"]["cores_total"] == 8
    assert alpha["partitions"]["long"]["max_walltime_minutes"] == 1440

    assert airflow.request("GET", "/urgentflow/machines/alpha")["name"] == "alpha"
    with pytest.raises(Exception, match="404"):
        airflow.request("GET", "/urgentflow/machines/nosuch")

    page = airflow.http.get("/urgentflow/ui/machines", headers={"Authorization": f"Bearer {airflow.token()}"})
    assert page.status_code == 200 and "<h2>alpha" in page.text and "cores idle / total" in page.text
    # the UI links it from its navigation: the plugin's external view is registered
    plugins = airflow.request("GET", "/api/v2/plugins")["plugins"]
    views = [v for p in plugins if p["name"] == "urgentflow" for v in p["external_views"]]
    assert {v["name"]: v["href"] for v in views} == {
        "Incidents": "/urgentflow/ui/incidents",
        "Machines": "/urgentflow/ui/machines",
        "Services": "/urgentflow/ui/services",
    }
    assert "/machines" in airflow.http.get("/urgentflow/openapi.json").json()["paths"]


def test_status_dag_runs_on_its_own_schedule(airflow: AirflowClient) -> None:
    """Unpaused, the DAG runs every minute without anyone triggering it."""
    airflow.unpause("machine_status")
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        scheduled = [r for r in airflow.list_runs("machine_status") if r["run_type"] == "scheduled"]
        if any(r["state"] == "success" for r in scheduled):
            return
        time.sleep(5)
    pytest.fail("no scheduled machine_status run succeeded within 150 s")
