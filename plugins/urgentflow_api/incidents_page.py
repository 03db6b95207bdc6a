"""The Incidents page (``GET /ui/incidents``) and its map thumbnails (``GET /incidents/{id}/thumbnail``).

Same rule as the JSON API: a user sees only incidents of DAGs whose runs they may read, and of an incident
only the runs (latest run, map, viewers) of DAGs they may read; an incident they may not read is a 404, as
if it did not exist. Incident names are user text: everything shown is escaped.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from operators.catalog.catalog import Catalog
from operators.incidents import INCIDENT_ID
from operators.services.spec import link_url
from urgentflow_api.access import kind_allowed, permitted

router = APIRouter()
THUMBNAIL_NAME = "burn_probability.png"
LIVE_SERVICE_STATES = ("starting", "running")
PAGE_LIMIT = 100
COLOURS = {
    "open": "#1565c0",
    "running": "#ef6c00",
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "cancelled": "#757575",
}


@dataclass(frozen=True)
class IncidentRow:
    incident_id: str
    kind: str
    name: str
    status: str
    created_at: str
    run: dict[str, Any] | None  # the latest run: dag_id, run_id, state, reason
    has_map: bool
    viewers: list[str] = field(default_factory=list)  # URLs of the incident's live services


def latest_map(catalog: Catalog, incident_id: str, runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The burn-probability map of the incident's newest successful run of its own (``runs`` oldest first),
    if that run wrote one under the incident's prefix: a run's output under another prefix is not this
    incident's map, whatever its name."""
    prefix = f"incidents/{incident_id}/"
    for run in reversed(runs):
        if run["role"] == "incident" and run["state"] == "success":
            maps = [
                d
                for d in catalog.datasets_of_run(run["dag_id"], run["run_id"])
                if d["key"].startswith(prefix) and d["key"].rsplit("/", 1)[-1] == THUMBNAIL_NAME
            ]
            return maps[-1] if maps else None
    return None


def incident_rows(catalog: Catalog, user: Any, limit: int = PAGE_LIMIT) -> list[IncidentRow]:
    rows = []
    for incident in catalog.incidents(limit):
        if not kind_allowed(user, incident["kind"], "GET"):
            continue
        runs = permitted(user, catalog.runs_of_incident(incident["id"]))
        viewers = [
            s["url"]
            for run in runs
            for s in catalog.services_of_run(run["dag_id"], run["run_id"])
            if s["state"] in LIVE_SERVICE_STATES and s["url"]
        ]
        latest = runs[-1] if runs else None
        rows.append(
            IncidentRow(
                incident_id=incident["id"],
                kind=incident["kind"],
                name=str((incident["payload"] or {}).get("name") or ""),
                status=incident["status"],
                created_at=incident["created_at"].isoformat(timespec="seconds"),
                run={k: latest[k] for k in ("dag_id", "run_id", "state", "reason")} if latest else None,
                has_map=latest_map(catalog, incident["id"], runs) is not None,
                viewers=viewers,
            )
        )
    return rows


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def run_link(dag_id: str, run_id: str) -> str:
    """The Airflow UI page of a run (the page is shown in the UI's frame: open it in the whole window)."""
    href = f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe=':+')}"
    return f'<a href="{_e(href)}" target="_top">{_e(run_id)}</a>'


def _viewer_link(url: str) -> str:
    if link_url(url) is None:  # never a javascript: or data: link
        return ""
    return f'<a href="{_e(url)}" target="_blank" rel="noopener">viewer</a>'


def _row(r: IncidentRow) -> str:
    thumb = f"../incidents/{quote(r.incident_id, safe='')}/thumbnail"
    picture = (
        f'<a href="{_e(thumb)}" target="_blank" rel="noopener"><img src="{_e(thumb)}" alt="map of {_e(r.name)}"'
        ' width="160" loading="lazy"></a>'
        if r.has_map
        else '<span class="none">no map yet</span>'
    )
    run = (
        f"{run_link(r.run['dag_id'], r.run['run_id'])}<br>{_e(r.run['state'])}"
        + (f'<br><span class="reason">{_e(r.run["reason"])}</span>' if r.run["reason"] else "")
        if r.run
        else ""
    )
    return (
        f"<tr><td>{picture}</td><td><b>{_e(r.name)}</b><br><code>{_e(r.incident_id)}</code></td>"
        f"<td>{_e(r.kind)}</td>"
        f'<td><span class="badge" style="background:{COLOURS.get(r.status, "#757575")}">{_e(r.status)}</span></td>'
        f"<td>{_e(r.created_at)}</td><td>{run}</td>"
        f"<td>{' '.join(filter(None, (_viewer_link(u) for u in r.viewers)))}</td></tr>"
    )


def render_page(rows: list[IncidentRow]) -> str:
    body = "".join(_row(r) for r in rows) or '<tr><td colspan="7">No incidents yet.</td></tr>'
    return PAGE.replace("{rows}", body)


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>urgentflow incidents</title>
<meta http-equiv="refresh" content="30">
<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
.badge{color:#fff;border-radius:.3em;padding:.1em .5em;font-size:.8em}.reason{color:#c62828}
.none{color:#757575}</style></head>
<body><h1>Incidents</h1><p>Newest first, with the burn-probability map of each incident's latest
successful forecast and its open result viewers. JSON: <code>GET /urgentflow/incidents</code>.</p>
<table><tr><th>map</th><th>incident</th><th>kind</th><th>status</th><th>created</th><th>latest run</th>
<th>services</th></tr>{rows}</table></body></html>"""


@router.get("/ui/incidents", response_class=HTMLResponse, include_in_schema=False)
def incidents_page(user: GetUserDep) -> str:
    return render_page(incident_rows(Catalog(), user))


PLACEHOLDER = """<svg xmlns="http://www.w3.org/2000/svg" width="160" height="120" viewBox="0 0 160 120">
<rect width="160" height="120" fill="#eeeeee"/><text x="80" y="64" font-family="sans-serif" font-size="12"
text-anchor="middle" fill="#757575">no map yet</text></svg>"""


@router.get(
    "/incidents/{incident_id}/thumbnail",
    summary="The burn-probability map of the incident's latest successful run (a redirect to it), or a placeholder",
    response_class=Response,
    responses={
        200: {"description": "placeholder: no map yet", "content": {"image/svg+xml": {}}},
        307: {"description": "redirect to the map"},
        404: {"description": "no such incident"},
    },
)
def thumbnail(incident_id: str, user: GetUserDep) -> Response:
    catalog = Catalog()
    row = catalog.incident(incident_id) if INCIDENT_ID.match(incident_id) else None
    if row is None or not kind_allowed(user, row["kind"], "GET"):
        raise HTTPException(status_code=404, detail=f"no incident {incident_id!r}")
    found = latest_map(catalog, incident_id, permitted(user, catalog.runs_of_incident(incident_id)))
    if found is None:
        return Response(PLACEHOLDER, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})
    from operators.storage.hook import ObjectStoreHook

    url = ObjectStoreHook(bucket=found["bucket"]).presigned_get(found["key"], expires=timedelta(minutes=10))
    return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
