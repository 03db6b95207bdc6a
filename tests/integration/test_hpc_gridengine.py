"""The HPC machine interface against the real Grid Engine cell of the test bed, over real sshd.

Needs ``scripts/testbed start gridengine`` (Airflow connection hpc_gamma). The machine is built here,
not read from include/machines.yaml.
"""

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
from operators.hpc.transport import STATS
from operators.machines.catalog import Machine

pytestmark = pytest.mark.integration
CONN = "hpc_gamma"
BASE = "/home/urgent/urgentflow/jobs/tests-gridengine"
GAMMA = Machine(
    name="gamma", connection=CONN, batch_system="gridengine", workdir="/home/urgent/urgentflow/jobs"
)


@pytest.fixture(scope="module")
def hook() -> BatchHook:
    return BatchHook(GAMMA)


def make_spec(tag: str, command: list[str], **kw: object) -> JobSpec:
    name = f"uf-ge-{tag}-{uuid.uuid4().hex[:8]}"
    return JobSpec(name=name, command=command, workdir=f"{BASE}/{name}", **kw)  # type: ignore[arg-type]


def watch_all(jobs: list[tuple[str, JobSpec]], interval: float = 1.0, limit: float = 180) -> list[JobStatus]:
    async def run() -> list[JobStatus]:
        poller = get_poller(CONN, "gridengine", interval)
        return await asyncio.wait_for(
            asyncio.gather(*(poller.watch(JobRef(job_id, spec.exit_file)) for job_id, spec in jobs)), limit
        )

    return asyncio.run(run())


def wait_running(hook: BatchHook, job_id: str, spec: JobSpec, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if hook.status([JobRef(job_id, spec.exit_file)])[job_id].state is JobState.RUNNING:
            return
        time.sleep(0.5)
    pytest.fail(f"job {job_id} did not start within {limit} s")


def test_ensemble_completes_with_few_status_commands(hook: BatchHook) -> None:
    specs = [
        make_spec(f"ens{i}", ["bash", "-c", 'sleep 1; echo "member $1"', "member", str(i)]) for i in range(6)
    ]
    jobs = [(hook.submit(s)[0], s) for s in specs]
    before = STATS[f"{CONN}:commands"]
    statuses = watch_all(jobs)
    status_commands = STATS[f"{CONN}:commands"] - before
    assert [s.state for s in statuses] == [JobState.COMPLETED] * 6, statuses
    assert [s.exit_code for s in statuses] == [0] * 6
    # 6 jobs on 2 slots take ~3 rounds: one status command per interval for all, not one per job
    assert status_commands < 15, status_commands
    assert hook.tail(specs[4].stdout).strip() == "member 4"


def test_failure_exit_code_and_stderr(hook: BatchHook) -> None:
    spec = make_spec("fail", ["bash", "-c", "echo broken input >&2; exit 3"])
    job_id, _ = hook.submit(spec)
    (status,) = watch_all([(job_id, spec)])
    assert (status.state, status.exit_code) == (JobState.FAILED, 3)
    assert "broken input" in hook.tail(spec.stderr)


def test_cancel_running_job_and_reattach_by_name(hook: BatchHook) -> None:
    spec = make_spec("cancel-with-a-name-longer-than-ten", ["sleep", "300"])
    job_id, reattached = hook.submit(spec)
    assert not reattached
    wait_running(hook, job_id, spec)
    # find() by the full name (qstat's job line cuts it to 10 characters)
    assert hook.find(spec) == (job_id, "live")
    again, reattached = hook.submit(spec)
    assert (again, reattached) == (job_id, True), "a live job of the same name must be re-attached"
    hook.cancel([job_id])
    (status,) = watch_all([(job_id, spec)])
    assert status.state is JobState.CANCELLED, status


@pytest.mark.bed("gamma")  # a minute: no exclusive test of another server waits for it
def test_walltime_is_timeout(hook: BatchHook) -> None:
    spec = make_spec("wall", ["sleep", "300"], walltime_minutes=1)
    job_id, _ = hook.submit(spec)
    (status,) = watch_all([(job_id, spec)], interval=2.0)
    assert status.state is JobState.TIMEOUT, status
    assert "h_rt" in status.reason


def test_hostile_values_reach_grid_engine_inert(hook: BatchHook) -> None:
    canary = f"{BASE}/canary-{uuid.uuid4().hex[:8]}"
    tmp_canary = f"/tmp/canary-{uuid.uuid4().hex[:8]}"
    hostile = [
        f"; touch {canary}",
        f"$(touch {canary})",
        f"`touch {canary}`",
        f"'\"\n touch {canary}",
        f"$(touch {tmp_canary})",
        f"a;b\nc; touch {tmp_canary}",
    ]
    spec = make_spec("hostile", ["printf", "%s|", *hostile], environment={"EVIL": f"$(touch {canary})"})
    job_id, _ = hook.submit(spec)
    (status,) = watch_all([(job_id, spec)])
    assert status.state is JobState.COMPLETED, status
    assert hook.tail(spec.stdout, 50) == "|".join(hostile) + "|"
    assert hook.transport.run(f"test -e {canary}").exit_status == 1, "canary file was created"
    assert hook.transport.run(f"test -e {tmp_canary}").exit_status == 1


def test_unjudged_job_of_an_earlier_try_is_adopted(hook: BatchHook) -> None:
    spec = make_spec("adopt", ["true"])
    first, _ = hook.submit(spec)
    watch_all([(first, spec)])
    adopted, reattached = hook.submit(spec)
    assert (adopted, reattached) == (first, True)
    hook.mark_judged(spec.workdir, spec.name, first)
    fresh, reattached = hook.submit(spec)
    assert fresh != first and not reattached
    watch_all([(fresh, spec)])


def test_load_of_the_cell(hook: BatchHook) -> None:
    out = hook.transport.run(hook.adapter.load_command()).check("load")
    load = hook.adapter.parse_load(out.stdout)
    assert load.user == "urgent" and load.state == "up"
    assert load.partitions["all.q"].cores_total == 2
