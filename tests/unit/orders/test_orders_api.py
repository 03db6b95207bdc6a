"""POST/GET /orders through FastAPI's TestClient: Airflow's user dependency (401 without a token), the
permission check, the catalog and Airflow's in-process run creation faked at their boundary."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from airflow.api_fastapi.core_api.security import get_user
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from operators.storage.hook import ObjectStoreHook
from urgentflow_api import airflow_api, orders

ORDER = {"tool": "stats", "input_dataset_ids": [11, 12], "tool_params": {"bins": 4}}
NOW = datetime(2026, 11, 26, 22, 0, tzinfo=UTC)


DATASETS = {
    11: {"id": 11, "bucket": "b", "key": "data/a.csv", "size": 10, "sha256": "a" * 64},
    12: {"id": 12, "bucket": "b", "key": "data/b.json", "size": 20, "sha256": "b" * 64},
    21: {"id": 21, "bucket": "b", "key": "orders/x/outputs/summary.json", "size": 30, "sha256": "c" * 64},
}
# earlier orders' outputs: made by analytics_order, whose runs every user here may read
DATASETS = {i: {**row, "dag_id": "analytics_order"} for i, row in DATASETS.items()}


class FakeOrders:
    rows: ClassVar[dict[str, dict[str, Any]]] = {}

    def create_order(self, order_id: str, **fields: Any) -> None:
        assert order_id not in self.rows
        self.rows[order_id] = {
            "id": order_id,
            **fields,
            "input_ids": list(fields["input_ids"]),
            "output_ids": [],
            "state": "queued",
            "exit_code": None,
            "reason": "",
            "created_at": NOW,
            "updated_at": NOW,
            "started_at": None,
            "ended_at": None,
        }

    def delete_order(self, order_id: str) -> None:
        del self.rows[order_id]

    def order(self, order_id: str) -> dict[str, Any] | None:
        return self.rows.get(order_id)

    def orders(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(self.rows.values())[:limit]

    def dataset(self, dataset_id: int) -> dict[str, Any] | None:
        return DATASETS.get(dataset_id)


class User:
    def __init__(self, rights: set[str]) -> None:
        self.rights = rights


class AuthManager:
    """Airflow's auth manager: ``"POST analytics_order"`` in ``user.rights`` is the right to trigger it."""

    def is_authorized_dag(self, *, method: str, access_entity: Any, details: Any, user: User) -> bool:
        return f"{method} {details.id}" in user.rights


class FakeAirflow:
    """Airflow's run creation: records each trigger; creates the run unless ``answer`` is an error."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answer: Exception | None = None

    def create_run(self, request: Any, user: User, dag_id: str, post: Any) -> dict[str, Any]:
        self.calls.append(
            {
                "dag_id": dag_id,
                "user": user,
                "json": post.model_dump(include={"dag_run_id", "logical_date", "conf"}),
            }
        )
        if self.answer is not None:
            raise self.answer
        return {"dag_run_id": post.dag_run_id, "state": "queued"}


@pytest.fixture
def airflow(monkeypatch: pytest.MonkeyPatch) -> FakeAirflow:
    fake = FakeAirflow()
    monkeypatch.setattr(airflow_api, "create_run", fake.create_run)
    return fake


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    FakeOrders.rows = {}
    monkeypatch.setattr(orders, "OrderCatalog", FakeOrders)

    manager = AuthManager()
    monkeypatch.setattr("airflow.api_fastapi.app.get_auth_manager", lambda: manager)
    monkeypatch.setattr(
        ObjectStoreHook,
        "presigned_get",
        lambda self, key, expires, bucket: f"http://s3.test/{bucket}/{key}?X-Amz-Signature=s",
    )
    app = FastAPI()
    app.include_router(orders.router)
    return app


def client_as(app: FastAPI, rights: set[str]) -> Iterator[TestClient]:
    app.dependency_overrides[get_user] = lambda: User(rights)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def orderer(app: FastAPI) -> Iterator[TestClient]:
    yield from client_as(app, {"POST analytics_order", "GET analytics_order"})


@pytest.fixture
def reader(app: FastAPI) -> Iterator[TestClient]:
    yield from client_as(app, {"GET analytics_order"})


def test_without_a_token_nothing_happens(app: FastAPI, airflow: FakeAirflow) -> None:
    with TestClient(app) as client:
        assert client.post("/orders", json=ORDER).status_code == 401
        assert client.get("/orders").status_code == 401
    assert FakeOrders.rows == {} and airflow.calls == []


def test_an_order_is_recorded_queued_and_its_run_started_as_the_caller(
    orderer: TestClient, airflow: FakeAirflow
) -> None:
    response = orderer.post("/orders", json=ORDER, headers={"Authorization": "Bearer t0ken"})
    assert response.status_code == 201, response.text
    created = response.json()
    order_id, run_id = created["order_id"], created["run_id"]
    assert run_id == f"order__{order_id}" and created["state"] == "queued"
    (call,) = airflow.calls
    assert call["dag_id"] == "analytics_order"
    assert call["user"].rights == {"POST analytics_order", "GET analytics_order"}, "created as the caller"
    assert call["json"] == {
        "dag_run_id": run_id,
        "logical_date": None,
        "conf": {"order_id": order_id, **ORDER},
    }
    row = FakeOrders.rows[order_id]
    assert (row["state"], row["tool"], row["image"], row["input_ids"]) == (
        "queued",
        "stats",
        "urgentflow/tools-stats:1",
        [11, 12],
    )
    assert row["dag_id"] == "analytics_order" and row["run_id"] == run_id


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**ORDER, "tool": "nope"}, ["body", "tool"]),
        ({**ORDER, "tool_params": {"bins": 0}}, ["body", "tool_params"]),
        ({**ORDER, "input_dataset_ids": []}, ["body", "input_dataset_ids"]),
        ({**ORDER, "image": "evil:1"}, ["body", "image"]),
    ],
)
def test_a_bad_order_is_422_with_field_errors_and_leaves_nothing(
    orderer: TestClient, airflow: FakeAirflow, body: dict[str, Any], field: list[str]
) -> None:
    response = orderer.post("/orders", json=body)
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [field]
    assert FakeOrders.rows == {} and airflow.calls == []


def test_without_the_right_to_trigger_it_is_403_and_leaves_nothing(
    reader: TestClient, airflow: FakeAirflow
) -> None:
    assert reader.post("/orders", json=ORDER).status_code == 403
    assert FakeOrders.rows == {} and airflow.calls == []


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (HTTPException(400, "conf does not match the params"), 400),
        (HTTPException(404, "no such DAG"), 404),
        (RuntimeError("database gone"), 503),
        (ValueError("anything else Airflow raises"), 503),
    ],
)
def test_a_refused_or_failed_trigger_removes_the_order(
    orderer: TestClient, airflow: FakeAirflow, answer: Any, status: int
) -> None:
    airflow.answer = answer
    response = orderer.post("/orders", json=ORDER)
    assert response.status_code == status, response.text
    assert FakeOrders.rows == {}, "both or neither: the order row must go when the run was not created"


def test_get_shows_state_inputs_and_outputs_with_links(orderer: TestClient, airflow: FakeAirflow) -> None:
    order_id = orderer.post("/orders", json=ORDER).json()["order_id"]
    FakeOrders.rows[order_id].update(state="succeeded", exit_code=0, output_ids=[21], ended_at=NOW)
    listed = orderer.get("/orders").json()
    assert [(o["order_id"], o["state"], o["exit_code"]) for o in listed] == [(order_id, "succeeded", 0)]
    found = orderer.get(f"/orders/{order_id}").json()
    assert found["reason"] == "" and found["tool_params"] == {"bins": 4}
    assert [i["key"] for i in found["inputs"]] == ["data/a.csv", "data/b.json"]
    assert all("download" not in i for i in found["inputs"])
    (output,) = found["outputs"]
    assert output["dataset_id"] == 21 and output["download"].startswith("http://s3.test/b/orders/x/outputs/")


@pytest.mark.parametrize("order_id", ["ord-ffffffffffff", "not-an-id", "ord-0123"])
def test_unknown_orders_are_404(reader: TestClient, order_id: str) -> None:
    assert reader.get(f"/orders/{order_id}").status_code == 404


def test_orders_of_a_dag_the_user_may_not_read_are_hidden(
    app: FastAPI, orderer: TestClient, airflow: FakeAirflow
) -> None:
    order_id = orderer.post("/orders", json=ORDER).json()["order_id"]
    app.dependency_overrides[get_user] = lambda: User(set())  # the next caller may read nothing
    assert orderer.get("/orders").json() == []
    assert orderer.get(f"/orders/{order_id}").status_code == 404
