"""catalog_housekeeping through the runtime: a dry run (the catalog and bucket are shared, so nothing may
change) whose XCom summary counts what it would do, and that the params' bounds are enforced."""

from __future__ import annotations

import pytest
from airflow_client import AirflowClient, ApiError

from operators.catalog.housekeeping import MANAGED_PREFIXES

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.exclusive("catalog", "s3"),
]  # a real catalog_housekeeping run prunes the whole catalog (and checks it against the store)
DAG = "catalog_housekeeping"


def test_dry_run_reports_a_summary(airflow: AirflowClient) -> None:
    airflow.wait_for_dag(DAG, timeout=90)
    airflow.unpause(DAG)
    run_id = str(airflow.trigger(DAG, {"dry_run": True, "delete_orphans": True})["dag_run_id"])
    final = airflow.wait_for_run(DAG, run_id, timeout=300)
    assert final["state"] == "success", airflow.task_instances(DAG, run_id)
    summary = airflow.xcom(DAG, run_id, "housekeep")
    assert (summary["dry_run"], summary["delete_orphans"]) == (True, True)
    assert summary["prefixes"] == list(MANAGED_PREFIXES)
    counts = summary["counts"]
    assert set(counts) == {
        "pruned_machine_status",
        "pruned_machine_selections",
        "pruned_services",
        "pruned_jobs",
        "pruned_job_notices",
        "datasets_checked",
        "datasets_missing",
        "datasets_changed",
        "orphans",
        "orphans_deleted",
        "objects_in_grace",
    }
    assert all(isinstance(n, int) and n >= 0 for n in counts.values())
    assert counts["orphans_deleted"] == 0  # a dry run deletes nothing, even when deletion is asked for
    assert len(summary["reported"]["orphans"]) == min(counts["orphans"], 100)
    assert len(summary["reported"]["missing"]) == min(counts["datasets_missing"], 100)


def test_out_of_bounds_retention_is_refused(airflow: AirflowClient) -> None:
    airflow.wait_for_dag(DAG, timeout=90)
    with pytest.raises(ApiError) as refused:
        airflow.trigger(DAG, {"dry_run": True, "job_days": 0})
    assert refused.value.status in (400, 422)
