"""``GET /machines``, ``GET /machines/{name}`` and the Machines page: catalog entry, latest status, our jobs.

A job shows the DAG, run and task it belongs to: a user sees only jobs of DAGs whose runs they may read."""

from __future__ import annotations

import html
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_view
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from operators.catalog.catalog import Catalog
from operators.machines.catalog import Machine, load_catalog
from urgentflow_api.access import permitted

router = APIRouter(dependencies=[Depends(requires_access_view(AccessView.CLUSTER_ACTIVITY))])
STALE_AFTER_S = 180


class MachineOut(BaseModel):
    name: str
    batch_system: str
    enabled: bool
    cost_weight: float
    max_jobs_per_user: int | None
    partitions: dict[str, dict[str, Any]]
    state: str  # up | degraded | down | disabled | unknown (no status yet, or older than 3 minutes)
    status: dict[str, Any] | None
    jobs: list[dict[str, Any]]


def _machine_out(machine: Machine, status: dict[str, Any] | None, jobs: list[dict[str, Any]]) -> MachineOut:
    state = "disabled" if not machine.enabled else "unknown"
    if machine.enabled and status is not None:
        state = status["state"] if float(status["age_seconds"]) <= STALE_AFTER_S else "unknown"
    return MachineOut(
        name=machine.name,
        batch_system=machine.batch_system,
        enabled=machine.enabled,
        cost_weight=machine.cost_weight,
        max_jobs_per_user=machine.max_jobs_per_user,
        partitions={
            p.name: {
                "default": p.default,
                "nodes": p.nodes,
                "cores_per_node": p.cores_per_node,
                "memory_mb_per_node": p.memory_mb_per_node,
                "max_walltime_minutes": p.max_walltime_minutes,
            }
            for p in machine.partitions.values()
        },
        state=state,
        status=_jsonable(status),
        jobs=[_jsonable(j) or {} for j in jobs],
    )


def _jsonable(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        k: (v.isoformat() if hasattr(v, "isoformat") else float(v) if k == "age_seconds" else v)
        for k, v in row.items()
    }


def machines_report(job_limit: int = 20) -> list[MachineOut]:
    catalog = Catalog()
    statuses = catalog.latest_machine_status()
    return [
        _machine_out(m, statuses.get(name), catalog.jobs_on(name, job_limit))
        for name, m in sorted(load_catalog().items())
    ]


def for_user(user: Any, machine: MachineOut) -> MachineOut:
    """``machine`` with only the jobs of DAGs ``user`` may read."""
    return machine.model_copy(update={"jobs": permitted(user, machine.jobs)})


@router.get(
    "/machines", response_model=list[MachineOut], summary="Every machine: catalog entry, status, our jobs"
)
def list_machines(user: GetUserDep) -> list[MachineOut]:
    return [for_user(user, m) for m in machines_report()]


@router.get(
    "/machines/{name}", response_model=MachineOut, summary="One machine with its 200 newest jobs of ours"
)
def get_machine(name: str, user: GetUserDep) -> MachineOut:
    machines = load_catalog()
    if name not in machines:
        raise HTTPException(status_code=404, detail=f"unknown machine {name!r}")
    catalog = Catalog()
    found = _machine_out(
        machines[name], catalog.latest_machine_status().get(name), catalog.jobs_on(name, 200)
    )
    return for_user(user, found)


COLOURS = {
    "up": "#2e7d32",
    "degraded": "#ef6c00",
    "down": "#c62828",
    "disabled": "#757575",
    "unknown": "#757575",
}


def _cell(value: Any) -> str:
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def render_page(machines: list[MachineOut]) -> str:
    parts = []
    for m in machines:
        detail = (m.status or {}).get("detail") or {}
        rows = "".join(
            "<tr>"
            + _cell(name)
            + _cell(f"{p.get('cores_idle', '?')} / {p.get('cores_total', '?')}")
            + _cell(
                f"{p.get('nodes_idle', '?')} idle, {p.get('nodes_down', '?')} down of {p.get('nodes_total', '?')}"
            )
            + _cell(f"{p.get('jobs_running', 0)} running, {p.get('jobs_pending', 0)} queued")
            + _cell(m.partitions.get(name, {}).get("max_walltime_minutes"))
            + "</tr>"
            for name, p in (detail.get("partitions") or {}).items()
        )
        jobs = "".join(
            "<tr>"
            + "".join(
                _cell(j.get(k))
                for k in (
                    "native_id",
                    "state",
                    "exit_code",
                    "dag_id",
                    "run_id",
                    "task_id",
                    "map_index",
                    "updated_at",
                )
            )
            + "</tr>"
            for j in m.jobs
        )
        status = m.status or {}
        parts.append(
            f'<section><h2>{html.escape(m.name)} <span class="badge" style="background:{COLOURS.get(m.state, "#757575")}">'
            f"{html.escape(m.state)}</span></h2>"
            f"<p>{html.escape(m.batch_system)} · cost weight {m.cost_weight} · "
            f"jobs (ours / all): {detail.get('ours_running', 0)}/{detail.get('jobs_running', 0)} running, "
            f"{detail.get('ours_pending', 0)}/{detail.get('jobs_pending', 0)} queued · "
            f"SSH round trip {html.escape(str(status.get('latency_ms')))} ms · "
            f"observed {html.escape(str(status.get('observed_at', 'never')))}"
            + (
                f' · <span class="error">last error: {html.escape(status["error"])}</span>'
                if status.get("error")
                else ""
            )
            + "</p>"
            "<table><tr><th>partition</th><th>cores idle / total</th><th>nodes</th><th>jobs</th><th>max walltime (min)</th></tr>"
            f"{rows}</table>"
            "<details><summary>our newest jobs here</summary><table><tr><th>job</th><th>state</th><th>exit</th>"
            "<th>DAG</th><th>run</th><th>task</th><th>map index</th><th>updated</th></tr>"
            f"{jobs}</table></details></section>"
        )
    return PAGE.format(body="".join(parts) or "<p>No machines in the catalog.</p>")


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>urgentflow machines</title>
<meta http-equiv="refresh" content="30">
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left}}.badge{{color:#fff;border-radius:.3em;
padding:.1em .5em;font-size:.8em}}.error{{color:#c62828}}section{{margin-bottom:2em}}</style></head>
<body><h1>Machines</h1><p>Live status from the <code>machine_status</code> DAG (every minute; a status
older than 3 minutes shows as unknown). JSON: <code>GET /urgentflow/machines</code>.</p>{body}</body></html>"""


@router.get("/ui/machines", response_class=HTMLResponse, include_in_schema=False)
def machines_page(user: GetUserDep) -> str:
    return render_page([for_user(user, m) for m in machines_report()])
