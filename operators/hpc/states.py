"""Our job states: one vocabulary for every batch system."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    CANCELLED = "CANCELLED"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    UNKNOWN = "UNKNOWN"

    @property
    def terminal(self) -> bool:
        return self not in (JobState.PENDING, JobState.RUNNING, JobState.UNKNOWN)


@dataclass(frozen=True)
class Output:
    """A file a job published itself (``spec.Upload``), as its script reported it with its exit code."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class JobStatus:
    """What a batch system said about one job: our state, its exit code, and the native words.
    ``held``: PENDING on a hold (an admin's, a user's, or Slurm's "launch failed requeued held"), which
    will not start by itself. ``outputs``: the files the job published itself (reported only by a job
    whose command succeeded)."""

    job_id: str
    state: JobState
    exit_code: int | None = None
    native_state: str = ""
    reason: str = ""
    held: bool = False
    outputs: tuple[Output, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobStatus:
        outputs = tuple(Output(**o) for o in data.get("outputs") or ())
        return cls(**{**data, "state": JobState(data["state"]), "outputs": outputs})
