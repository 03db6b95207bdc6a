"""Apply data pushed for incidents (the ``urgentflow_observations`` Asset events) to the incidents, and
say which forecasts to run again. Used by ``dags/ingest_observation.py``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from operators.catalog.catalog import Catalog
from operators.incidents import WildfireIncident, parse_observation

FINAL_STATUSES = ("cancelled", "closed")


class RejectedObservation(ValueError):
    """A pushed object that no longer matches what was accepted (changed, corrupted or invalid)."""


def apply_observations(events: Iterable[Mapping[str, Any]], store: Any, catalog: Catalog) -> dict[str, Any]:
    """Re-read each event's object (verified against its sha256 and the event's), validate it again
    against its incident as it is now, and merge the change into the incident, in event order.

    Returns ``{"applied": [...], "reforecasts": [...]}``: one re-forecast per changed incident that asks
    for updates and is still open, as ``TriggerDagRunOperator`` kwargs with a run id derived from the
    latest observation (a retried ingest triggers nothing twice)."""
    applied: list[dict[str, Any]] = []
    latest: dict[str, str] = {}
    for extra in events:
        incident_id, key = str(extra["incident_id"]), str(extra["key"])
        row = catalog.incident(incident_id)
        if row is None:
            raise RejectedObservation(f"{key}: incident {incident_id} does not exist")
        body = b"".join(store.iter_verified(key))
        if hashlib.sha256(body).hexdigest() != extra["sha256"]:
            raise RejectedObservation(f"{key}: the object is not the one announced (sha256 differs)")
        try:
            change = parse_observation(
                str(extra["kind"]), body, WildfireIncident.model_validate(row["payload"])
            )
        except ValueError as exc:
            raise RejectedObservation(f"{key}: {exc}") from None
        if change:
            catalog.update_incident(incident_id, change)
            latest[incident_id] = str(extra["observation_id"])
        applied.append({"incident_id": incident_id, "key": key, "changes": sorted(change or {})})
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
    return {"applied": applied, "reforecasts": reforecasts}
