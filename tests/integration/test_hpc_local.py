"""The `local` machine: background process groups on this host, same interface as Slurm."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from operators.hpc.adapters import JobRef
from operators.hpc.hook import BatchHook
from operators.hpc.poller import get_poller
from operators.hpc.spec import JobSpec
from operators.hpc.states import JobState, JobStatus

pytestmark = pytest.mark.integration


def submit(command: list[str]) -> tuple[BatchHook, JobSpec, str]:
    hook = BatchHook("local")
    name = f"uf-local-{uuid.uuid4().hex[:8]}"
    spec = JobSpec(name=name, command=command, workdir=f"{hook.machine.workdir}/tests/{name}")
    job_id, reattached = hook.submit(spec)
    assert not reattached
    return hook, spec, job_id


def watch(spec: JobSpec, job_id: str) -> JobStatus:
    async def run() -> JobStatus:
        return await asyncio.wait_for(
            get_poller(None, "local", 0.2).watch(JobRef(job_id, spec.exit_file)), 60
        )

    return asyncio.run(run())


def test_completed_with_output() -> None:
    hook, spec, job_id = submit(["bash", "-c", 'echo "hello $1"', "x", "local"])
    assert watch(spec, job_id).state is JobState.COMPLETED
    assert hook.tail(spec.stdout).strip() == "hello local"


def test_failed_with_exit_code() -> None:
    _hook, spec, job_id = submit(["bash", "-c", "exit 3"])
    status = watch(spec, job_id)
    assert (status.state, status.exit_code) == (JobState.FAILED, 3)


def test_reattach_and_cancel() -> None:
    hook, spec, job_id = submit(["sleep", "300"])
    again, reattached = hook.submit(spec)
    assert (again, reattached) == (job_id, True)
    hook.cancel([job_id])
    assert watch(spec, job_id).state is JobState.CANCELLED
    # every process of the job's session ends (zombies awaiting pid 1's slow reaping do not count)
    left: list[str] = []
    for _ in range(50):
        rows = hook.transport.run(f"ps -o pid=,stat= -s {job_id} || true").stdout.splitlines()
        left = [r for r in rows if not r.split()[1].startswith("Z")]
        if not left:
            break
        time.sleep(0.1)
    assert left == [], f"processes of the cancelled job still run: {left}"
