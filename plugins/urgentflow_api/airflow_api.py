"""What the plugin's routers share about Airflow itself: the auth manager's DAG-run permission check and
calls back into Airflow's own REST API with the caller's credentials (so Airflow's checks apply)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from fastapi import HTTPException, Request


def allowed(user: Any, dag_id: str | None, method: str) -> bool:
    """May ``user`` do ``method`` (GET, POST, PUT, ...) on the runs of ``dag_id`` (None: of every DAG)?"""
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().is_authorized_dag(
        method=method,  # type: ignore[arg-type]
        access_entity=DagAccessEntity.RUN,
        details=DagDetails(id=dag_id),
        user=user,
    )


def credentials(request: Request) -> dict[str, str]:
    """The caller's own credentials, passed on to Airflow's API (a bearer token or the UI cookie)."""
    headers = {}
    if "authorization" in request.headers:
        headers["Authorization"] = request.headers["authorization"]
    if "cookie" in request.headers:
        headers["Cookie"] = request.headers["cookie"]
    return headers


def api_base(request: Request) -> str:
    """The API server this request came to (Airflow's REST API is under ``/api/v2`` there)."""
    return f"{request.url.scheme}://{request.url.netloc}"


def trigger_run(
    request: Request, dag_id: str, body: dict[str, Any], undo: Callable[[], None]
) -> dict[str, Any]:
    """``POST /api/v2/dags/{dag_id}/dagRuns`` as the caller; the new run, or ``undo()`` and the API's
    refusal (its status and detail: 403, 409, 422 ...) as an HTTPException (503 when unreachable)."""
    try:
        response = httpx.post(
            f"{api_base(request)}/api/v2/dags/{dag_id}/dagRuns",
            json=body,
            headers=credentials(request),
            timeout=30,
        )
    except httpx.HTTPError as exc:
        undo()
        raise HTTPException(status_code=503, detail=f"could not start the {dag_id} run: {exc}") from None
    if response.status_code not in (200, 201):
        undo()
        detail = (
            response.json().get("detail")
            if response.headers.get("content-type", "").startswith("application/json")
            else response.text
        )
        raise HTTPException(status_code=response.status_code, detail=detail)
    return dict(response.json())
