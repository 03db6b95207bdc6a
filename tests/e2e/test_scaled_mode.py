"""Scaled mode end to end: CeleryExecutor on the machine's Redis (broker) and Postgres (metadata and
Celery results), two Celery workers, the flagship ``wildfire_forecast`` through the REST API.

- its tasks run on the workers (its members' jobs fetch their inputs and publish their outputs
  themselves: it has no staging task); its mapped members start in the triggerer and run on no worker;
- ``hpc_drill_worker``'s staging tasks (to and from the machine) run on the ``transfer`` queue, which only
  one of the workers consumes (routing);
- a worker killed (SIGKILL, its whole session) while members run on it loses nothing: the scheduler
  finds their missing heartbeats, they are retried on the other worker, re-attach to (or submit) their
  batch job, and every member has exactly one batch job. Members that run on workers are
  ``hpc_drill_worker``'s (submitted from workers, ``start_from_trigger=False``).

Which worker ran which try is read from the workers' own logs (Celery's ``Executing workload`` line
names the task instance and try): in Airflow 3 a task instance's ``hostname`` is the host's name, the
same for two workers on one host, and the Celery task id is not in the REST API.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from airflow_client import USERNAME, AirflowClient
from connections import default_home
from figures import report
from recovery import seconds_until_moving, wait_until_submitting

from operators.catalog.catalog import Catalog
from operators.hpc.hook import BatchHook

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
RUNTIME = [sys.executable, str(ROOT / "scripts" / "runtime.py"), "--mode", "scaled"]
MEMBERS = 6


@dataclass(frozen=True)
class Flow:
    dag: str
    task: str  # the mapped BatchJobOperator
    conf: dict


FLAGSHIP = Flow(
    "wildfire_forecast",
    "simulate",
    {"ensemble_size": MEMBERS, "grid_cells": 80, "forecast_hours": 4, "viewer_ttl_minutes": 5},
)
IN_WORKERS = Flow("hpc_drill_worker", "member", {"machine": "alpha", "members": MEMBERS, "seconds": 20})
DAG = FLAGSHIP.dag
STAGING = {"stage_input", "publish"}  # hpc_drill's staging to and from the machine
# general-purpose worker (queue default) and a worker near the data (default + transfer)
GENERAL, NEAR_DATA = "uf-e2e-general", "uf-e2e-transfer"
WORKERS = {
    GENERAL: ["--queues", "default", "--concurrency", "2", "--log-port", "8795"],
    NEAR_DATA: ["--queues", "default,transfer", "--concurrency", "2", "--log-port", "8797"],
}


def scaled_dir() -> Path:
    return Path(os.environ.get("URGENTFLOW_SCALED_RUNTIME") or default_home() / "runtime-scaled")


def runtime(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # as the e2e conftest does: the runtime configures itself, AIRFLOW* of the test process stay out
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    return subprocess.run(
        [*RUNTIME, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def running_workers() -> set[str]:
    out = runtime("status", timeout=60).stdout
    return set(re.findall(r"^worker (\S+)\s+running", out, flags=re.MULTILINE))


@dataclass
class Scaled:
    client: AirflowClient
    runs: list[str]


@pytest.fixture(scope="module")
def scaled() -> Iterator[Scaled]:
    t0 = time.monotonic()
    was_running = runtime("status", timeout=60).returncode == 0
    started_workers: list[str] = []
    runs: list[str] = []
    try:
        started = runtime("start")
        if started.returncode != 0:
            pytest.fail(f"scaled start failed:\n{started.stdout}{started.stderr}", pytrace=False)
        others = running_workers() - set(WORKERS)
        if others:
            pytest.fail(
                f"the scaled instance already has workers {sorted(others)}: they would take tasks of this "
                f"test. Stop them (scripts/runtime.py --mode scaled stop-worker --name ...) first.",
                pytrace=False,
            )
        for name, options in WORKERS.items():
            worker = runtime("worker", "--name", name, *options)
            if worker.returncode != 0:
                pytest.fail(f"worker {name} did not start:\n{worker.stdout}{worker.stderr}", pytrace=False)
            started_workers.append(name)
        password = json.loads((scaled_dir() / "passwords.json").read_text())[USERNAME]
        port = os.environ.get("URGENTFLOW_SCALED_API_PORT", "8090")
        report(f"scaled instance and {len(WORKERS)} workers up in {time.monotonic() - t0:.1f} s")
        with AirflowClient(base=f"http://127.0.0.1:{port}", password=password) as client:
            yield Scaled(client, runs)
    finally:
        remove_viewers(runs)
        for name in started_workers:
            runtime("stop-worker", "--name", name)
        if not was_running:
            stopped = runtime("stop")
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        report(f"scaled-mode module took {time.monotonic() - t0:.1f} s")


def remove_viewers(runs: list[str]) -> None:
    """The flagship leaves a result viewer up after its run (its TTL): ours go with the test."""
    if not runs:
        return
    from operators.services.hook import ServiceHook

    hook = ServiceHook()
    for run_id in runs:
        with contextlib.suppress(Exception):  # best effort: the reaper removes them at their TTL anyway
            for service in hook.list_services(dag_id=DAG, run_id=run_id):
                hook.remove(service.container_id)
                Catalog().set_service_state(service.identity.service_id, "stopped")


# -- which worker ran which try -------------------------------------------------------------------------

EXECUTING = re.compile(r"Executing workload in Celery: .*?ti=TaskInstanceDTO\((?P<ti>.*)")
FIELD = {
    "task_id": re.compile(r"\btask_id='([^']+)'"),
    "run_id": re.compile(r"\brun_id='([^']+)'"),
    "try_number": re.compile(r"\btry_number=(\d+)"),
    "map_index": re.compile(r"\bmap_index=(-?\d+)"),
}


def tries_by_worker(run_id: str) -> dict[tuple[str, int, int], set[str]]:
    """``{(task_id, map_index, try_number): {worker, ...}}`` of ``run_id`` from every worker's log."""
    found: dict[tuple[str, int, int], set[str]] = {}
    for name in WORKERS:
        log = scaled_dir() / "logs" / f"worker-{name}.log"
        for line in log.read_text(errors="replace").splitlines():
            match = EXECUTING.search(line)
            if not match:
                continue
            values = {k: m.group(1) for k, rx in FIELD.items() if (m := rx.search(match.group("ti")))}
            if len(values) < len(FIELD) or values["run_id"] != run_id:
                continue
            key = (values["task_id"], int(values["map_index"]), int(values["try_number"]))
            found.setdefault(key, set()).add(name)
    return found


def ran_on(
    tis: list[dict], tries: dict[tuple[str, int, int], set[str]], in_triggerer: str = ""
) -> dict[tuple[str, int], set[str]]:
    """The workers of each task instance's last try (two for a member submitted from a worker: one
    submitted, one resumed it after the trigger fired, under the same try number); every try is in some
    worker's log, except those of ``in_triggerer`` (started in the triggerer), which are in none."""
    where = {}
    for ti in tis:
        if ti["task_id"] == in_triggerer:
            assert not tries.get((ti["task_id"], ti["map_index"], ti["try_number"])), ti
            continue
        workers = tries.get((ti["task_id"], ti["map_index"], ti["try_number"]), set())
        assert workers, f"{ti['task_id']}[{ti['map_index']}] try {ti['try_number']} is in no worker's log"
        where[(ti["task_id"], ti["map_index"])] = set(workers)
    return where


# -- batch jobs -------------------------------------------------------------------------------------------


def one_job_per_member(client: AirflowClient, run_id: str, flow: Flow = FLAGSHIP) -> list[dict]:
    """Every member has exactly one batch job: in the catalog and, on Slurm, in sacct (by job name)."""
    rows = [r for r in Catalog().jobs_of_run(flow.dag, run_id) if r["task_id"] == flow.task]
    assert sorted(r["map_index"] for r in rows) == list(range(MEMBERS)), rows
    assert len({(r["machine"], r["native_id"]) for r in rows}) == MEMBERS
    assert {r["state"] for r in rows} == {"COMPLETED"}, rows
    jobs = [client.xcom(flow.dag, run_id, flow.task, key="batch_job", map_index=i) for i in range(MEMBERS)]
    assert [(j["machine"], j["job_id"]) for j in jobs] == [(r["machine"], r["native_id"]) for r in rows]
    machine = jobs[0]["machine"]
    hook = BatchHook(machine)
    if hook.machine.batch_system == "slurm":
        names = {j["name"] for j in jobs}
        out = hook.transport.run("sacct -X -n -P -a -S now-2hours -o JobName%200,JobID").stdout
        submitted = sorted(line.split("|")[0] for line in out.splitlines() if line.split("|")[0] in names)
        assert submitted == sorted(names), "each member submitted exactly once (sacct)"
    return jobs


def trigger(scaled: Scaled, flow: Flow = FLAGSHIP) -> str:
    scaled.client.wait_for_dag(flow.dag, timeout=120)
    scaled.client.unpause(flow.dag)
    run_id = str(scaled.client.trigger(flow.dag, flow.conf)["dag_run_id"])
    scaled.runs.append(run_id)
    return run_id


def test_the_flagships_tasks_run_on_the_workers_and_its_members_on_none(scaled: Scaled) -> None:
    t0 = time.monotonic()
    run_id = trigger(scaled)
    final = scaled.client.wait_for_run(DAG, run_id, timeout=600)
    tis = scaled.client.task_instances(DAG, run_id)
    assert final["state"] == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]
    report(f"run {run_id}: trigger -> success in {time.monotonic() - t0:.1f} s")

    assert {ti["queue"] for ti in tis} == {"default"}, "no staging task in the flagship"
    where = ran_on(tis, tries_by_worker(run_id), in_triggerer="simulate")
    print("tasks per worker:", {f"{task}[{i}]": sorted(w) for (task, i), w in where.items()})
    assert sum(t["task_id"] == "simulate" and t["state"] == "success" for t in tis) == MEMBERS
    assert set().union(*where.values()) <= set(WORKERS)
    one_job_per_member(scaled.client, run_id)


def session_members(sid: int) -> list[int]:
    """Every live process of session ``sid`` (a worker is a session leader; its pool children and
    their task processes stay in its session even in their own process groups)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[3]) == sid and stat[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def test_worker_killed_mid_run_loses_and_duplicates_nothing(scaled: Scaled) -> None:
    t0 = time.monotonic()
    pid = int((scaled_dir() / "run" / f"worker-{GENERAL}.pid").read_text().split()[0])
    run_id = trigger(scaled, IN_WORKERS)
    # Freeze the general worker when a member runs on it, check which members are still running in
    # it (frozen, they cannot defer or finish), then kill it with them: a real mid-run death.
    victims: dict[int, int] = {}  # map index -> try number that died
    deadline = time.monotonic() + 300
    while not victims and time.monotonic() < deadline:
        running = [
            t
            for t in scaled.client.task_instances(IN_WORKERS.dag, run_id)
            if t["task_id"] == IN_WORKERS.task and t["state"] == "running" and t["pid"]
        ]
        if not any(t["pid"] in session_members(pid) for t in running):
            time.sleep(0.25)
            continue
        frozen = session_members(pid)
        signal_all(frozen, signal.SIGSTOP)
        time.sleep(1.5)  # requests already sent (e.g. a deferral) land meanwhile
        in_worker = set(session_members(pid))
        victims = {
            t["map_index"]: t["try_number"]
            for t in scaled.client.task_instances(IN_WORKERS.dag, run_id)
            if t["task_id"] == IN_WORKERS.task and t["state"] == "running" and t["pid"] in in_worker
        }
        if victims:
            signal_all(session_members(pid), signal.SIGKILL)
        else:
            signal_all(frozen, signal.SIGCONT)
    assert victims, f"no member ran on worker {GENERAL} within 300 s"
    killed_at = time.monotonic()
    report(f"killed worker {GENERAL} (session {pid}) with members {victims} running in it")
    gone = time.monotonic() + 10
    while session_members(pid) and time.monotonic() < gone:
        time.sleep(0.2)
    assert not session_members(pid), "the killed worker left processes behind"

    final = scaled.client.wait_for_run(IN_WORKERS.dag, run_id, timeout=600)
    tis = scaled.client.task_instances(IN_WORKERS.dag, run_id)
    assert final["state"] == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]
    report(
        f"run {run_id}: success {time.monotonic() - killed_at:.1f} s after the kill, "
        f"{time.monotonic() - t0:.1f} s in all"
    )
    tries = tries_by_worker(run_id)
    where = ran_on(tis, tries)
    for ti in tis:  # routing as scheduled: staging on transfer, the rest on default
        assert ti["queue"] == ("transfer" if ti["task_id"] in STAGING else "default"), ti
    staging = {key: w for key, w in where.items() if key[0] in STAGING}
    assert len(staging) == len(STAGING), f"staging to and from the machine: {staging}"
    assert all(w == {NEAR_DATA} for w in staging.values()), f"staging only where transfer is: {staging}"
    members = {t["map_index"]: t for t in tis if t["task_id"] == IN_WORKERS.task}
    for index, died in victims.items():
        assert tries.get((IN_WORKERS.task, index, died)) == {GENERAL}, (index, died, tries)
        assert members[index]["state"] == "success" and members[index]["try_number"] > died
        assert where[(IN_WORKERS.task, index)] == {NEAR_DATA}, "retried on the worker that is left"
    jobs = one_job_per_member(scaled.client, run_id, IN_WORKERS)
    print("re-attached on retry:", {i: jobs[i]["reattached"] for i in victims})


def test_scheduler_killed_while_members_submit_moves_again_within_a_minute(scaled: Scaled) -> None:
    """The scheduler's session is killed while members are being submitted from workers (the Celery workers live on):
    after the restart every member is watched again or done within 60 s, one batch job each."""
    run_id = trigger(scaled, IN_WORKERS)
    at_kill = wait_until_submitting(
        scaled.client, IN_WORKERS.dag, run_id, IN_WORKERS.task, MEMBERS, timeout=300
    )
    pid = int((scaled_dir() / "run" / "scheduler.pid").read_text().split()[0])
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    started = runtime("start")
    assert started.returncode == 0, started.stdout + started.stderr
    restarted = time.monotonic()
    moved = seconds_until_moving(scaled.client, IN_WORKERS.dag, run_id, IN_WORKERS.task, restarted)
    report(
        f"scaled scheduler killed with members {at_kill}; all moving again {moved:.1f} s after the restart"
    )
    assert moved <= 60, f"members stuck for {moved:.0f} s after the restart"
    final = scaled.client.wait_for_run(IN_WORKERS.dag, run_id, timeout=600)
    assert final["state"] == "success"
    one_job_per_member(scaled.client, run_id, IN_WORKERS)
