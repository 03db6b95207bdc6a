"""Observations applied to incidents on the real catalog (Postgres) and object store (S3)."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from operators.catalog.catalog import Catalog
from operators.incidents import new_incident_id
from operators.ingest import apply_observations
from operators.storage.hook import ObjectStoreHook

pytestmark = pytest.mark.integration
PAYLOAD: dict[str, Any] = {
    "kind": "wildfire",
    "name": "ingest test",
    "ignition": {"lat": 37.30, "lon": -8.55},
    "region": {"min_lon": -8.65, "min_lat": 37.22, "max_lon": -8.45, "max_lat": 37.38},
    "weather": {"wind_speed_ms": 3.0, "wind_direction_deg": 10.0, "fuel_moisture": 0.1},
    "ensemble_size": 2,
    "deadline_minutes": 30,
    "seed": 0,
    "updates": True,
    "perimeter": None,
}
WEATHER = {"wind_speed_ms": 9.0, "wind_direction_deg": 200.0, "fuel_moisture": 0.04}
POLYGON = {
    "type": "Polygon",
    "coordinates": [[[-8.56, 37.29], [-8.54, 37.29], [-8.54, 37.31], [-8.56, 37.29]]],
}


def incident(catalog: Catalog, **changes: Any) -> str:
    incident_id = new_incident_id()
    catalog.create_incident(incident_id, "wildfire", {**PAYLOAD, **changes})
    return incident_id


def event(store: ObjectStoreHook, incident_id: str, kind: str, document: Any, n: int) -> dict[str, Any]:
    body = json.dumps(document).encode()
    key = f"incidents/{incident_id}/observations/obs-{n}/{kind}.json"
    stored = store.put_stream(key, io.BytesIO(body), length=len(body))
    return {
        "incident_id": incident_id,
        "observation_id": f"obs-{n}",
        "kind": kind,
        "key": key,
        "sha256": stored.sha256,
    }


def apply(events: Sequence[Mapping[str, Any]], store: ObjectStoreHook, catalog: Catalog) -> dict[str, Any]:
    """``apply_observations`` as a run of its own (rejections are recorded per run and event)."""
    return apply_observations(
        events, store, catalog, dag_id="ingest_observation", run_id=f"test__{uuid.uuid4().hex[:12]}"
    )


def test_weather_then_perimeter_update_the_incident_and_ask_for_one_reforecast() -> None:
    catalog, store = Catalog(), ObjectStoreHook()
    wanted, quiet = incident(catalog), incident(catalog, updates=False)
    events = [
        event(store, wanted, "weather", WEATHER, 1),
        event(store, quiet, "weather", WEATHER, 2),
        event(store, wanted, "perimeter", {"type": "Feature", "geometry": POLYGON}, 3),
    ]
    result = apply(events, store, catalog)
    assert [a["changes"] for a in result["applied"]] == [["weather"], ["weather"], ["perimeter"]]
    (rerun,) = result["reforecasts"]
    assert rerun["trigger_run_id"] == f"reforecast__{wanted}__obs-3"
    assert rerun["conf"] == {"incident_id": wanted, **PAYLOAD, "weather": WEATHER, "perimeter": POLYGON}
    assert (catalog.incident(quiet) or {})["payload"]["weather"] == WEATHER, "applied without a re-run"


def test_cancelled_incidents_are_updated_but_not_rerun() -> None:
    catalog, store = Catalog(), ObjectStoreHook()
    incident_id = incident(catalog)
    catalog.set_incident_status(incident_id, "cancelled")
    result = apply([event(store, incident_id, "weather", WEATHER, 1)], store, catalog)
    assert result["reforecasts"] == []


def test_a_rejected_event_is_recorded_and_skipped_and_the_rest_of_the_batch_applied() -> None:
    catalog, store = Catalog(), ObjectStoreHook()
    deleted, wanted = incident(catalog), incident(catalog)
    stale = event(store, deleted, "weather", WEATHER, 1)
    catalog.delete_incident(deleted)
    good = event(store, wanted, "weather", WEATHER, 2)
    result = apply([stale, good], store, catalog)
    assert result["applied"] == [{"incident_id": wanted, "key": good["key"], "changes": ["weather"]}]
    assert [r["trigger_run_id"] for r in result["reforecasts"]] == [f"reforecast__{wanted}__obs-2"]
    assert (catalog.incident(wanted) or {})["payload"]["weather"] == WEATHER
    (recorded,) = catalog.rejected_observations(deleted)
    assert (recorded["event_index"], recorded["observation_id"], recorded["key"]) == (
        0,
        "obs-1",
        stale["key"],
    )
    assert recorded["reason"] == f"{stale['key']}: incident {deleted} does not exist"
    assert catalog.rejected_observations(wanted) == []


def test_objects_that_changed_or_no_longer_fit_are_rejected_and_change_nothing() -> None:
    catalog, store = Catalog(), ObjectStoreHook()
    incident_id = incident(catalog)
    forged = {**event(store, incident_id, "weather", WEATHER, 1), "sha256": hashlib.sha256(b"x").hexdigest()}
    outside = event(
        store, incident_id, "perimeter", {**POLYGON, "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}, 2
    )
    gone = event(store, incident_id, "weather", WEATHER, 3)
    store.delete(gone["key"])
    malformed = {"incident_id": incident_id, "observation_id": "obs-4", "kind": "weather"}
    result = apply([forged, outside, gone, malformed], store, catalog)
    assert result["applied"] == [] and result["reforecasts"] == []
    assert (catalog.incident(incident_id) or {})["payload"] == PAYLOAD
    reasons = [r["reason"] for r in catalog.rejected_observations(incident_id)]
    assert len(reasons) == 4 and [r["reason"] for r in result["rejected"]] == reasons
    assert "not the one announced" in reasons[0]
    assert "inside region" in reasons[1]
    assert reasons[2].endswith("the object is gone")
    assert reasons[3] == "not an observation event (missing or bad: key, sha256)"
