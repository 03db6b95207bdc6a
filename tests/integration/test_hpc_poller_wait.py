"""A poll that waits on the machine: a job's end is known about at once, not an interval later."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest

from operators.hpc.adapters import JobRef
from operators.hpc.hook import BatchHook
from operators.hpc.poller import RECHECKS, get_poller
from operators.hpc.spec import JobSpec
from operators.hpc.states import JobState

pytestmark = [
    pytest.mark.integration,
    pytest.mark.exclusive,
]  # times jobs that must start at once on alpha and gamma

INTERVAL = 20.0  # far longer than the jobs: only the wait on the machine can notice their ends in time


@pytest.mark.parametrize("machine", ["alpha", "gamma", "local"])
def test_jobs_ending_between_polls_are_known_within_seconds_with_one_command_per_poll(
    machine: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hook = BatchHook(machine)
    assert hook.machine.watch_exit_files, "the test bed's machines wait on the machine (the default)"
    tag = uuid.uuid4().hex[:8]
    specs = [
        JobSpec(
            name=f"uf-wait-{tag}-{i}",
            command=["sleep", str(seconds)],
            workdir=f"{hook.machine.workdir}/tests/uf-wait-{tag}-{i}",
            walltime_minutes=5,
            partition=hook.machine.default_partition,
        )
        for i, seconds in enumerate((1, 4))
    ]
    jobs = [(hook.submit(spec)[0], spec) for spec in specs]

    async def watch() -> list[tuple[float, JobState]]:
        poller = get_poller(hook.machine.connection, hook.machine.batch_system, INTERVAL, True)
        started = time.monotonic()

        async def one(job_id: str, spec: JobSpec) -> tuple[float, JobState]:
            status = await poller.watch(JobRef(job_id, spec.exit_file), INTERVAL)
            return time.monotonic() - started, status.state

        ended = await asyncio.wait_for(asyncio.gather(*(one(j, s) for j, s in jobs)), 120)
        print(f"{machine}: {poller.polls} status commands")
        assert poller.polls <= 2 * (RECHECKS + 2), f"{poller.polls} status commands for two jobs"
        return ended

    (first, first_state), (second, second_state) = asyncio.run(watch())
    assert (first_state, second_state) == (JobState.COMPLETED, JobState.COMPLETED)
    # each end known within seconds of it (queue wait and start-up included), far within the interval
    assert first < 12 and second < 16 and second - first > 1, (first, second)
    # asyncssh's per-channel lines (the command line naming every watched job's files) are not logged
    assert "uf_ended" not in caplog.text and specs[1].exit_file not in caplog.text
