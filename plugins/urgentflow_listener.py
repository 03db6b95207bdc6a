"""The exit handler: every DAG run that belongs to an incident (``conf.incident_id``) records its state
changes and how it ended on the incident in the catalog — also runs that fail before any task ran
(a dagrun_timeout, a run marked failed in the UI or through the API).

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
RUN_TO_INCIDENT = {"running": "running", "success": "succeeded", "failed": "failed"}


def incident_of(dag_run: Any, catalog: Any) -> str | None:
    """``conf.incident_id`` (runs started by POST /incidents), else the incident the run registered
    itself under (runs started from the UI form or the plain REST API)."""
    conf = getattr(dag_run, "conf", None) or {}
    value = conf.get("incident_id") if isinstance(conf, dict) else None
    if isinstance(value, str) and INCIDENT_ID.match(value):
        return value
    found = catalog.incident_of_run(dag_run.dag_id, dag_run.run_id)
    return str(found) if found else None


def failure_reason(dag_run: Any, msg: str | None) -> str:
    """The scheduler's message plus the failed tasks, when the run can tell."""
    parts = [msg] if msg else []
    try:
        failed = [ti.task_id for ti in dag_run.get_task_instances(state=["failed", "upstream_failed"])]
        if failed:
            parts.append("failed tasks: " + ", ".join(sorted(set(failed))[:20]))
    except Exception:  # not every process can read task instances; the message is enough then
        log.debug("failed tasks of %s unavailable", getattr(dag_run, "run_id", "?"), exc_info=True)
    return "; ".join(parts)[:1000]


def record(dag_run: Any, state: str, msg: str | None = None) -> None:
    try:
        from operators.catalog.catalog import Catalog

        catalog = Catalog()
        incident_id = incident_of(dag_run, catalog)
        if incident_id is None or catalog.incident(incident_id) is None:
            return
        catalog.record_incident_run(
            incident_id,
            dag_run.dag_id,
            dag_run.run_id,
            state,
            failure_reason(dag_run, msg) if state == "failed" else "",
            started_at=getattr(dag_run, "start_date", None),
            ended_at=getattr(dag_run, "end_date", None) if state in ("success", "failed") else None,
        )
        catalog.set_incident_status(incident_id, RUN_TO_INCIDENT[state])
    except Exception:
        log.exception("exit handler: could not record %s of run %s", state, getattr(dag_run, "run_id", "?"))


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
