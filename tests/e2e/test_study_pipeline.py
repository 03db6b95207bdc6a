"""study_pipeline end to end on the real runtime, Docker engine, S3 server and catalog: three container
steps passing data through the object store, a notebook on the results kept open by keep-alives and
closed when the user leaves; a forced failure leaves nothing half-recorded and no notebook."""

from __future__ import annotations

import json
import struct
import time
import urllib.request
from typing import Any

import numpy as np
import pytest
from airflow_client import AirflowClient

from operators.catalog.catalog import Catalog
from operators.incidents import new_incident_id
from operators.services.hook import ServiceHook
from operators.storage.hook import ObjectStoreHook

pytestmark = pytest.mark.e2e
DAG = "study_pipeline"
STEPS = {
    "generate": {"problem.json"},
    "solve": {"field.json", "residuals.csv"},
    "postprocess": {"report.json", "temperature.png"},
}


def start(airflow: AirflowClient, conf: dict[str, Any]) -> tuple[str, str]:
    """Trigger a run for a new incident of our own; (run id, incident id)."""
    incident_id = new_incident_id()
    Catalog().create_incident(incident_id, "study", {"name": "study_pipeline e2e"})
    airflow.wait_for_dag(DAG, timeout=90)
    airflow.unpause(DAG)
    run = airflow.trigger(DAG, {"incident_id": incident_id, **conf})
    return str(run["dag_run_id"]), incident_id


def states(airflow: AirflowClient, run_id: str) -> dict[str, str | None]:
    return {t["task_id"]: t["state"] for t in airflow.task_instances(DAG, run_id)}


def wait_state(airflow: AirflowClient, run_id: str, task_id: str, wanted: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = states(airflow, run_id)
        if now.get(task_id) == wanted:
            return
        if now.get(task_id) in ("failed", "upstream_failed"):
            pytest.fail(f"{task_id} {now[task_id]}: {now}")
        time.sleep(1)
    pytest.fail(f"{task_id} not {wanted} within {timeout} s: {states(airflow, run_id)}")


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (the notebook's own URL)
        return bytes(response.read())


def read_json(store: ObjectStoreHook, key: str) -> Any:
    return json.loads(b"".join(store.iter_verified(key)))


def independent_check(problem: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    """The solver's field against a direct numpy solve of the same 5-point system, and the residual and
    energy balance recomputed from scratch."""
    n, h, k = problem["n"], problem["h"], problem["conductivity"]
    b = problem["boundary"]
    frame = np.zeros((n + 2, n + 2))
    frame[0, 1:-1], frame[-1, 1:-1] = b["south"], b["north"]
    frame[1:-1, 0], frame[1:-1, -1] = b["west"], b["east"]
    q = np.array(problem["q"])
    f = q + k / h**2 * (frame[:-2, 1:-1] + frame[2:, 1:-1] + frame[1:-1, :-2] + frame[1:-1, 2:])
    lap = np.diag(np.full(n * n, 4.0))
    for i in range(n):
        for j in range(n):
            for a, c in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)):
                if 0 <= a < n and 0 <= c < n:
                    lap[i * n + j, a * n + c] = -1.0
    matrix = k / h**2 * lap
    exact = np.linalg.solve(matrix, f.ravel()).reshape(n, n)
    solved = np.array(field["T"])
    frame[1:-1, 1:-1] = solved
    outflow = k * (
        (frame[1, 1:-1] - frame[0, 1:-1]).sum()
        + (frame[-2, 1:-1] - frame[-1, 1:-1]).sum()
        + (frame[1:-1, 1] - frame[1:-1, 0]).sum()
        + (frame[1:-1, -2] - frame[1:-1, -1]).sum()
    )
    return {
        "relative_residual": float(np.linalg.norm(f.ravel() - matrix @ solved.ravel()) / np.linalg.norm(f)),
        "max_error": float(np.abs(solved - exact).max()),
        "range": float(exact.max() - exact.min()),
        "generated": float(q.sum() * h**2),
        "outflow": float(outflow),
        "max": float(solved.max()),
    }


def test_study_runs_to_a_checked_field_and_a_notebook_closed_when_the_user_leaves(
    airflow: AirflowClient,
) -> None:
    tolerance, keepalive = 1e-7, 12
    run_id, incident_id = start(
        airflow,
        {
            "grid_size": 20,
            "tolerance": tolerance,
            "seed": 5,
            "keepalive_seconds": keepalive,
            "session_minutes": 5,
        },
    )
    wait_state(airflow, run_id, "session", "deferred", timeout=180)
    service = airflow.xcom(DAG, run_id, "open_notebook")
    store = ObjectStoreHook()
    outputs = {o["name"]: o for step in STEPS for o in airflow.xcom(DAG, run_id, step)["outputs"]}
    # the notebook shows this run's results, byte for byte
    listing = fetch(service["url"] + "/").decode()
    for step, names in STEPS.items():
        for name in names:
            assert f"{step}/{name}" in listing
            assert fetch(f"{service['url']}/files/{step}/{name}") == b"".join(
                store.iter_verified(outputs[name]["key"])
            )
    # keep-alives hold the session open past keepalive_seconds
    for _ in range(4):
        airflow.request("POST", f"/urgentflow/services/{service['service_id']}/keepalive")
        last_alive = time.monotonic()
        time.sleep(keepalive / 2)
    assert states(airflow, run_id)["session"] == "deferred"
    # then the user leaves: the session ends keepalive_seconds after the last keep-alive, the run ends on
    # its own and the teardown closes the notebook
    final = airflow.wait_for_run(DAG, run_id, timeout=120)
    assert final["state"] == "success", states(airflow, run_id)
    assert airflow.xcom(DAG, run_id, "session")["reason"] == "user_left"
    assert keepalive <= time.monotonic() - last_alive + 2 < keepalive + 60
    assert ServiceHook().find(service["service_id"]) is None
    catalog = Catalog()
    assert (catalog.service(service["service_id"]) or {})["state"] == "stopped"

    # every output catalogued once with its sha256, its producer, the incident and its lineage
    rows = {r["key"].rsplit("/", 1)[-1]: r for r in catalog.datasets_of_run(DAG, run_id)}
    assert set(rows) == {n for names in STEPS.values() for n in names}
    for step, names in STEPS.items():
        for name in names:
            assert rows[name]["task_id"] == step and rows[name]["sha256"] == outputs[name]["sha256"]
            assert store.stat(rows[name]["key"]).sha256 == rows[name]["sha256"]
    assert {r["id"] for r in catalog.datasets_of_incident(incident_id)} == {r["id"] for r in rows.values()}
    problem_id = rows["problem.json"]["id"]
    assert catalog.inputs_of(problem_id) == []
    assert catalog.inputs_of(rows["field.json"]["id"]) == [problem_id]
    assert catalog.inputs_of(rows["report.json"]["id"]) == sorted(
        rows[n]["id"] for n in ("problem.json", "field.json", "residuals.csv")
    )
    assert [r["state"] for r in catalog.runs_of_incident(incident_id)] == ["success"]

    # the science, checked independently
    problem = read_json(store, outputs["problem.json"]["key"])
    field = read_json(store, outputs["field.json"]["key"])
    report = read_json(store, outputs["report.json"]["key"])
    check = independent_check(problem, field)
    assert check["relative_residual"] <= tolerance
    assert check["max_error"] < 1e-4 * check["range"]
    assert abs(check["generated"] - check["outflow"]) < 1e-4 * check["generated"]
    assert report["energy"]["generated"] == pytest.approx(check["generated"], rel=1e-9)
    assert report["energy"]["boundary_outflow"] == pytest.approx(check["outflow"], rel=1e-9)
    assert report["relative_residual"] == pytest.approx(check["relative_residual"], rel=1e-6)
    assert report["temperature"]["max"] == pytest.approx(check["max"], rel=1e-12)
    history = b"".join(store.iter_verified(outputs["residuals.csv"]["key"])).decode().splitlines()
    assert history[0] == "iteration,relative_residual" and float(history[-1].split(",")[1]) <= tolerance
    png = b"".join(store.iter_verified(outputs["temperature.png"]["key"]))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (240, 240)


def test_forced_failure_at_solve_leaves_nothing_half_recorded_and_no_notebook(airflow: AirflowClient) -> None:
    run_id, incident_id = start(airflow, {"grid_size": 16, "fail_step": "solve"})
    final = airflow.wait_for_run(DAG, run_id, timeout=180)
    now = states(airflow, run_id)
    assert final["state"] == "failed", now
    assert now["generate"] == "success" and now["solve"] == "failed"
    assert all(now[t] == "upstream_failed" for t in ("postprocess", "open_notebook", "session")), now
    assert now["close_notebook"] in ("skipped", "upstream_failed"), now

    catalog, store = Catalog(), ObjectStoreHook()
    rows = catalog.datasets_of_run(DAG, run_id)
    assert [(r["task_id"], r["key"].rsplit("/", 1)[-1]) for r in rows] == [("generate", "problem.json")]
    prefix = rows[0]["key"].rsplit("/", 2)[0]
    assert store.list_objects(f"{prefix}/solve/") == [], "the failed step left objects behind"
    assert store.list_objects(f"{prefix}/postprocess/") == []
    assert catalog.services_of_run(DAG, run_id) == []
    assert ServiceHook().list_services(dag_id=DAG, run_id=run_id) == []
    (run,) = catalog.runs_of_incident(incident_id)
    assert run["state"] == "failed" and run["reason"]
    assert (catalog.incident(incident_id) or {})["status"] == "failed"
    # each try stored its first output, failed, and removed it; no presigned URL in the log
    for try_number in (1, 2):
        log = "\n".join(airflow.task_log(DAG, run_id, "solve", try_number))
        assert "forced failure after storing field.json" in log
        assert "removed its output" in log and "field.json" in log
        assert "X-Amz-Signature" not in log and "X-Amz-Credential" not in log
