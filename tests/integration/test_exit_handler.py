"""The exit handler (plugins/urgentflow_listener.py) on the machine's real catalog Postgres (a database of
its own): which runs it attaches to an incident or an order, and which may set their state. Only the
incident kind's own DAG sets the incident's status; an ingest_observation run is recorded on the incident
as observation processing and changes no status; a run of any other DAG whose conf names an incident is
not attached; an order's state is set only by its own analytics_order run."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import urgentflow_listener
from bed import ImmediateOutbox, bed_connection

from operators.catalog.catalog import Catalog
from operators.catalog.migrations import migrate, migration_files
from operators.catalog.orders import OrderCatalog
from operators.incidents import new_incident_id
from operators.orders import DAG_ID as ORDERS
from operators.orders import new_order_id, run_id_of

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 26, 22, 0, tzinfo=UTC)


@dataclass
class DagRun:
    """What the handler reads of Airflow's DagRun: plain attributes only."""

    dag_id: str
    run_id: str
    conf: dict[str, Any] = field(default_factory=dict)
    start_date: datetime | None = NOW
    end_date: datetime | None = NOW


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """An empty database of its own, named by ``catalog_db`` (the connection the handler uses)."""
    base = bed_connection("catalog_db")
    name = f"uf_exit_handler_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host=base["host"], port=base["port"], user=base["login"], dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    monkeypatch.setenv("AIRFLOW_CONN_CATALOG_DB", json.dumps({**base, "schema": name}))
    try:
        yield {"host": base["host"], "port": base["port"], "user": base["login"], "dbname": name}
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(autouse=True)
def immediate_outbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urgentflow_listener, "outbox", lambda: ImmediateOutbox(urgentflow_listener.apply))


@pytest.fixture
def catalog(database: dict[str, Any]) -> OrderCatalog:
    catalog = OrderCatalog()
    catalog.migrate()  # explicitly: this process may have migrated catalog_db's usual database already
    return catalog


def wildfire(catalog: Catalog) -> str:
    incident_id = new_incident_id()
    catalog.create_incident(incident_id, "wildfire", {"name": "exit handler test"})
    return incident_id


def runs(catalog: Catalog, incident_id: str) -> list[tuple[str, str, str, str]]:
    return [(r["dag_id"], r["run_id"], r["role"], r["state"]) for r in catalog.runs_of_incident(incident_id)]


def status(catalog: Catalog, incident_id: str) -> str:
    return str((catalog.incident(incident_id) or {})["status"])


def test_a_failed_ingest_is_recorded_on_the_incident_without_changing_its_status(catalog: Catalog) -> None:
    incident_id = wildfire(catalog)
    forecast = DagRun("wildfire_forecast", "manual__1", {"incident_id": incident_id})
    urgentflow_listener.record(forecast, "running")
    urgentflow_listener.record(forecast, "success")
    assert status(catalog, incident_id) == "succeeded"
    # ingest_observation registers its run on the incident (its task does), then fails
    catalog.record_incident_run(incident_id, "ingest_observation", "asset__1", "running")
    urgentflow_listener.record(DagRun("ingest_observation", "asset__1"), "failed", "not the one announced")
    assert status(catalog, incident_id) == "succeeded", "an ingest run set the incident's status"
    assert runs(catalog, incident_id) == [
        ("wildfire_forecast", "manual__1", "incident", "success"),
        ("ingest_observation", "asset__1", "ingest", "failed"),
    ]
    assert catalog.runs_of_incident(incident_id)[1]["reason"] == "not the one announced"


def test_a_run_of_another_dag_naming_the_incident_is_not_attached(catalog: Catalog) -> None:
    incident_id = wildfire(catalog)
    urgentflow_listener.record(
        DagRun("wildfire_forecast", "manual__1", {"incident_id": incident_id}), "success"
    )
    intruder = DagRun("study_pipeline", "manual__2", {"incident_id": incident_id})
    urgentflow_listener.record(intruder, "running")
    urgentflow_listener.record(intruder, "failed", "anything")
    assert status(catalog, incident_id) == "succeeded"
    assert runs(catalog, incident_id) == [("wildfire_forecast", "manual__1", "incident", "success")]
    # nor can another DAG's task register its run on the incident
    assert catalog.record_incident_run(incident_id, "study_pipeline", "manual__3", "running") is None
    assert catalog.incident_of_run("study_pipeline", "manual__3") is None


def test_a_study_incident_is_run_by_study_pipeline(catalog: Catalog) -> None:
    incident_id = new_incident_id()
    catalog.create_incident(incident_id, "study", {"name": "study"})
    urgentflow_listener.record(
        DagRun("wildfire_forecast", "manual__1", {"incident_id": incident_id}), "failed"
    )
    urgentflow_listener.record(DagRun("study_pipeline", "manual__2", {"incident_id": incident_id}), "success")
    assert status(catalog, incident_id) == "succeeded"
    assert runs(catalog, incident_id) == [("study_pipeline", "manual__2", "incident", "success")]


def test_a_run_stays_on_the_incident_it_was_recorded_on(catalog: Catalog) -> None:
    first, second = wildfire(catalog), wildfire(catalog)
    assert catalog.record_incident_run(first, "wildfire_forecast", "manual__1", "running") == "incident"
    assert catalog.record_incident_run(second, "wildfire_forecast", "manual__1", "failed") is None
    urgentflow_listener.record(DagRun("wildfire_forecast", "manual__1", {"incident_id": second}), "failed")
    assert (status(catalog, first), status(catalog, second)) == ("open", "open")
    assert runs(catalog, second) == []


def test_an_order_is_ended_only_by_its_own_analytics_order_run(catalog: OrderCatalog) -> None:
    order_id = new_order_id()
    catalog.create_order(
        order_id,
        tool="stats",
        image="urgentflow/tools-stats:1",
        params={},
        input_ids=[1],
        dag_id="study_pipeline",  # a row some other DAG recorded for itself
        run_id="manual__1",
    )
    urgentflow_listener.record(DagRun("study_pipeline", "manual__1", {"order_id": order_id}), "success")
    assert (catalog.order(order_id) or {})["state"] == "queued", "another DAG's run ended an order"

    mine = new_order_id()
    catalog.create_order(
        mine, tool="stats", image=None, params={}, input_ids=[1], dag_id=ORDERS, run_id=run_id_of(mine)
    )
    urgentflow_listener.record(DagRun(ORDERS, "manual__other", {"order_id": mine}), "failed")
    assert (catalog.order(mine) or {})["state"] == "queued", "a run with another run id ended the order"
    urgentflow_listener.record(DagRun(ORDERS, run_id_of(mine)), "running")
    urgentflow_listener.record(DagRun(ORDERS, run_id_of(mine)), "failed", "task_failure")
    assert (catalog.order(mine) or {})["state"] == "failed"


def test_the_run_roles_migration_keeps_ingest_runs_as_such_and_drops_runs_of_other_dags(
    database: dict[str, Any], tmp_path: Path
) -> None:
    """Rows the old handler wrote: an ingest run becomes observation processing, another DAG's run goes."""
    roles = next(v for v, path in migration_files() if path.name.endswith("_incident_run_roles.sql"))
    for version, path in migration_files():
        if version < roles:
            (tmp_path / path.name).write_text(path.read_text())
    conn = psycopg2.connect(**database)
    try:
        assert migrate(conn, tmp_path) == list(range(1, roles))
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO incidents (id, kind, payload) VALUES"
                " ('inc-00000000000a', 'wildfire', '{}'), ('inc-00000000000b', 'study', '{}')"
            )
            cur.execute(
                "INSERT INTO incident_runs (incident_id, dag_id, run_id, state) VALUES"
                " ('inc-00000000000a', 'wildfire_forecast', 'r1', 'success'),"
                " ('inc-00000000000a', 'ingest_observation', 'r2', 'failed'),"
                " ('inc-00000000000a', 'study_pipeline', 'r3', 'failed'),"
                " ('inc-00000000000b', 'study_pipeline', 'r4', 'success'),"
                " ('inc-00000000000b', 'wildfire_forecast', 'r5', 'success')"
            )
        conn.commit()
        assert roles in migrate(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT run_id, role FROM incident_runs ORDER BY run_id")
            assert cur.fetchall() == [("r1", "incident"), ("r2", "ingest"), ("r4", "incident")]
    finally:
        conn.close()
