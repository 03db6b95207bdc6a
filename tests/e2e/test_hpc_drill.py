"""BatchJobOperator in a real runtime on the real Slurm test bed: ensembles, failures, restarts."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from airflow_client import AirflowClient, runtime_dir
from figures import report
from recovery import seconds_until_moving, wait_until_submitting

from operators.catalog.catalog import Catalog, Producer
from operators.catalog.notices import NoticeCatalog
from operators.hpc.hook import BatchHook, job_name, job_workdir
from operators.hpc.spec import JobSpec

pytestmark = pytest.mark.e2e
DAG = "hpc_drill"
WORKER_DAG = "hpc_drill_worker"  # members submitted from workers (start_from_trigger=False)


def run_drill(airflow: AirflowClient, conf: dict, timeout: float = 600) -> tuple[str, dict, list[dict]]:
    airflow.wait_for_dag(DAG, timeout=90)
    airflow.unpause(DAG)
    run_id = airflow.trigger(DAG, conf)["dag_run_id"]
    final = airflow.wait_for_run(DAG, run_id, timeout=timeout)
    return run_id, final, airflow.task_instances(DAG, run_id)


def jobs_of_run(airflow: AirflowClient, run_id: str, members: int, dag_id: str = DAG) -> list[dict]:
    return [airflow.xcom(dag_id, run_id, "member", key="batch_job", map_index=i) for i in range(members)]


def recorded_job(airflow: AirflowClient, run_id: str, map_index: int = 0, timeout: float = 60) -> dict:
    """The member's ``batch_job`` record once its trigger has submitted it (a member is deferred before
    its job is submitted: the scheduler hands it to the triggerer at once)."""
    deadline = time.monotonic() + timeout
    while not (job := airflow.xcom(DAG, run_id, "member", key="batch_job", map_index=map_index)):
        assert time.monotonic() < deadline, (
            f"member {map_index} of {run_id} recorded no job within {timeout} s"
        )
        time.sleep(0.5)
    return job


def submitted_names(machine: str, names: set[str]) -> list[str]:
    """Every job sacct knows with one of ``names``: a duplicate submission shows twice."""
    out = BatchHook(machine).transport.run("sacct -X -n -P -a -S now-2hours -o JobName%200,JobID").stdout
    return [line.split("|")[0] for line in out.splitlines() if line.split("|")[0] in names]


def published_outputs(catalog: Catalog, run_id: str, jobs: list[dict]) -> list[str]:
    """The drill's catalog rows: one input, one output per member with its producer and lineage."""
    rows = catalog.datasets_of_run(DAG, run_id)
    (source,) = [r for r in rows if r["task_id"] == "make_input"]
    outputs = sorted((r for r in rows if r["task_id"] == "publish"), key=lambda r: r["map_index"])
    assert [r["map_index"] for r in outputs] == list(range(len(jobs)))
    for row, job in zip(outputs, jobs, strict=True):
        assert (row["machine"], row["job_id"]) == (job["machine"], job["job_id"])
        assert row["key"].endswith(f"/member-{row['map_index']}.out") and len(row["sha256"]) == 64
        assert catalog.inputs_of(row["id"]) == [source["id"]]
    return [r["key"] for r in outputs]


def wait_for_verification(airflow: AirflowClient, keys: list[str], since: str, timeout: float = 180) -> None:
    """``verify_published`` (scheduled on the Asset the publish tasks emit) must re-check every key;
    none of its runs queued since ``since`` (ISO time) may fail."""
    deadline = time.monotonic() + timeout
    verified: set[str] = set()
    while time.monotonic() < deadline:
        for run in airflow.list_runs("verify_published"):
            if (run.get("queued_at") or "") < since:
                continue
            if run["state"] == "failed":
                pytest.fail(f"verify_published run {run['dag_run_id']} failed")
            if run["state"] == "success":
                verified |= set(airflow.xcom("verify_published", run["dag_run_id"], "verify")["keys"])
        if set(keys) <= verified:
            return
        time.sleep(2)
    pytest.fail(f"not verified within {timeout} s: {sorted(set(keys) - verified)}")


def test_ensemble_of_twenty_on_alpha(airflow: AirflowClient) -> None:
    airflow.wait_for_dag("verify_published", timeout=90)
    airflow.unpause("verify_published")  # before the events: a paused DAG is not queued for them
    run_id, final, tis = run_drill(airflow, {"machine": "alpha", "members": 20, "seconds": 1})
    assert final["state"] == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]
    jobs = jobs_of_run(airflow, run_id, 20)
    assert len({j["job_id"] for j in jobs}) == 20
    names = {j["name"] for j in jobs}
    assert sorted(submitted_names("alpha", names)) == sorted(names), "each member submitted exactly once"
    summary = airflow.xcom(DAG, run_id, "summarize")
    assert summary["states"] == ["COMPLETED"] and summary["members"] == 20
    # every job is in the catalog with its state history
    catalog = Catalog()
    for job in jobs:
        states = [h["state"] for h in catalog.job_history("alpha", job["job_id"])]
        assert "SUBMITTED" in states and "COMPLETED" in states, (job["job_id"], states)
    # each member's output went back to the store, catalogued with lineage, and was re-verified
    wait_for_verification(airflow, published_outputs(catalog, run_id, jobs), since=final["start_date"])


def test_members_whose_jobs_end_at_once_succeed_on_their_first_try(airflow: AirflowClient) -> None:
    """Jobs that end while their task is still deferring: the trigger fires within a second, the task
    resumes (same try) before the scheduler has read the deferring process's exit. Airflow 3.3.2's
    LocalExecutor then took that late exit for a task killed externally ("state mismatch": retried,
    or failed without retries); the runtime's executor knows the resumed run is out. Before: 3 of 32
    members retried in 4 runs of 8 (no settle hold); after: 0 of 64."""
    members, runs = 8, 3
    for _ in range(runs):
        run_id, final, tis = run_drill(airflow, {"machine": "alpha", "members": members, "seconds": 0})
        tries = {t["map_index"]: (t["state"], t["try_number"]) for t in tis if t["task_id"] == "member"}
        assert final["state"] == "success" and set(tries.values()) == {("success", 1)}, tries
        mismatches = airflow.request(
            "GET", "/api/v2/eventLogs", params={"dag_id": DAG, "run_id": run_id, "event": "state mismatch"}
        )
        assert mismatches["total_entries"] == 0, mismatches["event_logs"]


@pytest.mark.exclusive("gamma")  # gamma has 2 slots
def test_grid_engine_machine_runs_an_ensemble(airflow: AirflowClient) -> None:
    """The second batch system behind the same operator: 3 members on gamma's 2 slots (one queues)."""
    run_id, final, tis = run_drill(airflow, {"machine": "gamma", "members": 3, "seconds": 2})
    assert final["state"] == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]
    jobs = jobs_of_run(airflow, run_id, 3)
    assert {j["machine"] for j in jobs} == {"gamma"} and len({j["job_id"] for j in jobs}) == 3
    catalog = Catalog()
    for job in jobs:
        states = [h["state"] for h in catalog.job_history("gamma", job["job_id"])]
        assert "COMPLETED" in states, states
    published_outputs(catalog, run_id, jobs)


# gamma has 2 slots: its case runs alone
@pytest.mark.parametrize("machine", ["beta", pytest.param("gamma", marks=pytest.mark.exclusive("gamma"))])
def test_failing_member_names_state_exit_code_and_stderr(airflow: AirflowClient, machine: str) -> None:
    run_id, final, tis = run_drill(
        airflow, {"machine": machine, "members": 2, "seconds": 0, "fail_members": [1]}
    )
    assert final["state"] == "failed"
    states = {(t["task_id"], t["map_index"]): t["state"] for t in tis}
    assert states[("member", 0)] == "success"
    assert states[("member", 1)] == "failed"
    log = "\n".join(airflow.task_log(DAG, run_id, "member", try_number=2, map_index=1))
    assert "ended FAILED" in log and "exit code 3" in log and "member 1 drill failure" in log, log[-3000:]
    if machine == "beta":  # completion_notice: true in the machine catalog
        for job in jobs_of_run(airflow, run_id, 2):
            notices = NoticeCatalog().notices_of("beta", job["name"])
            assert notices, f"{job['name']} ended without its notice reaching the API server"


def kill_and_restart(component: str) -> None:
    """kill -9 the component's whole process session (a scheduler's LocalExecutor workers with it), then
    ``scripts/runtime.py start`` (it starts what is missing)."""
    pid = int((runtime_dir() / "run" / f"{component}.pid").read_text().split()[0])
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    # as the e2e fixture does: the runtime configures itself, AIRFLOW* of the test process stay out
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    runtime = Path(__file__).resolve().parents[2] / "scripts" / "runtime.py"
    restarted = subprocess.run(
        [sys.executable, str(runtime), "start"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr


def test_scheduler_killed_while_members_submit_moves_again_within_a_minute(airflow: AirflowClient) -> None:
    """The scheduler's session is killed while members are in workers submitting (the drill whose members
    submit from workers): after the restart
    every member is watched again (deferred) within 60 s, each by the one job it submitted (re-attached,
    never submitted twice)."""
    members = 8
    airflow.wait_for_dag(WORKER_DAG, timeout=90)
    airflow.unpause(WORKER_DAG)
    run_id = airflow.trigger(WORKER_DAG, {"machine": "alpha", "members": members, "seconds": 40})[
        "dag_run_id"
    ]
    at_kill = wait_until_submitting(airflow, WORKER_DAG, run_id, "member", members)
    kill_and_restart("scheduler")
    restarted = time.monotonic()
    moved = seconds_until_moving(airflow, WORKER_DAG, run_id, "member", restarted)
    report(
        f"scheduler killed with members {at_kill}; all members moving again {moved:.1f} s after the restart"
    )
    assert moved <= 60, f"members stuck for {moved:.0f} s after the restart"
    final = airflow.wait_for_run(WORKER_DAG, run_id, timeout=400)
    assert final["state"] == "success"
    jobs = jobs_of_run(airflow, run_id, members, WORKER_DAG)
    names = {j["name"] for j in jobs}
    assert sorted(submitted_names("alpha", names)) == sorted(names), "re-attached: one job per member"


@pytest.mark.parametrize("component", ["triggerer", "scheduler"])
def test_component_killed_mid_run_loses_and_duplicates_nothing(
    airflow: AirflowClient, component: str
) -> None:
    members = 6
    airflow.wait_for_dag(DAG, timeout=90)
    airflow.unpause(DAG)
    run_id = airflow.trigger(DAG, {"machine": "alpha", "members": members, "seconds": 25})["dag_run_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        deferred = [
            t
            for t in airflow.task_instances(DAG, run_id)
            if t["task_id"] == "member" and t["state"] == "deferred"
        ]
        if len(deferred) == members:
            break
        time.sleep(1)
    else:
        pytest.fail("members did not all defer within 120 s")

    fault_at = time.monotonic()
    kill_and_restart(component)
    final = airflow.wait_for_run(DAG, run_id, timeout=400)
    assert final["state"] == "success"
    report(
        f"{component} killed with every member deferred: run succeeded {time.monotonic() - fault_at:.1f} s after"
    )
    jobs = jobs_of_run(airflow, run_id, members)
    names = {j["name"] for j in jobs}
    assert sorted(submitted_names("alpha", names)) == sorted(names), "no job lost or submitted twice"


def sacct_states(machine: str, name: str) -> list[str]:
    out = (
        BatchHook(machine)
        .transport.run(f"sacct -X -n -P -a -S now-2hours -o JobName%200,State --name={name}")
        .stdout
    )
    return [line.split("|")[1] for line in out.splitlines() if line.startswith(f"{name}|")]


def test_timeout_is_resubmitted_with_more_walltime(airflow: AirflowClient) -> None:
    conf = {
        "machine": "alpha",
        "members": 1,
        "seconds": 75,
        "walltime_minutes": 1,
        "timeout_resubmit_factor": 2,
        "max_walltime_minutes": 3,
    }
    run_id, final, _tis = run_drill(airflow, conf, timeout=600)
    assert final["state"] == "success"
    (job,) = jobs_of_run(airflow, run_id, 1)
    assert job["walltime_minutes"] == 2
    assert sorted(sacct_states("alpha", job["name"])) == ["COMPLETED", "TIMEOUT"]


def test_marking_a_deferred_member_failed_cancels_its_job(airflow: AirflowClient) -> None:
    airflow.wait_for_dag(DAG, timeout=90)
    airflow.unpause(DAG)
    run_id = airflow.trigger(DAG, {"machine": "alpha", "members": 1, "seconds": 600})["dag_run_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = {
            t["task_id"]: t["state"] for t in airflow.task_instances(DAG, run_id) if t["map_index"] == 0
        }
        if states.get("member") == "deferred":
            break
        time.sleep(1)
    else:
        pytest.fail("the member did not defer within 120 s")
    # A trigger's on_kill runs only once a triggerer has started it and it has submitted (and recorded)
    # the job; marking the task before that leaves the job to the orphan sweep, not to on_kill.
    job = recorded_job(airflow, run_id)
    airflow.request(
        "PATCH",
        f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/member/0",
        json={"new_state": "failed"},
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        ended = sacct_states("alpha", job["name"])
        if len(ended) == 1 and ended[0].startswith("CANCELLED"):  # "CANCELLED by <uid>"
            return
        time.sleep(2)
    pytest.fail(
        f"job {job['job_id']} still {sacct_states('alpha', job['name'])} after marking the task failed"
    )


@pytest.mark.parametrize(("code", "expected"), [(0, "success"), (5, "failed")])
def test_sensor_follows_a_job_started_outside_airflow(
    airflow: AirflowClient, code: int, expected: str
) -> None:
    from operators.hpc.spec import JobSpec

    hook = BatchHook("beta")
    name = f"uf-console-{int(time.time() * 1000)}"
    spec = JobSpec(
        name=name,
        command=["bash", "-c", f"sleep 3; exit {code}"],
        workdir=f"{hook.machine.workdir}/console/{name}",
    )
    job_id, _ = hook.submit(spec)
    airflow.wait_for_dag("hpc_watch_job", timeout=90)
    airflow.unpause("hpc_watch_job")
    run_id = airflow.trigger("hpc_watch_job", {"machine": "beta", "job_id": job_id})["dag_run_id"]
    final = airflow.wait_for_run("hpc_watch_job", run_id, timeout=300)
    assert final["state"] == expected
    if expected == "failed":
        log = "\n".join(airflow.task_log("hpc_watch_job", run_id, "wait_for_job", try_number=2))
        assert f"job {job_id} on beta ended FAILED" in log and "exit code 5" in log, log[-2000:]


def test_auto_machine_is_selected_and_the_decision_is_kept(airflow: AirflowClient) -> None:
    run_id, final, tis = run_drill(airflow, {"machine": "auto", "members": 2, "seconds": 0})
    assert final["state"] == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]
    chosen = airflow.xcom(DAG, run_id, "select_machine")
    jobs = jobs_of_run(airflow, run_id, 2)
    assert {j["machine"] for j in jobs} == {chosen["machine"]}
    (decision,) = Catalog().selections_of_run(DAG, run_id)
    considered = {c["machine"] for c in decision["candidates"]}
    assert {"alpha", "beta", "local"} <= considered
    assert decision["chosen"]["machine"] == chosen["machine"]


def test_orphan_sweep_cancels_jobs_no_task_instance_owns_and_spares_watched_ones(
    airflow: AirflowClient,
) -> None:
    """A job whose task instance does not exist (as after a run or task deleted, or marked failed before
    any triggerer watched it) is cancelled by ``batch_orphan_sweep``, marked judged and recorded
    CANCELLED; the job of a member that is deferred on it is left running."""
    airflow.wait_for_dag(DAG, timeout=90)
    airflow.unpause(DAG)
    # the watched member's job (30 s) outlives the sweep run (~10 s) started once it is recorded
    run_id = airflow.trigger(DAG, {"machine": "alpha", "members": 1, "seconds": 30})["dag_run_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        member = {
            t["map_index"]: t["state"]
            for t in airflow.task_instances(DAG, run_id)
            if t["task_id"] == "member"
        }
        if member.get(0) == "deferred":
            break
        time.sleep(1)
    else:
        pytest.fail("the member did not defer within 120 s")
    watched = recorded_job(airflow, run_id)

    hook = BatchHook("alpha")
    name = job_name(DAG, run_id, "member", 7)  # a task instance this run does not have
    spec = JobSpec(
        name=name,
        command=["sleep", "600"],
        workdir=job_workdir(hook.machine.workdir, DAG, run_id, "member", 7),
        walltime_minutes=15,
        partition=hook.machine.default_partition,
    )
    orphan_id, _ = hook.submit(spec)
    Catalog().record_job(
        machine="alpha",
        native_id=orphan_id,
        name=name,
        state="SUBMITTED",
        producer=Producer(dag_id=DAG, run_id=run_id, task_id="member", map_index=7),
    )

    airflow.wait_for_dag("batch_orphan_sweep", timeout=90)
    airflow.unpause("batch_orphan_sweep")
    sweep_run = airflow.trigger("batch_orphan_sweep", {"min_age_seconds": 0})["dag_run_id"]
    assert airflow.wait_for_run("batch_orphan_sweep", sweep_run, timeout=180)["state"] == "success"
    swept = airflow.xcom("batch_orphan_sweep", sweep_run, "sweep")
    assert {"machine": "alpha", "job_id": orphan_id, "ti_state": "gone", "recorded": "CANCELLED"} in swept
    assert watched["job_id"] not in {s["job_id"] for s in swept}
    deadline = time.monotonic() + 60
    while not all(s.startswith("CANCELLED") for s in sacct_states("alpha", name) or ["?"]):
        assert time.monotonic() < deadline, sacct_states("alpha", name)
        time.sleep(2)
    assert [
        s for s in sacct_states("alpha", watched["name"]) if not s.startswith(("RUNNING", "COMPLETED"))
    ] == []
    assert hook.find(spec) is None, "the cancelled job is judged: a clear of the task would submit afresh"
    jobs = {r["native_id"]: r["state"] for r in Catalog().jobs_on("alpha", 200)}
    assert jobs[orphan_id] == "CANCELLED" and jobs[watched["job_id"]] != "CANCELLED"
    assert airflow.wait_for_run(DAG, run_id, timeout=300)["state"] == "success"


def queued_ids(name: str) -> list[str]:
    return BatchHook("alpha").transport.run(f"squeue -h -n {name} -o %i").stdout.split()


def catch_after_submit(airflow: AirflowClient, run_id: str, name: str, timeout: float = 120) -> bool:
    """Step the member's task process in 20 ms slices (SIGSTOP/SIGCONT) until its job exists on the
    machine while the task has not deferred yet, then kill the task process and its supervisor (the
    worker's side of the task) while frozen. False when the member deferred before it could be caught."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (ti,) = [t for t in airflow.task_instances(WORKER_DAG, run_id) if t["task_id"] == "member"]
        if ti["state"] in ("deferred", "success"):
            return False
        if ti["state"] != "running" or not ti["pid"]:
            time.sleep(0.1)
            continue
        pid = int(ti["pid"])
        supervisor = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        os.kill(pid, signal.SIGSTOP)
        (now,) = [t for t in airflow.task_instances(WORKER_DAG, run_id) if t["task_id"] == "member"]
        if queued_ids(name) and now["state"] == "running":
            os.kill(supervisor, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
            return True
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.02)
    pytest.fail(f"the member of {run_id} neither submitted nor deferred within {timeout} s")


def caught_after_submit(
    airflow: AirflowClient, dag_id: str, catch: Callable[[AirflowClient, str, str], bool]
) -> tuple[str, str, str]:
    """One-member runs of ``dag_id`` until ``catch`` kills the submitting side between the submission
    and its record (the window is short: at most three tries); ``(run_id, job name, job id)`` of the
    caught run, which must then succeed."""
    airflow.wait_for_dag(dag_id, timeout=90)
    airflow.unpause(dag_id)
    for _ in range(3):
        run_id = airflow.trigger(dag_id, {"machine": "alpha", "members": 1, "seconds": 20})["dag_run_id"]
        name = job_name(dag_id, run_id, "member", 0)
        if catch(airflow, run_id, name):
            (first,) = queued_ids(name)
            assert airflow.wait_for_run(dag_id, run_id, timeout=400)["state"] == "success"
            return run_id, name, first
        airflow.wait_for_run(dag_id, run_id, timeout=300)
    pytest.fail(f"three members of {dag_id} got past the window before they could be caught")


def test_worker_killed_after_submitting_reattaches_to_its_job_by_name(airflow: AirflowClient) -> None:
    """The member's task dies between its job's submission and its deferral: the retry finds the job by
    its name on the machine and re-attaches; the job runs once and the run succeeds."""
    run_id, name, first = caught_after_submit(airflow, WORKER_DAG, catch_after_submit)
    (ti,) = [t for t in airflow.task_instances(WORKER_DAG, run_id) if t["task_id"] == "member"]
    job = airflow.xcom(WORKER_DAG, run_id, "member", key="batch_job", map_index=0)
    assert ti["try_number"] == 2 and job["reattached"] is True and job["job_id"] == first, (ti, job)
    assert submitted_names("alpha", {name}) == [name], "submitted once"


def catch_triggerer_after_submit(
    airflow: AirflowClient, run_id: str, name: str, timeout: float = 120
) -> bool:
    """Step the triggerer's whole process session in 20 ms slices (SIGSTOP/SIGCONT) until the member's
    job exists on the machine while its task has no ``batch_job`` record yet, then kill the session while
    frozen and start the triggerer again. False when the job was recorded before it could be caught."""
    pid = int((runtime_dir() / "run" / "triggerer.pid").read_text().split()[0])
    group = os.getpgid(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if airflow.xcom(DAG, run_id, "member", key="batch_job", map_index=0):
            return False
        os.killpg(group, signal.SIGSTOP)
        try:
            if queued_ids(name) and not airflow.xcom(DAG, run_id, "member", key="batch_job", map_index=0):
                kill_and_restart("triggerer")
                return True
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGCONT)
        time.sleep(0.02)
    pytest.fail(f"the member of {run_id} was neither submitted nor recorded within {timeout} s")


def test_triggerer_killed_after_submitting_reattaches_to_the_job_by_name(airflow: AirflowClient) -> None:
    """The triggerer dies between a member's batched submission and its record (XCom, catalog): the
    member's trigger runs again in the new triggerer, finds the job by its name and re-attaches; the job
    runs once and the run succeeds."""
    run_id, name, first = caught_after_submit(airflow, DAG, catch_triggerer_after_submit)
    job = airflow.xcom(DAG, run_id, "member", key="batch_job", map_index=0)
    assert job["reattached"] is True and job["job_id"] == first, job
    assert submitted_names("alpha", {name}) == [name], "submitted once"
