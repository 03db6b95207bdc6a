"""Service containers on the test bed's Docker engine, with the catalog on its Postgres.

The operators run through ``execute()`` with a minimal context (a task instance's ids); the DAG-level
run (setup/teardown, extra link in the UI) is the e2e tests' part. Every test works in a run id of its
own and only ever reaps inside it, so services of anyone else on the engine are left alone.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from operators.catalog.catalog import Catalog
from operators.services.hook import Service, ServiceHook
from operators.services.images import IMAGES
from operators.services.operators import StartServiceOperator, StopServiceOperator
from operators.services.readiness import ServiceNotReady
from operators.services.reaper import ReapReason, reap

pytestmark = pytest.mark.integration

DAG_ID = "uf_services_test"
VIEWER, NOTEBOOK = IMAGES["viewer"], IMAGES["notebook"]
BASE, BUSYBOX = "urgentflow/base:1", "urgentflow/busybox:1"


@dataclass
class FakeTI:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1


class OneRun:
    """The engine as the reaper sees it, narrowed to one run's services (the real label filter applies)."""

    def __init__(self, hook: ServiceHook, run_id: str) -> None:
        self.hook, self.run_id = hook, run_id

    def list_services(self, **labels: str) -> list[Service]:
        return self.hook.list_services(run_id=self.run_id, **labels)

    def remove(self, container_id: str) -> bool:
        return self.hook.remove(container_id)


@pytest.fixture(scope="module")
def hook() -> ServiceHook:
    hook = ServiceHook()
    try:
        hook.api.ping()
    except Exception as exc:
        pytest.fail(
            f"no Docker engine for connection docker_default: {exc!r}. Run `scripts/testbed start docker`."
        )
    missing = [i for i in (VIEWER, NOTEBOOK, BASE, BUSYBOX) if not hook.api.images(name=i)]
    if missing:
        pytest.fail(
            f"images {missing} are missing: `scripts/testbed start docker` builds them", pytrace=False
        )
    return hook


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog()


@pytest.fixture
def run_id(hook: ServiceHook) -> Iterator[str]:
    """A run of its own; whatever it left running is removed afterwards."""
    run = f"test__{uuid.uuid4().hex[:12]}"
    yield run
    for service in hook.list_services(run_id=run):
        hook.remove(service.container_id)


def context(run_id: str, task_id: str, map_index: int = -1) -> Any:
    return {"ti": FakeTI(DAG_ID, run_id, task_id, map_index)}


def start(run_id: str, task_id: str = "service", **kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"image": VIEWER, "container_port": 8000, "ready_timeout": 30, **kwargs}
    return StartServiceOperator(task_id=task_id, **args).execute(context(run_id, task_id))


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - a service's http URL
        return response.read().decode()


def test_start_reachable_then_teardown_removes_it(
    hook: ServiceHook, catalog: Catalog, run_id: str, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    results.mkdir(mode=0o755)
    (results / "flood.txt").write_text("depth 1.2 m\n")
    (results / "flood.txt").chmod(0o644)

    t0 = time.monotonic()
    service = start(run_id, mounts=[{"source": str(results), "target": "/data"}])
    started_s = time.monotonic() - t0
    assert service["url"].startswith("http://127.0.0.1:")
    assert get(f"{service['url']}/flood.txt") == "depth 1.2 m\n"
    row = catalog.service(service["service_id"])
    assert row is not None and row["state"] == "running" and row["container_id"] == service["container_id"]
    assert row["image"] == VIEWER and row["url"] == service["url"]
    assert datetime.fromisoformat(service["expires_at"]) > datetime.now(UTC) + timedelta(minutes=59)

    stop = StopServiceOperator(task_id="stop", service_task_id="service")
    assert stop.execute(context(run_id, "stop")) == {"stopped": [service["service_id"]], "exported": []}
    assert hook.find(service["service_id"]) is None
    assert catalog.service(service["service_id"])["state"] == "stopped"  # type: ignore[index]
    # a teardown that runs again (or after the reaper) finds nothing to stop and still succeeds
    assert stop.execute(context(run_id, "stop"))["stopped"] == [service["service_id"]]
    assert started_s < 15, f"starting the viewer took {started_s:.1f} s"


def test_a_retry_reuses_its_container(hook: ServiceHook, run_id: str) -> None:
    first = start(run_id)
    second = start(run_id)
    assert second == {**first, "expires_at": first["expires_at"]}
    assert len(hook.list_services(run_id=run_id)) == 1


def test_a_retry_replaces_a_container_that_stopped(hook: ServiceHook, run_id: str) -> None:
    first = start(run_id)
    hook.api.stop(first["container_id"], timeout=1)
    second = start(run_id)
    assert second["service_id"] == first["service_id"] and second["container_id"] != first["container_id"]
    assert [s.container_id for s in hook.list_services(run_id=run_id)] == [second["container_id"]]


def test_expired_services_are_reaped(hook: ServiceHook, catalog: Catalog, run_id: str) -> None:
    short = start(run_id, task_id="short", ttl_minutes=0.02)
    long = start(run_id, task_id="long", ttl_minutes=60)
    time.sleep(1.3)
    reaped = reap(OneRun(hook, run_id), catalog, datetime.now(UTC), lambda dag_id, run: "running")
    # or, a moment before, the e2e runtime's own service_reaper (see the keep-alive test below)
    assert [(r.service_id, r.reason) for r in reaped] in ([(short["service_id"], ReapReason.EXPIRED)], [])
    assert hook.find(short["service_id"]) is None
    assert hook.find(long["service_id"]) is not None
    assert catalog.service(short["service_id"])["state"] == "reaped:expired"  # type: ignore[index]


def test_services_without_keepalive_are_reaped_and_touched_ones_survive(
    hook: ServiceHook, catalog: Catalog, run_id: str
) -> None:
    silent = start(run_id, task_id="silent", keepalive_seconds=2)
    touched = start(run_id, task_id="touched", keepalive_seconds=2)
    no_keepalive = start(run_id, task_id="plain")
    for _ in range(3):
        time.sleep(0.9)
        assert catalog.touch_service(touched["service_id"])
    reaped = reap(OneRun(hook, run_id), catalog, datetime.now(UTC), lambda dag_id, run: "running")
    # The e2e runtime's own service_reaper (every 2 min, still running during these tests) may have
    # reaped the silent service a moment before this call (seen in CI): it must then have done the same.
    assert [(r.service_id, r.reason) for r in reaped] in (
        [(silent["service_id"], ReapReason.KEEPALIVE_MISSED)],
        [],
    )
    assert catalog.service(silent["service_id"])["state"] == "reaped:keepalive_missed"  # type: ignore[index]
    assert {s.identity.service_id for s in hook.list_services(run_id=run_id)} == {
        touched["service_id"],
        no_keepalive["service_id"],
    }


def test_finished_runs_lose_their_services_and_foreign_containers_survive(
    hook: ServiceHook, catalog: Catalog, run_id: str
) -> None:
    ours = start(run_id)
    # look-alikes: our run's labels, but not urgentflow.service=1
    foreign = []
    for extra in ({}, {"urgentflow.service": "0"}, {"urgentflow.service": "yes"}):
        labels = {"urgentflow.run_id": run_id, "urgentflow.service_id": "svc-foreign", **extra}
        created = hook.api.create_container(
            image=BUSYBOX,
            command=["sleep", "300"],
            labels=labels,
            name=f"uf-foreign-{uuid.uuid4().hex[:8]}",
            host_config=hook.api.create_host_config(init=True),
        )
        hook.api.start(created["Id"])
        foreign.append(created["Id"])
    try:
        far_future = datetime.now(UTC) + timedelta(days=365)
        reaped = reap(OneRun(hook, run_id), catalog, far_future, lambda dag_id, run: "success")
        assert [r.service_id for r in reaped] == [ours["service_id"]]
        for cid in foreign:
            assert hook.api.inspect_container(cid)["State"]["Running"]
    finally:
        for cid in foreign:
            hook.api.remove_container(cid, force=True)


@pytest.mark.parametrize("readiness_path", ["/", None], ids=["http", "tcp"])
def test_a_service_that_never_gets_ready_fails_with_its_logs_and_is_removed(
    hook: ServiceHook, catalog: Catalog, run_id: str, readiness_path: str | None
) -> None:
    t0 = time.monotonic()
    with pytest.raises(ServiceNotReady, match="no answer within 3 s") as failure:
        start(
            run_id,
            image=BUSYBOX,
            command=["sh", "-c", "echo booting; echo 'fatal: no config in /etc/svc' >&2; exec sleep 300"],
            readiness_path=readiness_path,
            ready_timeout=3,
        )
    assert time.monotonic() - t0 < 20
    assert "booting" in str(failure.value) and "fatal: no config in /etc/svc" in str(failure.value)
    assert hook.list_services(run_id=run_id) == []
    (row,) = catalog.services_of_run(DAG_ID, run_id)
    assert row["state"] == "failed"


def test_a_service_that_exits_fails_at_once(hook: ServiceHook, run_id: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(ServiceNotReady, match=r"its container stopped(.|\n)*cannot start: port taken"):
        start(
            run_id,
            image=BUSYBOX,
            command=["sh", "-c", "echo 'cannot start: port taken'; exit 3"],
            ready_timeout=30,
        )
    assert time.monotonic() - t0 < 10
    assert hook.list_services(run_id=run_id) == []


def test_limits_mounts_and_port_binding_are_applied(hook: ServiceHook, run_id: str, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    service = start(run_id, cpus=0.5, memory_mb=64, mounts=[{"source": str(tmp_path), "target": "/data"}])
    info = hook.api.inspect_container(service["container_id"])
    host = info["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 64 * 1024 * 1024
    assert host["Init"] is True
    assert host["Binds"] == [f"{tmp_path}:/data:ro"]
    (binding,) = host["PortBindings"]["8000/tcp"]
    assert binding["HostIp"] == "127.0.0.1" and binding["HostPort"] in ("", "0")  # Docker picked the port
    assert info["Config"]["Labels"]["urgentflow.service"] == "1"
    assert info["Config"]["Labels"]["urgentflow.owner"] == "airflow"


HOSTILE = ["$(touch /tmp/canary)", ";", "a\nb", "`touch /tmp/canary`", "' \" && touch /tmp/canary"]
ECHO_SERVER = """
import http.server, json, os, sys
body = json.dumps({"argv": sys.argv[1:], "env": os.environ["HOSTILE"]}).encode()
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("0.0.0.0", 8000), Echo).serve_forever()
"""


def test_hostile_command_and_env_values_stay_data(hook: ServiceHook, run_id: str) -> None:
    host_canary_before = os.path.exists("/tmp/canary")
    env_value = "$(touch /tmp/canary); touch /tmp/canary\n`touch /tmp/canary`"
    service = start(
        run_id, image=BASE, command=["python3", "-c", ECHO_SERVER, *HOSTILE], env={"HOSTILE": env_value}
    )
    assert json.loads(get(service["url"])) == {"argv": HOSTILE, "env": env_value}
    with pytest.raises(docker.errors.NotFound):
        list(hook.archive(service["container_id"], "/tmp/canary"))
    assert os.path.exists("/tmp/canary") == host_canary_before


def test_notebook_notes_are_exported_to_the_object_store_on_teardown(hook: ServiceHook, run_id: str) -> None:
    from operators.storage.hook import ObjectStoreHook

    service = start(
        run_id, task_id="notebook", image=NOTEBOOK, container_port=8888, readiness_path="/healthz"
    )
    request = urllib.request.Request(  # noqa: S310 - the service's http URL
        f"{service['url']}/notes",
        data=b"# flood run\nlooks right",
        headers={"Content-Type": "text/markdown"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 201
    assert get(f"{service['url']}/notes") == "# flood run\nlooks right\n"
    assert "<h1>Data</h1>" in get(service["url"])

    prefix = f"test/services/{run_id}"
    stop = StopServiceOperator(
        task_id="stop", service_task_id="notebook", export_paths=["/work/notes.md"], export_prefix=prefix
    )
    result = stop.execute(context(run_id, "stop"))
    store = ObjectStoreHook()
    try:
        assert [(e["path"], e["key"]) for e in result["exported"]] == [("notes.md", f"{prefix}/notes.md")]
        assert b"".join(store.iter_verified(f"{prefix}/notes.md")) == b"# flood run\nlooks right\n"
        assert hook.find(service["service_id"]) is None
    finally:
        for obj in store.list_objects(prefix):
            store.delete(obj.key)


def test_a_mapped_teardown_stops_only_its_own_map_index(hook: ServiceHook, run_id: str) -> None:
    members = [
        StartServiceOperator(task_id="member", image=VIEWER, container_port=8000).execute(
            context(run_id, "member", index)
        )
        for index in (0, 1)
    ]
    stop = StopServiceOperator(task_id="stop", service_task_id="member")
    assert stop.execute(context(run_id, "stop", 1))["stopped"] == [members[1]["service_id"]]
    assert [s.identity.service_id for s in hook.list_services(run_id=run_id)] == [members[0]["service_id"]]
    assert stop.execute(context(run_id, "stop"))["stopped"] == sorted(m["service_id"] for m in members)
    assert hook.list_services(run_id=run_id) == []


def test_a_container_that_cannot_start_is_not_left_behind(hook: ServiceHook, run_id: str) -> None:
    with pytest.raises(docker.errors.APIError):
        start(run_id, host_address="192.0.2.1")  # TEST-NET-1: no such address on this host to publish on
    assert hook.list_services(run_id=run_id) == []
    with pytest.raises(docker.errors.ImageNotFound):
        start(run_id, image="urgentflow/no-such-image:1")  # never pulled: there is no registry
    assert hook.list_services(run_id=run_id) == []


def test_objects_under_a_prefix_are_served_and_dropped_with_the_service(
    hook: ServiceHook, run_id: str
) -> None:
    import io

    from operators.services.data import service_data_dir
    from operators.storage.hook import ObjectStoreHook

    store = ObjectStoreHook()
    prefix = f"tests/{run_id}/results"
    store.put_stream(f"{prefix}/burn-probability.csv", io.BytesIO(b"row,col,p\n3,4,0.75\n"))
    store.put_stream(f"{prefix}/members/0/stats.json", io.BytesIO(b'{"burned_ha": 12.5}'))
    try:
        service = start(run_id, data_prefix=prefix)
        assert get(f"{service['url']}/burn-probability.csv") == "row,col,p\n3,4,0.75\n"
        assert json.loads(get(f"{service['url']}/members/0/stats.json")) == {"burned_ha": 12.5}
        data_dir = service_data_dir(service["service_id"])
        assert data_dir.is_dir()
        StopServiceOperator(task_id="stop", service_task_id="service").execute(context(run_id, "stop"))
        assert not data_dir.parent.exists(), "the pulled data outlived its service"
    finally:
        for obj in store.list_objects(f"tests/{run_id}/"):
            store.delete(obj.key)
