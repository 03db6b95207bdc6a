"""Orders on the machine's real Postgres (a database of its own): migration 005, the order's life,
claims by one run only, the first failure reason kept, cancelled final."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg2
import pytest
from bed import bed_connection

from operators.catalog.migrations import migration_files
from operators.catalog.orders import OrderCatalog

pytestmark = pytest.mark.integration
ORDER: dict[str, Any] = {
    "tool": "stats",
    "image": "urgentflow/tools-stats:1",
    "params": {"bins": 4},
    "input_ids": [1, 2],
}


@pytest.fixture
def orders(monkeypatch: pytest.MonkeyPatch) -> Iterator[OrderCatalog]:
    base = bed_connection("catalog_db")
    name = f"uf_orders_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host=base["host"], port=base["port"], user=base["login"], dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    # a connection id per database: the catalog migrates each connection id once per process
    monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}", json.dumps({**base, "schema": name}))
    try:
        yield OrderCatalog(name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _sql(catalog: OrderCatalog, statement: str, params: tuple = ()) -> None:
    with catalog.hook.get_conn() as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        conn.commit()


def test_migration_005_makes_orders_and_checks_ids_and_states(orders: OrderCatalog) -> None:
    assert orders.migrate() == [version for version, _ in migration_files()]
    with pytest.raises(psycopg.errors.CheckViolation):
        orders.create_order("order-1", dag_id="d", run_id="r", **ORDER)
    with pytest.raises(psycopg.errors.CheckViolation):
        _sql(orders, "INSERT INTO orders (id, tool, state) VALUES ('ord-0123456789ab', 't', 'lost')")


def test_an_order_from_queued_to_succeeded(orders: OrderCatalog) -> None:
    orders.create_order("ord-0000000000a1", dag_id="analytics_order", run_id="r1", **ORDER)
    row = orders.order("ord-0000000000a1")
    assert row is not None and row["state"] == "queued" and row["input_ids"] == [1, 2]
    assert row["params"] == {"bins": 4} and row["started_at"] is None
    assert orders.order_of_run("analytics_order", "r1") == "ord-0000000000a1"

    orders.mark_order_running("ord-0000000000a1")
    assert orders.claim_order("ord-0000000000a1", dag_id="analytics_order", run_id="r1", **ORDER) == "running"
    assert orders.finish_order("ord-0000000000a1", "succeeded", exit_code=0, output_ids=[7, 8])
    assert orders.finish_order("ord-0000000000a1", "succeeded")  # the exit handler, afterwards
    row = orders.order("ord-0000000000a1")
    assert row is not None
    assert (row["state"], row["exit_code"], row["output_ids"], row["reason"]) == ("succeeded", 0, [7, 8], "")
    assert row["started_at"] is not None and row["ended_at"] >= row["started_at"]
    orders.mark_order_running("ord-0000000000a1")  # a late "running" does not undo the end
    assert (orders.order("ord-0000000000a1") or {})["state"] == "succeeded"


def test_only_its_own_run_claims_an_order_and_a_retry_starts_clean(orders: OrderCatalog) -> None:
    assert orders.claim_order("ord-0000000000b1", dag_id="a", run_id="r1", **ORDER) == "running"
    assert orders.claim_order("ord-0000000000b1", dag_id="a", run_id="r2", **ORDER) is None
    row = orders.order("ord-0000000000b1")
    assert row is not None and row["run_id"] == "r1"
    orders.finish_order("ord-0000000000b1", "failed", exit_code=3, reason="bad input")
    assert orders.claim_order("ord-0000000000b1", dag_id="a", run_id="r1", **ORDER) == "running"
    row = orders.order("ord-0000000000b1")
    assert row is not None and (row["state"], row["exit_code"], row["reason"]) == ("running", None, "")
    with pytest.raises(psycopg.errors.UniqueViolation):  # one order per run
        orders.create_order("ord-0000000000b2", dag_id="a", run_id="r1", **ORDER)


def test_the_first_failure_reason_wins_and_cancelled_is_final(orders: OrderCatalog) -> None:
    orders.claim_order("ord-0000000000c1", dag_id="a", run_id="r1", **ORDER)
    assert orders.finish_order("ord-0000000000c1", "failed", exit_code=2, reason="row 3: 'x' is not a number")
    assert orders.finish_order("ord-0000000000c1", "failed", reason="task_failure")  # the scheduler's
    row = orders.order("ord-0000000000c1")
    assert row is not None
    assert (row["state"], row["exit_code"], row["reason"]) == ("failed", 2, "row 3: 'x' is not a number")

    orders.create_order("ord-0000000000c2", dag_id="a", run_id="r2", **ORDER)
    _sql(orders, "UPDATE orders SET state = 'cancelled' WHERE id = %s", ("ord-0000000000c2",))
    assert not orders.finish_order("ord-0000000000c2", "failed", reason="late")
    assert orders.claim_order("ord-0000000000c2", dag_id="a", run_id="r2", **ORDER) == "cancelled"
    with pytest.raises(ValueError, match="not 'running'"):
        orders.finish_order("ord-0000000000c2", "running")
    orders.delete_order("ord-0000000000c2")
    assert orders.order("ord-0000000000c2") is None
    assert [o["id"] for o in orders.orders()] == ["ord-0000000000c1"]


def test_the_exit_handler_ends_the_order_of_its_run(
    orders: OrderCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """plugins/urgentflow_listener.py as the scheduler calls it, on this test's database."""
    from types import SimpleNamespace

    import urgentflow_listener
    from bed import ImmediateOutbox

    monkeypatch.setattr(urgentflow_listener, "outbox", lambda: ImmediateOutbox(urgentflow_listener.apply))
    orders.migrate()
    monkeypatch.setenv("AIRFLOW_CONN_CATALOG_DB", os.environ[f"AIRFLOW_CONN_{orders.conn_id.upper()}"])
    orders.create_order("ord-0000000000d1", dag_id="analytics_order", run_id="order__d1", **ORDER)
    orders.create_order("ord-0000000000d2", dag_id="analytics_order", run_id="order__d2", **ORDER)

    def dag_run(run_id: str, conf: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(
            dag_id="analytics_order", run_id=run_id, conf=conf, start_date=None, end_date=None
        )

    handler = urgentflow_listener.ExitHandler()
    handler.on_dag_run_running(dag_run("order__d1", {"order_id": "ord-0000000000d1"}), "")
    assert (orders.order("ord-0000000000d1") or {})["state"] == "running"
    # marked failed by hand before any task ran
    handler.on_dag_run_failed(dag_run("order__d1", {"order_id": "ord-0000000000d1"}), "marked failed")
    row = orders.order("ord-0000000000d1") or {}
    assert (row["state"], row["reason"]) == ("failed", "run order__d1 failed: marked failed")
    # a run naming another run's order in its conf does not touch that order
    handler.on_dag_run_failed(dag_run("manual__x", {"order_id": "ord-0000000000d2"}), "task_failure")
    assert (orders.order("ord-0000000000d2") or {})["state"] == "queued"
    handler.on_dag_run_success(dag_run("order__d2", {}), "")
    assert (orders.order("ord-0000000000d2") or {})["state"] == "succeeded"
    # never raises: an unreadable run or a catalog that is down are logged, not raised
    handler.on_dag_run_failed(SimpleNamespace(), "x")
    monkeypatch.setenv(
        "AIRFLOW_CONN_CATALOG_DB", json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 1})
    )
    handler.on_dag_run_failed(dag_run("order__d1", {}), "x")
