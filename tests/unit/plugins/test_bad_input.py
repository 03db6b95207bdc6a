"""Bad input is never a 5xx, and a refused request creates nothing: property-based (hypothesis) over the
whole plugin app (``create_app``) through FastAPI's TestClient. Non-finite numbers (``NaN``,
``Infinity``, ``1e400``), booleans and strings where numbers belong, deep nesting, text and binary
bodies, in every JSON body and every data upload.

Airflow's user dependency is overridden and its auth manager allows everything; the catalog, Airflow's
run creation and asset events and the object store are faked at their boundary and record every write.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from airflow.api_fastapi.core_api.security import get_user
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hostile_json import NON_FINITE, bodies, leaves, nesting, with_literal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators.jsoninput import loads
from operators.storage.hook import ObjectStoreHook, StoredObject
from urgentflow_api import airflow_api, incidents, incidents_page, machines, observations, orders, services
from urgentflow_api.app import create_app

INCIDENT_ID = "inc-0123456789ab"
NOW = datetime(2026, 11, 26, 22, 0, tzinfo=UTC)
RING = [[-8.56, 37.29], [-8.54, 37.29], [-8.54, 37.31], [-8.56, 37.29]]
PERIMETER = {"type": "Polygon", "coordinates": [RING]}
WEATHER = {"wind_speed_ms": 5.5, "wind_direction_deg": 300.5, "fuel_moisture": 0.08}
INCIDENT = {
    "kind": "wildfire",
    "name": "Monchique",
    "ignition": {"lat": 37.30, "lon": -8.55},
    "region": {"min_lon": -8.65, "min_lat": 37.22, "max_lon": -8.45, "max_lat": 37.38},
    "weather": WEATHER,
    "ensemble_size": 4,
    "deadline_minutes": 30,
    "seed": 7,
    "updates": False,
    "perimeter": PERIMETER,
}
ORDER = {"tool": "stats", "input_dataset_ids": [11, 12], "tool_params": {"bins": 4, "columns": ["t"]}}
DATA = f"/incidents/{INCIDENT_ID}/data"
# every way a caller sends a JSON document: (path, query, a valid document)
TARGETS = [
    ("/incidents", {}, INCIDENT),
    ("/orders", {}, ORDER),
    (DATA, {"kind": "weather"}, WEATHER),
    (DATA, {"kind": "perimeter"}, PERIMETER),
    (DATA, {"kind": "perimeter"}, {"type": "Feature", "properties": {}, "geometry": PERIMETER}),
]
NOT_A_NUMBER = ["true", "false", '"5"', '"5.5"', "null", "[]", "{}"]
NOT_A_BOOLEAN = ["0", "1", '"true"', '"false"', "null"]
CONTENT_TYPES = [
    "application/json",
    "application/geo+json",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "application/octet-stream",
]
EXAMPLES = 150
FAST = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Recorder:
    """Every write through a faked boundary, in order."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, what: str) -> None:
        self.writes.append(what)


WRITES = Recorder()


class FakeCatalog:
    """One open incident; every write is recorded; lists are empty."""

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        if incident_id != INCIDENT_ID:
            return None
        payload = {k: v for k, v in INCIDENT.items() if k != "perimeter"}
        return {"id": incident_id, "kind": "wildfire", "status": "running", "payload": payload} | {
            "created_at": NOW,
            "updated_at": NOW,
        }

    def service(self, service_id: str) -> None:
        return None

    def create_incident(self, incident_id: str, kind: str, payload: dict[str, Any]) -> None:
        WRITES.write(f"incident {incident_id}")

    def delete_incident(self, incident_id: str) -> None:
        WRITES.write(f"- incident {incident_id}")

    def record_incident_run(self, incident_id: str, dag_id: str, run_id: str, state: str) -> None:
        WRITES.write(f"incident run {run_id}")

    def record_stored(self, stored: StoredObject, producer: Any, incident_id: str | None = None) -> int:
        WRITES.write(f"dataset {stored.key}")
        return 1

    def delete_dataset(self, dataset_id: int) -> None:
        WRITES.write(f"- dataset {dataset_id}")

    def set_incident_status(self, incident_id: str, status: str) -> None:
        WRITES.write(f"incident {incident_id} {status}")

    def touch_service(self, service_id: str) -> None:
        WRITES.write(f"service {service_id} touched")

    def latest_machine_status(self, max_age_seconds: float | None = None) -> dict[str, Any]:
        return {}

    def __getattr__(self, read: str) -> Any:
        return lambda *args, **kwargs: []


class FakeOrders:
    def create_order(self, order_id: str, **fields: Any) -> None:
        WRITES.write(f"order {order_id}")

    def delete_order(self, order_id: str) -> None:
        WRITES.write(f"- order {order_id}")

    def order(self, order_id: str) -> None:
        return None

    def orders(self, limit: int = 100) -> list[dict[str, Any]]:
        return []

    def dataset(self, dataset_id: int) -> dict[str, Any]:
        return {"id": dataset_id, "bucket": "urgentflow", "key": f"data/{dataset_id}.csv", "size": 1} | {
            "sha256": "a" * 64,
            "dag_id": "wildfire_forecast",
        }


class AllowingAuthManager:
    """Airflow's auth manager: every ``is_authorized_*`` question is answered yes."""

    def __getattr__(self, question: str) -> Any:
        assert question.startswith("is_authorized_"), question
        return lambda **kwargs: True


def create_run(request: Any, user: Any, dag_id: str, post: Any) -> dict[str, Any]:
    WRITES.write(f"run {dag_id}")
    return {"dag_run_id": post.dag_run_id or "manual__1", "state": "queued"}


def put_stream(
    hook: ObjectStoreHook, key: str, stream: Any, content_type: str = "", length: int = -1
) -> StoredObject:
    WRITES.write(f"object {key}")
    return StoredObject("urgentflow", key, length, "b" * 64, "etag", content_type)


def asset_event(user: Any, uri: str, extra: dict[str, Any]) -> int:
    WRITES.write(f"asset event {extra['key']}")
    return 42


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    for where in ("airflow.api_fastapi.app", "airflow.api_fastapi.core_api.security"):
        monkeypatch.setattr(f"{where}.get_auth_manager", AllowingAuthManager)
    monkeypatch.setattr(airflow_api, "create_run", create_run)
    monkeypatch.setattr(observations, "asset_event", asset_event)
    monkeypatch.setattr(ObjectStoreHook, "put_stream", put_stream)
    monkeypatch.setattr(ObjectStoreHook, "delete", lambda hook, key: WRITES.write(f"- object {key}"))
    monkeypatch.setattr(ObjectStoreHook, "presigned_get", lambda hook, key, *a, **kw: f"http://s3.test/{key}")
    for module in (incidents, incidents_page, machines, observations, services):
        monkeypatch.setattr(module, "Catalog", FakeCatalog)
    monkeypatch.setattr(orders, "OrderCatalog", FakeOrders)
    app = create_app()
    app.dependency_overrides[get_user] = lambda: {"name": "ada"}
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # a 5xx is an answer here, to be asserted on, not an exception
    with TestClient(app, raise_server_exceptions=False, headers={"Authorization": "Bearer t0ken"}) as c:
        yield c


def send(client: TestClient, path: str, query: dict[str, str], body: str | bytes, content_type: str) -> Any:
    WRITES.writes.clear()
    return client.post(path, params=query, content=body, headers={"Content-Type": content_type})


def assert_refused(response: Any) -> None:
    """Refused with a 422 whose body is valid (strict) JSON, and nothing was written anywhere."""
    assert response.status_code == 422, (response.status_code, response.text[:300])
    loads(response.content)
    assert WRITES.writes == [], f"a refused request wrote {WRITES.writes}"


def test_the_valid_documents_are_accepted(client: TestClient) -> None:
    """The baseline the properties below mutate: each target accepts its document and writes."""
    for path, query, document in TARGETS:
        response = send(client, path, query, json.dumps(document), "application/json")
        assert response.status_code == 201, (path, response.text)
        assert WRITES.writes, f"{path} accepted but wrote nothing"


def target_and_leaf(numbers_only: bool = False) -> st.SearchStrategy[tuple[Any, tuple[Any, ...]]]:
    """A target and the path of one of its document's values (with ``numbers_only``, of a number)."""

    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    def paths(target: Any) -> st.SearchStrategy[tuple[Any, tuple[Any, ...]]]:
        found = [p for p, v in leaves(target[2]) if number(v) or not numbers_only]
        return st.sampled_from(found).map(lambda p: (target, p))

    return st.sampled_from(TARGETS).flatmap(paths)


@FAST
@given(where=target_and_leaf(), literal=st.sampled_from(NON_FINITE))
def test_a_non_finite_number_anywhere_is_422_and_creates_nothing(
    client: TestClient, where: tuple[Any, tuple[Any, ...]], literal: str
) -> None:
    (path, query, document), leaf = where
    assert_refused(send(client, path, query, with_literal(document, leaf, literal), "application/json"))


@FAST
@given(where=target_and_leaf(numbers_only=True), literal=st.sampled_from(NOT_A_NUMBER))
def test_a_number_is_never_converted_from_a_boolean_or_a_string(
    client: TestClient, where: tuple[Any, tuple[Any, ...]], literal: str
) -> None:
    (path, query, document), leaf = where
    assert_refused(send(client, path, query, with_literal(document, leaf, literal), "application/json"))


@pytest.mark.parametrize("literal", NOT_A_BOOLEAN)
def test_a_boolean_is_never_converted_from_a_number_or_a_string(client: TestClient, literal: str) -> None:
    body = with_literal(INCIDENT, ("updates",), literal)
    assert_refused(send(client, "/incidents", {}, body, "application/json"))


@FAST
@given(
    where=target_and_leaf() | st.sampled_from(TARGETS).map(lambda t: (t, ())),
    nested=nesting(),
)
def test_deep_nesting_is_a_422_not_a_crash(
    client: TestClient, where: tuple[Any, tuple[Any, ...]], nested: str
) -> None:
    """Nested arrays, whole body or at any leaf, closed or not: a 422, never a RecursionError."""
    (path, query, document), leaf = where
    assert_refused(send(client, path, query, with_literal(document, leaf, nested), "application/json"))


def routes(app: FastAPI) -> list[tuple[str, str]]:
    return sorted((method, r.path) for r in app.routes if isinstance(r, APIRoute) for method in r.methods)


@FAST
@given(
    data=st.data(),
    segment=st.sampled_from([INCIDENT_ID, "ord-0123456789ab", "svc-" + "a" * 24])
    | st.text(min_size=1, max_size=20),
    body=bodies(),
    content_type=st.sampled_from(CONTENT_TYPES),
    kind=st.sampled_from(["weather", "perimeter", "file", "", "FILE"]),
)
def test_every_route_answers_any_body_without_a_5xx(
    app: FastAPI,
    client: TestClient,
    data: st.DataObject,
    segment: str,
    body: bytes,
    content_type: str,
    kind: str,
) -> None:
    """Every route of the app, with any path segment, body and content type: never a 5xx, and a refused
    request writes nothing."""
    method, template = data.draw(st.sampled_from(routes(app)))
    path = re.sub(r"\{[a-z_]+\}", quote(segment, safe=""), template)
    WRITES.writes.clear()
    response = client.request(
        method,
        path,
        params={"kind": kind, "name": "notes.txt"},
        content=body,
        headers={"Content-Type": content_type},
    )
    assert response.status_code < 500, (method, path, response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert WRITES.writes == [], (
            f"{method} {path} was refused with {response.status_code} but wrote {WRITES.writes}"
        )


def test_a_validation_error_names_the_field_without_repeating_the_input(client: TestClient) -> None:
    body = with_literal(INCIDENT, ("ensemble_size",), "true")
    response = send(client, "/incidents", {}, body, "application/json")
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {"type": "int_type", "loc": ["body", "ensemble_size"], "msg": "Input should be a valid integer"}
        ]
    }


def test_a_large_upload_is_parsed_off_the_event_loop(app: FastAPI) -> None:
    """While a 15 MB document is parsed and refused, the event loop keeps serving: its longest stop is
    well under half the request's time (parsing on the loop stops it throughout; in a thread, what is
    left is the garbage collector's passes over the new objects)."""
    document = json.dumps([[-8.55 - i * 1.234567e-7, 37.3 + i * 1.1e-8] for i in range(420_000)]).encode()
    assert len(document) > 15_000_000

    async def upload_while_ticking() -> tuple[int, float, float]:
        pauses, done = [0.0], asyncio.Event()

        async def tick() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.002)
                now = time.perf_counter()
                pauses.append(now - last)
                last = now

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            ticker = asyncio.create_task(tick())
            started = time.perf_counter()
            response = await http.post(DATA, params={"kind": "weather"}, content=document)
            took = time.perf_counter() - started
            done.set()
            await ticker
        return response.status_code, took, max(pauses)

    WRITES.writes.clear()
    status, took, longest_pause = asyncio.run(upload_while_ticking())
    assert status == 422 and WRITES.writes == []
    assert longest_pause < took / 2, f"the event loop stopped for {longest_pause:.2f} s of {took:.2f} s"
