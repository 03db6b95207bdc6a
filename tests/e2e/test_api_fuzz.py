"""Property-based fuzzing of the plugin API (schemathesis, generated from ``/urgentflow/openapi.json``):
no generated request gets a 5xx, documented responses match their schemas, and a rejected request
creates nothing — no catalog row, no DAG run, no object. Everything an accepted request created is
recorded from its response, checked against the before/after counts and removed again.

The DAGs a request can start are paused while fuzzing (a valid generated incident or order must not
start a real forecast on the shared test bed); their runs are deleted as soon as they are accounted for.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
import requests
import schemathesis
from airflow_client import AirflowClient, base_url
from hostile_json import bodies, hostile_variants
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from observation_events import consume_observation_events
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from operators.catalog.catalog import Catalog
from operators.catalog.orders import OrderCatalog
from operators.storage.hook import ObjectStoreHook

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.exclusive("catalog", "s3"),
]  # compares every observation object, dataset and order before and after
API = f"{base_url()}/urgentflow"
GUARDED_DAGS = ("wildfire_forecast", "analytics_order", "ingest_observation")
# examples per operation and generation mode; no shrinking (a failure is reported as found)
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 25}
HOSTILE_EXAMPLES = 40  # per operation with a JSON body
MIN_REQUESTS = 500
TIME_BUDGET_S = 240
MARK = f"uf-fuzz-{secrets.token_hex(4)} "  # every generated incident name starts with it
INCIDENT: dict[str, Any] = {
    "kind": "wildfire",
    "name": f"{MARK}target of the data fuzzing",
    "ignition": {"lat": 37.30, "lon": -8.55},
    "region": {"min_lon": -8.65, "min_lat": 37.22, "max_lon": -8.45, "max_lat": 37.38},
    "weather": {"wind_speed_ms": 4.0, "wind_direction_deg": 300.0, "fuel_moisture": 0.08},
    "ensemble_size": 1,
    "deadline_minutes": 30,
}


def set_paused(airflow: AirflowClient, dag_id: str, paused: bool) -> None:
    airflow.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused})


@pytest.fixture
def guarded_dags(airflow: AirflowClient) -> Iterator[None]:
    """Pause the DAGs a generated request could start; put them back as they were afterwards."""
    was_paused = {d: airflow.wait_for_dag(d, timeout=120)["is_paused"] for d in GUARDED_DAGS}
    for dag_id in GUARDED_DAGS:
        set_paused(airflow, dag_id, True)
    try:
        yield
    finally:
        for dag_id, paused in was_paused.items():
            set_paused(airflow, dag_id, paused)


def delete_run(airflow: AirflowClient, dag_id: str, run_id: str) -> None:
    airflow.request("DELETE", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}", ok=(204, 404))


def run_ids(airflow: AirflowClient, dag_id: str) -> set[str]:
    return {r["dag_run_id"] for r in airflow.list_runs(dag_id) if ours(dag_id, r)}


def catalog_rows(catalog: Catalog) -> dict[str, set[Any]]:
    """The rows a plugin request can create: incidents carrying MARK (every generated incident name
    does; other users' incidents, created meanwhile on the shared runtime, do not), every order, and
    the datasets the API itself records (no producing DAG: tasks of other users' runs are producers)."""
    return {
        "incidents": {
            r["id"]
            for r in catalog._all("SELECT id FROM incidents WHERE payload->>'name' LIKE %s", (MARK + "%",))
        },
        "orders": {r["id"] for r in catalog._all("SELECT id FROM orders")},
        "datasets": {r["id"] for r in catalog._all("SELECT id FROM datasets WHERE dag_id IS NULL")},
    }


def observation_keys(store: ObjectStoreHook) -> set[str]:
    """Objects where the API writes (pushed data); running tasks of other users write elsewhere."""
    return {o.key for o in store.list_objects("incidents/") if "/observations/" in o.key}


def ours(dag_id: str, run: dict[str, Any]) -> bool:
    """Could this run come from a fuzzed request? Incident runs carry MARK in their conf's name."""
    name = (run.get("conf") or {}).get("name")
    return dag_id != "wildfire_forecast" or not isinstance(name, str) or name.startswith(MARK)


@dataclass
class Ledger:
    """What the accepted (2xx) requests created, from their responses. A run an accepted request
    started is checked (it exists, for that incident or order) and deleted at once, so nothing
    generated can start on the shared test bed even if someone unpauses its DAG meanwhile."""

    airflow: AirflowClient
    incidents: set[str] = field(default_factory=set)
    orders: set[str] = field(default_factory=set)
    datasets: set[int] = field(default_factory=set)
    objects: set[str] = field(default_factory=set)
    runs: set[tuple[str, str]] = field(default_factory=set)
    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    requests: int = 0

    def record(self, label: str, status: int, body: Any) -> None:
        self.requests += 1
        self.statuses[f"{label} -> {status}"] += 1
        if not 200 <= status < 300 or not isinstance(body, dict):
            return
        if label == "POST /incidents":
            self.incidents.add(body["incident_id"])
            self._started(body["dag_id"], body["run_id"], "incident_id", body["incident_id"])
        elif label == "POST /orders":
            self.orders.add(body["order_id"])
            self._started(body["dag_id"], body["run_id"], "order_id", body["order_id"])
        elif label == "POST /incidents/{incident_id}/data":
            self.datasets.add(int(body["dataset_id"]))
            self.objects.add(body["key"])

    def _started(self, dag_id: str, run_id: str, key: str, value: str) -> None:
        run = self.airflow.get_run(dag_id, run_id)
        if run["conf"].get(key) != value or run["state"] != "queued":
            self.failures.append(f"run {dag_id}/{run_id} is {run['state']} for {run['conf'].get(key)}")
        delete_run(self.airflow, dag_id, run_id)
        self.runs.add((dag_id, run_id))


def marked(case: schemathesis.Case) -> None:
    """Generated incident names carry MARK, so a row left by a rejected request is recognisable."""
    body: Any = case.body
    if isinstance(body, dict) and isinstance(body.get("name"), str):
        body["name"] = MARK + body["name"]


def repaired(case: schemathesis.Case, dataset_ids: list[int]) -> None:
    """Make every other positive incident or order acceptable: the schema cannot say that the
    ignition lies inside a small region, or which tools and datasets exist, so generation alone
    almost never gets past validation; the rest of the generated values are kept."""
    body: Any = case.body
    if not isinstance(body, dict) or hashlib.sha256(json.dumps(body, default=str).encode()).digest()[0] % 2:
        return
    if case.operation.path == "/incidents" and isinstance(body.get("ignition"), dict):
        lon = min(max(float(body["ignition"]["lon"]) - 0.1, -180.0), 179.7)
        lat = min(max(float(body["ignition"]["lat"]) - 0.1, -90.0), 89.7)
        body["region"] = {"min_lon": lon, "min_lat": lat, "max_lon": lon + 0.3, "max_lat": lat + 0.3}
        body["ignition"] = {"lon": lon + 0.15, "lat": lat + 0.15}
        body["perimeter"] = None
    elif case.operation.path == "/orders" and dataset_ids:
        body["tool"] = "stats"
        body["input_dataset_ids"] = dataset_ids[: len(body.get("input_dataset_ids") or [1])]
        params = body.get("tool_params")
        body["tool_params"] = (
            {"bins": 10}
            if not isinstance(params, dict)
            else {k: v for k, v in params.items() if k in ("columns", "bins")}
        )


def fuzz_operation(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    ledger: Ledger,
    session: requests.Session,
    headers: dict[str, str],
    prepare: Callable[[schemathesis.Case, GenerationMode], None],
) -> None:
    label = f"{operation.method.upper()} {operation.path}"

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES[mode],
        phases=[Phase.explicit, Phase.generate],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    def one(case: schemathesis.Case) -> None:
        prepare(case, mode)
        response = case.call(base_url=API, session=session, headers=headers, timeout=60)
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        ledger.record(label, response.status_code, body)
        try:
            case.validate_response(
                response,
                checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
                headers=headers,
            )
        except (Exception, BaseExceptionGroup) as exc:  # collect every failure: one must not hide the rest
            reason = " ".join(line.strip() for line in str(exc).splitlines()[1:6] if line.strip())
            ledger.failures.append(
                f"{label} [{mode.value}] -> {response.status_code}: {reason[:300]}\n"
                f"  reproduce: {case.as_curl_command(headers=headers)[:600]}"
            )

    one()


def fuzz_hostile_bodies(
    operation: schemathesis.APIOperation,
    ledger: Ledger,
    session: requests.Session,
    headers: dict[str, str],
    prepare: Callable[[schemathesis.Case, GenerationMode], None],
) -> None:
    """What schemathesis never generates (its floats are finite, its documents shallow, its bodies
    of the declared type): a generated body with one value, or all of it, replaced by NaN, Infinity,
    ``1e400`` or deep nesting, or any text sent as ``text/plain``. Each must be refused with a 4xx."""
    label = f"{operation.method.upper()} {operation.path}"

    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE), data=st.data())
    @settings(
        max_examples=HOSTILE_EXAMPLES,
        phases=[Phase.generate],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def one(case: schemathesis.Case, data: st.DataObject) -> None:
        prepare(case, GenerationMode.POSITIVE)
        body, content_type = data.draw(
            hostile_variants(case.body).map(lambda b: (b, "application/json"))
            | bodies().map(lambda b: (b, "text/plain"))
        )
        response = session.request(
            operation.method.upper(),
            f"{API}{case.formatted_path}",
            data=body,
            headers={**headers, "Content-Type": content_type},
            timeout=60,
        )
        try:
            reply = response.json()
        except ValueError:
            reply = None
        ledger.record(label, response.status_code, reply)
        if not 400 <= response.status_code < 500:
            ledger.failures.append(
                f"{label} [hostile {content_type}] -> {response.status_code}: {response.text[:300]}\n"
                f"  body: {body[:300]!r}"
            )

    one()


def test_generated_requests_get_no_5xx_and_rejected_ones_create_nothing(
    airflow: AirflowClient, guarded_dags: None
) -> None:
    started, since = time.monotonic(), datetime.now(UTC)
    headers = {"Authorization": f"Bearer {airflow.token()}"}
    catalog, store = Catalog(), ObjectStoreHook()
    # a real incident, so POST /incidents/{id}/data reaches validation and storage, not just the 404
    target = airflow.request("POST", "/urgentflow/incidents", json=INCIDENT, ok=(201,))
    delete_run(airflow, target["dag_id"], target["run_id"])
    target_prefix = f"incidents/{target['incident_id']}/"

    schema = schemathesis.openapi.from_url(f"{API}/openapi.json", headers=headers, timeout=30)
    rows_before = catalog_rows(catalog)
    runs_before = {d: run_ids(airflow, d) for d in GUARDED_DAGS}
    objects_before = observation_keys(store)

    dataset_ids = sorted(rows_before["datasets"])[:5]

    def prepare(case: schemathesis.Case, mode: GenerationMode) -> None:
        real_id = case.operation.path in ("/incidents/{incident_id}", "/incidents/{incident_id}/thumbnail")
        if case.operation.path == "/incidents/{incident_id}/data" or (
            real_id and mode is GenerationMode.POSITIVE
        ):
            case.path_parameters = {**(case.path_parameters or {}), "incident_id": target["incident_id"]}
        if mode is GenerationMode.POSITIVE:
            repaired(case, dataset_ids)
        marked(case)

    ledger = Ledger(airflow)
    loaded = list(schema.get_all_operations())
    operations = [result.ok() for result in loaded if isinstance(result, Ok)]
    assert len(operations) == len(loaded), [r for r in loaded if not isinstance(r, Ok)]
    with requests.Session() as session:
        for operation in operations:
            for mode in EXAMPLES:
                fuzz_operation(operation, mode, ledger, session, headers, prepare)
                assert time.monotonic() - started < TIME_BUDGET_S, "fuzzing ran over its time budget"
            if len(operation.body):
                fuzz_hostile_bodies(operation, ledger, session, headers, prepare)
        fuzz_data_pushes(airflow, target["incident_id"], ledger, headers)
    fuzz_seconds = time.monotonic() - started

    rows_after = catalog_rows(catalog)
    runs_after = {d: run_ids(airflow, d) for d in GUARDED_DAGS}
    objects_after = observation_keys(store)
    try:
        print(
            f"\nfuzz: {ledger.requests} requests over {len(operations)} operations in {fuzz_seconds:.1f} s; "
            f"accepted: {len(ledger.incidents)} incidents, {len(ledger.orders)} orders, "
            f"{len(ledger.datasets)} data pushes\n"
            + "\n".join(f"  {k}: {n}" for k, n in sorted(ledger.statuses.items()))
        )
        assert ledger.requests >= MIN_REQUESTS, ledger.statuses
        # nothing beyond what the accepted requests reported (a rejected request created nothing)
        assert rows_after["incidents"] - rows_before["incidents"] == ledger.incidents
        assert rows_after["orders"] - rows_before["orders"] == ledger.orders
        assert rows_after["datasets"] - rows_before["datasets"] == ledger.datasets
        assert objects_after - objects_before == ledger.objects
        observations = f"{target_prefix}observations/"
        assert all(key.startswith(observations) and ".." not in key for key in ledger.objects)
        assert ledger.datasets, "no data push was accepted: the data fuzzing tested nothing"
        # the accepted requests' runs were checked and deleted as they came: any run left is unexplained
        new_runs = {(d, r) for d in GUARDED_DAGS for r in runs_after[d] - runs_before[d]}
        assert not new_runs, f"runs nobody reported: {new_runs}"
        distinct = sorted({f.split("\n")[0]: f for f in ledger.failures}.values())
        assert not ledger.failures, f"{len(ledger.failures)} failing cases:\n" + "\n".join(distinct[:20])
    finally:
        cleanup(airflow, catalog, store, ledger, target["incident_id"], since)
    print(f"fuzz test with cleanup: {time.monotonic() - started:.1f} s")


FILE_NAME = r"\A[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}\Z"
HOSTILE_NAMES = (
    "../escape.txt",
    "..",
    ".",
    "/etc/passwd",
    "a/b.txt",
    "a\\b.txt",
    "%2e%2e%2fx",
    "..%2fx",
    "x\x00y",
    "$(touch /tmp/uf-canary-fuzz)",
    "`id`",
    "a;b",
    "a\nb",
    "' ; rm -rf / #",
    ".hidden",
    "x" * 129,
    "",
)
WEATHER = st.fixed_dictionaries(
    {
        "wind_speed_ms": st.floats(0, 60),
        "wind_direction_deg": st.floats(0, 359.9),
        "fuel_moisture": st.floats(0, 1),
    }
)
SQUARE = [[-8.57, 37.29], [-8.53, 37.29], [-8.53, 37.32], [-8.57, 37.32], [-8.57, 37.29]]
PERIMETER = st.one_of(
    st.just({"type": "Polygon", "coordinates": [SQUARE]}),
    st.just({"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [SQUARE]}}),
    st.builds(
        lambda ring: {"type": "Polygon", "coordinates": [ring]}, st.lists(st.tuples(st.floats(), st.floats()))
    ),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
DATA_EXAMPLES = 150


def fuzz_data_pushes(
    airflow: AirflowClient, incident_id: str, ledger: Ledger, headers: dict[str, str]
) -> None:
    """``POST /incidents/{id}/data`` on a real incident: kinds, names, bodies and checksum headers,
    valid and hostile mixed (the OpenAPI spec cannot describe a raw body, so this is hand-written)."""
    label = "POST /incidents/{incident_id}/data"
    body = st.one_of(
        WEATHER.map(lambda d: json.dumps(d).encode()),
        PERIMETER.map(lambda d: json.dumps(d).encode()),
        JSON.map(lambda d: json.dumps(d).encode()),
        st.binary(max_size=2048),
        # non-finite numbers, deep nesting and text, which json.dumps above never writes
        WEATHER.flatmap(hostile_variants),
        PERIMETER.flatmap(hostile_variants),
        bodies(),
    )

    @given(
        kind=st.sampled_from(["weather", "perimeter", "file", "FILE", "../weather", ""]),
        name=st.one_of(
            st.none(), st.from_regex(FILE_NAME), st.sampled_from(HOSTILE_NAMES), st.text(max_size=140)
        ),
        content=body,
        checksum=st.sampled_from(["none", "right", "wrong", "garbage"]),
    )
    @settings(max_examples=DATA_EXAMPLES, phases=[Phase.generate], deadline=None, database=None)
    def one(kind: str, name: str | None, content: bytes, checksum: str) -> None:
        extra = {
            "none": {},
            "right": {"X-Content-SHA256": hashlib.sha256(content).hexdigest()},
            "wrong": {"X-Content-SHA256": hashlib.sha256(content + b"x").hexdigest()},
            "garbage": {"X-Content-SHA256": "../../$(id)"},
        }[checksum]
        params = {"kind": kind} if name is None else {"kind": kind, "name": name}
        response = airflow.http.post(
            f"/urgentflow/incidents/{incident_id}/data",
            params=params,
            content=content,
            headers={**headers, **extra},
        )
        try:
            reply = response.json()
        except ValueError:
            reply = None
        ledger.record(label, response.status_code, reply)
        if response.status_code >= 500 or (
            response.status_code == 201 and kind not in ("weather", "perimeter", "file")
        ):
            ledger.failures.append(
                f"{label} kind={kind!r} name={name!r} {checksum} -> {response.status_code}: {response.text[:300]}"
            )

    one()


def cleanup(
    airflow: AirflowClient,
    catalog: Catalog,
    store: ObjectStoreHook,
    ledger: Ledger,
    target: str,
    since: datetime,
) -> None:
    """Remove what the accepted requests created: runs, orders, incidents, data (the data pushes' Asset
    events are consumed first, while their incident exists)."""
    consume_observation_events(airflow, since)
    for dag_id, run_id in sorted(ledger.runs):
        delete_run(airflow, dag_id, run_id)
    for key in sorted(ledger.objects):
        store.delete(key)
    for incident_id in sorted(ledger.incidents | {target}):
        for dataset in catalog.datasets_of_incident(incident_id):
            catalog.delete_dataset(dataset["id"])
        catalog.delete_incident(incident_id)
    for order_id in sorted(ledger.orders):
        OrderCatalog().delete_order(order_id)
