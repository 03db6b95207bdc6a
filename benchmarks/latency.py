"""Trigger-to-running latency: ``POST /urgentflow/incidents`` -> sbatch -> RUNNING vs a raw sbatch.

Each round, against the embedded runtime and the Slurm test bed:
1. ours: a small wildfire incident (one member, deadline 5 min) is POSTed to the REST API; the clock
   runs from just before the POST until the first member's Slurm job is RUNNING. That is the whole
   incident path a user waits through: the catalog row and the DAG run, scheduling, ``prepare`` (the
   landscape and scenario generated and written to the object store), ``select_machine`` (live load
   and an ``sbatch --test-only`` per machine) beside ``member_args``, then ``simulate``
   (BatchJobOperator, started in the triggerer: look-up, script and sbatch; the job fetches its inputs
   itself once it runs). The machine chosen is read from the catalog (``machine_selections``) and the
   job, whose name is derived from the run, is then watched there with ``squeue -n NAME`` every
   ``--poll`` seconds over one open SSH connection; RUNNING is the first poll that shows it running (or past it).
   Once it runs, the incident is cancelled through ``POST /urgentflow/incidents/{id}/cancel`` (the
   run fails, the job is cancelled; aggregation and the result viewer never start) and the job is
   also scancel'd by name.
2. baseline: the same kind of job (our Slurm script for the same resources: 1 core, 1000 MB,
   the same partition and walltime; its body a sleep) submitted with ``sbatch`` over the same open
   SSH connection to the same machine, timed from just before the sbatch until ``squeue -j ID``
   polled the same way shows it RUNNING; then scancel'd.
It prints p50/p95/max of both, the ratios, and where our time goes (POST -> ``simulate`` task
started, from the task instance; Slurm's own Submit -> Start, from sacct at 1 s resolution).
Run: ``.venv/bin/python benchmarks/latency.py --runs 30`` (needs ``make up``: runtime and test bed).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "var" / "airflow-bench"))

from airflow_client import AirflowClient, ApiError  # noqa: E402
from connections import connection_env  # noqa: E402

os.environ.update(connection_env())

from operators.catalog.catalog import Catalog  # noqa: E402
from operators.hpc.hook import BatchHook, job_name  # noqa: E402
from operators.hpc.spec import JobSpec  # noqa: E402

DAG = "wildfire_forecast"
MEMBER_TASK = "simulate"
RUNNING_OR_LATER = {"RUNNING", "COMPLETING", "COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "CANCELLED"}
INCIDENT = {
    "kind": "wildfire",
    "ignition": {"lat": 37.30, "lon": -8.55},
    "region": {"min_lon": -8.65, "min_lat": 37.22, "max_lon": -8.45, "max_lat": 37.38},
    "weather": {"wind_speed_ms": 6.0, "wind_direction_deg": 315.0, "fuel_moisture": 0.08},
    "ensemble_size": 1,
    "deadline_minutes": 5,
}
TIMEOUT = 300.0


@dataclass
class Sample:
    seconds: float
    machine: str
    to_task_start: float | None = None  # ours: POST -> simulate task started
    slurm_wait: float | None = None  # sacct Submit -> Start (1 s resolution)


@dataclass
class Results:
    ours: list[Sample] = field(default_factory=list)
    raw: list[Sample] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


class Machines:
    """One BatchHook (one open SSH connection) per machine, kept for the whole benchmark."""

    def __init__(self) -> None:
        self.hooks: dict[str, BatchHook] = {}

    def __getitem__(self, name: str) -> BatchHook:
        if name not in self.hooks:
            self.hooks[name] = BatchHook(name)
            self.hooks[name].transport.run("true").check("connect")  # open it before any clock runs
        return self.hooks[name]


def wait_running(hook: BatchHook, selector: str, poll: float, start: float) -> tuple[float, str]:
    """Poll ``squeue`` (by ``-n NAME`` or ``-j ID``) until the job runs; (seconds since start, job id)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        out = hook.transport.run(f"squeue -h -t all {selector} -o '%i|%T'").stdout
        seen = time.time()
        for line in out.splitlines():
            job_id, _, state = line.strip().partition("|")
            if state in RUNNING_OR_LATER:
                return seen - start, job_id
        time.sleep(poll)
    raise TimeoutError(f"no running job for {selector} within {TIMEOUT:.0f} s")


def slurm_wait(hook: BatchHook, job_id: str) -> float | None:
    """Slurm's Submit -> Start of a job from sacct (whole seconds)."""
    out = hook.transport.run(f"sacct -X -P -n -j {int(job_id)} -o Submit,Start").stdout.split("|")
    with contextlib.suppress(ValueError, IndexError):
        return (
            datetime.fromisoformat(out[1].strip()) - datetime.fromisoformat(out[0].strip())
        ).total_seconds()
    return None


def chosen_machine(catalog: Catalog, run_id: str) -> str:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        with catalog.hook.get_conn() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT chosen FROM machine_selections WHERE dag_id = %s AND run_id = %s", (DAG, run_id)
            )
            row = cur.fetchone()
        chosen = row[0] if row else None
        if isinstance(chosen, list) and chosen:
            chosen = chosen[0]
        if isinstance(chosen, dict) and chosen.get("machine"):
            return str(chosen["machine"])
        time.sleep(0.2)
    raise TimeoutError(f"run {run_id}: no machine selected within {TIMEOUT:.0f} s")


def task_started(airflow: AirflowClient, run_id: str) -> datetime | None:
    for ti in airflow.task_instances(DAG, run_id):
        if ti["task_id"] == MEMBER_TASK and ti.get("map_index") in (0, -1) and ti.get("start_date"):
            return datetime.fromisoformat(str(ti["start_date"]).replace("Z", "+00:00"))
    return None


def ours_once(
    airflow: AirflowClient, catalog: Catalog, machines: Machines, poll: float, i: int
) -> Sample | str:
    start = time.time()
    made = airflow.request(
        "POST", "/urgentflow/incidents", json={**INCIDENT, "name": f"latency benchmark {i}"}, ok=(201,)
    )
    run_id, incident_id = made["run_id"], made["incident_id"]
    hook: BatchHook | None = None
    name = job_name(DAG, run_id, MEMBER_TASK, 0)
    try:
        machine = chosen_machine(catalog, run_id)
        hook = machines[machine]
        if hook.machine.batch_system != "slurm":
            return f"round {i}: {machine} ({hook.machine.batch_system}) was chosen; only Slurm is timed"
        seconds, job_id = wait_running(hook, f"-n {shlex.quote(name)}", poll, start)
    finally:
        with contextlib.suppress(ApiError):
            airflow.request("POST", f"/urgentflow/incidents/{incident_id}/cancel")
        if hook is not None:
            with contextlib.suppress(Exception):
                hook.transport.run(f"scancel -n {shlex.quote(name)}")
    began = task_started(airflow, run_id)
    return Sample(
        seconds,
        machine,
        to_task_start=(began.timestamp() - start) if began else None,
        slurm_wait=slurm_wait(hook, job_id),
    )


def raw_once(hook: BatchHook, script: str, poll: float, name: str) -> Sample:
    start = time.time()
    out = hook.transport.run(f"sbatch --parsable -J {name} {shlex.quote(script)}").check("sbatch")
    job_id = hook.adapter.parse_submit(out.stdout)
    try:
        seconds, _ = wait_running(hook, f"-j {job_id}", poll, start)
    finally:
        hook.cancel([job_id])
    return Sample(seconds, hook.machine.name, slurm_wait=slurm_wait(hook, job_id))


def raw_script(hook: BatchHook, tag: str) -> str:
    """Our Slurm script for the member's resources, with a sleep for its body."""
    spec = JobSpec(
        name=f"uf-bench-latency-{tag}",
        command=["sleep", "60"],
        workdir=f"{hook.machine.workdir}/bench/latency-{tag}",
        walltime_minutes=5,  # what wildfire_forecast asks for a 5-minute deadline
        memory_mb=1000,
        partition=hook.machine.default_partition,
        setup=hook.machine.setup_lines(),
    )
    hook.transport.run(hook.adapter.prepare_command(spec)).check("prepare")
    hook.transport.put_text(spec.script_path, hook.adapter.render_script(spec), mode=0o750)
    return spec.script_path


def report(results: Results) -> None:
    def row(label: str, values: list[float]) -> str:
        return (
            f"{label:<44} {len(values):>4} {percentile(values, 50):>7.2f} {percentile(values, 95):>7.2f} "
            f"{max(values):>7.2f}"
        )

    ours = [s.seconds for s in results.ours]
    raw = [s.seconds for s in results.raw]
    print(f"\n{'seconds':<44} {'runs':>4} {'p50':>7} {'p95':>7} {'max':>7}")
    print(row("ours: POST /incidents -> member job RUNNING", ours))
    print(row("raw: sbatch over an open SSH conn -> RUNNING", raw))
    starts = [s.to_task_start for s in results.ours if s.to_task_start is not None]
    if starts:
        print(row("  ours, of which POST -> simulate handed over", starts))
    for label, samples in (("ours", results.ours), ("raw", results.raw)):
        waits = [s.slurm_wait for s in samples if s.slurm_wait is not None]
        if waits:
            print(row(f"  {label}: Slurm Submit -> Start (sacct, whole s)", waits))
    print(
        f"ours / raw: p50 {percentile(ours, 50) / percentile(raw, 50):.1f}x, "
        f"p95 {percentile(ours, 95) / percentile(raw, 95):.1f}x; machines: "
        + ", ".join(sorted({s.machine for s in results.ours}))
    )
    for note in results.skipped:
        print(f"skipped {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--poll", type=float, default=0.1, help="squeue poll interval (s), both sides")
    args = parser.parse_args()
    logging.getLogger("operators.hpc.transport").setLevel(logging.WARNING)  # one line per squeue poll
    airflow, catalog, machines, results = AirflowClient(), Catalog(), Machines(), Results()
    airflow.wait_for_dag(DAG)
    airflow.unpause(DAG)  # as the e2e tests do; it is a schedule=None DAG
    tag = str(int(time.time()))
    scripts: dict[str, str] = {}
    print(
        f"{args.runs} rounds, squeue polled every {args.poll:g} s; each round: one incident, one raw sbatch"
    )
    try:
        for i in range(2 * args.runs):  # rounds on a non-Slurm machine are not timed: retry, bounded
            if len(results.ours) == args.runs:
                break
            sample = ours_once(airflow, catalog, machines, args.poll, i)
            if isinstance(sample, str):
                results.skipped.append(sample)
                continue
            results.ours.append(sample)
            hook = machines[sample.machine]
            if sample.machine not in scripts:
                scripts[sample.machine] = raw_script(hook, tag)
            results.raw.append(raw_once(hook, scripts[sample.machine], args.poll, f"uf-bench-latency-{tag}"))
            print(
                f"round {i + 1:>3}: ours {sample.seconds:6.2f} s on {sample.machine}, raw {results.raw[-1].seconds:5.2f} s",
                flush=True,
            )
    finally:
        for name in scripts:
            with contextlib.suppress(Exception):
                machines[name].transport.run(f"scancel -n uf-bench-latency-{tag}")
        airflow.close()
    if results.ours and results.raw:
        report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
