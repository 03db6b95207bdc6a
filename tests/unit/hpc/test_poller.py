"""The per-machine poller: one status command per interval for all watched jobs, one event per job."""

from __future__ import annotations

import asyncio

import pytest

from operators.hpc.adapters import JobRef, get_adapter
from operators.hpc.adapters.base import SECTION
from operators.hpc.poller import MachinePoller, MachineUnreachable
from operators.hpc.states import JobState
from operators.hpc.transport import CommandResult, TransportError


class FakeSlurm:
    """Stands in for the SSH transport at the hook boundary: answers squeue/sacct from a table."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.states: dict[str, tuple[str, str]] = {}  # job id -> (sacct state, exit code)
        self.fail = 0
        self.name = "fake"

    async def run(self, command: str, timeout: float = 60.0) -> CommandResult:
        self.commands.append(command)
        if self.fail:
            self.fail -= 1
            raise TransportError("connection lost")
        rows = [f"{i}|uf-job-{i}|{s}|{c}|00:00:01" for i, (s, c) in self.states.items()]
        return CommandResult(0, f"{SECTION}\n" + "\n".join(rows) + f"\n{SECTION}\n", "")


def poller(fake: FakeSlurm, **kw: object) -> MachinePoller:
    return MachinePoller("slurm@fake", fake, get_adapter("slurm"), interval=0.05, **kw)  # type: ignore[arg-type]


def ref(i: int) -> JobRef:
    return JobRef(str(i), f"/w/{i}.exit")


async def _watch_all(p: MachinePoller, n: int) -> list:
    return await asyncio.gather(*(p.watch(ref(i)) for i in range(1, n + 1)))


def test_one_command_per_interval_for_many_jobs() -> None:
    fake = FakeSlurm()
    n = 200
    for i in range(1, n + 1):
        fake.states[str(i)] = ("RUNNING", "0:0")

    async def scenario() -> list:
        p = poller(fake)
        task = asyncio.ensure_future(_watch_all(p, n))
        await asyncio.sleep(0.3)
        polls_while_running = p.polls
        for i in range(1, n + 1):
            fake.states[str(i)] = ("COMPLETED" if i % 2 else "FAILED", "0:0" if i % 2 else "3:0")
        results = await task
        assert len(fake.commands) == p.polls
        assert polls_while_running >= 2
        return results

    results = asyncio.run(scenario())
    assert [r.state for r in results[:2]] == [JobState.COMPLETED, JobState.FAILED]
    assert results[1].exit_code == 3
    # every command covered all jobs at once
    assert all(f"-j {','.join(str(i) for i in range(1, n + 1))}" in c for c in fake.commands[:2])


def test_unknown_job_is_given_grace_then_reported() -> None:
    fake = FakeSlurm()

    async def scenario():
        return await poller(fake, unknown_grace_polls=3).watch(ref(42))

    status = asyncio.run(scenario())
    assert status.state is JobState.UNKNOWN
    assert len(fake.commands) == 4


def test_transient_failures_are_retried() -> None:
    fake = FakeSlurm()
    fake.fail = 2
    fake.states["7"] = ("TIMEOUT", "0:0")
    status = asyncio.run(poller(fake).watch(ref(7)))
    assert status.state is JobState.TIMEOUT
    assert len(fake.commands) == 3


def test_unreachable_machine_fails_watchers() -> None:
    fake = FakeSlurm()
    fake.fail = 100
    with pytest.raises(MachineUnreachable):
        asyncio.run(poller(fake, max_failed_polls=3).watch(ref(7)))
    assert len(fake.commands) == 3
