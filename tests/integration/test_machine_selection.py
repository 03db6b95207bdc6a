"""Machine status and selection against the real test bed: a full cluster, a dead controller, a
stalled sshd."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from operators.hpc.hook import BatchHook
from operators.hpc.spec import JobSpec
from operators.machines.catalog import get_machine
from operators.machines.operators import decide
from operators.machines.selection import NoMachineFits, Request
from operators.machines.status import probe_all

pytestmark = [
    pytest.mark.integration,
    pytest.mark.exclusive,
]  # stops beta's slurmctld, stalls its sshd and fills alpha
ROOT = Path(__file__).resolve().parents[2]
TESTBED = ROOT / "scripts" / "testbed"
TESTBED_DIR = Path(os.environ.get("URGENTFLOW_HOME", "/var/lib/urgentflow")) / "testbed"
PAIR = Request(cores=4, walltime_minutes=10, machines=["alpha", "beta"])


def pid_of(pidfile: Path) -> int:
    return int(pidfile.read_text().split()[0])


@pytest.fixture
def full_alpha() -> Iterator[None]:
    """Both alpha nodes taken by 4-core jobs for 5 minutes, one more queued behind them."""
    hook = BatchHook("alpha")
    ids = []
    for _ in range(3):
        name = f"uf-fill-{uuid.uuid4().hex[:8]}"
        spec = JobSpec(
            name=name,
            command=["sleep", "300"],
            workdir=f"/home/urgent/urgentflow/jobs/tests/{name}",
            cpus_per_task=4,
            walltime_minutes=10,
            partition="debug",
        )
        ids.append(hook.submit(spec)[0])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            (status,) = probe_all([get_machine("alpha")])
            if status.load and status.load.partitions["debug"].cores_idle == 0:
                break
            time.sleep(0.5)
        yield
    finally:
        hook.cancel(ids)


def test_idle_pair_prefers_the_cheaper_machine() -> None:
    found, chosen = decide(PAIR, catalog=None)
    assert chosen[0]["machine"] == "alpha", [c.to_dict() for c in found]
    assert all(c.estimate_source == "dry run" for c in found if c.eligible)


def test_full_alpha_sends_the_job_to_beta(full_alpha: None) -> None:
    found, chosen = decide(PAIR, catalog=None)
    assert (chosen[0]["machine"], chosen[0]["partition"]) == ("beta", "debug")
    alpha = {c.partition: c for c in found if c.machine == "alpha"}
    assert alpha["debug"].eligible and alpha["debug"].wait_seconds and alpha["debug"].wait_seconds > 60
    # an ensemble spreads: beta's 8 free cores take two members first
    _, spread = decide(PAIR, catalog=None, members=3)
    assert [a["machine"] for a in spread][:2] == ["beta", "beta"]


def test_stopped_controller_marks_beta_down_and_it_is_avoided() -> None:
    pidfile = TESTBED_DIR / "slurm" / "beta" / "run" / "slurmctld.pid"
    os.kill(pid_of(pidfile), signal.SIGTERM)
    try:
        time.sleep(1)
        alpha, beta = probe_all([get_machine("alpha"), get_machine("beta")], timeout=20)
        assert alpha.state == "up"
        assert beta.state == "down" and "machine load failed" in beta.error, beta
        # Slurm's clients retry a missing controller for ~18 s before they fail: the decisions below
        # give up after 5 s (a down machine either way), so the test holds the test bed a shorter time
        _, chosen = decide(Request(cores=1, machines=["beta", "alpha"]), catalog=None, probe_timeout=5)
        assert chosen[0]["machine"] == "alpha"
        with pytest.raises(NoMachineFits, match=r"beta: down: (TransportError|no answer within 5 s)"):
            decide(Request(cores=1, machines=["beta"]), catalog=None, probe_timeout=5)
    finally:
        subprocess.run([str(TESTBED), "start", "slurm"], check=True, capture_output=True, timeout=180)
    (beta,) = probe_all([get_machine("beta")])
    assert beta.state == "up"


def test_stalled_sshd_is_down_after_the_timeout_without_holding_the_others() -> None:
    sshd = pid_of(TESTBED_DIR / "ssh" / "beta" / "sshd.pid")
    # stop every process of beta's sshd (the listener and its per-connection children)
    pids = [
        sshd,
        *map(int, subprocess.run(["pgrep", "-P", str(sshd)], capture_output=True, text=True).stdout.split()),
    ]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        from operators.hpc.transport import SSHTransport

        SSHTransport("hpc_beta")._drop()  # a fresh connection, as a new worker process would make
        start = time.monotonic()
        alpha, beta, local = probe_all([get_machine(n) for n in ("alpha", "beta", "local")], timeout=4)
        elapsed = time.monotonic() - start
        assert (alpha.state, local.state) == ("up", "up")
        assert beta.state == "down" and beta.error, beta
        assert elapsed < 6, f"probing took {elapsed:.1f} s with a 4 s timeout"
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
