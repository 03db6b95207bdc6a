"""Live machine status: one batched command per machine, all machines probed at once, none waiting
on another. A machine that does not answer within the timeout is ``down`` with the reason."""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from operators.hpc.adapters import get_adapter
from operators.hpc.load import MachineLoad
from operators.hpc.transport import LocalTransport, SSHTransport, Transport
from operators.machines.catalog import Machine


@dataclass
class MachineStatus:
    machine: str
    state: str  # up | degraded | down | disabled
    latency_ms: float | None = None
    load: MachineLoad | None = None
    error: str = ""
    observed_at: float = field(default_factory=time.time)

    def detail(self) -> dict[str, Any]:
        return self.load.to_dict() if self.load else {}

    def record(self, catalog: Any) -> None:
        """Write this observation as a ``machine_status`` row of the catalog."""
        catalog.record_machine_status(self.machine, self.state, self.detail(), self.latency_ms, self.error)

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "state": self.state,
            "latency_ms": self.latency_ms,
            "error": self.error,
            "detail": self.detail(),
        }


def _transport(machine: Machine) -> Transport:
    # one attempt: a probe reports what it sees now; the next probe is the retry
    return SSHTransport(machine.connection, max_attempts=1) if machine.connection else LocalTransport()


def probe(machine: Machine, timeout: float = 20.0) -> MachineStatus:
    """One round trip: the adapter's load command. Any failure is ``down`` with the error."""
    if not machine.enabled:
        return MachineStatus(machine.name, "disabled")
    adapter = get_adapter(machine.batch_system)
    start = time.monotonic()
    try:
        out = _transport(machine).run(adapter.load_command(), timeout=timeout).check("machine load")
        latency_ms = (time.monotonic() - start) * 1000
        load = adapter.parse_load(out.stdout)
    except Exception as exc:
        return MachineStatus(machine.name, "down", error=f"{type(exc).__name__}: {exc}"[:500])
    if not load.partitions:
        return MachineStatus(machine.name, "down", latency_ms, load, "the batch system reported no partition")
    return MachineStatus(machine.name, load.state, round(latency_ms, 1), load)


def probe_all(machines: Iterable[Machine], timeout: float = 20.0) -> list[MachineStatus]:
    """Probe every machine in parallel; whatever has not answered ``timeout`` s after the start is down."""
    machines = list(machines)
    if not machines:
        return []
    pool = ThreadPoolExecutor(max_workers=len(machines), thread_name_prefix="probe")
    futures = [(m, pool.submit(probe, m, timeout)) for m in machines]
    deadline = time.monotonic() + timeout
    results = []
    for machine, future in futures:
        try:
            results.append(future.result(timeout=max(0.0, deadline - time.monotonic())))
        except FutureTimeout:
            results.append(MachineStatus(machine.name, "down", error=f"no answer within {timeout:g} s"))
    pool.shutdown(wait=False, cancel_futures=True)  # a hung probe must not hold the caller
    return results
