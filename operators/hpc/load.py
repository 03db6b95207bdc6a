"""What a batch system says about its load, in one shape for every adapter.

Adapters turn the output of ONE command (``load_command``) into a ``MachineLoad`` and the output of a
dry-run submission (``estimate_command``) into an ``Estimate``; ``operators.machines`` uses both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class PartitionLoad:
    name: str
    available: bool = True
    nodes_total: int = 0
    nodes_idle: int = 0
    nodes_down: int = 0
    cores_total: int = 0
    cores_idle: int = 0
    cores_allocated: int = 0
    jobs_running: int = 0
    jobs_pending: int = 0
    cores_pending: int = 0


@dataclass
class MachineLoad:
    user: str = ""
    partitions: dict[str, PartitionLoad] = field(default_factory=dict)
    jobs_running: int = 0
    jobs_pending: int = 0
    ours_running: int = 0
    ours_pending: int = 0

    @property
    def state(self) -> str:
        """``up``; ``degraded`` (some nodes or partitions out of service); ``down`` (none usable)."""
        usable = [p for p in self.partitions.values() if p.available and p.nodes_total > p.nodes_down]
        if not usable:
            return "down"
        if len(usable) < len(self.partitions) or any(p.nodes_down for p in self.partitions.values()):
            return "degraded"
        return "up"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state}


@dataclass(frozen=True)
class Estimate:
    """A dry run of a submission: does it fit, and how long until it would start (seconds)."""

    fits: bool
    wait_seconds: float | None = None
    reason: str = ""
