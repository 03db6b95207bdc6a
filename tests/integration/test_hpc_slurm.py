"""The HPC machine interface against the real Slurm clusters of the test bed, over real sshd."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from operators.hpc.adapters import JobRef
from operators.hpc.hook import BatchHook
from operators.hpc.poller import get_poller
from operators.hpc.spec import JobSpec
from operators.hpc.states import JobState, JobStatus
from operators.hpc.transport import STATS, TransportError

pytestmark = pytest.mark.integration
BASE = "/home/urgent/urgentflow/jobs/tests"


def make_spec(tag: str, command: list[str], **kw: object) -> JobSpec:
    name = f"uf-it-{tag}-{uuid.uuid4().hex[:8]}"
    return JobSpec(name=name, command=command, workdir=f"{BASE}/{name}", **kw)  # type: ignore[arg-type]


def watch_all(conn: str, jobs: list[tuple[str, JobSpec]], interval: float = 1.0) -> list[JobStatus]:
    async def run() -> list[JobStatus]:
        poller = get_poller(conn, "slurm", interval)
        return await asyncio.wait_for(
            asyncio.gather(*(poller.watch(JobRef(job_id, spec.exit_file)) for job_id, spec in jobs)), 300
        )

    return asyncio.run(run())


@pytest.mark.exclusive  # 20 jobs must run at once on an idle cluster
@pytest.mark.parametrize("machine", ["alpha", "beta"])
def test_ensemble_of_twenty_completes_with_few_status_commands(machine: str) -> None:
    hook = BatchHook(machine)
    specs = [
        make_spec(f"ens{i}", ["bash", "-c", 'sleep 1; echo "member $1"', "member", str(i)]) for i in range(20)
    ]
    jobs = [(hook.submit(s)[0], s) for s in specs]
    conn = f"hpc_{machine}"
    before = STATS[f"{conn}:commands"]
    statuses = watch_all(conn, jobs)
    status_commands = STATS[f"{conn}:commands"] - before
    assert [s.state for s in statuses] == [JobState.COMPLETED] * 20
    # one status command per interval for all twenty jobs, not one per job
    assert status_commands < 20, status_commands
    assert hook.tail(specs[7].stdout).strip() == "member 7"


def test_failure_exit_code_and_stderr() -> None:
    hook = BatchHook("alpha")
    spec = make_spec("fail", ["bash", "-c", "echo broken input >&2; exit 3"])
    job_id, _ = hook.submit(spec)
    (status,) = watch_all("hpc_alpha", [(job_id, spec)])
    assert (status.state, status.exit_code) == (JobState.FAILED, 3)
    assert "broken input" in hook.tail(spec.stderr)


@pytest.mark.bed("alpha")  # a minute: no exclusive test of another server waits for it
def test_timeout_is_its_own_state() -> None:
    hook = BatchHook("alpha")
    spec = make_spec("wall", ["sleep", "300"], walltime_minutes=1)
    job_id, _ = hook.submit(spec)
    (status,) = watch_all("hpc_alpha", [(job_id, spec)], interval=2.0)
    assert status.state is JobState.TIMEOUT


def test_cancel_from_outside_and_reattach() -> None:
    hook = BatchHook("alpha")
    spec = make_spec("cancel", ["sleep", "300"])
    job_id, reattached = hook.submit(spec)
    assert not reattached
    again, reattached = hook.submit(spec)
    assert (again, reattached) == (job_id, True), "a live job of the same name must be re-attached"
    hook.cancel([job_id])
    (status,) = watch_all("hpc_alpha", [(job_id, spec)])
    assert status.state is JobState.CANCELLED


def test_hostile_values_reach_slurm_inert() -> None:
    hook = BatchHook("alpha")
    canary = f"{BASE}/canary-{uuid.uuid4().hex[:8]}"
    hostile = [f"; touch {canary}", f"$(touch {canary})", f"`touch {canary}`", f"'\"\n touch {canary}"]
    spec = make_spec("hostile", ["printf", "%s|", *hostile], environment={"EVIL": f"$(touch {canary})"})
    job_id, _ = hook.submit(spec)
    (status,) = watch_all("hpc_alpha", [(job_id, spec)])
    assert status.state is JobState.COMPLETED
    assert hook.tail(spec.stdout, 50) == "|".join(hostile) + "|"
    assert hook.transport.run(f"test -e {canary}").exit_status == 1, "canary file was created"


def test_out_of_memory_is_its_own_state() -> None:
    hook = BatchHook("alpha")
    spec = make_spec(
        "oom",
        ["python3", "-c", "b = bytearray(400 * 1024 * 1024); import time; time.sleep(2)"],
        memory_mb=100,
    )
    job_id, _ = hook.submit(spec)
    (status,) = watch_all("hpc_alpha", [(job_id, spec)])
    assert status.state is JobState.OUT_OF_MEMORY, status


def test_unjudged_job_of_an_earlier_try_is_adopted_judged_one_is_not() -> None:
    """A worker that died after sbatch: the next try adopts the job; once judged, a retry submits anew."""
    hook = BatchHook("beta")
    spec = make_spec("adopt", ["true"])
    first, _ = hook.submit(spec)
    watch_all("hpc_beta", [(first, spec)])  # the job ends while "nobody" judges it
    adopted, reattached = hook.submit(spec)
    assert (adopted, reattached) == (first, True)
    hook.mark_judged(spec.workdir, spec.name, first)
    fresh, reattached = hook.submit(spec)
    assert fresh != first and not reattached


def test_small_files_go_up_and_down_over_sftp() -> None:
    transport = BatchHook("alpha").transport
    path = f"{BASE}/sftp-{uuid.uuid4().hex[:8]}.txt"
    text = "line one\nÜnïcode ✓\n" * 100
    transport.run(f"mkdir -p {BASE}").check("mkdir")
    transport.put_text(path, text, mode=0o600)
    assert transport.get_text(path) == text
    assert transport.run(f"stat -c %a {path}").stdout.strip() == "600"
    with pytest.raises(TransportError, match="larger than"):
        transport.get_text(path, max_bytes=10)


def test_large_outputs_arrive_whole() -> None:
    """Status listings of big ensembles are long; every byte must arrive (the SSH provider's reader
    stopped early once the exit status came in, cutting a 6 kB sacct listing short)."""
    transport = BatchHook("alpha").transport
    for _ in range(5):
        out = transport.run("seq 1 200000; seq 1 1000 >&2").check("seq")
        assert out.stdout.split() == [str(i) for i in range(1, 200001)]
        assert len(out.stderr.split()) == 1000
