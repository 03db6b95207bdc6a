"""StartServiceOperator.execute over fake engine, store and catalog: a running container of an earlier
try is reused before anything is downloaded; only a container that has to be started gets its data."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from airflow.sdk import Context

from operators.catalog.catalog import Catalog
from operators.services.hook import Service, ServiceHook
from operators.services.operators import StartServiceOperator
from operators.services.spec import ServiceLabels, ServiceSpec, service_id
from operators.storage.hook import ObjectStoreHook, StoredObject

TI = SimpleNamespace(dag_id="viewer_dag", run_id="manual__1", task_id="viewer", map_index=-1)
SID = service_id(TI.dag_id, TI.run_id, TI.task_id, -1)


def container(state: str) -> Service:
    identity = ServiceLabels(SID, TI.dag_id, TI.run_id, TI.task_id)
    return Service("c0ffee" * 10, state, identity, "127.0.0.1", 49153, datetime.now(UTC))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """What reached the engine, the store and the catalog; the engine finds no container yet."""
    monkeypatch.setenv("URGENTFLOW_HOME", str(tmp_path))
    made: list[str] = []

    def start(hook: ServiceHook, spec: ServiceSpec) -> Service:
        made.append(f"start with mounts {[m.target for m in spec.mounts]}")
        return container("running")

    def list_objects(store: ObjectStoreHook, prefix: str = "") -> list[StoredObject]:
        made.append(f"list {prefix}")
        return [StoredObject("b", f"{prefix}terrain.npy", 1, "a" * 64, "etag")]

    def get_file(store: ObjectStoreHook, key: str, path: str | Path) -> None:
        made.append(f"download {key}")

    monkeypatch.setattr(ServiceHook, "find", lambda hook, sid: None)
    monkeypatch.setattr(ServiceHook, "start", start)

    def remove(hook: ServiceHook, container_id: str) -> bool:
        made.append(f"remove {container_id}")
        return True

    monkeypatch.setattr(ServiceHook, "remove", remove)
    monkeypatch.setattr(ServiceHook, "wait_ready", lambda hook, service, path, timeout: None)
    monkeypatch.setattr(ObjectStoreHook, "list_objects", list_objects)
    monkeypatch.setattr(ObjectStoreHook, "get_file", get_file)
    monkeypatch.setattr(
        Catalog, "record_service", lambda catalog, **row: made.append(f"record {row['state']}")
    )
    return made


def start_viewer() -> dict[str, Any]:
    operator = StartServiceOperator(
        task_id="viewer", image="urgentflow/viewer:1", container_port=8000, data_prefix="incidents/inc-1/"
    )
    return operator.execute(cast(Context, {"ti": TI}))


def test_a_running_container_is_reused_without_downloading_its_data(
    calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ServiceHook, "find", lambda hook, sid: container("running"))
    assert start_viewer()["service_id"] == SID
    assert calls == ["record starting", "record running"]


@pytest.mark.parametrize(
    ("found", "removed"), [(None, []), (container("exited"), ["remove " + "c0ffee" * 10])]
)
def test_a_container_that_is_not_running_is_started_with_its_data(
    calls: list[str], monkeypatch: pytest.MonkeyPatch, found: Service | None, removed: list[str]
) -> None:
    monkeypatch.setattr(ServiceHook, "find", lambda hook, sid: found)
    start_viewer()
    assert calls == [
        *removed,
        "list incidents/inc-1/",
        "download incidents/inc-1/terrain.npy",
        "start with mounts ['/data']",
        "record starting",
        "record running",
    ]
