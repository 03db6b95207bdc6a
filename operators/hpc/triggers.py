"""BatchJobTrigger: waits in the triggerer for one batch job through its machine's shared poller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from operators.hpc.adapters import JobRef, get_adapter
from operators.hpc.async_transport import async_transport
from operators.hpc.poller import get_poller


@dataclass(frozen=True)
class MachineAddress:
    """Where a trigger reaches a job: the machine's name (for messages), its SSH connection (None: this
    host), its batch system, whether its poller waits there for exit files and whether its jobs send
    completion notices (operators.hpc.notice)."""

    name: str
    connection: str | None
    batch_system: str
    watch_exit_files: bool = False
    completion_notice: bool = False


async def watch_job(
    trigger: BaseTrigger,
    machine: MachineAddress,
    job: JobRef,
    *,
    poll_interval: float,
    held_timeout: float | None,
) -> dict[str, Any]:
    """Wait for one job through its machine's shared poller; the event that ends a trigger waiting for
    it: ``{"status": "done", "job": {...}}`` or ``{"status": "error", ...}`` (never raises)."""
    try:
        poller = get_poller(
            machine.connection,
            machine.batch_system,
            poll_interval,
            machine.watch_exit_files,
            notices_of=machine.name if machine.completion_notice else None,
        )
        status = await poller.watch(job, poll_interval, held_limit=held_timeout)
    except Exception as exc:
        trigger.log.exception("Watching job %s on %s failed", job.job_id, machine.name)
        return {
            "status": "error",
            "machine": machine.name,
            "job_id": job.job_id,
            "message": f"{type(exc).__name__}: {exc}",
        }
    return {"status": "done", "machine": machine.name, "job": status.to_dict()}


async def cancel_job(trigger: BaseTrigger, machine: MachineAddress, job_id: str) -> None:
    """Cancel one job (a deferred task the user marked or cleared)."""
    command = get_adapter(machine.batch_system).cancel_command([job_id])
    await async_transport(machine.connection).run(command, timeout=30)
    trigger.log.info("Cancelled job %s on %s", job_id, machine.name)


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
        watch_exit_files: bool = False,
        completion_notice: bool = False,
        job_name: str | None = None,  # None in triggers serialized by earlier versions: no name check
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
        self.watch_exit_files = watch_exit_files
        self.completion_notice = completion_notice
        self.job_name = job_name

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
                "watch_exit_files": self.watch_exit_files,
                "completion_notice": self.completion_notice,
                "job_name": self.job_name,
            },
        )

    @property
    def _address(self) -> MachineAddress:
        return MachineAddress(
            self.machine, self.connection, self.batch_system, self.watch_exit_files, self.completion_notice
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Never raises out of run(): one terminal event, interpreted in execute_complete.
        job = JobRef(self.job_id, self.exit_file, self.job_name)
        yield TriggerEvent(
            await watch_job(
                self, self._address, job, poll_interval=self.poll_interval, held_timeout=self.held_timeout
            )
        )

    async def on_kill(self) -> None:
        """The user marked or cleared the deferred task: cancel the batch job too."""
        await cancel_job(self, self._address, self.job_id)
