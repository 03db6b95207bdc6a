"""The reaper: removes the service containers a crashed or forgotten run left behind.

Only containers labelled ``urgentflow.service=1`` are ever considered (the engine filters on the
label and ``ServiceLabels.parse`` refuses anything else). A service goes when its TTL has passed,
when its user stopped sending keep-alives for longer than its ``keepalive_seconds`` (services
without one never go for that reason), or when its DAG run is finished.

Young containers (created less than ``STARTING_GRACE`` ago) are judged with care, as their starter may
still be at work: one whose catalog row is missing or says ``starting`` belongs to its starting task
(which records the row right after creating the container, and removes the container itself when it
never gets ready), and one whose run Airflow does not know (a run of ``dag.test()``, of another
deployment, or one not visible yet) is not an orphan yet. After the grace both are judged like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from operators.services.data import drop_service_data
from operators.services.hook import Service
from operators.services.spec import ServiceLabels

log = logging.getLogger(__name__)

STARTING_GRACE = timedelta(minutes=10)
FINISHED_RUN_STATES = frozenset({"success", "failed"})


class ReapReason(StrEnum):
    EXPIRED = "expired"
    KEEPALIVE_MISSED = "keepalive_missed"
    RUN_FINISHED = "run_finished"


@dataclass(frozen=True)
class Reaped:
    service_id: str
    container_id: str
    reason: ReapReason


class ServiceEngine(Protocol):
    def list_services(self, **labels: str) -> list[Service]: ...
    def remove(self, container_id: str) -> bool: ...


class ServiceRecords(Protocol):
    def service(self, service_id: str) -> dict[str, Any] | None: ...
    def set_service_state(self, service_id: str, state: str) -> bool: ...


def reap_reason(
    identity: ServiceLabels, last_seen: datetime, now: datetime, run_finished: Callable[[], bool]
) -> ReapReason | None:
    """Why this service must go now, or None. ``run_finished`` is asked last (it asks Airflow)."""
    if identity.expires_at is not None and now >= identity.expires_at:
        return ReapReason.EXPIRED
    keepalive = identity.keepalive_seconds
    if keepalive is not None and (now - last_seen).total_seconds() > keepalive:
        return ReapReason.KEEPALIVE_MISSED
    if not identity.outlive_run and run_finished():
        return ReapReason.RUN_FINISHED
    return None


def reap(
    hook: ServiceEngine,
    catalog: ServiceRecords,
    now: datetime,
    run_state: Callable[[str, str], str | None],
) -> list[Reaped]:
    """Remove every service of ours that must go; mark its catalog row ``reaped:<reason>``.

    ``run_state(dag_id, run_id)`` is the state of a DAG run in Airflow, None when Airflow does not know
    it. One failure does not spare the others: they are all tried, then the failures are raised together.
    """
    states: dict[tuple[str, str], str | None] = {}
    reaped: list[Reaped] = []
    failures: list[str] = []
    for service in hook.list_services():
        who = service.identity
        run = (who.dag_id, who.run_id)
        row = catalog.service(who.service_id)
        last_seen = (row or {}).get("last_seen") or service.created_at
        young = now - service.created_at < STARTING_GRACE

        def run_finished(run: tuple[str, str] = run, young: bool = young) -> bool:
            if run not in states:
                states[run] = run_state(*run)
            state = states[run]
            return state in FINISHED_RUN_STATES or (state is None and not young)

        try:
            if young and (row or {}).get("state") in (None, "starting"):
                continue
            reason = reap_reason(who, last_seen, now, run_finished)
            if reason is None:
                continue
            hook.remove(service.container_id)
            drop_service_data(who.service_id)
            catalog.set_service_state(who.service_id, f"reaped:{reason}")
        except Exception as exc:
            log.exception("Could not reap service %s (%s)", who.service_id, service.container_id[:12])
            failures.append(f"{who.service_id}: {exc!r}")
            continue
        log.info("Reaped service %s (%s): %s", who.service_id, service.container_id[:12], reason)
        reaped.append(Reaped(who.service_id, service.container_id, reason))
    if failures:
        raise RuntimeError(f"reaped {len(reaped)} service(s), failed on {len(failures)}: {failures}")
    return reaped
