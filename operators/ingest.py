"""Apply data pushed for incidents (the ``urgentflow_observations`` Asset events) to the incidents, and
say which forecasts to run again. Used by ``dags/ingest_observation.py``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from operators.catalog.catalog import Catalog
from operators.incidents import WildfireIncident, parse_observation
from operators.storage.hook import ChecksumMismatch
from operators.storage.keys import ObjectKeyError

FINAL_STATUSES = ("cancelled", "closed")


class RejectedObservation(ValueError):
    """A pushed object that no longer matches what was accepted (changed, corrupted or invalid)."""


class ObservationEvent(BaseModel):
    """The extra of an ``urgentflow_observations`` event (``POST /incidents/{id}/data`` writes more)."""

    model_config = ConfigDict(extra="ignore")
    incident_id: str
    observation_id: str
    kind: str
    key: str
    sha256: str


def apply_observations(
    events: Iterable[Mapping[str, Any]], store: Any, catalog: Catalog, *, dag_id: str, run_id: str
) -> dict[str, Any]:
    """Judge each event on its own, in event order: re-read its object (verified against its sha256 and
    the event's), validate it again against its incident as it is now, and merge the change into the
    incident. An event that cannot be accepted (its incident is gone, its object changed or is gone, its
    data no longer fits) is recorded in the catalog as rejected by run (``dag_id``, ``run_id``) and
    skipped. Anything else (the catalog or the store unreachable) is raised: a retry judges the batch
    again, and an event applied twice changes nothing more.

    Returns ``{"applied": [...], "rejected": [...], "reforecasts": [...]}``: one re-forecast per changed
    incident that asks for updates and is still open, as ``TriggerDagRunOperator`` kwargs with a run id
    derived from the latest observation (a retried ingest triggers nothing twice)."""
    applied: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    latest: dict[str, str] = {}
    for index, extra in enumerate(events):
        try:
            event = _event(extra)
            change = _apply(event, store, catalog)
        except RejectedObservation as exc:
            named = {name: _text(extra, name) for name in ("incident_id", "observation_id", "key")}
            catalog.record_rejected_observation(
                dag_id=dag_id, run_id=run_id, event_index=index, reason=str(exc), **named
            )
            rejected.append({**named, "reason": str(exc)})
            continue
        if change:
            latest[event.incident_id] = event.observation_id
        applied.append({"incident_id": event.incident_id, "key": event.key, "changes": sorted(change or {})})
    reforecasts = []
    for incident_id, observation_id in latest.items():
        row = catalog.incident(incident_id)
        if row and row["payload"].get("updates") and row["status"] not in FINAL_STATUSES:
            reforecasts.append(
                {
                    "trigger_run_id": f"reforecast__{incident_id}__{observation_id}",
                    "conf": {"incident_id": incident_id, **row["payload"]},
                }
            )
    return {"applied": applied, "rejected": rejected, "reforecasts": reforecasts}


def _event(extra: Mapping[str, Any]) -> ObservationEvent:
    try:
        return ObservationEvent.model_validate(extra)
    except ValidationError as exc:
        fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
        raise RejectedObservation(f"not an observation event (missing or bad: {', '.join(fields)})") from exc


def _text(extra: Mapping[str, Any], name: str) -> str | None:
    """A field of a rejected event as far as it can be told (it may be missing or not a string)."""
    value = extra.get(name)
    return None if value is None else str(value)[:1024]


def _apply(event: ObservationEvent, store: Any, catalog: Catalog) -> dict[str, Any] | None:
    """Merge the event's change into its incident; the change (None for a plain file)."""
    key, incident_id = event.key, event.incident_id
    row = catalog.incident(incident_id)
    if row is None:
        raise RejectedObservation(f"{key}: incident {incident_id} does not exist")
    try:
        body = b"".join(store.iter_verified(key)) if store.stat_if_exists(key) is not None else None
    except (ChecksumMismatch, ObjectKeyError) as exc:
        raise RejectedObservation(f"{key}: {exc}") from exc
    if body is None:
        raise RejectedObservation(f"{key}: the object is gone")
    if hashlib.sha256(body).hexdigest() != event.sha256:
        raise RejectedObservation(f"{key}: the object is not the one announced (sha256 differs)")
    try:
        change = parse_observation(event.kind, body, WildfireIncident.model_validate(row["payload"]))
    except ValueError as exc:
        raise RejectedObservation(f"{key}: {exc}") from exc
    if change and catalog.update_incident(incident_id, change) is None:
        raise RejectedObservation(f"{key}: incident {incident_id} was deleted while it was applied")
    return change
