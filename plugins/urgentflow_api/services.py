"""Service containers: ``GET /services``, ``GET /services/{id}``, ``POST /services/{id}/keepalive`` and the
Services page (which keeps the services it shows alive while it is open: "closed on disconnect").

Reading a service needs the right to read DAG runs of the service's DAG; keeping it alive (a write) the
right to change them ("PUT").
"""

from __future__ import annotations

import html
import re
from typing import Any

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from operators.catalog.catalog import Catalog
from operators.services.spec import link_url
from urgentflow_api.access import permitted
from urgentflow_api.airflow_api import allowed
from urgentflow_api.web_security import CSRF_HEADER, csp_nonce

router = APIRouter()
SERVICE_ID = re.compile(r"^svc-[0-9a-f]{24}$")
LIVE_STATES = ("starting", "running")


class ServiceOut(BaseModel):
    service_id: str
    dag_id: str | None
    run_id: str | None
    task_id: str | None
    url: str | None
    state: str
    image: str | None
    owner: str | None
    expires_at: str | None
    last_seen: str | None
    created_at: str | None


def _out(row: dict[str, Any]) -> ServiceOut:
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return ServiceOut(
        service_id=row["id"],
        dag_id=row["dag_id"],
        run_id=row["run_id"],
        task_id=row["task_id"],
        url=link_url(row["url"]),  # never a javascript: or data: link
        state=row["state"],
        image=row.get("image"),
        owner=row.get("owner"),
        expires_at=iso(row.get("expires_at")),
        last_seen=iso(row.get("last_seen")),
        created_at=iso(row.get("created_at")),
    )


def _readable_service(service_id: str, user: Any) -> dict[str, Any]:
    """The service's row, or 404 (also for a service of a DAG the user may not read: no probing)."""
    row = Catalog().service(service_id) if SERVICE_ID.match(service_id) else None
    if row is None or not allowed(user, row["dag_id"], "GET"):
        raise HTTPException(status_code=404, detail=f"no service {service_id!r}")
    return row


@router.get("/services", response_model=list[ServiceOut], summary="Newest services (the user's DAGs only)")
def list_services(user: GetUserDep, limit: int = 100) -> list[ServiceOut]:
    rows = Catalog().recent_services(max(1, min(limit, 1000)))
    return [_out(r) for r in permitted(user, rows)]


@router.get("/services/{service_id}", response_model=ServiceOut, summary="One service")
def get_service(service_id: str, user: GetUserDep) -> ServiceOut:
    return _out(_readable_service(service_id, user))


@router.post(
    "/services/{service_id}/keepalive",
    response_model=ServiceOut,
    summary="The user is still there: keeps a service with keepalive_seconds from being reaped",
    responses={
        403: {"description": "no right to change runs of the service's DAG"},
        404: {"description": "no such service"},
        409: {"description": "the service is not running"},
    },
)
def keepalive(service_id: str, user: GetUserDep) -> ServiceOut:
    row = _readable_service(service_id, user)
    if not allowed(user, row["dag_id"], "PUT"):
        raise HTTPException(status_code=403, detail=f"you may not keep services of {row['dag_id']} alive")
    if row["state"] not in LIVE_STATES:
        raise HTTPException(status_code=409, detail=f"service {service_id} is {row['state']}")
    catalog = Catalog()
    catalog.touch_service(service_id)
    return _out(catalog.service(service_id) or row)


def render_page(services: list[ServiceOut], nonce: str) -> str:
    def cell(value: Any) -> str:
        return f"<td>{html.escape('' if value is None else str(value))}</td>"

    rows = []
    for s in services:
        link = (
            f'<a href="{html.escape(s.url)}" target="_blank" rel="noopener">open</a>'
            if s.url and s.state in LIVE_STATES
            else ""
        )
        rows.append(
            f'<tr data-service="{html.escape(s.service_id)}" data-live="{int(s.state in LIVE_STATES)}">'
            + cell(s.service_id)
            + f"<td>{link}</td>"
            + "".join(
                cell(v) for v in (s.state, s.image, s.dag_id, s.run_id, s.task_id, s.expires_at, s.last_seen)
            )
            + "</tr>"
        )
    # rows last: what they hold never meets the other placeholders
    return (
        PAGE.replace("{nonce}", html.escape(nonce))
        .replace("{csrf_header}", CSRF_HEADER)
        .replace("{rows}", "".join(rows) or '<tr><td colspan="10">No services yet.</td></tr>')
    )


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>urgentflow services</title>
<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}</style></head>
<body><h1>Services</h1><p>Interactive service containers started by DAG runs. While this page is open it
sends a keep-alive for every running service it lists (every 30 s); services that asked for keep-alives
are closed by the <code>service_reaper</code> DAG once nobody keeps them alive.</p>
<table><tr><th>service</th><th></th><th>state</th><th>image</th><th>DAG</th><th>run</th><th>task</th>
<th>expires</th><th>last keep-alive</th></tr>{rows}</table>
<script nonce="{nonce}">
function keepalive() {
  document.querySelectorAll('tr[data-live="1"]').forEach(function (row) {
    fetch('../services/' + row.dataset.service + '/keepalive',
          {method: 'POST', credentials: 'same-origin', headers: {'{csrf_header}': '1'}});
  });
}
keepalive();
setInterval(keepalive, 30000);
</script></body></html>"""


@router.get("/ui/services", response_class=HTMLResponse, include_in_schema=False)
def services_page(request: Request, user: GetUserDep) -> str:
    rows = Catalog().recent_services(200)
    return render_page([_out(r) for r in permitted(user, rows)], csp_nonce(request))
