"""A user's session on a service container: wait in the triggerer until it is over.

The session is over when the user left (no keep-alive, ``POST /urgentflow/services/{id}/keepalive``,
for ``keepalive_seconds``), when the service's time is up (its ``expires_at``: the TTL it was started
with), or when the service is no longer running (stopped, reaped, failed). Waiting holds no worker
slot: the operator defers to ``ServiceSessionTrigger``, which reads the service's catalog row.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.triggers.base import BaseTrigger, TriggerEvent

GRACE = timedelta(minutes=5)  # the deferral's timeout beyond the session's end


def session_end(
    row: Mapping[str, Any] | None, keepalive_seconds: int | None, ends_at: datetime, now: datetime
) -> str | None:
    """Why the session is over (``gone``, ``closed``, ``time_up``, ``user_left``), or None."""
    if row is None:
        return "gone"
    if row.get("state") != "running":
        return "closed"
    if now >= ends_at:
        return "time_up"
    last_seen = row.get("last_seen")
    idle = (now - last_seen).total_seconds() if last_seen is not None else 0.0
    if keepalive_seconds is not None and idle > keepalive_seconds:
        return "user_left"
    return None


class ServiceSessionTrigger(BaseTrigger):
    """Yields one event ``{"status": "ended", "reason", "service_id"}``; reading the catalog fails
    are retried until ``ends_at`` (then ``reason`` is ``time_up``). Harmless to run twice."""

    def __init__(
        self,
        *,
        service_id: str,
        ends_at: str,
        keepalive_seconds: int | None,
        poll_interval: float = 5.0,
        catalog_conn_id: str = "catalog_db",
        not_before: float | None = None,  # in triggers serialized by earlier versions; ignored
    ) -> None:
        super().__init__()
        self.service_id = service_id
        self.ends_at = ends_at
        self.keepalive_seconds = keepalive_seconds
        self.poll_interval = poll_interval
        self.catalog_conn_id = catalog_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "service_id": self.service_id,
                "ends_at": self.ends_at,
                "keepalive_seconds": self.keepalive_seconds,
                "poll_interval": self.poll_interval,
                "catalog_conn_id": self.catalog_conn_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from operators.catalog.catalog import Catalog

        catalog = Catalog(self.catalog_conn_id)
        ends_at = datetime.fromisoformat(self.ends_at)
        while True:
            try:
                row = await asyncio.to_thread(catalog.service, self.service_id)
                reason = session_end(row, self.keepalive_seconds, ends_at, datetime.now(UTC))
            except Exception:
                self.log.exception("Reading service %s from the catalog failed", self.service_id)
                reason = "time_up" if datetime.now(UTC) >= ends_at else None
            if reason is not None:
                break
            await asyncio.sleep(self.poll_interval)
        yield TriggerEvent({"status": "ended", "reason": reason, "service_id": self.service_id})


class WaitForSessionEndOperator(BaseOperator):
    """Wait, deferred, until the session on ``service`` (a StartServiceOperator result) is over.

    ``keepalive_seconds``: the user has left once no keep-alive came for this long (None: only the
    service's ``expires_at`` ends it). Returns ``{service_id, reason}``.
    """

    template_fields: Sequence[str] = ("service", "keepalive_seconds", "poll_interval")
    ui_color = "#f4ecd8"

    def __init__(
        self,
        *,
        service: Mapping[str, Any] | str,
        keepalive_seconds: int | str | None = None,
        poll_interval: float | str = 5.0,
        catalog_conn_id: str = "catalog_db",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.keepalive_seconds = keepalive_seconds
        self.poll_interval = poll_interval
        self.catalog_conn_id = catalog_conn_id

    def execute(self, context: Context) -> None:
        if not isinstance(self.service, Mapping) or not self.service.get("expires_at"):
            raise ValueError(
                f"service must be a StartServiceOperator result with expires_at: {self.service!r:.200}"
            )
        ends_at = datetime.fromisoformat(str(self.service["expires_at"]))
        keepalive = int(self.keepalive_seconds) if self.keepalive_seconds not in (None, "") else None
        self.log.info(
            "Session on %s: open until %s or %s s without a keep-alive",
            self.service["service_id"],
            ends_at.isoformat(),
            keepalive,
        )
        self.defer(
            trigger=ServiceSessionTrigger(
                service_id=str(self.service["service_id"]),
                ends_at=ends_at.isoformat(),
                keepalive_seconds=keepalive,
                poll_interval=float(self.poll_interval),
                catalog_conn_id=self.catalog_conn_id,
            ),
            method_name="execute_complete",
            timeout=max(ends_at - datetime.now(UTC), timedelta(0)) + GRACE,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") != "ended":
            raise RuntimeError(f"unexpected session event: {event!r:.300}")
        self.log.info("Session on %s is over: %s", event["service_id"], event["reason"])
        return {"service_id": event["service_id"], "reason": event["reason"]}
