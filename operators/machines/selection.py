"""Machine selection policy: which machine and partition a job should go to, and why.

Pure functions over the catalog, the machines' status and start-time estimates, so the policy is
unit-tested on fixed inputs; ``SelectMachineOperator`` gathers the inputs live.

1. Excluded: machines not allowed by the request, disabled, down, at their per-user job limit, or
   without a partition that can hold the job (cores and memory per node, walltime, node count).
2. Among the rest, per candidate partition, the estimated wait until the job would start: the batch
   system's own dry run (``sbatch --test-only``) where it has one, else from the queue (idle cores
   now: 0; otherwise the pending work ahead over the partition's cores, in units of this job's
   walltime). A failed dry run excludes the partition with the batch system's reason.
3. Order: earliest start (rounded to ``START_GRANULARITY_S`` so noise does not beat price), then cost
   (``cost_weight`` x core-hours), then name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from operators.hpc.load import Estimate, PartitionLoad
from operators.machines.catalog import Machine, Partition

START_GRANULARITY_S = 60.0


class NoMachineFits(RuntimeError):
    """No machine can take the job; the message lists each machine and why."""

    def __init__(self, message: str, considered: Sequence[Candidate] = ()) -> None:
        super().__init__(message)
        self.considered = list(considered)


@dataclass(frozen=True)
class Request:
    cores: int = 1
    memory_mb: int | None = None
    walltime_minutes: int = 10
    nodes: int = 1
    machines: Sequence[str] | None = None  # allowed machines (None: all)
    partition: str | None = None  # a required partition name
    batch_systems: Sequence[str] | None = None  # e.g. ["slurm"]
    max_cost_weight: float | None = None

    def __post_init__(self) -> None:
        for name in ("cores", "walltime_minutes", "nodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.memory_mb is not None and (not isinstance(self.memory_mb, int) or self.memory_mb < 1):
            raise ValueError(f"memory_mb must be a positive integer or None, got {self.memory_mb!r}")

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass
class Candidate:
    machine: str
    partition: str | None
    eligible: bool
    reason: str = ""
    wait_seconds: float | None = None
    cost: float | None = None
    free_cores: int = 0
    total_cores: int = 0
    estimate_source: str = ""
    assigned: int = field(default=0, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "assigned"}


def _partition_reason(request: Request, partition: Partition) -> str:
    if request.cores > partition.cores_per_node:
        return f"{request.cores} cores > {partition.cores_per_node} per node"
    if request.memory_mb and request.memory_mb > partition.memory_mb_per_node:
        return f"{request.memory_mb} MB > {partition.memory_mb_per_node} MB per node"
    if request.walltime_minutes > partition.max_walltime_minutes:
        return f"walltime {request.walltime_minutes} min > limit {partition.max_walltime_minutes} min"
    if request.nodes > partition.nodes:
        return f"{request.nodes} nodes > {partition.nodes}"
    return ""


def _machine_reason(request: Request, machine: Machine, status: Mapping[str, Any] | None) -> str:
    if request.machines is not None and machine.name not in request.machines:
        return "not among the allowed machines"
    if not machine.enabled:
        return "disabled in the machine catalog"
    if request.batch_systems is not None and machine.batch_system not in request.batch_systems:
        return f"batch system {machine.batch_system} not allowed"
    if request.max_cost_weight is not None and machine.cost_weight > request.max_cost_weight:
        return f"cost weight {machine.cost_weight} > {request.max_cost_weight}"
    if status is None:
        return "no status"
    if status["state"] in ("down", "disabled"):
        return f"{status['state']}: {status.get('error') or 'no usable partition'}"
    detail = status.get("detail") or {}
    queued = int(detail.get("ours_running", 0)) + int(detail.get("ours_pending", 0))
    if machine.max_jobs_per_user is not None and queued >= machine.max_jobs_per_user:
        return f"per-user job limit reached ({queued}/{machine.max_jobs_per_user})"
    return ""


def candidates(
    request: Request, machines: Mapping[str, Machine], statuses: Mapping[str, Mapping[str, Any]]
) -> list[Candidate]:
    """One entry per (machine, partition) considered, eligible or with the reason it is not."""
    found: list[Candidate] = []
    for machine in sorted(machines.values(), key=lambda m: m.name):
        status = statuses.get(machine.name)
        reason = _machine_reason(request, machine, status)
        if reason:
            found.append(Candidate(machine.name, None, False, reason))
            continue
        assert status is not None
        loads = (status.get("detail") or {}).get("partitions", {})
        names = [request.partition] if request.partition else list(machine.partitions)
        for name in names:
            partition = machine.partitions.get(name) if name else None
            if partition is None:
                found.append(Candidate(machine.name, name, False, "no such partition"))
                continue
            load = PartitionLoad(**loads[name]) if name in loads else None
            why = _partition_reason(request, partition)
            if not why and (load is None or not load.available):
                why = "partition not reported" if load is None else "partition down"
            cost = machine.cost_weight * request.cores * request.nodes * request.walltime_minutes / 60
            found.append(
                Candidate(
                    machine.name,
                    name,
                    not why,
                    why,
                    cost=round(cost, 4),
                    free_cores=load.cores_idle if load else 0,
                    total_cores=load.cores_total if load else partition.cores,
                )
            )
    return found


def queue_wait(request: Request, load: PartitionLoad) -> float:
    """Wait estimated from the queue alone (for batch systems without a dry run)."""
    needed = request.cores * request.nodes
    if load.cores_pending == 0 and load.cores_idle >= needed:
        return 0.0
    capacity = max(1, load.cores_total)
    return math.ceil((load.cores_pending + needed) / capacity) * request.walltime_minutes * 60.0


def apply_estimate(candidate: Candidate, estimate: Estimate, source: str) -> Candidate:
    if not estimate.fits:
        return replace(
            candidate, eligible=False, reason=f"{source}: {estimate.reason}", estimate_source=source
        )
    return replace(candidate, wait_seconds=estimate.wait_seconds, estimate_source=source)


def _order(candidate: Candidate) -> tuple[float, float, str, str]:
    wait = candidate.wait_seconds or 0.0
    return (
        round(wait / START_GRANULARITY_S),
        candidate.cost or 0.0,
        candidate.machine,
        candidate.partition or "",
    )


def rank(found: Sequence[Candidate]) -> list[Candidate]:
    return sorted((c for c in found if c.eligible), key=_order)


def why_none(found: Sequence[Candidate]) -> str:
    return "; ".join(f"{c.machine}{'/' + c.partition if c.partition else ''}: {c.reason}" for c in found)


def choose(request: Request, found: Sequence[Candidate], members: int = 1) -> list[Candidate]:
    """``members`` assignments: each goes where it would start first given the ones placed before it
    (a member that no longer fits in the free cores waits one more walltime per full round)."""
    pool = [replace(c) for c in rank(found)]
    if not pool:
        raise NoMachineFits(f"no machine can run this job ({request.to_dict()}): {why_none(found)}", found)
    needed = request.cores * request.nodes
    chosen = []
    for _ in range(members):
        best = min(pool, key=_order)
        chosen.append(replace(best))
        best.assigned += 1
        if best.free_cores >= needed:
            best.free_cores -= needed
        if best.free_cores < needed:  # the next member here queues behind running ones
            slots = max(1, best.total_cores // needed)
            best.wait_seconds = (best.wait_seconds or 0.0) + request.walltime_minutes * 60.0 / slots
    return chosen


def load_of(status: Mapping[str, Any], partition: str) -> PartitionLoad | None:
    loads = (status.get("detail") or {}).get("partitions", {})
    return PartitionLoad(**loads[partition]) if partition in loads else None
