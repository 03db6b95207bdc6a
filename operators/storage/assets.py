"""Airflow Assets for what staging publishes: the external data interface.

A task that writes objects and lists an Asset in its ``outlets`` emits an Asset event on success whose
``extra`` names every object written (bucket, key, sha256, size, catalog dataset id), so a DAG
scheduled on that Asset starts and knows exactly what arrived.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow.sdk import Asset

PUBLISHED = Asset(name="urgentflow_published", uri="x-urgentflow://published", group="urgentflow")
"""Results published from HPC jobs: staged out (``StageFromMachineOperator``) or pushed by the jobs
themselves (``BatchJobOperator(outputs=...)``, listed by a downstream task such as the flagship's
``aggregate``)."""

OBSERVATIONS = Asset(name="urgentflow_observations", uri="x-urgentflow://observations", group="urgentflow")
"""Data pushed for an incident (``POST /urgentflow/incidents/{id}/data``): each event's ``extra`` names
the incident, the kind and the stored object; ``ingest_observation`` is scheduled on it."""


def event_extra(bucket: str, objects: Iterable[Mapping[str, Any]], **context: Any) -> dict[str, Any]:
    """The ``extra`` of an Asset event for ``objects`` (each with key, sha256, size, dataset_id)."""
    fields = ("key", "sha256", "size", "dataset_id")
    return {
        "bucket": bucket,
        "objects": [{f: o.get(f) for f in fields} for o in objects],
        **{k: v for k, v in context.items() if v is not None},
    }


def record_outlet_events(outlets: Iterable[Any], context: Mapping[str, Any], extra: dict[str, Any]) -> None:
    """Attach ``extra`` to the event each Asset outlet of the running task will emit."""
    for outlet in outlets:
        if isinstance(outlet, Asset):
            context["outlet_events"][outlet].extra.update(extra)
