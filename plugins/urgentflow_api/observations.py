"""``POST /incidents/{id}/data``: data pushed for an incident (a weather update, an observed perimeter, any
file) is size-limited, validated, checksummed, stored, catalogued and announced as an Asset event that
starts ``ingest_observation`` — all of it or nothing: a rejected upload leaves no object, row or event.

The Asset event is created in process through Airflow's own code for ``POST /api/v2/assets/events``
as the caller (``airflow_api.asset_event``), so Airflow's asset permissions apply as to a direct call.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
from datetime import UTC, datetime
from typing import Any, Literal

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from operators.catalog.catalog import Catalog, Producer
from operators.incidents import ObservationError, WildfireIncident, parse_observation
from operators.storage.assets import OBSERVATIONS
from urgentflow_api.airflow_api import allowed, asset_event
from urgentflow_api.incidents import DAG_OF_KIND, INCIDENT_ID

router = APIRouter()
MAX_BYTES = 16 * 1024 * 1024
SHA256 = re.compile(r"^[0-9a-f]{64}$")
FILE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
DEFAULT_NAME = {"weather": "weather.json", "perimeter": "perimeter.geojson"}
CONTENT_TYPE = {"weather": "application/json", "perimeter": "application/geo+json"}
FINAL_STATUSES = ("cancelled", "closed")


@router.post(
    "/incidents/{incident_id}/data",
    status_code=201,
    summary="Push data for an incident: stored, catalogued, announced to ingest_observation",
    description=(
        "The request body is the data itself (at most 16 MiB). `kind=weather`: JSON with wind_speed_ms, "
        "wind_direction_deg, fuel_moisture. `kind=perimeter`: a GeoJSON Polygon (or a Feature holding one) "
        "inside the incident's region. `kind=file`: anything, stored under `name`. An `X-Content-SHA256` "
        "header, when given, must match the body's sha256."
    ),
    responses={
        404: {"description": "no such incident"},
        403: {"description": "no right to run the incident's DAG"},
        409: {"description": "the incident is cancelled or closed, or of a kind that takes no observations"},
        413: {"description": "body larger than 16 MiB"},
        422: {"description": "the data is not acceptable (the reason is given)"},
    },
)
async def push_data(
    incident_id: str,
    request: Request,
    user: GetUserDep,
    kind: Literal["weather", "perimeter", "file"] = Query(description="what the body is"),
    name: str | None = Query(None, max_length=128, description="file name (kind=file)"),
) -> JSONResponse:
    row = await run_in_threadpool(_incident, incident_id, user)
    object_name = _object_name(kind, name)
    body = await _body(request)
    expected = request.headers.get("x-content-sha256", "").lower()
    # hashing and parsing up to 16 MiB takes long enough to hold up every other request of this worker
    change = await run_in_threadpool(_checked, kind, body, expected, row["payload"])
    stored = await run_in_threadpool(_store, user, incident_id, kind, object_name, body, change)
    return JSONResponse(status_code=201, content=stored)


def _incident(incident_id: str, user: Any) -> dict[str, Any]:
    row = Catalog().incident(incident_id) if INCIDENT_ID.match(incident_id) else None
    dag_id = DAG_OF_KIND.get(row["kind"], "") if row else ""
    if row is None or not allowed(user, dag_id, "GET"):
        raise HTTPException(status_code=404, detail=f"no incident {incident_id!r}")
    if not allowed(user, dag_id, "POST"):
        raise HTTPException(status_code=403, detail=f"you may not run {dag_id} for this incident")
    if row["status"] in FINAL_STATUSES:
        raise HTTPException(status_code=409, detail=f"incident {incident_id} is {row['status']}")
    if row["kind"] != "wildfire":  # what ingest_observation applies observations to
        raise HTTPException(status_code=409, detail=f"a {row['kind']} incident takes no observations")
    return row


def _checked(kind: str, body: bytes, expected: str, incident: dict[str, Any]) -> dict[str, Any] | None:
    """The change ``body`` makes to the incident (``parse_observation``); 422 when it is not acceptable or
    its sha256 is not ``expected`` (when given)."""
    if expected and (not SHA256.match(expected) or hashlib.sha256(body).hexdigest() != expected):
        raise HTTPException(status_code=422, detail="X-Content-SHA256 does not match the body")
    try:
        return parse_observation(kind, body, WildfireIncident.model_validate(incident))
    except ObservationError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


def _object_name(kind: str, name: str | None) -> str:
    if kind != "file":
        return DEFAULT_NAME[kind]
    if not name or not FILE_NAME.match(name):
        raise HTTPException(
            status_code=422,
            detail="kind=file needs a name of letters, digits, '.', '_' and '-' (at most 128, no leading '.')",
        )
    return name


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BYTES:
        raise HTTPException(status_code=413, detail=f"the body is larger than {MAX_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BYTES:
            raise HTTPException(status_code=413, detail=f"the body is larger than {MAX_BYTES} bytes")
        chunks.append(chunk)
    if size == 0:
        raise HTTPException(status_code=422, detail="the body is empty")
    return b"".join(chunks)


def _store(
    user: Any,
    incident_id: str,
    kind: str,
    name: str,
    body: bytes,
    change: dict[str, Any] | None,
) -> dict[str, Any]:
    """Store and catalogue the data, then announce it; the object and row are removed again when the
    announcement fails (both or neither)."""
    from operators.storage.hook import ObjectStoreHook

    observation_id = f"obs-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
    key = f"incidents/{incident_id}/observations/{observation_id}/{name}"
    store, catalog = ObjectStoreHook(), Catalog()
    # never the caller's Content-Type: the store's origin must not serve an uploaded page as HTML
    content_type = CONTENT_TYPE.get(kind, "application/octet-stream")
    stored = store.put_stream(key, io.BytesIO(body), content_type, length=len(body))
    dataset_id = catalog.record_stored(stored, Producer(task_id="POST /incidents/{id}/data"), incident_id)
    extra = {
        "incident_id": incident_id,
        "observation_id": observation_id,
        "kind": kind,
        "bucket": stored.bucket,
        "key": stored.key,
        "sha256": stored.sha256,
        "size": stored.size,
        "dataset_id": dataset_id,
        "changes": sorted(change or {}),
    }
    try:
        event_id = asset_event(user, OBSERVATIONS.uri, extra)
    except BaseException:
        catalog.delete_dataset(dataset_id)
        store.delete(stored.key)
        raise
    return {**extra, "asset_event_id": event_id}
