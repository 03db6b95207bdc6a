"""The exit handler: every DAG run that belongs to an incident (``conf.incident_id``) or carries out an
order (analytics_order) records its state changes and how it ended on the incident or
order in the catalog — also runs that fail before any task ran (a dagrun_timeout, a run marked failed
in the UI or through the API).

A conf is anyone's to write, so it only names the incident: a run is recorded there only when its DAG is
the incident kind's own (its state becomes the incident's status) or ``ingest_observation`` (recorded as
observation processing, the status untouched); see ``operators.incidents.run_role``. An order's state is
set only by its own analytics_order run, the one recorded on the order.

Airflow calls these hooks in the scheduler, and in the API server when a state is set by hand, so the
handler only uses the catalog (a Connection both processes have) and never raises: an exit handler
that fails must not break the scheduler.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import cache
from typing import Any

from airflow.listeners import hookimpl

from operators.catalog.outbox import Outbox
from operators.incidents import INCIDENT_ID
from operators.orders import DAG_ID as ORDER_DAG_ID

log = logging.getLogger(__name__)
RUN_TO_ORDER = {"success": "succeeded", "failed": "failed"}
RUN_TO_INCIDENT = {"running": "running", "success": "succeeded", "failed": "failed"}
TIMEOUT_MS = 5000  # each catalog statement of the exit handler (and its connect: the connection's extra)


def incident_of(dag_id: str, run_id: str, conf_incident: str | None, catalog: Any) -> str | None:
    """``conf.incident_id`` (runs started by POST /incidents), else the incident the run registered
    itself under (runs started from the UI form or the plain REST API)."""
    if conf_incident is not None:
        return conf_incident
    found = catalog.incident_of_run(dag_id, run_id)
    return str(found) if found else None


def record(dag_run: Any, state: str, msg: str | None = None) -> None:
    """Spool what happened to the run; the outbox's writer thread records it (``apply``). Nothing here
    waits for the catalog: a stalled catalog must not stall scheduling."""
    # Plain values only, and nothing that loads from the database: this runs inside the scheduler's
    # own session (a lazy load or a second session there detaches its DagRun and stops the scheduler).
    try:
        conf = dag_run.conf if isinstance(dag_run.conf, dict) else {}
        value = conf.get("incident_id")
        entry = {
            "dag_id": str(dag_run.dag_id),
            "run_id": str(dag_run.run_id),
            "state": state,
            "msg": msg,
            "incident_id": value if isinstance(value, str) and INCIDENT_ID.match(value) else None,
            "started": dag_run.start_date.isoformat() if dag_run.start_date else None,
            "ended": dag_run.end_date.isoformat() if dag_run.end_date else None,
        }
        outbox().put(entry)
    except Exception:
        log.exception("exit handler: could not spool %s of a run", state)


@cache
def outbox() -> Outbox:
    from operators.home import urgentflow_home

    return Outbox(urgentflow_home() / "outbox" / "exit-handler", apply)


def transient(exc: BaseException) -> bool:
    """A database that is away, stalled (statement or lock timeout) or restarting: try again later."""
    names = {c.__name__ for c in type(exc).__mro__}
    return isinstance(exc, OSError | TimeoutError) or bool(names & {"OperationalError", "InterfaceError"})


def apply(entry: dict[str, Any]) -> None:
    """Record one spooled state change on its order and incident, with short timeouts. A transient
    failure raises (the outbox keeps the entry and retries); anything else is logged and dropped."""
    try:
        write(entry)
    except Exception as exc:
        if transient(exc):
            raise
        log.exception("exit handler: could not record %s of run %s", entry.get("state"), entry.get("run_id"))


def write(entry: dict[str, Any]) -> None:
    from operators.catalog.catalog import Catalog
    from operators.catalog.orders import OrderCatalog

    dag_id, run_id, state, msg = entry["dag_id"], entry["run_id"], entry["state"], entry.get("msg")
    started = datetime.fromisoformat(entry["started"]) if entry.get("started") else None
    ended = datetime.fromisoformat(entry["ended"]) if entry.get("ended") else None
    record_order(OrderCatalog(statement_timeout_ms=TIMEOUT_MS), dag_id, run_id, state, msg, started, ended)
    catalog = Catalog(statement_timeout_ms=TIMEOUT_MS)
    incident_id = incident_of(dag_id, run_id, entry.get("incident_id"), catalog)
    if incident_id is None:
        return
    role = catalog.record_incident_run(
        incident_id,
        dag_id,
        run_id,
        state,
        (msg or "failed")[:1000] if state == "failed" else "",
        started_at=started,
        ended_at=ended if state in ("success", "failed") else None,
    )
    if role == "incident":
        catalog.set_incident_status(incident_id, RUN_TO_INCIDENT[state])
    elif role is None:
        log.info("exit handler: run %s of %s not recorded on %s (not its DAG's)", run_id, dag_id, incident_id)


def record_order(
    orders: Any, dag_id: str, run_id: str, state: str, msg: str | None, started: Any, ended: Any
) -> None:
    """The order this run carries out (recorded with its run by POST /orders or the ``accept`` task), if
    any: running, or how it ended (an order keeps the first failure reason, e.g. the tool's stderr)."""
    if dag_id != ORDER_DAG_ID:
        return
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
