"""Incidents: ``POST /incidents`` (a catalog row and a DAG run, both or neither), ``GET /incidents``,
``GET /incidents/{id}`` (runs, batch jobs with their machines, result datasets with download links,
services). Runs are created and failed in process through Airflow's own code (``airflow_api``), so Airflow's
checks (permissions, the DAG's params schema) apply exactly as for ``POST /api/v2/dags/{id}/dagRuns``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from operators.catalog.catalog import Catalog
from operators.incidents import DAG_OF_KIND, INCIDENT_ID, WildfireIncident, new_incident_id
from operators.services.spec import link_url
from urgentflow_api.access import kind_allowed, permitted
from urgentflow_api.airflow_api import allowed, fail_run, trigger_run

router = APIRouter()


@router.post(
    "/incidents",
    status_code=201,
    summary="Report an incident: it is recorded and its forecast DAG run starts (both or neither)",
    responses={422: {"description": "invalid incident (field errors)"}, 403: {"description": "no right"}},
)
def create_incident(incident: WildfireIncident, request: Request, user: GetUserDep) -> JSONResponse:
    dag_id = DAG_OF_KIND[incident.kind]
    if not allowed(user, dag_id, "POST"):
        raise HTTPException(status_code=403, detail=f"you may not trigger {dag_id}")
    incident_id = new_incident_id()
    payload = incident.model_dump(mode="json")
    catalog = Catalog()
    catalog.create_incident(incident_id, incident.kind, payload)
    run = trigger_run(
        request,
        user,
        dag_id,
        {"logical_date": None, "conf": {"incident_id": incident_id, **payload}},
        undo=lambda: catalog.delete_incident(incident_id),
    )
    catalog.record_incident_run(incident_id, dag_id, run["dag_run_id"], "queued")
    return JSONResponse(
        status_code=201,
        content={"incident_id": incident_id, "dag_id": dag_id, "run_id": run["dag_run_id"], "status": "open"},
    )


@router.get("/incidents", summary="Incidents, newest first")
def list_incidents(user: GetUserDep, limit: int = 100) -> list[dict[str, Any]]:
    catalog = Catalog()
    found = []
    for row in catalog.incidents(max(1, min(limit, 1000))):
        if not kind_allowed(user, row["kind"], "GET"):
            continue
        runs = permitted(user, catalog.runs_of_incident(row["id"]))
        found.append(
            {
                "incident_id": row["id"],
                "kind": row["kind"],
                "name": row["payload"].get("name"),
                "status": row["status"],
                "created_at": row["created_at"].isoformat(),
                "latest_run": _run_out(runs[-1]) if runs else None,
            }
        )
    return found


def _run_out(run: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in run.items()}


@router.get(
    "/incidents/{incident_id}",
    summary="One incident: its runs (of the DAGs the user may read) with their jobs, results and services",
)
def get_incident(incident_id: str, user: GetUserDep) -> dict[str, Any]:
    catalog = Catalog()
    row = catalog.incident(incident_id) if INCIDENT_ID.match(incident_id) else None
    if row is None or not kind_allowed(user, row["kind"], "GET"):
        raise HTTPException(status_code=404, detail=f"no incident {incident_id!r}")
    from operators.storage.hook import ObjectStoreHook

    store = ObjectStoreHook()
    runs = []
    for run in permitted(user, catalog.runs_of_incident(incident_id)):
        datasets = catalog.datasets_of_run(run["dag_id"], run["run_id"])
        runs.append(
            {
                **_run_out(run),
                "jobs": [_run_out(j) for j in catalog.jobs_of_run(run["dag_id"], run["run_id"])],
                "results": [
                    {
                        "dataset_id": d["id"],
                        "task_id": d["task_id"],
                        "key": d["key"],
                        "size": d["size"],
                        "sha256": d["sha256"],
                        "download": store.presigned_get(d["key"], timedelta(hours=1), bucket=d["bucket"]),
                    }
                    for d in datasets
                ],
                "services": [
                    {
                        "service_id": s["id"],
                        "url": link_url(s["url"]),
                        "state": s["state"],
                        "task_id": s["task_id"],
                    }
                    for s in catalog.services_of_run(run["dag_id"], run["run_id"])
                ],
            }
        )
    return {
        "incident_id": row["id"],
        "kind": row["kind"],
        "status": row["status"],
        "incident": row["payload"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "runs": runs,
        "observations": [
            {
                "dataset_id": d["id"],
                "key": d["key"],
                "size": d["size"],
                "sha256": d["sha256"],
                "content_type": d["content_type"],
                "received_at": d["created_at"].isoformat(),
            }
            for d in catalog.datasets_of_incident(incident_id, f"incidents/{incident_id}/observations/")
        ],
    }


LIVE_RUN_STATES = ("queued", "running")


@router.post(
    "/incidents/{incident_id}/cancel",
    summary="Cancel an incident: its live runs fail (their batch jobs are cancelled), its services stop",
    responses={404: {"description": "no such incident"}, 403: {"description": "no right"}},
)
def cancel_incident(incident_id: str, user: GetUserDep) -> dict[str, Any]:
    catalog = Catalog()
    row = catalog.incident(incident_id) if INCIDENT_ID.match(incident_id) else None
    if row is None or not kind_allowed(user, row["kind"], "GET"):
        raise HTTPException(status_code=404, detail=f"no incident {incident_id!r}")
    if not kind_allowed(user, row["kind"], "PUT"):
        raise HTTPException(status_code=403, detail="you may not change these runs")
    # Only the incident's own runs (of its kind's DAG, which the user may change) and their services: an
    # ingest run may be applying other incidents' observations too, and is left to finish.
    own = [run for run in catalog.runs_of_incident(incident_id) if run["role"] == "incident"]
    # marked first, so no new data or reforecast starts meanwhile; put back if a run cannot be failed
    catalog.set_incident_status(incident_id, "cancelled")
    failed_runs, stopped = [], []
    try:
        for run in own:
            # in process, as Airflow's PATCH would: deferred tasks lose their triggers, whose cleanup
            # cancels the batch jobs
            if run["state"] in LIVE_RUN_STATES and fail_run(user, run["dag_id"], run["run_id"]):
                failed_runs.append(run["run_id"])
            stopped += _stop_services(catalog, run["dag_id"], run["run_id"])
    except Exception:
        catalog.set_incident_status(incident_id, row["status"])
        raise
    return {
        "incident_id": incident_id,
        "status": "cancelled",
        "failed_runs": failed_runs,
        "stopped_services": stopped,
    }


def _stop_services(catalog: Catalog, dag_id: str, run_id: str) -> list[str]:
    from operators.services.data import drop_service_data
    from operators.services.hook import ServiceHook

    hook, stopped = ServiceHook(), []
    for service in catalog.services_of_run(dag_id, run_id):
        if service["state"] in ("starting", "running"):
            found = hook.find(service["id"])
            if found is not None:
                hook.remove(found.container_id)
            drop_service_data(service["id"])
            catalog.set_service_state(service["id"], "stopped")
            stopped.append(service["id"])
    return stopped
