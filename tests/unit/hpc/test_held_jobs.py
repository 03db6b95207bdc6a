"""Jobs on a hold: recognised from each batch system's words, and given up on after the hold limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from operators.hpc.adapters import JobRef
from operators.hpc.adapters.base import SECTION
from operators.hpc.adapters.gridengine import GridEngineAdapter
from operators.hpc.adapters.slurm import SlurmAdapter
from operators.hpc.poller import MachinePoller
from operators.hpc.states import JobState, JobStatus
from operators.hpc.transport import CommandResult

REF = JobRef("7", "/w/7.exit")


def test_slurm_holds_are_recognised_from_the_pending_reason() -> None:
    adapter = SlurmAdapter()
    refs = [JobRef(i, f"/w/{i}.exit") for i in ("1", "2", "3", "4")]
    squeue = "\n".join(
        [
            "1|a|PENDING|launch failed requeued held",
            "2|b|PENDING|JobHeldAdmin",
            "3|c|PENDING|Priority",
            "4|d|RUNNING|None",
        ]
    )
    statuses = adapter.parse_status(f"{squeue}\n{SECTION}\n{SECTION}\n", refs)
    assert [statuses[r.job_id].held for r in refs] == [True, True, False, False]


def test_grid_engine_holds_are_recognised_from_the_state_letters() -> None:
    assert GridEngineAdapter.held_letters("hqw") and not GridEngineAdapter.held_letters("qw")


class Scripted(SlurmAdapter):
    """Answers each poll with the next of ``statuses`` (the last one repeats)."""

    def __init__(self, *statuses: JobStatus) -> None:
        self.statuses = list(statuses)

    def parse_status(self, stdout: str, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {REF.job_id: status}


class Transport:
    async def run(self, command: str, timeout: float = 60.0, stdin: str | None = None) -> CommandResult:
        return CommandResult(0, "", "")


HELD = JobStatus("7", JobState.PENDING, native_state="PENDING", reason="JobHeldAdmin", held=True)


def watch(adapter: Scripted, held_limit: float | None, limit: float = 5.0) -> tuple[JobStatus, float]:
    poller = MachinePoller("slurm@fake", Transport(), adapter, interval=0.02)  # type: ignore[arg-type]

    async def run() -> tuple[JobStatus, float]:
        t0 = time.monotonic()
        status = await asyncio.wait_for(poller.watch(REF, held_limit=held_limit), limit)
        return status, time.monotonic() - t0

    return asyncio.run(run())


def test_a_job_held_past_the_limit_is_handed_back_while_still_pending() -> None:
    status, waited = watch(Scripted(HELD), held_limit=0.3)
    assert status.held and status.state is JobState.PENDING and waited >= 0.3


def test_a_released_hold_restarts_the_clock_and_the_job_is_watched_to_its_end() -> None:
    pending = JobStatus("7", JobState.PENDING, native_state="PENDING", reason="Priority")
    done = JobStatus("7", JobState.COMPLETED, 0, native_state="COMPLETED")
    # held 0.2 s, released, held again 0.2 s, then it runs and ends: never 0.3 s on one hold
    script = [HELD] * 10 + [pending] + [HELD] * 10 + [done]
    status, _ = watch(Scripted(*script), held_limit=0.3)
    assert status.state is JobState.COMPLETED


def test_without_a_limit_a_held_job_is_watched_until_it_ends() -> None:
    done = JobStatus("7", JobState.COMPLETED, 0, native_state="COMPLETED")
    status, _ = watch(Scripted(*([HELD] * 30), done), held_limit=None)
    assert status.state is JobState.COMPLETED
