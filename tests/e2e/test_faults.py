"""Faults injected while an ensemble runs on the real test bed: the machine's sshd killed (every
session with it) or stalled for 30 s, its slurmctld killed, the catalog's Postgres restarted, Airflow's
own Postgres killed (then the runtime restarted). Each run
must end in success with exactly one Slurm job per member; while sshd is down the triggerer must not
flood the host (TCP connection attempts are counted by an iptables rule).

The scheduler, triggerer and worker kills are in test_hpc_drill.py and test_scaled_mode.py; the S3
server stopped mid-upload in tests/integration/test_s3_outage.py."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from airflow_client import AirflowClient
from figures import report

from operators.catalog.catalog import Catalog
from operators.home import urgentflow_home
from operators.hpc.hook import BatchHook
from operators.hpc.spec import JobSpec

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DAG, MACHINE, MEMBERS, SSH_PORT = "hpc_drill", "alpha", 6, 2222
OUTAGE_S = 30
COUNTER = "uf-fault-connects"


def testbed(*args: str) -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "testbed"), *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def pid_of(path: Path) -> int:
    return int(path.read_text().split()[0])


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (sshd forks one process per session)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        children = Path(f"/proc/{p}/task/{p}/children")
        with contextlib.suppress(OSError):
            todo += [int(c) for c in children.read_text().split()]
    return found


def signal_tree(pid: int, sig: int) -> None:
    for p in tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, sig)


@contextlib.contextmanager
def connection_counter() -> Iterator[Callable[[], int]]:
    """Count new TCP connections to the machine's sshd (SYN packets on loopback) while inside."""
    rule = [
        "INPUT",
        "-i",
        "lo",
        "-p",
        "tcp",
        "--dport",
        str(SSH_PORT),
        "--syn",
        "-m",
        "comment",
        "--comment",
        COUNTER,
    ]
    subprocess.run(["iptables", "-I", *rule, "-j", "ACCEPT"], check=True, timeout=30)

    def count() -> int:
        out = subprocess.run(
            ["iptables", "-L", "INPUT", "-v", "-x", "-n"], capture_output=True, text=True, timeout=30
        )
        (line,) = [ln for ln in out.stdout.splitlines() if COUNTER in ln]
        return int(line.split()[0])

    try:
        yield count
    finally:
        subprocess.run(["iptables", "-D", *rule, "-j", "ACCEPT"], check=False, timeout=30)


def start_ensemble(
    airflow: AirflowClient, seconds: int, machine: str = MACHINE, members: int = MEMBERS
) -> str:
    """An hpc_drill run on ``machine`` whose members have all been submitted (their job recorded) and
    are watched (deferred). Members defer at once, straight to the triggerer, and submit from there."""
    airflow.wait_for_dag(DAG, timeout=90)
    airflow.unpause(DAG)
    run_id = airflow.trigger(DAG, {"machine": machine, "members": members, "seconds": seconds})["dag_run_id"]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        tis = [t for t in airflow.task_instances(DAG, run_id) if t["task_id"] == "member"]
        if (
            len(tis) == members
            and all(t["state"] == "deferred" for t in tis)
            and all(airflow.xcom(DAG, run_id, "member", key="batch_job", map_index=i) for i in range(members))
        ):
            return str(run_id)
        time.sleep(1)
    pytest.fail("members were not all submitted and deferred within 180 s")


def assert_one_job_per_member(
    airflow: AirflowClient,
    run_id: str,
    fault_at: float,
    lost_ok: bool = False,
    on_poll: Callable[[dict, list[dict]], None] | None = None,
) -> None:
    """The run succeeded and every member's job completed exactly once. With ``lost_ok``, a member may
    have one earlier job that Slurm itself lost in a slurmctld crash: submitted before the controller
    saved its state, then purged at its restart (accounting keeps it PENDING: judged UNKNOWN) or its
    orphaned step killed (FAILED); the member's retry then submitted it once more. Or Slurm lost the job
    from its queue *and* its accounting while its script ran on to the end: no record at all, and the
    member was judged by the job's exit file (the judge of last resort), once."""
    final = airflow.wait_for_run(DAG, run_id, timeout=600, on_poll=on_poll)
    states = {(t["task_id"], t["map_index"]): t["state"] for t in airflow.task_instances(DAG, run_id)}
    assert final["state"] == "success", states
    report(f"run {run_id} succeeded {time.monotonic() - fault_at:.1f} s after the fault")
    names = {
        airflow.xcom(DAG, run_id, "member", key="batch_job", map_index=i)["name"] for i in range(MEMBERS)
    }
    out = (
        BatchHook(MACHINE).transport.run("sacct -X -n -P -a -S now-2hours -o JobName%200,JobID,State").stdout
    )
    by_name: dict[str, list[str]] = {name: [] for name in names}
    for line in out.splitlines():
        name, _, state = line.split("|")
        if name in by_name:
            by_name[name].append(state)
    by_exit_file = {
        r["name"]
        for r in (airflow.xcom(DAG, run_id, "member", map_index=i) for i in range(MEMBERS))
        if r and r.get("native_state") == "exit-file"
    }
    for name, jobs in by_name.items():
        if lost_ok and not jobs and name in by_exit_file:
            report(f"{name}: lost from Slurm's queue and accounting, completed by its exit file")
            continue
        assert jobs.count("COMPLETED") == 1, f"{name}: {jobs} (one job must have completed, once)"
        assert len(jobs) == 1 or (lost_ok and len(jobs) == 2 and jobs[-1] == "COMPLETED"), f"{name}: {jobs}"
    rows = [j for j in Catalog().jobs_of_run(DAG, run_id) if j["task_id"] == "member"]
    assert [r["state"] for r in rows].count("COMPLETED") == MEMBERS, rows
    assert lost_ok or len(rows) == MEMBERS, rows


def sshd_pid() -> int:
    return pid_of(urgentflow_home() / "testbed" / "ssh" / MACHINE / "sshd.pid")


@pytest.mark.exclusive("alpha")  # stops alpha's sshd
def test_sshd_killed_for_30_s_reconnects_without_a_flood(airflow: AirflowClient) -> None:
    run_id = start_ensemble(airflow, seconds=OUTAGE_S + 10)
    fault_at = time.monotonic()
    with connection_counter() as connects:
        signal_tree(sshd_pid(), signal.SIGKILL)  # the listener and every session: connections drop
        time.sleep(OUTAGE_S)
        during = connects()
        testbed("start", "sshd")
    # 6 jobs polled each 2 s by per-job pollers would be ~90 connections in 30 s; ours reconnects with
    # backoff under a 10-per-minute cap (plus the minutely machine_status probe)
    assert during <= 15, f"{during} connection attempts to the dead sshd in {OUTAGE_S} s"
    assert_one_job_per_member(airflow, run_id, fault_at)


@pytest.mark.exclusive("alpha")  # stalls alpha's sshd
def test_sshd_stalled_for_30_s_is_waited_out(airflow: AirflowClient) -> None:
    run_id = start_ensemble(airflow, seconds=10)
    pid = sshd_pid()
    fault_at = time.monotonic()
    signal_tree(pid, signal.SIGSTOP)  # a network stall: nothing answers, nothing is refused
    try:
        time.sleep(OUTAGE_S)
    finally:
        signal_tree(pid, signal.SIGCONT)
    assert_one_job_per_member(airflow, run_id, fault_at)


@pytest.mark.exclusive("alpha")  # stops alpha's slurmctld
def test_slurmctld_killed_and_restarted_keeps_every_job_tracked(airflow: AirflowClient) -> None:
    run_id = start_ensemble(airflow, seconds=30)
    ctld = urgentflow_home() / "testbed" / "slurm" / MACHINE / "run" / "slurmctld.pid"
    fault_at = time.monotonic()
    os.kill(pid_of(ctld), signal.SIGKILL)
    time.sleep(10)
    testbed("start", "slurm")
    try:
        assert_one_job_per_member(airflow, run_id, fault_at, lost_ok=True, on_poll=release_jobs_held_by_slurm)
    finally:
        resume_drained_nodes()


def slurm_env() -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": str(urgentflow_home() / "testbed" / "slurm" / MACHINE / "slurm.conf")}


def resume_drained_nodes() -> None:
    """The admin's other chore after a controller crash: a node that reported jobs the restarted
    controller had forgotten is drained ("Duplicate jobid"); put it back in service for later tests."""
    out = subprocess.run(
        ["sinfo", "-h", "-N", "-t", "drained,draining", "-o", "%N"],
        capture_output=True,
        text=True,
        env=slurm_env(),
        timeout=30,
    ).stdout
    for node in sorted(set(out.split())):
        subprocess.run(
            ["scontrol", "update", f"nodename={node}", "state=resume"],
            env=slurm_env(),
            timeout=30,
            check=False,
        )


def release_jobs_held_by_slurm(run: dict, tis: list[dict]) -> None:
    """What the site's admin does after a controller crash: Slurm requeues a job whose launch failed
    during the crash and holds it ("launch failed requeued held", an admin hold a user cannot release);
    urgentflow keeps watching such a job (PENDING, with that reason) until it is released."""
    env = slurm_env()
    out = subprocess.run(
        ["squeue", "-h", "-t", "PD", "-o", "%i|%r"], capture_output=True, text=True, env=env, timeout=30
    ).stdout
    for line in out.splitlines():
        job_id, _, reason = line.partition("|")
        if "launch failed requeued held" in reason:
            subprocess.run(["scontrol", "release", job_id], env=env, timeout=30, check=False)


@pytest.mark.exclusive("catalog")  # restarts the machine's Postgres
def test_catalog_postgres_restart_mid_run_leaves_the_catalog_consistent(airflow: AirflowClient) -> None:
    run_id = start_ensemble(airflow, seconds=15)
    # the machine's Postgres (the catalog's server; Airflow's metadata DB is the embedded one)
    version, cluster = subprocess.run(
        ["pg_lsclusters", "-h"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()[:2]
    fault_at = time.monotonic()
    subprocess.run(["pg_ctlcluster", version, cluster, "restart"], check=True, timeout=120)
    assert_one_job_per_member(airflow, run_id, fault_at)


def test_metadata_postgres_killed_then_runtime_restarted_loses_nothing(airflow: AirflowClient) -> None:
    run_id = start_ensemble(airflow, seconds=20)
    postmaster = urgentflow_home() / "runtime" / "pg" / "postmaster.pid"
    fault_at = time.monotonic()
    os.kill(pid_of(postmaster), signal.SIGKILL)  # Airflow's own database dies under the running components
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    restarted = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "runtime.py"), "restart"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert_one_job_per_member(airflow, run_id, fault_at)


GE_MACHINE, GE_MEMBERS = "gamma", 4
GE_SPOOL = Path("/var/spool/gridengine")


def ge_daemon_pid(daemon: str) -> int:
    if daemon == "qmaster":
        return pid_of(GE_SPOOL / "qmaster" / "qmaster.pid")
    (found,) = [f for f in (GE_SPOOL / "execd").glob("*/execd.pid") if Path(f"/proc/{pid_of(f)}").exists()]
    return pid_of(found)


@pytest.mark.exclusive("gamma")  # stops a Grid Engine daemon
@pytest.mark.parametrize("daemon", ["qmaster", "execd"])
def test_grid_engine_daemon_killed_mid_run_keeps_every_job_tracked(
    airflow: AirflowClient, daemon: str
) -> None:
    """sge_qmaster (the controller: qstat fails meanwhile) or sge_execd (the node daemon: running jobs'
    shepherds live on) killed -9 while an ensemble runs on gamma, restarted 10 s later: the run succeeds
    with exactly one completed job per member."""
    run_id = start_ensemble(airflow, seconds=20, machine=GE_MACHINE, members=GE_MEMBERS)
    killed_at = time.monotonic()
    os.kill(ge_daemon_pid(daemon), signal.SIGKILL)
    time.sleep(10)
    testbed("start", "gridengine")
    final = airflow.wait_for_run(DAG, run_id, timeout=600)
    states = {(t["task_id"], t["map_index"]): t["state"] for t in airflow.task_instances(DAG, run_id)}
    assert final["state"] == "success", states
    report(f"{daemon} killed: run succeeded {time.monotonic() - killed_at:.1f} s after the kill")
    rows = [j for j in Catalog().jobs_of_run(DAG, run_id) if j["task_id"] == "member"]
    assert sorted(r["map_index"] for r in rows) == list(range(GE_MEMBERS)), "one job per member"
    assert {r["state"] for r in rows} == {"COMPLETED"}, rows
    jobs = [airflow.xcom(DAG, run_id, "member", key="batch_job", map_index=i) for i in range(GE_MEMBERS)]
    assert sorted(j["job_id"] for j in jobs) == sorted(r["native_id"] for r in rows)


def scontrol(*args: str) -> None:
    done = subprocess.run(["scontrol", *args], capture_output=True, text=True, env=slurm_env(), timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.exclusive("alpha")  # fills alpha
def test_a_member_left_on_an_admin_hold_is_cancelled_and_submitted_afresh(airflow: AirflowClient) -> None:
    """The site holds a member's job (as Slurm does after a controller crash: "launch failed requeued
    held") and nobody releases it: after the hold limit the member cancels it, submits afresh in the same
    try and succeeds; both jobs are in sacct and the catalog."""
    airflow.wait_for_dag(DAG, timeout=90)
    airflow.unpause(DAG)
    hook = BatchHook(MACHINE)
    blockers = [  # both nodes taken: the member's job waits in the queue, where the site holds it
        hook.submit(
            JobSpec(
                name=f"uf-block-{i}-{os.getpid()}",
                command=["sleep", "300"],
                workdir=f"/home/urgent/urgentflow/jobs/tests/uf-block-{i}-{os.getpid()}",
                cpus_per_task=4,
                walltime_minutes=10,
                partition="debug",
            )
        )[0]
        for i in range(2)
    ]
    try:
        run_id = airflow.trigger(
            DAG, {"machine": MACHINE, "members": 1, "seconds": 2, "held_timeout_minutes": 0.25}
        )["dag_run_id"]
        deadline = time.monotonic() + 120
        job: dict | None = None
        while job is None:
            assert time.monotonic() < deadline, "the member did not submit within 120 s"
            with contextlib.suppress(Exception):
                job = airflow.xcom(DAG, run_id, "member", key="batch_job", map_index=0)
            time.sleep(0.5)
        scontrol("hold", job["job_id"])
        held_at = time.monotonic()
        pending = hook.transport.run(f"squeue -h -j {job['job_id']} -o '%T|%r'").stdout.strip()
        assert pending.startswith("PENDING|") and "held" in pending.lower(), pending
    finally:
        hook.cancel(blockers)
    final = airflow.wait_for_run(DAG, run_id, timeout=300)
    assert final["state"] == "success"
    report(f"held job replaced and its member succeeded {time.monotonic() - held_at:.1f} s after the hold")
    (ti,) = [t for t in airflow.task_instances(DAG, run_id) if t["task_id"] == "member"]
    replaced = airflow.xcom(DAG, run_id, "member", key="batch_job", map_index=0)
    assert ti["try_number"] == 1 and replaced["held_resubmits"] == 1 and replaced["job_id"] != job["job_id"]
    # by id: a job cancelled on its hold never became eligible, which sacct's time window filters out
    ids = f"{job['job_id']},{replaced['job_id']}"
    out = BatchHook(MACHINE).transport.run(f"sacct -X -n -P -j {ids} -o JobID,State").stdout
    states = dict(line.split("|") for line in out.splitlines())
    assert states[job["job_id"]].startswith("CANCELLED") and states[replaced["job_id"]] == "COMPLETED", states
    rows = {
        r["native_id"]: r["state"] for r in Catalog().jobs_of_run(DAG, run_id) if r["task_id"] == "member"
    }
    assert rows == {job["job_id"]: "CANCELLED", replaced["job_id"]: "COMPLETED"}, rows


STALL_S = 40
INCIDENT = {
    "kind": "wildfire",
    "name": "catalog stall",
    "ignition": {"lat": 37.30, "lon": -8.55},
    "region": {"min_lon": -8.65, "min_lat": 37.22, "max_lon": -8.45, "max_lat": 37.38},
    "weather": {"wind_speed_ms": 8.0, "wind_direction_deg": 300.0, "fuel_moisture": 0.07},
    "ensemble_size": 2,
    "deadline_minutes": 30,
}


def catalog_postmaster() -> int:
    data = subprocess.run(
        ["pg_lsclusters", "-h"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()[5]
    return pid_of(Path(data) / "postmaster.pid")


@pytest.mark.exclusive("catalog")  # stalls the machine's Postgres
def test_a_stalled_catalog_stalls_no_scheduling_and_every_end_state_is_recorded_after(
    airflow: AirflowClient,
) -> None:
    """The catalog's Postgres frozen (SIGSTOP, every backend) for 40 s: a run that needs no catalog is
    scheduled and succeeds meanwhile, marking a run failed through Airflow's API answers at once, and the
    exit handler records that end on its incident once the catalog is back."""
    for dag_id in ("wildfire_forecast", "quickstart"):
        airflow.wait_for_dag(dag_id, timeout=90)
    airflow.request("PATCH", "/api/v2/dags/wildfire_forecast", json={"is_paused": True})
    airflow.unpause("quickstart")
    created = airflow.request("POST", "/urgentflow/incidents", json=INCIDENT, ok=(201,))
    incident_id, run_id = created["incident_id"], created["run_id"]
    pid = catalog_postmaster()
    stalled_at = time.monotonic()
    signal_tree(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        airflow.request("PATCH", f"/api/v2/dags/wildfire_forecast/dagRuns/{run_id}", json={"state": "failed"})
        patched = time.monotonic() - t0
        quick = airflow.trigger("quickstart", {"members": 2, "size": 32, "seed": 3})["dag_run_id"]
        final = airflow.wait_for_run(
            "quickstart", quick, timeout=STALL_S - (time.monotonic() - stalled_at) - 2
        )
        ran = time.monotonic() - stalled_at
    finally:
        time.sleep(max(0.0, STALL_S - (time.monotonic() - stalled_at)))
        signal_tree(pid, signal.SIGCONT)
    assert patched < 5, f"marking a run failed waited {patched:.1f} s for the stalled catalog"
    assert final["state"] == "success", final
    report(f"catalog stalled: run failed via the API in {patched:.2f} s; quickstart succeeded {ran:.1f} s in")
    deadline = time.monotonic() + 90
    while True:
        found = airflow.request("GET", f"/urgentflow/incidents/{incident_id}")
        if found["status"] == "failed" and [r["state"] for r in found["runs"]] == ["failed"]:
            break
        assert time.monotonic() < deadline, f"the end was not recorded 90 s after the stall: {found}"
        time.sleep(2)
    report(
        f"the failed run was on its incident {time.monotonic() - stalled_at - STALL_S:.1f} s after the stall"
    )
