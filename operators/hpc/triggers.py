"""BatchJobTrigger: waits in the triggerer for one batch job through its machine's shared poller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from operators.hpc.adapters import JobRef, get_adapter
from operators.hpc.async_transport import async_transport
from operators.hpc.poller import get_poller


class BatchJobTrigger(BaseTrigger):
    """Yields exactly one event: ``{"status": "done", "job": {...}}`` or ``{"status": "error", ...}``.
    The job has ended, or (with ``held_timeout`` seconds) it has been on a hold that long (``held``).

    Constructor arguments are JSON types only and ``serialize()`` mirrors them, so the trigger survives
    a triggerer restart; running it twice is harmless (it only reads job state).
    """

    def __init__(
        self,
        *,
        machine: str,
        connection: str | None,
        batch_system: str,
        job_id: str,
        exit_file: str,
        poll_interval: float = 5.0,
        held_timeout: float | None = None,
        not_before: float | None = None,  # in triggers serialized by earlier versions; ignored
    ) -> None:
        super().__init__()
        self.machine = machine
        self.connection = connection
        self.batch_system = batch_system
        self.job_id = job_id
        self.exit_file = exit_file
        self.poll_interval = poll_interval
        self.held_timeout = held_timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "machine": self.machine,
                "connection": self.connection,
                "batch_system": self.batch_system,
                "job_id": self.job_id,
                "exit_file": self.exit_file,
                "poll_interval": self.poll_interval,
                "held_timeout": self.held_timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            poller = get_poller(self.connection, self.batch_system, self.poll_interval)
            status = await poller.watch(
                JobRef(self.job_id, self.exit_file), self.poll_interval, held_limit=self.held_timeout
            )
        except Exception as exc:
            # Never raise out of run(): one terminal event, interpreted in execute_complete.
            self.log.exception("Watching job %s on %s failed", self.job_id, self.machine)
            yield TriggerEvent(
                {"status": "error", "machine": self.machine, "job_id": self.job_id, "message": str(exc)}
            )
            return
        yield TriggerEvent({"status": "done", "machine": self.machine, "job": status.to_dict()})

    async def on_kill(self) -> None:
        """The user marked or cleared the deferred task: cancel the batch job too."""
        command = get_adapter(self.batch_system).cancel_command([self.job_id])
        await async_transport(self.connection).run(command, timeout=30)
        self.log.info("Cancelled job %s on %s", self.job_id, self.machine)
