"""The Slurm test bed (clusters alpha and beta), reached as Airflow reaches it: providers-ssh ``SSHHook``
with the recorded connections ``hpc_alpha`` / ``hpc_beta`` (host key pinned).

Start it with ``scripts/testbed start slurm sshd``; a missing test bed fails these tests, never skips them.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from airflow.providers.ssh.hooks.ssh import SSHHook
from bed import bed_connection

CLUSTERS = ("alpha", "beta")
PARTITIONS = {"alpha": ["debug*", "long"], "beta": ["debug*"]}
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"}
QUEUE_WAIT_S = 90
SACCT_WAIT_S = 30


class Cluster:
    """One test-bed cluster behind its sshd: run commands and submit jobs as the test user."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.conn_id = f"hpc_{name}"
        conn = bed_connection(self.conn_id)
        self.port = conn.get("port")
        self.hook = SSHHook(ssh_conn_id=self.conn_id, conn_retry_attempts=1)
        try:
            self.client = self.hook.get_conn()
        except Exception as exc:
            pytest.fail(
                f"cannot reach the test-bed sshd of cluster {name} (127.0.0.1:{self.port}) with connection "
                f"{self.conn_id}: {exc!r}. Run `scripts/testbed start slurm sshd`.",
                pytrace=False,
            )

    def run(self, command: str, timeout: float = 60) -> tuple[int, str, str]:
        rc, out, err = self.hook.exec_ssh_client_command(self.client, command, False, None, timeout)
        return rc, out.decode(), err.decode()

    def check(self, command: str) -> str:
        rc, out, err = self.run(command)
        assert rc == 0, f"[{self.name}] `{command}` exited {rc}: {err.strip()[-800:]}"
        return out

    def submit(self, body: str, sbatch_args: str = "") -> tuple[str, str, str]:
        """Write a job script into a fresh work dir under ~/urgentflow, sbatch it.

        Returns (job id, job name, work dir relative to the test user's home).
        """
        tag = uuid.uuid4().hex[:10]
        workdir = f"urgentflow/testbed-tests/{self.name}-{tag}"
        script = f"#!/bin/bash\n{body}\n"
        out = self.check(
            f"mkdir -p {workdir} && cd {workdir} && cat > job.sh <<'EOF'\n{script}EOF\n"
            f"sbatch --parsable -J uf-test-{tag} -o out.txt -e err.txt {sbatch_args} job.sh"
        )
        job_id = out.strip().split(";")[0]
        assert job_id.isdigit(), f"[{self.name}] sbatch --parsable printed {out!r}"
        return job_id, f"uf-test-{tag}", workdir

    def wait_gone(self, job_id: str) -> None:
        """Bounded wait until the job has left the queue (squeue no longer lists it)."""
        deadline = time.monotonic() + QUEUE_WAIT_S
        while True:
            rc, out, err = self.run(f"squeue -h -j {job_id} -o %T")
            if (rc == 0 and not out.strip()) or "Invalid job id" in err:
                return
            assert rc == 0, f"[{self.name}] squeue failed: {err.strip()}"
            if time.monotonic() > deadline:
                pytest.fail(f"[{self.name}] job {job_id} still queued after {QUEUE_WAIT_S} s: {out.strip()}")
            time.sleep(0.5)

    def sacct(self, job_id: str, job_name: str) -> dict[str, str]:
        """The job's accounting record once it is final.

        The database lags the queue briefly: right after a job starts, and for a moment after it ends,
        sacct (22.05) can show a placeholder record named "allocation" (state PENDING while the job
        runs), so wait for the record to carry the job's real name and a final state.
        """
        deadline = time.monotonic() + SACCT_WAIT_S
        while True:
            out = self.check(f"sacct -j {job_id} -X -P -o JobID,JobName,State,ExitCode")
            lines = out.strip().splitlines()
            if len(lines) >= 2:
                record = dict(zip(lines[0].split("|"), lines[1].split("|"), strict=True))
                if record["JobName"] == job_name and record["State"].split()[0] in FINAL_STATES:
                    return record
            if time.monotonic() > deadline:
                pytest.fail(f"[{self.name}] sacct has no final record of job {job_id}: {out!r}")
            time.sleep(0.5)

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="module")
def clusters() -> Iterator[dict[str, Cluster]]:
    opened: dict[str, Cluster] = {}

    class Lazy(dict):
        def __missing__(self, name: str) -> Cluster:
            opened[name] = Cluster(name)
            return opened[name]

    yield Lazy()
    for cluster in opened.values():
        cluster.close()


@pytest.mark.integration
@pytest.mark.parametrize("name", CLUSTERS)
def test_recorded_connection_pins_the_host_key(name: str) -> None:
    conn = bed_connection(f"hpc_{name}")
    assert conn["conn_type"] == "ssh"
    assert conn["host"] == "127.0.0.1"
    assert conn["extra"]["host_key"].startswith("ssh-ed25519 AAAA")
    assert "no_host_key_check" not in conn["extra"]
    hook = SSHHook(ssh_conn_id=f"hpc_{name}")
    assert hook.host_key is not None
    assert hook.no_host_key_check is False
    assert hook.port == conn["port"] != 22


@pytest.mark.integration
@pytest.mark.parametrize("name", CLUSTERS)
def test_job_completes(clusters: dict[str, Cluster], name: str) -> None:
    cluster = clusters[name]
    job_id, job_name, workdir = cluster.submit('echo "hello from $SLURM_CLUSTER_NAME job $SLURM_JOB_ID"')
    cluster.wait_gone(job_id)
    record = cluster.sacct(job_id, job_name)
    assert (record["JobID"], record["State"], record["ExitCode"]) == (job_id, "COMPLETED", "0:0"), record
    assert cluster.check(f"cat {workdir}/out.txt") == f"hello from {name} job {job_id}\n"


@pytest.mark.integration
@pytest.mark.parametrize("name", CLUSTERS)
def test_job_exit_code_is_reported(clusters: dict[str, Cluster], name: str) -> None:
    cluster = clusters[name]
    job_id, job_name, workdir = cluster.submit("echo before failing\nexit 3")
    cluster.wait_gone(job_id)
    record = cluster.sacct(job_id, job_name)
    assert (record["State"], record["ExitCode"]) == ("FAILED", "3:0"), record
    assert cluster.check(f"cat {workdir}/out.txt") == "before failing\n"


@pytest.mark.integration
def test_clusters_are_distinct(clusters: dict[str, Cluster]) -> None:
    for name in CLUSTERS:
        cluster = clusters[name]
        config = cluster.check("scontrol show config")
        names = [
            line.split("=", 1)[1].strip() for line in config.splitlines() if line.startswith("ClusterName")
        ]
        assert names == [name], f"sshd of {name} (port {cluster.port}) reaches cluster {names}"
        assert cluster.check("sinfo -h -o %P").split() == PARTITIONS[name]
        nodes = cluster.check("sinfo -h -N -o %N").split()
        assert nodes and all(node.startswith(f"{name}-n") for node in nodes), nodes
    assert clusters["alpha"].port != clusters["beta"].port


@pytest.mark.integration
def test_wrong_host_key_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # paramiko also trusts ~/.ssh/known_hosts: an empty home keeps the pinned key the only judge
    monkeypatch.setenv("HOME", str(tmp_path))
    alpha = bed_connection("hpc_alpha")
    beta_key = bed_connection("hpc_beta")["extra"]["host_key"]
    assert beta_key != alpha["extra"]["host_key"], "alpha and beta must have their own host keys"
    wrong = {**alpha, "extra": {**alpha["extra"], "host_key": beta_key}}
    monkeypatch.setenv("AIRFLOW_CONN_HPC_WRONG_KEY", json.dumps(wrong))
    hook = SSHHook(ssh_conn_id="hpc_wrong_key", conn_retry_attempts=1)
    with pytest.raises(paramiko.BadHostKeyException):
        hook.get_conn()
    # the same connection with the right key does connect (the failure above is the key, nothing else)
    monkeypatch.setenv("AIRFLOW_CONN_HPC_WRONG_KEY", json.dumps(alpha))
    client = SSHHook(ssh_conn_id="hpc_wrong_key", conn_retry_attempts=1).get_conn()
    client.close()


@pytest.mark.integration
def test_test_user_can_write_its_work_dir(clusters: dict[str, Cluster]) -> None:
    cluster = clusters["alpha"]
    probe = f"urgentflow/.probe-{uuid.uuid4().hex[:8]}"
    out = cluster.check(f"id -un && touch {shlex.quote(probe)} && rm {shlex.quote(probe)} && echo ok")
    assert out.split() == ["urgent", "ok"]
