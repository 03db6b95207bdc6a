"""Least privilege per DAG in the whole plugin app (``create_app``), through FastAPI's TestClient: Airflow's
user dependency overridden, and ``allowed`` answered by a fake auth manager at Airflow's boundary (per-DAG
rights on DAG runs: GET read, POST create, PUT change). The catalog, Airflow's run creation and failing, the
object store and the service containers are faked at their boundary and record every write, so each refusal
is seen to leave no row, run, object or container behind.

A run, dataset, job or service belongs to the DAG that made it (its ``dag_id``): the caller sees or touches
it only with the right on that DAG, whatever incident or order it hangs off."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import get_user
from fastapi import FastAPI
from fastapi.testclient import TestClient

import operators.services.hook as service_hook
from operators.storage.hook import ObjectStoreHook, StoredObject
from urgentflow_api import (
    airflow_api,
    incidents,
    incidents_page,
    machines,
    observations,
    orders,
    services,
)
from urgentflow_api.app import create_app

WILDFIRE, STUDY, INGEST, ORDERS = (
    "wildfire_forecast",
    "study_pipeline",
    "ingest_observation",
    "analytics_order",
)
FIRE, FOREIGN_MAP, LIVE_FIRE, STUDY_INC = (
    "inc-00000000000a",
    "inc-00000000000b",
    "inc-00000000000c",
    "inc-00000000000d",
)
FIRE_SVC, INGEST_SVC, LIVE_FIRE_SVC, STUDY_SVC = ("svc-" + c * 24 for c in "abcd")
FIRE_DS, STUDY_DS, ORDER_OUT = 11, 12, 13
ORDER_ID = "ord-00000000000e"
NOW = datetime(2026, 11, 26, 22, 0, tzinfo=UTC)
BEARER = {"Authorization": "Bearer t0ken"}
PAYLOAD = {
    "kind": "wildfire",
    "name": "Monchique",
    "ignition": {"lat": 37.30, "lon": -8.55},
    "region": {"min_lon": -8.65, "min_lat": 37.22, "max_lon": -8.45, "max_lat": 37.38},
    "weather": {"wind_speed_ms": 5.0, "wind_direction_deg": 300.0, "fuel_moisture": 0.08},
}


def rights(*grants: str) -> frozenset[tuple[str, str]]:
    """``"GET wildfire_forecast"`` ... as (method, dag_id) pairs."""
    pairs = (grant.split(" ") for grant in grants)
    return frozenset((method, dag_id) for method, dag_id in pairs)


STUDY_READER = rights(f"GET {STUDY}")
STUDY_ANALYST = STUDY_READER | rights(f"GET {ORDERS}", f"POST {ORDERS}")
FORECAST_READER = rights(f"GET {WILDFIRE}")
FORECAST_OP = rights(f"GET {WILDFIRE}", f"PUT {WILDFIRE}", f"POST {WILDFIRE}")
VIEWER = rights(*(f"GET {d}" for d in (WILDFIRE, STUDY, INGEST, ORDERS)))
OP = VIEWER | rights(*(f"{m} {d}" for m in ("POST", "PUT") for d in (WILDFIRE, STUDY, INGEST, ORDERS)))


@dataclass(frozen=True)
class User:
    rights: frozenset[tuple[str, str]]

    def get_name(self) -> str:
        return "tester"


class AuthManager:
    """Airflow's auth manager as the plugin asks it: per-DAG rights on DAG runs, and the cluster view."""

    def is_authorized_dag(self, *, method: str, access_entity: Any, details: Any, user: User) -> bool:
        assert access_entity is DagAccessEntity.RUN
        return (method, details.id) in user.rights

    def is_authorized_view(self, *, access_view: Any, user: User) -> bool:
        return True


def run(dag_id: str, run_id: str, state: str, role: str = "incident") -> dict[str, Any]:
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "state": state,
        "role": role,
        "reason": "",
        "started_at": NOW,
        "ended_at": None,
        "updated_at": NOW,
    }


def dataset(dataset_id: int, dag_id: str, run_id: str, key: str) -> dict[str, Any]:
    return {
        "id": dataset_id,
        "bucket": "urgentflow",
        "key": key,
        "sha256": f"{dataset_id:064d}",
        "size": dataset_id,
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": "t",
        "map_index": -1,
        "machine": None,
        "job_id": None,
    }


def service(service_id: str, dag_id: str, run_id: str) -> dict[str, Any]:
    return {
        "id": service_id,
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": "viewer",
        "url": f"http://127.0.0.1:4711/{service_id}/",
        "state": "running",
        "container_id": f"c-{service_id}",
        "image": "urgentflow/viewer:1",
        "owner": "ada",
        "expires_at": None,
        "last_seen": None,
        "created_at": NOW,
    }


def job(dag_id: str, run_id: str) -> dict[str, Any]:
    return {
        "machine": "alpha",
        "native_id": f"job-{run_id}",
        "name": f"uf-{run_id}",
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": "member",
        "map_index": 0,
        "state": "RUNNING",
        "exit_code": None,
        "updated_at": NOW,
    }


@dataclass
class World:
    """What the catalog holds, and every write made to it, to Airflow, to the store and to Docker."""

    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # oldest first
    datasets: dict[int, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    writes: list[tuple[Any, ...]] = field(default_factory=list)


def build_world() -> World:
    w = World()
    for incident_id, kind in ((FIRE, "wildfire"), (FOREIGN_MAP, "wildfire"), (LIVE_FIRE, "wildfire")):
        w.incidents[incident_id] = {"id": incident_id, "kind": kind, "status": "running", "payload": PAYLOAD}
    w.incidents[STUDY_INC] = {"id": STUDY_INC, "kind": "study", "status": "running", "payload": {"name": "s"}}
    # FIRE: its forecast succeeded with a map; a later observation was ingested (another DAG)
    w.runs[FIRE] = [run(WILDFIRE, "w1", "success"), run(INGEST, "i1", "success", role="ingest")]
    w.datasets[FIRE_DS] = dataset(
        FIRE_DS, WILDFIRE, "w1", f"incidents/{FIRE}/w1/forecast/burn_probability.png"
    )
    w.datasets[21] = dataset(21, INGEST, "i1", f"incidents/{FIRE}/i1/burn_probability.png")
    w.services[FIRE_SVC] = service(FIRE_SVC, WILDFIRE, "w1")
    w.services[INGEST_SVC] = service(INGEST_SVC, INGEST, "i1")
    w.jobs += [job(WILDFIRE, "w1"), job(INGEST, "i1")]
    # FOREIGN_MAP: its forecast run's map lies under another incident's prefix
    w.runs[FOREIGN_MAP] = [run(WILDFIRE, "f1", "success")]
    w.datasets[22] = dataset(22, WILDFIRE, "f1", f"incidents/{FIRE}/f1/forecast/burn_probability.png")
    # LIVE_FIRE: a running forecast with a viewer, and a running ingest with a service of its own
    w.runs[LIVE_FIRE] = [run(WILDFIRE, "l1", "running"), run(INGEST, "i2", "running", role="ingest")]
    w.services[LIVE_FIRE_SVC] = service(LIVE_FIRE_SVC, WILDFIRE, "l1")
    w.services["svc-" + "e" * 24] = service("svc-" + "e" * 24, INGEST, "i2")
    # STUDY_INC: a study run with a notebook and an output
    w.runs[STUDY_INC] = [run(STUDY, "s1", "success")]
    w.datasets[STUDY_DS] = dataset(STUDY_DS, STUDY, "s1", f"studies/{STUDY_INC}/s1/field.json")
    w.services[STUDY_SVC] = service(STUDY_SVC, STUDY, "s1")
    w.jobs.append(job(STUDY, "s1"))
    # an earlier order's output (analytics_order made it)
    w.datasets[ORDER_OUT] = dataset(ORDER_OUT, ORDERS, "order__x", "orders/ord-x/outputs/summary.json")
    w.orders[ORDER_ID] = {
        "id": ORDER_ID,
        "tool": "stats",
        "image": "urgentflow/tools-stats:1",
        "params": {},
        "input_ids": [FIRE_DS, STUDY_DS],
        "output_ids": [ORDER_OUT],
        "state": "succeeded",
        "exit_code": 0,
        "reason": "",
        "dag_id": ORDERS,
        "run_id": f"order__{ORDER_ID}",
        "created_at": NOW,
        "updated_at": NOW,
        "started_at": NOW,
        "ended_at": NOW,
    }
    return w


WORLD = World()


class FakeCatalog:
    """``Catalog`` (and ``OrderCatalog``) over ``WORLD``: reads answer from it, writes are recorded."""

    def __init__(self, conn_id: str = "catalog_db") -> None:
        self.w = WORLD

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        row = self.w.incidents.get(incident_id)
        return {**row, "created_at": NOW, "updated_at": NOW} if row else None

    def incidents(self, limit: int = 100) -> list[dict[str, Any]]:
        return [r for i in self.w.incidents if (r := self.incident(i))][:limit]

    def runs_of_incident(self, incident_id: str) -> list[dict[str, Any]]:
        return list(self.w.runs.get(incident_id, []))

    def datasets_of_run(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return [d for d in self.w.datasets.values() if (d["dag_id"], d["run_id"]) == (dag_id, run_id)]

    def jobs_of_run(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return [j for j in self.w.jobs if (j["dag_id"], j["run_id"]) == (dag_id, run_id)]

    def services_of_run(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return [s for s in self.w.services.values() if (s["dag_id"], s["run_id"]) == (dag_id, run_id)]

    def datasets_of_incident(self, incident_id: str, key_prefix: str = "") -> list[dict[str, Any]]:
        return []

    def service(self, service_id: str) -> dict[str, Any] | None:
        return self.w.services.get(service_id)

    def recent_services(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(self.w.services.values())[:limit]

    def latest_machine_status(self) -> dict[str, dict[str, Any]]:
        return {}

    def jobs_on(self, machine: str, limit: int = 50) -> list[dict[str, Any]]:
        return [j for j in self.w.jobs if j["machine"] == machine][:limit]

    def dataset(self, dataset_id: int) -> dict[str, Any] | None:
        return self.w.datasets.get(dataset_id)

    def order(self, order_id: str) -> dict[str, Any] | None:
        return self.w.orders.get(order_id)

    def orders(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(self.w.orders.values())[:limit]

    # writes: recorded, never applied (a test of a refusal checks that none happened)
    def create_incident(self, *args: Any, **kwargs: Any) -> None:
        self.w.writes.append(("create_incident", *args))

    def delete_incident(self, *args: Any) -> None:
        self.w.writes.append(("delete_incident", *args))

    def record_incident_run(self, *args: Any, **kwargs: Any) -> str:
        self.w.writes.append(("record_incident_run", *args))
        return "incident"

    def set_incident_status(self, *args: Any) -> None:
        self.w.writes.append(("set_incident_status", *args))

    def set_service_state(self, *args: Any) -> bool:
        self.w.writes.append(("set_service_state", *args))
        return True

    def touch_service(self, *args: Any) -> bool:
        self.w.writes.append(("touch_service", *args))
        return True

    def create_order(self, order_id: str, **fields: Any) -> None:
        self.w.writes.append(("create_order", order_id))

    def delete_order(self, order_id: str) -> None:
        self.w.writes.append(("delete_order", order_id))

    def record_stored(self, *args: Any, **kwargs: Any) -> int:
        self.w.writes.append(("record_stored", *args))
        return 99

    def delete_dataset(self, *args: Any) -> None:
        self.w.writes.append(("delete_dataset", *args))


class FakeServiceHook:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def find(self, service_id: str) -> Any:
        row = WORLD.services.get(service_id)
        return type("Found", (), {"container_id": row["container_id"]})() if row else None

    def remove(self, container_id: str) -> bool:
        WORLD.writes.append(("remove_container", container_id))
        return True


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    global WORLD
    WORLD = build_world()
    manager = AuthManager()
    monkeypatch.setattr("airflow.api_fastapi.app.get_auth_manager", lambda: manager)
    monkeypatch.setattr("airflow.api_fastapi.core_api.security.get_auth_manager", lambda: manager)
    for module in (incidents, incidents_page, machines, observations, services):
        monkeypatch.setattr(module, "Catalog", FakeCatalog)
    monkeypatch.setattr(orders, "OrderCatalog", FakeCatalog)

    def create_run(request: Any, user: Any, dag_id: str, post: Any) -> dict[str, Any]:
        WORLD.writes.append(("create_run", dag_id))
        return {"dag_run_id": post.dag_run_id or "manual__new", "state": "queued"}

    def fail_run(user: Any, dag_id: str, run_id: str) -> bool:
        WORLD.writes.append(("fail_run", dag_id, run_id))
        return True

    monkeypatch.setattr(airflow_api, "create_run", create_run)
    monkeypatch.setattr(incidents, "fail_run", fail_run)
    monkeypatch.setattr(observations, "asset_event", lambda *a: WORLD.writes.append(("asset_event",)))
    monkeypatch.setattr(service_hook, "ServiceHook", FakeServiceHook)
    monkeypatch.setattr(
        "operators.services.data.drop_service_data", lambda sid: WORLD.writes.append(("drop_data", sid))
    )

    def presigned_get(hook: Any, key: str, expires: timedelta = timedelta(hours=1), **kw: Any) -> str:
        return f"http://s3.test/{key}?X-Amz-Signature=s"

    def put_stream(hook: Any, key: str, *args: Any, **kwargs: Any) -> StoredObject:
        WORLD.writes.append(("put_object", key))
        return StoredObject("urgentflow", key, 1, "b" * 64, "etag", "application/octet-stream")

    monkeypatch.setattr(ObjectStoreHook, "presigned_get", presigned_get)
    monkeypatch.setattr(ObjectStoreHook, "put_stream", put_stream)
    monkeypatch.setattr(ObjectStoreHook, "delete", lambda hook, key: WORLD.writes.append(("delete", key)))
    return create_app()


def as_user(app: FastAPI, granted: frozenset[tuple[str, str]]) -> Iterator[TestClient]:
    app.dependency_overrides[get_user] = lambda: User(granted)
    with TestClient(app, headers=BEARER) as client:
        yield client


@pytest.fixture
def study_reader(app: FastAPI) -> Iterator[TestClient]:
    yield from as_user(app, STUDY_READER)


@pytest.fixture
def study_analyst(app: FastAPI) -> Iterator[TestClient]:
    yield from as_user(app, STUDY_ANALYST)


@pytest.fixture
def forecast_reader(app: FastAPI) -> Iterator[TestClient]:
    yield from as_user(app, FORECAST_READER)


@pytest.fixture
def forecast_op(app: FastAPI) -> Iterator[TestClient]:
    yield from as_user(app, FORECAST_OP)


@pytest.fixture
def viewer(app: FastAPI) -> Iterator[TestClient]:
    yield from as_user(app, VIEWER)


@pytest.fixture
def op(app: FastAPI) -> Iterator[TestClient]:
    yield from as_user(app, OP)


ORDER = {"tool": "stats", "tool_params": {"bins": 4}}


def test_a_reader_of_one_dag_sees_touches_and_orders_nothing_of_another(study_analyst: TestClient) -> None:
    c = study_analyst
    assert [i["incident_id"] for i in c.get("/incidents").json()] == [STUDY_INC]
    for incident_id in (FIRE, LIVE_FIRE):
        assert c.get(f"/incidents/{incident_id}").status_code == 404
        assert c.get(f"/incidents/{incident_id}/thumbnail", follow_redirects=False).status_code == 404
        assert c.post(f"/incidents/{incident_id}/cancel").status_code == 404
    for service_id in (FIRE_SVC, LIVE_FIRE_SVC):
        assert c.get(f"/services/{service_id}").status_code == 404
        assert c.post(f"/services/{service_id}/keepalive").status_code == 404
    assert {s["service_id"] for s in c.get("/services").json()} == {STUDY_SVC}
    refused = c.post("/orders", json={**ORDER, "input_dataset_ids": [STUDY_DS, FIRE_DS]})
    assert refused.status_code == 422, refused.text
    (error,) = refused.json()["detail"]
    assert error["loc"] == ["body", "input_dataset_ids"] and error["msg"].endswith(f"[{FIRE_DS}]")
    assert WORLD.writes == [], "a refusal wrote to the catalog, Airflow, the store or Docker"


def test_an_incident_shows_only_runs_jobs_results_and_services_of_readable_dags(
    forecast_reader: TestClient, app: FastAPI
) -> None:
    found = forecast_reader.get(f"/incidents/{FIRE}").json()
    (forecast,) = found["runs"]
    assert forecast["run_id"] == "w1"
    assert [r["dataset_id"] for r in forecast["results"]] == [FIRE_DS]
    assert [s["service_id"] for s in forecast["services"]] == [FIRE_SVC]
    assert [j["native_id"] for j in forecast["jobs"]] == ["job-w1"]
    listed = {i["incident_id"]: i for i in forecast_reader.get("/incidents").json()}
    assert listed[FIRE]["latest_run"]["run_id"] == "w1", "the latest run the user may read"
    page = forecast_reader.get("/ui/incidents").text
    assert INGEST_SVC not in page and "/runs/i1" not in page and "http://127.0.0.1:4711/" + FIRE_SVC in page
    # with the right on the ingest DAG too, its run is there (so the check above means something)
    app.dependency_overrides[get_user] = lambda: User(VIEWER)
    assert [r["run_id"] for r in forecast_reader.get(f"/incidents/{FIRE}").json()["runs"]] == ["w1", "i1"]


def test_a_study_incident_is_readable_with_the_right_on_study_pipeline(study_reader: TestClient) -> None:
    found = study_reader.get(f"/incidents/{STUDY_INC}")
    assert found.status_code == 200, found.text
    assert [r["run_id"] for r in found.json()["runs"]] == ["s1"]


def test_the_thumbnail_is_the_incident_forecast_map_under_the_incident_prefix(
    forecast_reader: TestClient,
) -> None:
    # the newest successful run is an ingest (another DAG, with a PNG of that name): not the forecast
    shown = forecast_reader.get(f"/incidents/{FIRE}/thumbnail", follow_redirects=False)
    assert shown.status_code == 307
    assert shown.headers["location"].startswith(f"http://s3.test/incidents/{FIRE}/w1/forecast/")
    # a map whose key lies under another incident is not this incident's map
    other = forecast_reader.get(f"/incidents/{FOREIGN_MAP}/thumbnail", follow_redirects=False)
    assert other.status_code == 200 and other.headers["content-type"] == "image/svg+xml"


def test_cancel_fails_and_stops_only_what_belongs_to_the_incident_kind_dag(forecast_op: TestClient) -> None:
    response = forecast_op.post(f"/incidents/{LIVE_FIRE}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["failed_runs"] == ["l1"]
    assert response.json()["stopped_services"] == [LIVE_FIRE_SVC]
    assert ("fail_run", INGEST, "i2") not in WORLD.writes
    assert [w for w in WORLD.writes if w[0] in ("remove_container", "drop_data", "set_service_state")] == [
        ("remove_container", f"c-{LIVE_FIRE_SVC}"),
        ("drop_data", LIVE_FIRE_SVC),
        ("set_service_state", LIVE_FIRE_SVC, "stopped"),
    ]


def test_a_read_only_user_gets_403_on_every_write_and_nothing_is_written(viewer: TestClient) -> None:
    assert viewer.get(f"/incidents/{LIVE_FIRE}").status_code == 200
    assert viewer.get(f"/services/{LIVE_FIRE_SVC}").status_code == 200
    assert viewer.post("/incidents", json=PAYLOAD).status_code == 403
    assert viewer.post(f"/incidents/{LIVE_FIRE}/cancel").status_code == 403
    push = viewer.post(f"/incidents/{LIVE_FIRE}/data", params={"kind": "file", "name": "a.csv"}, content=b"x")
    assert push.status_code == 403
    assert viewer.post(f"/services/{LIVE_FIRE_SVC}/keepalive").status_code == 403
    assert viewer.post(f"/services/{STUDY_SVC}/keepalive").status_code == 403
    assert viewer.post("/orders", json={**ORDER, "input_dataset_ids": [STUDY_DS]}).status_code == 403
    assert WORLD.writes == [], "a refusal wrote to the catalog, Airflow, the store or Docker"


def test_an_op_may_do_each_of_those_writes(op: TestClient) -> None:
    """The control for the refusals above: the same requests with the rights to write go through."""
    assert op.post(f"/services/{LIVE_FIRE_SVC}/keepalive").status_code == 200
    assert op.post(f"/incidents/{LIVE_FIRE}/cancel").status_code == 200
    assert op.post("/orders", json={**ORDER, "input_dataset_ids": [FIRE_DS, STUDY_DS]}).status_code == 201
    assert ("touch_service", LIVE_FIRE_SVC) in WORLD.writes and ("fail_run", WILDFIRE, "l1") in WORLD.writes
    assert ("create_run", ORDERS) in WORLD.writes


def test_a_study_incident_takes_no_observations(app: FastAPI) -> None:
    """Its own DAG's rights reach it, but the ingest DAG applies observations to wildfire incidents only."""
    app.dependency_overrides[get_user] = lambda: User(rights(f"GET {STUDY}", f"POST {STUDY}"))
    with TestClient(app, headers=BEARER) as client:
        pushed = client.post(
            f"/incidents/{STUDY_INC}/data", params={"kind": "file", "name": "a.csv"}, content=b"x"
        )
    assert pushed.status_code == 409, pushed.text
    assert WORLD.writes == []


def test_keepalive_needs_the_right_to_change_runs_of_the_service_dag(
    study_reader: TestClient, app: FastAPI
) -> None:
    assert study_reader.post(f"/services/{STUDY_SVC}/keepalive").status_code == 403
    assert WORLD.writes == []
    app.dependency_overrides[get_user] = lambda: User(STUDY_READER | rights(f"PUT {STUDY}"))
    assert study_reader.post(f"/services/{STUDY_SVC}/keepalive").status_code == 200
    assert WORLD.writes == [("touch_service", STUDY_SVC)]


def test_an_order_reads_only_datasets_the_user_may_read(study_analyst: TestClient) -> None:
    for refused in ([FIRE_DS], [STUDY_DS, 424242]):
        response = study_analyst.post("/orders", json={**ORDER, "input_dataset_ids": refused})
        assert response.status_code == 422, response.text
    assert WORLD.writes == [], "a refused order left an order row or a run"
    # its own DAG's outputs and an earlier order's outputs (analytics_order) may be ordered from
    placed = study_analyst.post("/orders", json={**ORDER, "input_dataset_ids": [STUDY_DS, ORDER_OUT]})
    assert placed.status_code == 201, placed.text
    assert [w[0] for w in WORLD.writes] == ["create_order", "create_run"]


def test_an_order_shows_only_datasets_the_user_may_read(study_analyst: TestClient) -> None:
    found = study_analyst.get(f"/orders/{ORDER_ID}").json()
    hidden, shown = found["inputs"]
    assert hidden == {"dataset_id": FIRE_DS, "missing": True}
    assert shown["key"] == WORLD.datasets[STUDY_DS]["key"]
    (output,) = found["outputs"]
    assert output["key"] == WORLD.datasets[ORDER_OUT]["key"] and "download" in output


def test_machines_show_only_jobs_of_dags_the_user_may_read(study_reader: TestClient, app: FastAPI) -> None:
    def shown() -> set[str]:
        listed = study_reader.get("/machines").json()
        one = study_reader.get("/machines/alpha").json()
        page = study_reader.get("/ui/machines").text
        runs = {j["run_id"] for m in listed for j in m["jobs"]} | {j["run_id"] for j in one["jobs"]}
        return runs | {r for r in ("w1", "i1", "s1") if f"<td>{r}</td>" in page}

    assert shown() == {"s1"}
    app.dependency_overrides[get_user] = lambda: User(VIEWER)
    assert shown() == {"w1", "i1", "s1"}
