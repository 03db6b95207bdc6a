"""Reaper decisions on fixed inputs, and reap() over fake engine and catalog."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from modules import load_file

from operators.services.hook import Service
from operators.services.reaper import FINISHED_RUN_STATES, STARTING_GRACE, ReapReason, reap, reap_reason
from operators.services.spec import ServiceLabels

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def who(sid: str = "svc-a", expires_in_s: float | None = 600, keepalive: int | None = None) -> ServiceLabels:
    expires = NOW + timedelta(seconds=expires_in_s) if expires_in_s is not None else None
    return ServiceLabels(sid, "dag", f"run-{sid}", "start", expires_at=expires, keepalive_seconds=keepalive)


def never() -> bool:
    return False


@pytest.mark.parametrize(
    ("identity", "seen_ago_s", "run_finished", "expected"),
    [
        (who(), 5, False, None),
        (who(expires_in_s=0), 5, False, ReapReason.EXPIRED),
        (who(expires_in_s=-1), 5, True, ReapReason.EXPIRED),
        (who(expires_in_s=None), 10**6, False, None),  # no TTL, no keep-alive: only its run's end
        (who(keepalive=60), 61, False, ReapReason.KEEPALIVE_MISSED),
        (who(keepalive=60), 60, False, None),
        (who(keepalive=None), 10**6, False, None),  # never reaped for a missing keep-alive
        (who(), 5, True, ReapReason.RUN_FINISHED),
        (replace(who(), outlive_run=True), 5, True, None),  # a viewer meant to outlive its run
        (replace(who(expires_in_s=-1), outlive_run=True), 5, True, ReapReason.EXPIRED),
    ],
)
def test_reap_reason(
    identity: ServiceLabels, seen_ago_s: float, run_finished: bool, expected: ReapReason | None
) -> None:
    last_seen = NOW - timedelta(seconds=seen_ago_s)
    assert reap_reason(identity, last_seen, NOW, lambda: run_finished) == expected


def test_the_run_is_asked_only_when_nothing_else_decides() -> None:
    def boom() -> bool:
        raise AssertionError("asked Airflow although the TTL had decided")

    assert reap_reason(who(expires_in_s=-5), NOW, NOW, boom) == ReapReason.EXPIRED


class FakeEngine:
    def __init__(self, services: list[Service], failing: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.services = services
        self.failing = failing
        self.removed: list[str] = []

    def list_services(self, **labels: str) -> list[Service]:
        return list(self.services)

    def remove(self, container_id: str) -> bool:
        if container_id in self.failing:
            raise RuntimeError("engine said no")
        self.removed.append(container_id)
        return True


class FakeCatalog:
    def __init__(self, rows: dict[str, dict[str, Any]]) -> None:
        self.rows = rows
        self.states: dict[str, str] = {}

    def service(self, service_id: str) -> dict[str, Any] | None:
        return self.rows.get(service_id)

    def set_service_state(self, service_id: str, state: str) -> bool:
        self.states[service_id] = state
        return service_id in self.rows


def service(identity: ServiceLabels, created_ago_s: float = STARTING_GRACE.total_seconds() + 60) -> Service:
    return Service(
        f"c-{identity.service_id}",
        "running",
        identity,
        "127.0.0.1",
        1,
        NOW - timedelta(seconds=created_ago_s),
    )


def test_reap_stops_what_must_go_and_marks_the_catalog() -> None:
    keep = service(who("svc-keep"))
    expired = service(who("svc-old", expires_in_s=-1))
    silent = service(who("svc-silent", keepalive=30))
    fresh_without_row = service(who("svc-new", keepalive=30), created_ago_s=10)
    done = service(who("svc-done"))
    engine = FakeEngine([keep, expired, silent, fresh_without_row, done])
    catalog = FakeCatalog({"svc-silent": {"last_seen": NOW - timedelta(seconds=31)}})
    asked: list[tuple[str, str]] = []

    def state(dag_id: str, run_id: str) -> str:
        asked.append((dag_id, run_id))
        return "success" if run_id == "run-svc-done" else "running"

    reaped = reap(engine, catalog, NOW, state)
    assert {(r.service_id, r.reason) for r in reaped} == {
        ("svc-old", ReapReason.EXPIRED),
        ("svc-silent", ReapReason.KEEPALIVE_MISSED),
        ("svc-done", ReapReason.RUN_FINISHED),
    }
    assert sorted(engine.removed) == ["c-svc-done", "c-svc-old", "c-svc-silent"]
    assert catalog.states == {
        "svc-old": "reaped:expired",
        "svc-silent": "reaped:keepalive_missed",
        "svc-done": "reaped:run_finished",
    }
    assert ("dag", "run-svc-old") not in asked


def test_one_failure_does_not_spare_the_others() -> None:
    a, b = service(who("svc-a", expires_in_s=-1)), service(who("svc-b", expires_in_s=-1))
    engine = FakeEngine([a, b], failing={a.container_id})
    with pytest.raises(RuntimeError, match="failed on 1"):
        reap(engine, FakeCatalog({}), NOW, lambda d, r: "running")
    assert engine.removed == [b.container_id]


def test_a_service_still_starting_is_left_to_its_starting_task_for_a_while() -> None:
    """Its starting task removes it itself when it never gets ready; reaping it under that task would turn
    a clear 'not ready' into a vanished container. The row is written just after the container is created,
    so a young container without a row is starting too. A task that died leaves it 'starting': reaped later."""
    starting = service(who("svc-starting"), created_ago_s=30)
    unrecorded = service(who("svc-unrecorded"), created_ago_s=1)
    stuck = service(who("svc-stuck"), created_ago_s=STARTING_GRACE.total_seconds() + 1)
    lost = service(who("svc-lost"), created_ago_s=STARTING_GRACE.total_seconds() + 1)
    ready = service(who("svc-ready"), created_ago_s=30)
    engine = FakeEngine([starting, unrecorded, stuck, lost, ready])
    rows = {s.identity.service_id: {"state": "starting"} for s in (starting, stuck)}
    catalog = FakeCatalog({**rows, "svc-ready": {"state": "running"}})
    reaped = reap(engine, catalog, NOW, lambda dag_id, run_id: "failed")  # every run over
    assert sorted(r.service_id for r in reaped) == ["svc-lost", "svc-ready", "svc-stuck"]
    assert "c-svc-starting" not in engine.removed and "c-svc-unrecorded" not in engine.removed


def test_a_run_airflow_does_not_know_is_an_orphan_only_after_the_grace() -> None:
    """A service of a run Airflow has no record of (dag.test(), another deployment) is not taken for an
    orphan while it is young; once older than the grace it goes like one whose run is over."""
    young = service(who("svc-young"), created_ago_s=30)
    old = service(who("svc-old"), created_ago_s=STARTING_GRACE.total_seconds() + 1)
    running = service(who("svc-running"), created_ago_s=STARTING_GRACE.total_seconds() + 1)
    engine = FakeEngine([young, old, running])
    catalog = FakeCatalog({s.identity.service_id: {"state": "running"} for s in (young, old, running)})
    states = {"run-svc-running": "running"}
    reaped = reap(engine, catalog, NOW, lambda dag_id, run_id: states.get(run_id))
    assert [(r.service_id, r.reason) for r in reaped] == [("svc-old", ReapReason.RUN_FINISHED)]


def test_the_reaper_dag_reads_airflow_run_states_as_the_reaper_compares_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The execution API answers a DagRunState enum (its str() is 'DagRunState.SUCCESS'); a run it does
    not know is an error naming 'not found'."""
    from pathlib import Path

    from airflow.sdk.execution_time.comms import DagRunStateResult
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    path = Path(__file__).resolve().parents[3] / "dags" / "service_reaper.py"
    module = load_file("service_reaper_dag", path)

    def state_of(dag_id: str, run_id: str) -> object:
        if run_id == "gone":
            raise RuntimeError("DagRun not found")
        return DagRunStateResult.model_validate({"state": run_id}).state

    monkeypatch.setattr(RuntimeTaskInstance, "get_dagrun_state", staticmethod(state_of))
    assert [module.run_state("d", r) for r in ("success", "failed", "running", "gone")] == [
        "success",
        "failed",
        "running",
        None,
    ]
    assert {module.run_state("d", r) for r in ("success", "failed")} == FINISHED_RUN_STATES
