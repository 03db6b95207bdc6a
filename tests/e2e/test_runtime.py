"""The embedded runtime end to end: start it, run the main DAG through the REST API, check auth and health.

The session fixture starts the runtime with ``scripts/runtime.py start`` and stops it afterwards only
when it was not running before (a runtime someone left running stays up, with its data).
"""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from airflow_client import AirflowClient, base_url

MAIN_DAG = "quickstart"
MEMBERS = 3


@pytest.mark.e2e
def test_health_reports_every_component_healthy(airflow: AirflowClient) -> None:
    report = airflow.health()
    for component in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert report[component]["status"] == "healthy", report


@pytest.mark.e2e
def test_api_refuses_requests_without_a_valid_token(airflow: AirflowClient) -> None:
    no_token = httpx.get(f"{base_url()}/api/v2/dags", timeout=10)
    assert no_token.status_code == 401, no_token.text
    bad_token = httpx.get(
        f"{base_url()}/api/v2/dags", headers={"Authorization": "Bearer not-a-jwt"}, timeout=10
    )
    assert bad_token.status_code in (401, 403), bad_token.text
    assert httpx.post(f"{base_url()}/api/v2/dags/{MAIN_DAG}/dagRuns", json={}, timeout=10).status_code == 401


@pytest.mark.e2e
def test_quickstart_runs_to_success_through_the_rest_api(airflow: AirflowClient) -> None:
    airflow.wait_for_dag(MAIN_DAG, timeout=90)
    airflow.unpause(MAIN_DAG)
    run = airflow.trigger(MAIN_DAG, {"members": MEMBERS, "size": 32, "seed": 11})
    run_id = run["dag_run_id"]

    final = airflow.wait_for_run(MAIN_DAG, run_id, timeout=300)

    tis = airflow.task_instances(MAIN_DAG, run_id)
    states = {f"{ti['task_id']}[{ti['map_index']}]": ti["state"] for ti in tis}
    assert final["state"] == "success", states
    assert all(state == "success" for state in states.values()), states
    per_task = Counter(ti["task_id"] for ti in tis)
    expected = {t["task_id"] for t in airflow.dag_tasks(MAIN_DAG)}
    assert set(per_task) == expected
    assert max(per_task.values()) == MEMBERS  # the mapped ensemble expanded to one task per member
