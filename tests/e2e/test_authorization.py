"""Least privilege, end to end, with Airflow's FAB auth manager and real users of its roles: per-DAG rights
(``study_reader`` may read study_pipeline only), read-only roles refused every write, an Op allowed; every
refusal leaves no catalog row, DAG run, object or container behind. And no request steers a call of the
server: a forged ``Host`` header changes nothing (the plugin triggers in process, never over HTTP).

The DAGs a request could start are paused here: runs are created (queued) but nothing executes.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from airflow_client import AirflowClient, read_password

from operators.catalog.catalog import Catalog, Producer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.exclusive("catalog"),
]  # counts every incident, service and order in the catalog
WILDFIRE, STUDY, ORDERS = "wildfire_forecast", "study_pipeline", "analytics_order"
INCIDENT: dict[str, Any] = {
    "kind": "wildfire",
    "name": "authorization test",
    "ignition": {"lat": 37.30, "lon": -8.55},
    "region": {"min_lon": -8.65, "min_lat": 37.22, "max_lon": -8.45, "max_lat": 37.38},
    "weather": {"wind_speed_ms": 8.0, "wind_direction_deg": 300.0, "fuel_moisture": 0.07},
    "ensemble_size": 2,
    "deadline_minutes": 30,
}


class Listener:
    """A TCP listener on another loopback address that counts the connections it is offered."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.sock = socket.create_server((host, 0))
        self.sock.settimeout(0.2)
        self.address = f"{host}:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def client_of(username: str) -> AirflowClient:
    return AirflowClient(username=username, password=read_password(username))


@pytest.fixture(scope="module")
def users(airflow: AirflowClient) -> Iterator[dict[str, AirflowClient]]:
    was_paused = {d: airflow.wait_for_dag(d, timeout=120)["is_paused"] for d in (WILDFIRE, STUDY, ORDERS)}
    for dag_id in was_paused:
        airflow.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": True})
    clients = {name: client_of(name) for name in ("admin", "op", "user", "viewer", "study_reader")}
    try:
        yield clients
    finally:
        for client in clients.values():
            client.close()
        for dag_id, paused in was_paused.items():
            airflow.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused})


@pytest.fixture(scope="module")
def wildfire(users: dict[str, AirflowClient]) -> Iterator[dict[str, Any]]:
    """A wildfire incident (its run queued) with a result dataset, a map and a running service row."""
    created = users["admin"].request("POST", "/urgentflow/incidents", json=INCIDENT, ok=(201,))
    incident_id, run_id = created["incident_id"], created["run_id"]
    catalog = Catalog()
    producer = Producer(dag_id=WILDFIRE, run_id=run_id, task_id="aggregate")
    dataset_id = catalog.record_dataset(
        bucket="urgentflow",
        key=f"incidents/{incident_id}/forecast/burn_probability.png",
        sha256="0" * 64,
        size=1,
        content_type="image/png",
        producer=producer,
        incident_id=incident_id,
    )
    catalog.record_job(
        machine="alpha",
        native_id=f"authz-{incident_id}",
        name="member-0",
        state="COMPLETED",
        producer=producer,
    )
    service_id = "svc-" + incident_id.removeprefix("inc-") * 2
    catalog.record_service(
        service_id=service_id,
        dag_id=WILDFIRE,
        run_id=run_id,
        task_id="viewer",
        url="http://127.0.0.1:1/",
        container_id="none",
        state="running",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    yield {"incident_id": incident_id, "run_id": run_id, "dataset_id": dataset_id, "service_id": service_id}
    catalog.set_service_state(service_id, "stopped")
    catalog.delete_dataset(dataset_id)
    catalog.set_incident_status(incident_id, "cancelled")


def counts(airflow: AirflowClient) -> tuple[int, int, int, int]:
    catalog = Catalog()
    runs = sum(
        airflow.request("GET", f"/api/v2/dags/{d}/dagRuns", params={"limit": 1})["total_entries"]
        for d in (WILDFIRE, STUDY, ORDERS)
    )
    incidents = len(catalog.incidents(1000))
    services = len(catalog.recent_services(1000))
    orders = airflow.request("GET", "/urgentflow/orders", params={"limit": 1000})
    return runs, incidents, services, len(orders)


def test_a_forged_host_header_steers_no_call_and_still_creates_the_run(
    airflow: AirflowClient, users: dict[str, AirflowClient]
) -> None:
    listener = Listener()
    admin = users["admin"]
    forged = {"Host": listener.address, "Authorization": f"Bearer {admin.token()}"}
    try:
        response = admin.http.post("/urgentflow/incidents", json=INCIDENT, headers=forged)
        assert response.status_code == 201, response.text
        created = response.json()
        run = airflow.get_run(WILDFIRE, created["run_id"])
        assert run["state"] == "queued" and run["conf"]["incident_id"] == created["incident_id"]
        cancelled = admin.http.post(f"/urgentflow/incidents/{created['incident_id']}/cancel", headers=forged)
        assert cancelled.status_code == 200, cancelled.text
        assert airflow.get_run(WILDFIRE, created["run_id"])["state"] == "failed"
    finally:
        listener.close()
    assert listener.connections == 0, f"the server connected to {listener.address}, named by the request"


def test_a_user_of_one_dag_sees_and_touches_nothing_of_another(
    airflow: AirflowClient, users: dict[str, AirflowClient], wildfire: dict[str, Any]
) -> None:
    reader = users["study_reader"]
    incident_id, service_id = wildfire["incident_id"], wildfire["service_id"]
    before = counts(airflow)

    def status(method: str, path: str, **kwargs: Any) -> int:
        headers = {"Authorization": f"Bearer {reader.token()}", **kwargs.pop("headers", {})}
        return reader.http.request(method, path, headers=headers, **kwargs).status_code

    # Airflow itself agrees: the DAG is not the reader's, study_pipeline is
    assert status("GET", f"/api/v2/dags/{WILDFIRE}") == 403
    assert status("GET", f"/api/v2/dags/{STUDY}") == 200
    listed = reader.request("GET", "/urgentflow/incidents", params={"limit": 1000})
    assert incident_id not in {i["incident_id"] for i in listed}
    assert status("GET", f"/urgentflow/incidents/{incident_id}") == 404
    assert status("GET", f"/urgentflow/incidents/{incident_id}/thumbnail") == 404
    assert status("POST", f"/urgentflow/incidents/{incident_id}/cancel") == 404
    push = {"params": {"kind": "weather"}, "json": INCIDENT["weather"]}
    assert status("POST", f"/urgentflow/incidents/{incident_id}/data", **push) == 404
    assert status("POST", "/urgentflow/incidents", json=INCIDENT) == 403
    assert status("GET", f"/urgentflow/services/{service_id}") == 404
    assert status("POST", f"/urgentflow/services/{service_id}/keepalive") == 404
    assert service_id not in {s["service_id"] for s in reader.request("GET", "/urgentflow/services")}
    order = {"tool": "stats", "input_dataset_ids": [wildfire["dataset_id"]], "tool_params": {"bins": 4}}
    assert status("POST", "/urgentflow/orders", json=order) in (403, 404, 422)
    assert (
        wildfire["run_id"]
        in users["admin"]
        .http.get("/urgentflow/machines/alpha", headers={"Authorization": f"Bearer {users['admin'].token()}"})
        .text
    ), "the admin sees the job (so the next check means something)"
    machines = reader.http.get(
        "/urgentflow/machines/alpha", headers={"Authorization": f"Bearer {reader.token()}"}
    )
    assert machines.status_code == 200 and wildfire["run_id"] not in machines.text
    page = reader.http.get("/urgentflow/ui/incidents", headers={"Authorization": f"Bearer {reader.token()}"})
    assert page.status_code == 200 and incident_id not in page.text
    assert counts(airflow) == before, "a refused request left a run, incident, service or order behind"
    assert (Catalog().incident(incident_id) or {})["status"] != "cancelled"


@pytest.mark.parametrize("role", ["viewer", "study_reader"])
def test_read_only_users_get_403_on_every_write_of_a_dag_they_can_read(
    airflow: AirflowClient, users: dict[str, AirflowClient], wildfire: dict[str, Any], role: str
) -> None:
    client = users[role]
    readable = WILDFIRE if role == "viewer" else STUDY
    before = counts(airflow)

    def status(method: str, path: str, **kwargs: Any) -> int:
        headers = {"Authorization": f"Bearer {client.token()}"}
        return client.http.request(method, path, headers=headers, **kwargs).status_code

    if readable == WILDFIRE:
        incident_id = wildfire["incident_id"]
        assert status("GET", f"/urgentflow/incidents/{incident_id}") == 200
        assert status("POST", "/urgentflow/incidents", json=INCIDENT) == 403
        assert status("POST", f"/urgentflow/incidents/{incident_id}/cancel") == 403
        push = {"params": {"kind": "weather"}, "json": INCIDENT["weather"]}
        assert status("POST", f"/urgentflow/incidents/{incident_id}/data", **push) == 403
        assert status("GET", f"/urgentflow/services/{wildfire['service_id']}") == 200
        assert status("POST", f"/urgentflow/services/{wildfire['service_id']}/keepalive") == 403
    order = {"tool": "stats", "input_dataset_ids": [wildfire["dataset_id"]], "tool_params": {"bins": 4}}
    assert status("POST", "/urgentflow/orders", json=order) in (403, 404, 422)
    assert status("POST", f"/api/v2/dags/{readable}/dagRuns", json={"logical_date": None}) == 403
    assert counts(airflow) == before, "a refused request left a run, incident, service or order behind"
    assert (Catalog().incident(wildfire["incident_id"]) or {})["status"] != "cancelled"


@pytest.mark.parametrize("role", ["op", "user"])
def test_an_op_or_user_may_report_keep_alive_and_cancel(
    users: dict[str, AirflowClient], wildfire: dict[str, Any], role: str
) -> None:
    op = users[role]
    kept = op.request("POST", f"/urgentflow/services/{wildfire['service_id']}/keepalive")
    assert kept["service_id"] == wildfire["service_id"]
    created = op.request("POST", "/urgentflow/incidents", json=INCIDENT, ok=(201,))
    incident_id = created["incident_id"]
    found = op.request("GET", f"/urgentflow/incidents/{incident_id}")
    assert [r["run_id"] for r in found["runs"]] == [created["run_id"]]
    cancelled = op.request("POST", f"/urgentflow/incidents/{incident_id}/cancel")
    assert cancelled["status"] == "cancelled" and cancelled["failed_runs"] == [created["run_id"]]
    assert op.get_run(WILDFIRE, created["run_id"])["state"] == "failed"
    audit = users["admin"].request(
        "GET", "/api/v2/eventLogs", params={"event_pattern": "urgentflow", "run_id": created["run_id"]}
    )
    assert {(e["event"], e["owner"]) for e in audit["event_logs"]} == {
        ("urgentflow.trigger_dag_run", role),
        ("urgentflow.fail_dag_run", role),
    }


def test_the_token_of_each_role_is_issued_by_the_fab_auth_manager(users: dict[str, AirflowClient]) -> None:
    wrong = httpx.post(
        f"{users['admin'].base}/auth/token", json={"username": "viewer", "password": "not-it"}, timeout=30
    )
    assert wrong.status_code == 401
    for client in users.values():
        assert client.token()
