"""The per-machine poller: one status command per interval for all watched jobs, one event per job."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import pytest
from airflow.triggers.base import TriggerEvent

from operators.hpc.adapters import BatchAdapter, JobRef, get_adapter
from operators.hpc.adapters.base import SECTION
from operators.hpc.adapters.slurm import SlurmAdapter
from operators.hpc.poller import MachinePoller, MachineUnreachable, PollingFailed, get_poller
from operators.hpc.states import JobState, JobStatus
from operators.hpc.transport import MAX_COMMAND_BYTES, CommandResult, TransportError
from operators.hpc.triggers import BatchJobTrigger

T = TypeVar("T")


class FakeSlurm:
    """Stands in for the SSH transport at the hook boundary: answers squeue/sacct from a table."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.states: dict[str, tuple[str, str]] = {}  # job id -> (sacct state, exit code)
        self.fail = 0
        self.name = "fake"

    async def run(self, command: str, timeout: float = 60.0, stdin: str | None = None) -> CommandResult:
        self.commands.append(command)
        if self.fail:
            self.fail -= 1
            raise TransportError("connection lost")
        rows = [f"{i}|uf-job-{i}|{s}|{c}|00:00:01" for i, (s, c) in self.states.items()]
        return CommandResult(0, f"{SECTION}\n" + "\n".join(rows) + f"\n{SECTION}\n", "")


class BrokenParser(SlurmAdapter):
    """Slurm whose status parse raises ``errors`` one per poll, then parses normally again."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)

    def parse_status(self, stdout: str, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        if self.errors:
            raise self.errors.pop(0)
        return super().parse_status(stdout, jobs)


def poller(fake: FakeSlurm, adapter: BatchAdapter | None = None, **kw: object) -> MachinePoller:
    return MachinePoller("slurm@fake", fake, adapter or get_adapter("slurm"), interval=0.05, **kw)  # type: ignore[arg-type]


def bounded(awaitable: Coroutine[Any, Any, T], limit: float = 5.0) -> T:
    """Run ``awaitable`` in a fresh event loop; a hang fails the test instead of blocking it."""

    async def run() -> T:
        return await asyncio.wait_for(awaitable, limit)

    return asyncio.run(run())


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
        while (
            p.polls < 2
        ):  # two intervals with every job still running (wall-clock free: a busy host only slows it)
            await asyncio.sleep(0.01)
        assert not task.done()
        for i in range(1, n + 1):
            fake.states[str(i)] = ("COMPLETED" if i % 2 else "FAILED", "0:0" if i % 2 else "3:0")
        results = await task
        assert len(fake.commands) == p.polls
        return results

    results = bounded(scenario(), limit=30.0)
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


def test_unexpected_parse_error_fails_every_watcher_within_the_limit() -> None:
    fake = FakeSlurm()
    fake.states.update({"1": ("RUNNING", "0:0"), "2": ("RUNNING", "0:0")})
    p = poller(fake, BrokenParser(*[KeyError("State")] * 10), max_failed_polls=3)

    async def scenario() -> list[JobStatus | BaseException]:
        return list(await asyncio.gather(p.watch(ref(1)), p.watch(ref(2)), return_exceptions=True))

    first, second = bounded(scenario())
    assert isinstance(first, PollingFailed) and type(second) is type(first) is PollingFailed
    assert isinstance(first.__cause__, KeyError)
    assert "3 status polls in a row failed, last KeyError: 'State'" in str(first)
    assert len(fake.commands) == 3


def test_unexpected_errors_are_failed_polls_and_watching_goes_on() -> None:
    fake = FakeSlurm()
    fake.states["7"] = ("COMPLETED", "0:0")
    p = poller(fake, BrokenParser(IndexError("list index out of range"), KeyError("State")))
    assert bounded(p.watch(ref(7))).state is JobState.COMPLETED
    assert len(fake.commands) == 3


def test_each_distinct_unexpected_error_is_logged_once_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeSlurm()
    fake.fail = 1  # an expected transport failure: a warning line, no traceback
    errors = [KeyError("State"), KeyError("State"), IndexError("3"), IndexError("3")]
    p = poller(fake, BrokenParser(*errors), max_failed_polls=5)
    with caplog.at_level(logging.WARNING, logger="operators.hpc.poller"), pytest.raises(PollingFailed):
        bounded(p.watch(ref(7)))
    failed_polls = [r for r in caplog.records if "status poll" in r.getMessage()]
    assert len(failed_polls) == 5
    assert [r.exc_info[0] for r in failed_polls if r.exc_info] == [KeyError, IndexError]


def test_watchers_fail_when_the_poller_task_dies() -> None:
    fake = FakeSlurm()
    fake.states["7"] = ("RUNNING", "0:0")
    p = poller(fake)

    async def scenario() -> JobStatus:
        watcher = asyncio.ensure_future(p.watch(ref(7)))
        await asyncio.sleep(0.2)
        (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "urgentflow-poller-slurm@fake"]
        task.cancel()
        return await watcher

    with pytest.raises(PollingFailed, match="stopped"):
        bounded(scenario())


def trigger(job: int, interval: float) -> BatchJobTrigger:
    return BatchJobTrigger(
        machine="fake",
        connection="hpc_fake",
        batch_system="slurm",
        job_id=str(job),
        exit_file=f"/w/{job}.exit",
        poll_interval=interval,
        job_name=f"uf-job-{job}",
    )


async def first_event(t: BatchJobTrigger) -> TriggerEvent:
    async for event in t.run():
        return event
    raise AssertionError("the trigger yielded no event")


def test_a_machine_polls_at_the_smallest_interval_among_its_triggers() -> None:
    fake = FakeSlurm()
    fake.states.update({"1": ("RUNNING", "0:0"), "2": ("RUNNING", "0:0")})

    async def scenario() -> TriggerEvent:
        get_poller("hpc_fake", "slurm", 30.0).transport = fake  # the machine's poller, faked at its transport
        slow = asyncio.ensure_future(first_event(trigger(1, 30.0)))
        fast = asyncio.ensure_future(first_event(trigger(2, 0.05)))
        while len(fake.commands) < 2:  # two fast intervals, each far below the slow one's 30 s
            await asyncio.sleep(0.01)
        fake.states["2"] = ("COMPLETED", "0:0")
        event = await asyncio.wait_for(fast, 3)
        slow.cancel()
        return event

    event = bounded(scenario(), 10)
    assert (event.payload["status"], event.payload["job"]["state"]) == ("done", "COMPLETED")
    assert len(fake.commands) >= 3
    # still one poller for the machine: every status command covered both jobs
    assert all("-j 1,2 " in c for c in fake.commands)


def test_a_broken_parser_ends_the_trigger_with_an_error_event() -> None:
    async def scenario() -> TriggerEvent:
        p = get_poller("hpc_fake", "slurm", 0.05)
        p.transport, p.adapter, p.max_failed_polls = FakeSlurm(), BrokenParser(*[KeyError("State")] * 3), 3
        return await first_event(trigger(7, 0.05))

    event = bounded(scenario())
    assert event.payload["status"] == "error"
    assert "KeyError" in event.payload["message"]


def test_the_trigger_serializes_what_it_was_given_and_loads_what_earlier_versions_wrote() -> None:
    path, kwargs = trigger(7, 2.0).serialize()
    assert path == "operators.hpc.triggers.BatchJobTrigger"
    assert kwargs == {
        "machine": "fake",
        "connection": "hpc_fake",
        "batch_system": "slurm",
        "job_id": "7",
        "exit_file": "/w/7.exit",
        "poll_interval": 2.0,
        "held_timeout": None,
        "watch_exit_files": False,
        "completion_notice": False,
        "job_name": "uf-job-7",
    }
    # triggers deferred before an upgrade held their event until ``not_before`` and had no
    # ``watch_exit_files``, ``completion_notice`` and ``job_name`` (their records are not checked by name):
    # they still load
    earlier = {
        k: v for k, v in kwargs.items() if k not in ("watch_exit_files", "completion_notice", "job_name")
    }
    assert BatchJobTrigger(**earlier, not_before=1.0).serialize() == (path, {**kwargs, "job_name": None})


def test_a_poller_that_waits_on_the_machine_polls_new_jobs_at_once_then_waits_there_for_exit_files() -> None:
    fake = FakeSlurm()
    fake.states["1"] = ("RUNNING", "0:0")

    async def scenario() -> JobStatus:
        p = poller(fake, wait_on_machine=True)
        watching = asyncio.ensure_future(p.watch(ref(1), 0.05))
        await asyncio.sleep(0.2)
        fake.states["1"] = ("COMPLETED", "0:0")
        return await watching

    status = bounded(scenario())
    assert status.state is JobState.COMPLETED
    first, *later = fake.commands
    assert "/w/1.exit" not in first.split("squeue")[0]  # the first poll of a new job does not wait
    assert later and all(c.index("/w/1.exit") < c.index("squeue") and "sleep 0.2" in c for c in later)
    # one command per poll, none between: the wait is part of the poll
    assert len(fake.commands) >= 2


def test_after_a_failed_poll_the_next_one_does_not_wait_on_the_machine() -> None:
    fake = FakeSlurm()
    fake.fail = 1
    fake.states["1"] = ("RUNNING", "0:0")

    async def scenario() -> list[str]:
        p = poller(fake, wait_on_machine=True)
        watching = asyncio.ensure_future(p.watch(ref(1), 0.05))
        await asyncio.sleep(0.3)
        fake.states["1"] = ("COMPLETED", "0:0")
        await watching
        return fake.commands

    first, second, *_ = bounded(scenario())
    assert "sleep" not in first and "sleep" not in second  # fresh, then after the failure


def test_unknown_grace_lasts_its_intervals_even_when_polls_come_sooner() -> None:
    """Polls that waited on the machine return early whenever some job ends: a job missing from both
    squeue and sacct must still get ``unknown_grace_polls`` intervals of time, not only polls."""
    fake = FakeSlurm()

    async def scenario() -> tuple[JobStatus, float]:
        p = poller(fake, unknown_grace_polls=2, wait_on_machine=True)  # FakeSlurm answers at once
        started = asyncio.get_running_loop().time()
        status = await p.watch(ref(42), 0.3)
        return status, asyncio.get_running_loop().time() - started

    status, took = bounded(scenario())
    assert status.state is JobState.UNKNOWN
    assert took >= 0.6
    assert len(fake.commands) > 3  # more polls than the grace count passed before it was reported


def test_the_wait_on_the_machine_returns_soon_after_a_new_exit_file_and_not_for_old_ones(tmp_path) -> None:
    import subprocess
    import time

    from operators.hpc.adapters.base import wait_for_exit_files_command

    old, new = tmp_path / "old job.exit", tmp_path / "new.exit"
    old.write_text("0\n")  # an end the last poll already saw must not cut the next wait short
    jobs = [JobRef("1", str(old)), JobRef("2", str(new))]
    command = wait_for_exit_files_command(jobs, 1.0)

    started = time.monotonic()
    subprocess.run(["sh", "-c", command], check=True, timeout=10)
    assert time.monotonic() - started >= 1.0  # nothing new: the whole second

    writer = subprocess.Popen(["sh", "-c", f"sleep 0.4; echo 0 > '{new}'"])
    started = time.monotonic()
    subprocess.run(["sh", "-c", wait_for_exit_files_command(jobs, 5.0)], check=True, timeout=10)
    writer.wait(5)
    assert time.monotonic() - started < 4.0


def test_jobs_too_many_for_one_command_line_are_polled_in_several_that_fit_and_none_waits() -> None:
    fake = FakeSlurm()
    deep = [JobRef(str(i), f"/w/{'d' * 900}/{i}.exit") for i in range(1, 301)]
    for job in deep:
        fake.states[job.job_id] = ("RUNNING", "0:0")

    async def scenario() -> list[JobStatus]:
        p = poller(fake, wait_on_machine=True)
        watching = asyncio.gather(*(p.watch(job, 0.05) for job in deep))
        await asyncio.sleep(0.3)
        for job in deep:
            fake.states[job.job_id] = ("COMPLETED", "0:0")
        statuses = await watching
        assert p.cut
        return statuses

    statuses = bounded(scenario())
    assert [s.state for s in statuses] == [JobState.COMPLETED] * len(deep)
    assert all(len(c.encode()) <= MAX_COMMAND_BYTES for c in fake.commands)
    assert len(fake.commands) > 2 and not any("sleep" in c for c in fake.commands)
    polled = [c for c in fake.commands if "/1.exit" in c]
    assert len(polled) < len(fake.commands), "each command polls some of the jobs, not all"


def test_a_completion_notice_makes_the_poller_look_at_once_and_again_while_the_job_is_still_listed() -> None:
    """Interval 30 s: without the notice the end would be known 30 s later. The first poll after the
    notice still finds the job listed (the batch system lags its end): the poller looks again soon."""
    fake = FakeSlurm()
    fake.states["1"] = ("RUNNING", "0:0")

    async def scenario() -> JobStatus:
        p = MachinePoller("slurm@fake", fake, get_adapter("slurm"), interval=30.0)
        watching = asyncio.ensure_future(p.watch(ref(1)))
        while p.polls < 1:
            await asyncio.sleep(0.01)
        p.noticed()
        while p.polls < 2:
            await asyncio.sleep(0.01)
        fake.states["1"] = ("COMPLETED", "0:0")
        return await watching

    status = bounded(scenario(), limit=5.0)
    assert status.state is JobState.COMPLETED
    assert len(fake.commands) == 3, "the poll the notice caused, then one recheck"
