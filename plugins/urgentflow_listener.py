"""The exit handler: every DAG run that belongs to an incident (``conf.incident_id``) or carries out an
order (analytics_order) records its state changes and how it ended on the incident or
order in the catalog — also runs that fail before any task ran (a dagrun_timeout, a run marked failed
in the UI or through the API).

Airflow calls these hooks in the scheduler, and in the API server when a state is set by hand, so the
handler only uses the catalog (a Connection both processes have) and never raises: an exit handler
that fails must not break the scheduler.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)
INCIDENT_ID = re.compile(r"^inc-[0-9a-f]{12}$")
RUN_TO_ORDER = {"success": "succeeded", "failed": "failed"}
RUN_TO_INCIDENT = {"running": "running", "success": "succeeded", "failed": "failed"}


def incident_of(dag_id: str, run_id: str, conf: dict[str, Any], catalog: Any) -> str | None:
    """``conf.incident_id`` (runs started by POST /incidents), else the incident the run registered
    itself under (runs started from the UI form or the plain REST API)."""
    value = conf.get("incident_id")
    if isinstance(value, str) and INCIDENT_ID.match(value):
        return value
    found = catalog.incident_of_run(dag_id, run_id)
    return str(found) if found else None


def record(dag_run: Any, state: str, msg: str | None = None) -> None:
    # Plain values first, and nothing that loads from the database: this runs inside the scheduler's
    # own session (a lazy load or a second session there detaches its DagRun and stops the scheduler).
    try:
        dag_id, run_id = str(dag_run.dag_id), str(dag_run.run_id)
        conf = dag_run.conf if isinstance(dag_run.conf, dict) else {}
        started, ended = dag_run.start_date, dag_run.end_date
    except Exception:
        log.exception("exit handler: unreadable DagRun")
        return
    try:
        record_order(dag_id, run_id, state, msg, started, ended)
    except Exception:
        log.exception("exit handler: could not record %s of run %s on its order", state, run_id)
    try:
        from operators.catalog.catalog import Catalog

        catalog = Catalog()
        incident_id = incident_of(dag_id, run_id, conf, catalog)
        if incident_id is None or catalog.incident(incident_id) is None:
            return
        catalog.record_incident_run(
            incident_id,
            dag_id,
            run_id,
            state,
            (msg or "failed")[:1000] if state == "failed" else "",
            started_at=started,
            ended_at=ended if state in ("success", "failed") else None,
        )
        catalog.set_incident_status(incident_id, RUN_TO_INCIDENT[state])
    except Exception:
        log.exception("exit handler: could not record %s of run %s", state, run_id)


def record_order(dag_id: str, run_id: str, state: str, msg: str | None, started: Any, ended: Any) -> None:
    """The order this run carries out (recorded with its run by POST /orders or the ``accept`` task), if
    any: running, or how it ended (an order keeps the first failure reason, e.g. the tool's stderr)."""
    from operators.catalog.orders import OrderCatalog

    orders = OrderCatalog()
    order_id = orders.order_of_run(dag_id, run_id)  # never conf.order_id: it may name another run's order
    if order_id is None:
        return
    if state == "running":
        orders.mark_order_running(order_id, started_at=started)
    else:
        reason = f"run {run_id} failed: {msg or 'failed'}" if state == "failed" else ""
        orders.finish_order(order_id, RUN_TO_ORDER[state], reason=reason, ended_at=ended)


class ExitHandler:
    @hookimpl
    def on_dag_run_running(self, dag_run: Any, msg: str) -> None:
        record(dag_run, "running")

    @hookimpl
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        record(dag_run, "success")

    @hookimpl
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        record(dag_run, "failed", msg)
