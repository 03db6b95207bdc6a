"""Hostile input on the real runtime and test bed: every plugin endpoint refuses requests without a valid
token (401); shell metacharacters in every field that reaches a job, a container or a remote command
are refused at the boundary or carried as plain data (a canary file is never created); object names
with traversal are refused and nothing is written outside the incident's prefix; no secret appears in
any task log; a burst of 200 incidents gives 200 rows and 200 linked runs."""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
from airflow_client import AirflowClient, passwords_file, runtime_dir
from bed import bed_connection
from fastapi.routing import APIRoute
from observation_events import consume_observation_events

from operators.catalog.catalog import Catalog, Producer
from operators.storage.hook import ObjectStoreHook
from urgentflow_api.app import create_app

pytestmark = [pytest.mark.e2e, pytest.mark.exclusive("catalog")]  # counts every incident in the catalog
TOKEN = secrets.token_hex(3)
CANARY = f"/tmp/ufc-{TOKEN}"  # the job hosts (Slurm nodes as user urgent) and the workers are this host
# one payload per way a shell could be talked into running something; each would touch its own file
PAYLOADS = {
    "dollar": f"$(touch {CANARY}-d)",
    "backtick": f"`touch {CANARY}-b`",
    "semicolon": f"; touch {CANARY}-s",
    "quote": f"' ; touch {CANARY}-q #",
    "dquote": f'" ; touch {CANARY}-w #',
    "pipe": f"| touch {CANARY}-p",
    "and": f"&& touch {CANARY}-a",
}
NEWLINE = f"x\n touch {CANARY}-n"
INCIDENT: dict[str, Any] = {
    "kind": "wildfire",
    "ignition": {"lat": 37.30, "lon": -8.55},
    "region": {"min_lon": -8.65, "min_lat": 37.22, "max_lon": -8.45, "max_lat": 37.38},
    "weather": {"wind_speed_ms": 5.0, "wind_direction_deg": 300.0, "fuel_moisture": 0.08},
    "ensemble_size": 1,
    "deadline_minutes": 30,
}
TRAVERSAL = (
    "..",
    "../escape.txt",
    "../../incidents/other/x",
    "/etc/passwd",
    "%2e%2e",
    "%2e%2e%2fescape",
    "..%2fescape",
    "a\\..\\b",
    "..\\escape",
    "x\x00.txt",
    "a/b.txt",
    "./x",
    ".hidden",
    "~/.ssh/authorized_keys",
)


def canaries() -> list[str]:
    """Every file the payloads would have made, wherever a job or a worker could have made it."""
    found = [str(p) for p in Path("/tmp").glob(f"ufc-{TOKEN}*")]
    for root in ("/home/urgent", str(runtime_dir())):
        for dirpath, dirnames, filenames in os.walk(root):
            found += [os.path.join(dirpath, n) for n in filenames + dirnames if f"ufc-{TOKEN}" in n]
    return found


def headers(airflow: AirflowClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {airflow.token()}"}


def set_paused(airflow: AirflowClient, dag_id: str, paused: bool) -> bool:
    """Pause or unpause; returns whether it was paused before."""
    was = bool(airflow.wait_for_dag(dag_id, timeout=120)["is_paused"])
    airflow.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused})
    return was


def delete_run(airflow: AirflowClient, dag_id: str, run_id: str) -> None:
    airflow.request("DELETE", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}", ok=(204, 404))


# -- 1. authentication ---------------------------------------------------------------------------


def plugin_routes() -> list[tuple[str, str]]:
    """(method, path) of every route of the plugin app, the UI pages (not in the OpenAPI spec) included."""
    found = []
    for route in create_app().routes:
        if isinstance(route, APIRoute):
            found += [(method, route.path) for method in sorted(route.methods)]
    return found


# Routes a caller without an Airflow token uses, authenticated by a token of their own: a batch job's
# completion notice (an HMAC over the notice under the deployment's secret, operators/hpc/notice.py).
OWN_TOKEN = {("POST", "/jobs/notice")}
FORGED_NOTICE = {"machine": "beta", "job": "uf-forged-1", "nonce": "0" * 32, "token": "f" * 64}


def test_every_endpoint_refuses_missing_invalid_and_expired_tokens(airflow: AirflowClient) -> None:
    started = time.monotonic()
    every = plugin_routes()
    routes = [route for route in every if route not in OWN_TOKEN]
    assert set(every) >= OWN_TOKEN
    spec = airflow.http.get("/urgentflow/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert documented <= set(every), "the live spec has operations the code does not"
    assert {("GET", "/ui/incidents"), ("GET", "/ui/machines"), ("GET", "/ui/services")} <= set(routes)
    real = {
        "incident_id": next((i["incident_id"] for i in airflow.request("GET", "/urgentflow/incidents")), ""),
        "order_id": next((o["order_id"] for o in airflow.request("GET", "/urgentflow/orders")), ""),
        "service_id": next((s["service_id"] for s in airflow.request("GET", "/urgentflow/services")), ""),
        "name": "alpha",
    }
    plausible = {
        "incident_id": "inc-0123456789ab",
        "order_id": "ord-0123456789ab",
        "service_id": "svc-" + "0" * 24,
    }
    claims = jwt.decode(airflow.token(), options={"verify_signature": False})
    jwt_secret = json.loads((runtime_dir() / "secrets.json").read_text())["jwt_secret"]
    now = int(time.time())
    tokens = {
        "expired": jwt.encode(
            {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 60}, jwt_secret, "HS512"
        ),
        "wrong key": jwt.encode(claims, "x" * 64, algorithm="HS512"),
        "garbage": "abc.def.ghi",
        "alg none": jwt.encode(claims, "", algorithm="none"),
    }
    incidents_before = len(Catalog()._all("SELECT id FROM incidents"))
    refused: dict[str, int] = {}
    for method, path in routes:
        for ids in (real, plausible):
            url = "/urgentflow" + path.format(**{k: ids.get(k) or plausible.get(k, "x") for k in real})
            body = {"json": {**INCIDENT, "name": "unauthenticated"}} if method == "POST" else {}
            params = {"kind": "weather"} if path.endswith("/data") else {}
            for label, token in {"no token": None, **tokens}.items():
                sent = {"Authorization": f"Bearer {token}"} if token else {}
                response = airflow.http.request(method, url, headers=sent, params=params, **body)
                refused[f"{method} {path} ({label}) -> {response.status_code}"] = response.status_code
    wrong = {k: v for k, v in refused.items() if v != 401}
    assert not wrong, f"{len(wrong)} requests not refused with 401: {sorted(wrong)[:20]}"
    for label, token in {"no token": None, **tokens}.items():  # an Airflow token makes no notice valid
        sent = {"Authorization": f"Bearer {token}"} if token else {}
        response = airflow.http.post("/urgentflow/jobs/notice", headers=sent, json=FORGED_NOTICE)
        assert response.status_code == 403, (label, response.status_code, response.text)
    assert len(Catalog()._all("SELECT id FROM incidents")) == incidents_before
    print(
        f"\n401 for {len(refused)} requests over {len(routes)} routes in {time.monotonic() - started:.1f} s"
    )


# -- 2. object keys ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quiet_incident(airflow: AirflowClient) -> Iterator[str]:
    """An incident whose forecast never runs (its run is deleted at once): a target for uploads, whose
    Asset events are consumed before it is deleted."""
    since = datetime.now(UTC)
    was_paused = set_paused(airflow, "wildfire_forecast", True)
    try:
        created = airflow.request(
            "POST", "/urgentflow/incidents", json={**INCIDENT, "name": "quiet"}, ok=(201,)
        )
        delete_run(airflow, created["dag_id"], created["run_id"])
    finally:
        set_paused(airflow, "wildfire_forecast", was_paused)
    yield created["incident_id"]
    consume_observation_events(airflow, since)
    catalog = Catalog()
    for dataset in catalog.datasets_of_incident(created["incident_id"]):
        ObjectStoreHook().delete(dataset["key"])
        catalog.delete_dataset(dataset["id"])
    catalog.delete_incident(created["incident_id"])


def test_object_names_with_traversal_are_refused_and_nothing_lands_outside(
    airflow: AirflowClient, quiet_incident: str
) -> None:
    started = time.monotonic()
    store = ObjectStoreHook()
    before = {o.key for o in store.list_objects("")}
    statuses = {}
    for name in TRAVERSAL:
        response = airflow.http.post(
            f"/urgentflow/incidents/{quiet_incident}/data",
            params={"kind": "file", "name": name},
            content=b"station,t\n7,21.5\n",
            headers=headers(airflow),
        )
        statuses[repr(name)] = response.status_code
    # the same names smuggled into the path (encoded: a client resolves a literal "..") are never looked up
    for bad_id in (
        "..%2f..%2fapi%2fv2",
        "%2e%2e",
        f"{quiet_incident}%2f..%2fother",
        "inc-0123456789ab%00",
    ):
        for path in (f"/urgentflow/incidents/{bad_id}/data", f"/urgentflow/incidents/{bad_id}"):
            method = "POST" if path.endswith("/data") else "GET"
            response = airflow.http.request(
                method,
                path,
                params={"kind": "file", "name": "x.csv"},
                content=b"a\n",
                headers=headers(airflow),
            )
            statuses[f"{method} {path}"] = response.status_code
    refused = {k: v for k, v in statuses.items() if v not in (404, 422)}
    assert not refused, f"expected 404/422: {refused}"
    # the one name that is plain goes exactly where it should
    fine = airflow.http.post(
        f"/urgentflow/incidents/{quiet_incident}/data",
        params={"kind": "file", "name": "station-7.csv"},
        content=b"station,t\n7,21.5\n",
        headers=headers(airflow),
    )
    assert fine.status_code == 201, fine.text
    new = {o.key for o in store.list_objects("")} - before
    ours = {k for k in new if k.startswith(f"incidents/{quiet_incident}/")}
    assert ours == {fine.json()["key"]} and fine.json()["key"].endswith("/station-7.csv")
    strange = [k for k in new if ".." in k.split("/") or k.startswith("/") or "\\" in k or "\x00" in k]
    assert not strange, strange
    print(f"\n{len(statuses)} traversal attempts refused in {time.monotonic() - started:.1f} s")


# -- 3. shell metacharacters -------------------------------------------------------------------


def stats_input(store: ObjectStoreHook, columns: list[str]) -> int:
    """A CSV dataset whose column names are the payloads."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows([[i + j for j in range(len(columns))] for i in range(5)])
    body = out.getvalue().encode()
    stored = store.put_stream(
        f"tests/hostile/{TOKEN}/payload-columns.csv", io.BytesIO(body), "text/csv", len(body)
    )
    return Catalog().record_stored(stored, Producer(dag_id="test_hostile_input", task_id="stats_input"))


@pytest.fixture(scope="module")
def hostile_runs(airflow: AirflowClient) -> Iterator[dict[str, Any]]:
    """One wildfire forecast whose name holds every payload, and one order whose tool parameters and
    input columns are the payloads (run side by side); then the incident is cancelled (its viewer
    stops) and the test objects removed."""
    for dag_id in ("wildfire_forecast", "analytics_order"):
        airflow.wait_for_dag(dag_id, timeout=120)
        airflow.unpause(dag_id)
    store = ObjectStoreHook()
    name = " ".join(PAYLOADS.values())
    assert len(name) <= 200
    incident = airflow.request("POST", "/urgentflow/incidents", json={**INCIDENT, "name": name}, ok=(201,))
    # (a newline inside a CSV header is not read back by the stats tool: include/images/tools-stats
    # splits lines before parsing; it is refused for incident names below)
    columns = list(PAYLOADS.values())
    dataset_id = stats_input(store, columns)
    order = airflow.request(
        "POST",
        "/urgentflow/orders",
        json={
            "tool": "stats",
            "input_dataset_ids": [dataset_id],
            "tool_params": {"columns": columns, "bins": 2},
        },
        ok=(201,),
    )
    runs = {
        "incident": incident,
        "order": order,
        "name": name,
        "columns": columns,
        "wildfire": airflow.wait_for_run(incident["dag_id"], incident["run_id"], timeout=600),
        "analytics": airflow.wait_for_run(order["dag_id"], order["run_id"], timeout=300),
    }
    try:
        yield runs
    finally:
        airflow.request("POST", f"/urgentflow/incidents/{incident['incident_id']}/cancel")
        store.delete(f"tests/hostile/{TOKEN}/payload-columns.csv")


def test_metacharacters_reaching_jobs_and_containers_stay_data(
    airflow: AirflowClient, hostile_runs: dict
) -> None:
    started = time.monotonic()
    # the forecast ran on the HPC test bed with the payloads in its incident; the name is kept literally
    assert hostile_runs["wildfire"]["state"] == "success"
    found = airflow.request("GET", f"/urgentflow/incidents/{hostile_runs['incident']['incident_id']}")
    assert found["incident"]["name"] == hostile_runs["name"]
    assert [j["state"] for r in found["runs"] for j in r["jobs"]] == ["COMPLETED"]
    # the order's tool saw the payloads as column names and summarised them
    assert hostile_runs["analytics"]["state"] == "success"
    order = airflow.request("GET", f"/urgentflow/orders/{hostile_runs['order']['order_id']}")
    assert order["state"] == "succeeded" and order["tool_params"]["columns"] == hostile_runs["columns"]
    (summary,) = [o for o in order["outputs"] if o["key"].endswith(".json")]
    result = json.loads(b"".join(ObjectStoreHook().iter_verified(summary["key"])))
    assert sorted(result["columns"]) == sorted(hostile_runs["columns"])
    # a newline in a name is refused at the boundary
    refused = airflow.http.post(
        "/urgentflow/incidents", json={**INCIDENT, "name": NEWLINE}, headers=headers(airflow)
    )
    assert refused.status_code == 422
    assert not canaries(), canaries()
    print(f"\ncanary checks in {time.monotonic() - started:.1f} s (runs: fixture)")


def test_metacharacters_in_hpc_parameters_and_run_ids_are_refused(airflow: AirflowClient) -> None:
    """hpc_drill's machine becomes a Slurm target and a path; a run id becomes job names and work dirs."""
    airflow.wait_for_dag("hpc_drill", timeout=120)
    before = {r["dag_run_id"] for r in airflow.list_runs("hpc_drill")}
    statuses = {}
    for label, payload in {**PAYLOADS, "newline": NEWLINE}.items():
        for conf, run_id in (
            ({"machine": payload, "members": 1, "seconds": 0}, None),
            ({"members": 1}, payload),
        ):
            body: dict[str, Any] = {"logical_date": None, "conf": conf}
            if run_id:
                body["dag_run_id"] = run_id
            response = airflow.http.post(
                "/api/v2/dags/hpc_drill/dagRuns", json=body, headers=headers(airflow)
            )
            statuses[f"{label} in {'run id' if run_id else 'machine'}"] = response.status_code
    assert all(400 <= s < 500 for s in statuses.values()), statuses
    assert {r["dag_run_id"] for r in airflow.list_runs("hpc_drill")} == before
    assert not canaries(), canaries()


# -- 4. secrets in logs ------------------------------------------------------------------------


def secret_values(airflow: AirflowClient) -> dict[str, str]:
    store = bed_connection("object_store")
    found = {
        "S3 access key": str(store["login"]),
        "S3 secret key": str(store["password"]),
        "admin password": json.loads(passwords_file().read_text())["admin"],
        "JWT": airflow.token(),
        **{
            f"runtime {k}": str(v)
            for k, v in json.loads((runtime_dir() / "secrets.json").read_text()).items()
        },
    }
    catalog = bed_connection("catalog_db")
    if catalog.get("password"):
        found["catalog password"] = str(catalog["password"])
    key_file = Path(bed_connection("hpc_alpha")["extra"]["key_file"])
    body = [line for line in key_file.read_text().splitlines() if line and not line.startswith("-----")]
    for i, line in enumerate(body):
        found[f"SSH private key line {i}"] = line
    return found


def test_no_secret_in_any_task_log(airflow: AirflowClient, hostile_runs: dict) -> None:
    started = time.monotonic()
    wanted = secret_values(airflow)
    assert all(len(v) >= 16 for v in wanted.values()), "a secret too short to search for"
    texts: dict[str, str] = {}
    for dag_id, run_id in (
        (hostile_runs["incident"]["dag_id"], hostile_runs["incident"]["run_id"]),
        (hostile_runs["order"]["dag_id"], hostile_runs["order"]["run_id"]),
    ):
        for ti in airflow.task_instances(dag_id, run_id):
            for attempt in range(1, int(ti["try_number"]) + 1):
                lines = airflow.task_log(dag_id, run_id, ti["task_id"], attempt, ti["map_index"])
                texts[f"API {dag_id}/{run_id}/{ti['task_id']}[{ti['map_index']}]#{attempt}"] = "\n".join(
                    lines
                )
    assert any("/simulate[" in k for k in texts), "no log of the members, whose triggers sign presigned links"
    incident_id = hostile_runs["incident"]["incident_id"]
    assert sum(incident_id in t for t in texts.values()) >= 2, "the logs read are not the runs' logs"
    log_root = runtime_dir() / "airflow" / "logs"
    files = [p for p in log_root.rglob("*") if p.is_file()] + [
        p for p in (runtime_dir() / "logs").glob("*.log")
    ]
    for path in files:
        texts[str(path)] = path.read_text(errors="replace")
    leaks = [
        f"{what} in {where}"
        for where, text in texts.items()
        for what, value in {**wanted, "presigned URL": "X-Amz-Signature="}.items()
        if value in text
    ]
    assert not leaks, leaks[:20]
    print(f"\n{len(wanted)} secrets searched in {len(texts)} logs in {time.monotonic() - started:.1f} s")


# -- 5. burst ----------------------------------------------------------------------------------

BURST, CONCURRENCY = 200, 20


def test_burst_of_incidents_gives_a_row_and_a_run_each(airflow: AirflowClient) -> None:
    was_paused = set_paused(airflow, "wildfire_forecast", True)
    auth = headers(airflow)
    results: list[tuple[int, float, dict]] = []
    try:
        with httpx.Client(base_url=airflow.base, timeout=120) as http:

            def post(i: int) -> tuple[int, float, dict]:
                t0 = time.monotonic()
                response = http.post(
                    "/urgentflow/incidents", json={**INCIDENT, "name": f"burst {TOKEN} {i}"}, headers=auth
                )
                body = response.json() if response.headers.get("content-type") == "application/json" else {}
                return response.status_code, time.monotonic() - t0, body

            t0 = time.monotonic()
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                results = list(pool.map(post, range(BURST)))
            wall = time.monotonic() - t0
        latencies = sorted(r[1] for r in results)
        print(
            f"\nburst: {BURST} POST /incidents, {CONCURRENCY} at a time: {wall:.1f} s wall, "
            f"p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {latencies[int(0.95 * BURST) - 1] * 1000:.0f} ms, "
            f"max {latencies[-1] * 1000:.0f} ms"
        )
        assert [r[0] for r in results] == [201] * BURST, sorted({r[0] for r in results})
        ids = {r[2]["incident_id"] for r in results}
        assert len(ids) == BURST
        catalog = Catalog()
        rows = catalog._all("SELECT id FROM incidents WHERE payload->>'name' LIKE %s", (f"burst {TOKEN} %",))
        assert {r["id"] for r in rows} == ids
        linked = catalog._all(
            "SELECT incident_id, run_id FROM incident_runs WHERE incident_id = ANY(%s)", (sorted(ids),)
        )
        assert {(r["incident_id"], r["run_id"]) for r in linked} == {
            (r[2]["incident_id"], r[2]["run_id"]) for r in results
        }
        runs = {r["dag_run_id"]: r for r in airflow.list_runs("wildfire_forecast")}
        for _, _, body in results:
            run = runs[body["run_id"]]
            assert run["state"] == "queued" and run["conf"]["incident_id"] == body["incident_id"]
    finally:
        catalog = Catalog()
        for _, _, body in results:
            if "run_id" in body:
                delete_run(airflow, "wildfire_forecast", body["run_id"])
                catalog.delete_incident(body["incident_id"])
        set_paused(airflow, "wildfire_forecast", was_paused)
