"""What the plugin app stores and links to in the object store, through ``create_app`` and FastAPI's
TestClient: an uploaded file is stored as ``application/octet-stream`` whatever Content-Type the caller
declared (the store's origin never serves a caller's HTML), and every download link is presigned in the
bucket the catalog recorded for the dataset. The catalog, the permission check, Airflow's asset event
and the object store hook are faked at their boundary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from airflow.api_fastapi.core_api.security import get_user
from fastapi.testclient import TestClient

from operators.storage.hook import ObjectStoreHook, StoredObject
from urgentflow_api import incidents, observations, orders
from urgentflow_api.app import create_app

INCIDENT_ID = "inc-0123456789ab"
ORDER_ID = "ord-0123456789ab"
NOW = datetime(2026, 11, 26, 22, 0, tzinfo=UTC)
BEARER = {"Authorization": "Bearer t0ken"}
PAYLOAD = {
    "kind": "wildfire",
    "name": "Monchique",
    "ignition": {"lat": 37.30, "lon": -8.55},
    "region": {"min_lon": -8.65, "min_lat": 37.22, "max_lon": -8.45, "max_lat": 37.38},
    "weather": {"wind_speed_ms": 5.0, "wind_direction_deg": 300.0, "fuel_moisture": 0.08},
}
# a dataset recorded in a bucket other than the connection's default one
ELSEWHERE = {
    "id": 7,
    "bucket": "archive",
    "key": "incidents/x/r1/forecast/burn.csv",
    "size": 3,
    "sha256": "a" * 64,
    "dag_id": "wildfire_forecast",
    "run_id": "manual__1",
}


# the hook's I/O: what was stored (with its content type), and in which bucket each link was signed
STORED: list[tuple[str, str]] = []
SIGNED: list[tuple[str | None, str]] = []


def put_stream(
    hook: ObjectStoreHook, key: str, stream: Any, content_type: str = "", length: int = -1
) -> StoredObject:
    STORED.append((key, content_type))
    return StoredObject("urgentflow", key, length, "b" * 64, "etag", content_type)


def presigned_get(
    hook: ObjectStoreHook, key: str, expires: timedelta = timedelta(hours=1), *, bucket: str | None = None
) -> str:
    SIGNED.append((bucket, key))
    return f"http://s3.test/{bucket or 'default'}/{key}"


class FakeCatalog:
    def incident(self, incident_id: str) -> dict[str, Any]:
        return {
            "id": incident_id,
            "kind": "wildfire",
            "status": "running",
            "payload": PAYLOAD,
            "created_at": NOW,
            "updated_at": NOW,
        }

    def record_stored(self, stored: StoredObject, producer: Any, incident_id: str | None = None) -> int:
        return 1

    def runs_of_incident(self, incident_id: str) -> list[dict[str, Any]]:
        return [
            {"dag_id": "wildfire_forecast", "run_id": "manual__1", "state": "success", "role": "incident"}
        ]

    def datasets_of_run(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return [{**ELSEWHERE, "task_id": "aggregate"}]

    def jobs_of_run(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return []

    def services_of_run(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return []

    def datasets_of_incident(self, incident_id: str, prefix: str = "") -> list[dict[str, Any]]:
        return []


class FakeOrders:
    def order(self, order_id: str) -> dict[str, Any]:
        return {
            "id": order_id,
            "tool": "stats",
            "state": "success",
            "exit_code": 0,
            "dag_id": "analytics_order",
            "run_id": "order__1",
            "created_at": NOW,
            "updated_at": NOW,
            "started_at": NOW,
            "ended_at": NOW,
            "image": "urgentflow/tools-stats:1",
            "params": {},
            "reason": "",
            "input_ids": [],
            "output_ids": [ELSEWHERE["id"]],
        }

    def dataset(self, dataset_id: int) -> dict[str, Any] | None:
        return ELSEWHERE if dataset_id == ELSEWHERE["id"] else None


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, grant_all: None) -> TestClient:
    STORED.clear()
    SIGNED.clear()
    monkeypatch.setattr(ObjectStoreHook, "put_stream", put_stream)
    monkeypatch.setattr(ObjectStoreHook, "presigned_get", presigned_get)
    monkeypatch.setattr(incidents, "Catalog", FakeCatalog)
    monkeypatch.setattr(observations, "Catalog", FakeCatalog)
    monkeypatch.setattr(observations, "asset_event", lambda user, uri, extra: 42)
    monkeypatch.setattr(orders, "OrderCatalog", FakeOrders)
    app = create_app()
    app.dependency_overrides[get_user] = lambda: {"name": "ada"}
    return TestClient(app)


@pytest.mark.parametrize("declared", ["text/html", "image/svg+xml", "application/xhtml+xml; charset=utf-8"])
def test_an_uploaded_file_is_stored_as_octet_stream(client: TestClient, declared: str) -> None:
    response = client.post(
        f"/incidents/{INCIDENT_ID}/data",
        params={"kind": "file", "name": "page.html"},
        content=b"<script>alert(document.domain)</script>",
        headers={**BEARER, "Content-Type": declared},
    )
    assert response.status_code == 201, response.text
    [(key, content_type)] = STORED
    assert key.endswith("/page.html") and content_type == "application/octet-stream"


def test_incident_results_are_linked_in_their_own_bucket(client: TestClient) -> None:
    response = client.get(f"/incidents/{INCIDENT_ID}", headers=BEARER)
    assert response.status_code == 200, response.text
    [result] = response.json()["runs"][0]["results"]
    assert result["download"] == f"http://s3.test/archive/{ELSEWHERE['key']}"
    assert [("archive", ELSEWHERE["key"])] == SIGNED


def test_order_outputs_are_linked_in_their_own_bucket(client: TestClient) -> None:
    response = client.get(f"/orders/{ORDER_ID}", headers=BEARER)
    assert response.status_code == 200, response.text
    [output] = response.json()["outputs"]
    assert output["download"] == f"http://s3.test/archive/{ELSEWHERE['key']}"
