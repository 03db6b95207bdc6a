"""Orders end to end on the real runtime, store, catalog and Docker engine: datasets put into the store
and catalog by the test, analytics_order triggered through the REST API, the tool image run, outputs
catalogued with lineage and checked against numpy; a tool that fails and orders that are refused leave
the right end state on the order."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from airflow_client import AirflowClient

from operators.catalog.catalog import Producer
from operators.catalog.orders import OrderCatalog
from operators.storage.hook import ObjectStoreHook

pytestmark = pytest.mark.e2e
DAG = "analytics_order"
A_CSV = "t,h,station\n1.5,40,north\n2.25,,south\n-3.0,55.5,north\n10,61,east\n4.75,38,south\n"
B_JSON: list[dict[str, float | None]] = [
    {"t": 7.5, "h": 70},
    {"t": -1.25, "h": None},
    {"t": 0, "h": 45.25},
    {"t": 3.5, "h": 52},
]


@pytest.fixture(scope="module")
def store() -> ObjectStoreHook:
    return ObjectStoreHook()


@pytest.fixture(scope="module")
def orders() -> OrderCatalog:
    return OrderCatalog()


def put_dataset(
    store: ObjectStoreHook, orders: OrderCatalog, name: str, body: bytes, content_type: str
) -> int:
    stored = store.put_stream(
        f"tests/analytics_order/{uuid.uuid4().hex[:12]}/{name}", io.BytesIO(body), content_type, len(body)
    )
    return orders.record_stored(stored, Producer(dag_id="test_analytics_order", task_id="put_dataset"))


@pytest.fixture(scope="module")
def inputs(store: ObjectStoreHook, orders: OrderCatalog) -> list[int]:
    return [
        put_dataset(store, orders, "a.csv", A_CSV.encode(), "text/csv"),
        put_dataset(store, orders, "b.json", json.dumps(B_JSON).encode(), "application/json"),
    ]


@pytest.fixture(scope="module")
def dag(airflow: AirflowClient) -> Iterator[str]:
    airflow.wait_for_dag(DAG, timeout=120)
    airflow.unpause(DAG)
    yield DAG


def run_order(airflow: AirflowClient, conf: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    run_id = str(airflow.trigger(DAG, conf)["dag_run_id"])
    final = airflow.wait_for_run(DAG, run_id, timeout=300)
    return run_id, final


def states(airflow: AirflowClient, run_id: str) -> dict[str, tuple[str, int]]:
    return {t["task_id"]: (t["state"], t["try_number"]) for t in airflow.task_instances(DAG, run_id)}


def order_of(orders: OrderCatalog, run_id: str) -> dict[str, Any]:
    order_id = orders.order_of_run(DAG, run_id)
    assert order_id is not None, f"run {run_id} recorded no order"
    return orders.order(order_id) or {}


def expected_columns() -> dict[str, list[float]]:
    rows = list(csv.DictReader(io.StringIO(A_CSV)))
    pooled: dict[str, list[float]] = {"t": [], "h": []}
    for column in pooled:
        pooled[column] += [float(r[column]) for r in rows if r[column] != ""]
        pooled[column] += [float(v) for r in B_JSON if (v := r[column]) is not None]
    return pooled


def test_an_order_runs_the_tool_and_catalogues_outputs_derived_from_every_input(
    airflow: AirflowClient, dag: str, store: ObjectStoreHook, orders: OrderCatalog, inputs: list[int]
) -> None:
    run_id, final = run_order(
        airflow, {"tool": "stats", "input_dataset_ids": inputs, "tool_params": {"bins": 5}}
    )
    assert final["state"] == "success", states(airflow, run_id)
    order = order_of(orders, run_id)
    assert (order["state"], order["exit_code"], order["reason"]) == ("succeeded", 0, "")
    assert order["image"] == "urgentflow/tools-stats:1" and order["input_ids"] == inputs
    assert order["started_at"] <= order["ended_at"]

    produced = orders.datasets_of_run(DAG, run_id)
    assert sorted(d["id"] for d in produced) == sorted(order["output_ids"])
    names = {d["key"].rsplit("/", 1)[-1]: d for d in produced}
    assert set(names) == {"summary.json", "histograms.csv"}
    for dataset in produced:
        assert (
            dataset["key"].startswith(f"orders/{order['id']}/outputs/")
            and dataset["task_id"] == "register_outputs"
        )
        assert orders.inputs_of(dataset["id"]) == sorted(inputs), "every output derives from every input"
        assert len(dataset["job_id"] or "") == 12, "the producer names the tool's container"

    summary = json.loads(b"".join(store.iter_verified(names["summary.json"]["key"])))
    assert set(summary["columns"]) == {"t", "h"}, "the text column 'station' is not summarised"
    assert [(i["dataset_id"], i["rows"]) for i in summary["inputs"]] == [(inputs[0], 5), (inputs[1], 4)]
    for column, values in expected_columns().items():
        got, data = summary["columns"][column], np.array(values)
        counts, edges = np.histogram(data, bins=5)
        assert got["count"] == len(values)
        assert got["mean"] == pytest.approx(data.mean(), rel=1e-12)
        assert got["std"] == pytest.approx(data.std(ddof=1), rel=1e-12)
        assert (got["min"], got["max"], got["median"]) == (data.min(), data.max(), np.median(data))
        assert got["histogram"]["counts"] == counts.tolist()
        assert got["histogram"]["edges"] == pytest.approx(edges.tolist(), rel=1e-12)
    table = list(
        csv.DictReader(io.StringIO(b"".join(store.iter_verified(names["histograms.csv"]["key"])).decode()))
    )
    assert [int(r["count"]) for r in table if r["column"] == "t"] == summary["columns"]["t"]["histogram"][
        "counts"
    ]


def test_a_tool_that_fails_fails_the_order_with_its_exit_code_and_stderr(
    airflow: AirflowClient, dag: str, store: ObjectStoreHook, orders: OrderCatalog, inputs: list[int]
) -> None:
    bad = put_dataset(store, orders, "c.csv", b"t\n1\nabc\n3\n", "text/csv")
    run_id, final = run_order(
        airflow, {"tool": "stats", "input_dataset_ids": [inputs[0], bad], "tool_params": {"columns": ["t"]}}
    )
    assert final["state"] == "failed"
    tasks = states(airflow, run_id)
    assert tasks["accept"][0] == "success" and tasks["register_outputs"][0] == "upstream_failed"
    assert tasks["run_tool"] == ("failed", 1), "a tool's own failure is not retried"
    order = order_of(orders, run_id)
    assert (order["state"], order["exit_code"]) == ("failed", 3)
    assert "tool stats exited with code 3" in order["reason"]
    assert "c.csv row 2 column 't': 'abc' is not a number" in order["reason"]
    assert order["output_ids"] == [] and orders.datasets_of_run(DAG, run_id) == []


@pytest.mark.parametrize(
    ("conf", "reason"),
    [
        ({"tool": "nope", "tool_params": {}}, "order refused: tool: unknown tool 'nope' (known: stats)"),
        (
            {"tool": "stats", "tool_params": {"bins": 0}},
            "tool 'stats': field tool_params.bins: 0 is less than",
        ),
        ({"tool": "stats", "tool_params": {}, "missing": True}, "is not in the catalog"),
    ],
)
def test_a_refused_order_fails_in_accept_and_starts_no_container(
    airflow: AirflowClient,
    dag: str,
    orders: OrderCatalog,
    inputs: list[int],
    conf: dict[str, Any],
    reason: str,
) -> None:
    ids = [inputs[0], 2**62] if conf.pop("missing", False) else inputs
    run_id, final = run_order(airflow, {**conf, "input_dataset_ids": ids})
    assert final["state"] == "failed"
    tasks = states(airflow, run_id)
    assert tasks["accept"] == ("failed", 1), "a refused order is not retried"
    assert tasks["run_tool"][0] == "upstream_failed", "no container was started"
    order = order_of(orders, run_id)
    assert order["state"] == "failed" and order["exit_code"] is None
    assert reason in order["reason"], order["reason"]
    assert order["image"] == (None if conf["tool"] == "nope" else "urgentflow/tools-stats:1")
    assert orders.datasets_of_run(DAG, run_id) == []


def test_an_order_placed_over_the_api_is_queued_then_ended_by_the_exit_handler(
    airflow: AirflowClient, dag: str, orders: OrderCatalog, inputs: list[int]
) -> None:
    """Needs the plugin (router and listener) loaded by the running API server and scheduler."""
    body = {"tool": "stats", "input_dataset_ids": inputs, "tool_params": {"bins": 3}}
    assert airflow.http.post("/urgentflow/orders", json=body).status_code == 401
    airflow.request("PATCH", f"/api/v2/dags/{DAG}", json={"is_paused": True})
    try:
        created = airflow.request("POST", "/urgentflow/orders", json=body, ok=(201,))
        queued = airflow.request("GET", f"/urgentflow/orders/{created['order_id']}")
        assert queued["state"] == "queued" and queued["run_id"] == created["run_id"]
        # the DAG is paused: no task ran; an operator marks the run failed by hand
        airflow.request("PATCH", f"/api/v2/dags/{DAG}/dagRuns/{created['run_id']}", json={"state": "failed"})
        deadline = time.monotonic() + 30
        while (found := orders.order(created["order_id"]) or {}).get("state") != "failed":
            assert time.monotonic() < deadline, f"the exit handler did not end the order: {found}"
            time.sleep(1)
        assert found["reason"].startswith(f"run {created['run_id']} failed")
    finally:
        airflow.unpause(DAG)
