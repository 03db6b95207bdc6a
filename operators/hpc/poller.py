"""One poller per machine in the triggerer: ONE status command per interval for all watched jobs.

Every ``BatchJobTrigger`` of a machine registers its job here and awaits a future; the poller batches
all registered jobs into a single status command over the machine's one shared connection, resolves
futures of jobs that ended, and stops when nobody watches any more.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field

from operators.hpc.adapters import BatchAdapter, JobRef, get_adapter
from operators.hpc.async_transport import AsyncTransport, async_transport
from operators.hpc.states import JobState, JobStatus
from operators.hpc.transport import TransportError

log = logging.getLogger(__name__)


class MachineUnreachable(RuntimeError):
    """The machine did not answer for too many polls in a row."""


@dataclass
class _Watch:
    ref: JobRef
    future: asyncio.Future[JobStatus]
    unknown_polls: int = 0


@dataclass
class MachinePoller:
    key: str
    transport: AsyncTransport
    adapter: BatchAdapter
    interval: float
    unknown_grace_polls: int = 6
    max_failed_polls: int = 60
    watches: dict[str, list[_Watch]] = field(default_factory=dict)
    polls: int = 0
    _task: asyncio.Task[None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    async def watch(self, ref: JobRef) -> JobStatus:
        """Wait until ``ref`` ends (or is judged lost) and return its last status."""
        watch = _Watch(ref, asyncio.get_running_loop().create_future())
        self.watches.setdefault(ref.job_id, []).append(watch)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name=f"urgentflow-poller-{self.key}")
        self._wake.set()
        try:
            return await watch.future
        finally:
            entries = self.watches.get(ref.job_id, [])
            if watch in entries:
                entries.remove(watch)
            if not entries:
                self.watches.pop(ref.job_id, None)

    async def _loop(self) -> None:
        failures = 0
        while self.watches:
            self._wake.clear()
            refs = [entries[0].ref for entries in self.watches.values() if entries]
            try:
                out = await self.transport.run(self.adapter.status_command(refs))
                statuses = self.adapter.parse_status(out.stdout, refs)
                failures = 0
            except (TransportError, ValueError) as exc:
                failures += 1
                log.warning("%s: status poll %d failed: %s", self.key, failures, exc)
                if failures >= self.max_failed_polls:
                    self._fail_all(MachineUnreachable(f"{self.key}: {failures} status polls failed: {exc}"))
                    return
                statuses = {}
            self.polls += 1
            self._resolve(statuses)
            if self.watches:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.interval)
                    await asyncio.sleep(min(0.2, self.interval))  # batch registrations arriving together
                except TimeoutError:
                    pass

    def _resolve(self, statuses: dict[str, JobStatus]) -> None:
        for job_id, entries in list(self.watches.items()):
            status = statuses.get(job_id)
            if status is None:
                continue
            for watch in entries:
                if status.state is JobState.UNKNOWN:
                    watch.unknown_polls += 1
                    if watch.unknown_polls <= self.unknown_grace_polls:
                        continue
                elif not status.state.terminal:
                    watch.unknown_polls = 0
                    continue
                if not watch.future.done():
                    watch.future.set_result(status)

    def _fail_all(self, exc: Exception) -> None:
        for entries in self.watches.values():
            for watch in entries:
                if not watch.future.done():
                    watch.future.set_exception(exc)


# Per event loop (the triggerer has one; tests and benchmarks make many): loop -> key -> poller.
_POLLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, MachinePoller]] = (
    weakref.WeakKeyDictionary()
)


def get_poller(conn_id: str | None, batch_system: str, interval: float) -> MachinePoller:
    """The poller of one machine in the running event loop (created on first use)."""
    key = f"{batch_system}@{conn_id or 'local'}"
    pollers = _POLLERS.setdefault(asyncio.get_running_loop(), {})
    if key not in pollers:
        pollers[key] = MachinePoller(key, async_transport(conn_id), get_adapter(batch_system), interval)
    return pollers[key]
