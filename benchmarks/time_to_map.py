"""Report to map: ``POST /urgentflow/incidents`` -> burn-probability map stored, vs its own compute.

Each round a wildfire incident (``--members`` members, the demo's region and weather) is POSTed to the
REST API of the embedded runtime; the clock runs until the catalog holds the run's
``forecast/burn_probability.png`` (polled every 0.2 s). The baseline, measured in the same round, is the
forecast's own critical-path compute: ``prepare``'s run time (its task instance, start to end) + the
slowest member job's run time on the machine (its stderr file's birth to its exit file's write, to the
millisecond; sacct ``ElapsedRaw``, whole seconds, where the file system keeps no birth time; the job's
fetching of its inputs and publishing of its outputs count as its compute) + ``aggregate``'s run time.
Everything else is what urgentflow adds: scheduling and task start-up, selection, submission, watching,
recording the outputs the jobs published. The round's breakdown is printed from the task instances.

Run: ``.venv/bin/python benchmarks/time_to_map.py --runs 3`` (needs ``make up``: runtime and test bed).
After each round the run is awaited (its result viewer starts) and the incident cancelled (the viewer
stops), so rounds do not overlap.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shlex
import statistics
import time
from datetime import datetime

from latency import INCIDENT, TIMEOUT, Machines, percentile  # also puts scripts/ on sys.path

# isort: split
from airflow_client import AirflowClient, ApiError

from operators.catalog.catalog import Catalog

DAG = "wildfire_forecast"
MAP = "forecast/burn_probability.png"


def ts(value: object) -> float:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def map_stored(catalog: Catalog, run_id: str, start: float) -> float:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if any(r["key"].endswith(MAP) for r in catalog.datasets_of_run(DAG, run_id)):
            return time.time() - start
        time.sleep(0.2)
    raise TimeoutError(f"run {run_id}: no map within {TIMEOUT:.0f} s")


def slowest_member(
    machines: Machines, airflow: AirflowClient, run_id: str, members: int
) -> tuple[str, float]:
    jobs = [airflow.xcom(DAG, run_id, "simulate", key="batch_job", map_index=i) for i in range(members)]
    machine = jobs[0]["machine"]
    ids = ",".join(str(int(j["job_id"])) for j in jobs)
    hook = machines[machine]
    if hook.machine.batch_system != "slurm":
        raise RuntimeError(f"{machine} ({hook.machine.batch_system}) was chosen; only Slurm is timed")
    # to the millisecond where the file system keeps birth times: the job's stderr file is created as it
    # starts, its exit file written as it ends; else Slurm's whole seconds
    files = [p for j in jobs for p in (j["stderr"], f"{j['workdir']}/{j['name']}.exit")]
    stat = hook.transport.run("stat -c '%.9W %.9Y' " + " ".join(shlex.quote(f) for f in files))
    times = [line.split() for line in stat.stdout.splitlines()]
    if stat.exit_status == 0 and len(times) == len(files) and all(float(t[0]) > 0 for t in times[::2]):
        return machine, max(
            float(end[1]) - float(start[0]) for start, end in zip(times[::2], times[1::2], strict=True)
        )
    out = hook.transport.run(f"sacct -X -P -n -j {ids} -o ElapsedRaw").check("sacct").stdout
    return machine, max(float(v) for v in out.split())


def one_round(airflow: AirflowClient, catalog: Catalog, machines: Machines, members: int, i: int) -> dict:
    start = time.time()
    made = airflow.request(
        "POST",
        "/urgentflow/incidents",
        json={**INCIDENT, "ensemble_size": members, "deadline_minutes": 60, "name": f"time to map {i}"},
        ok=(201,),
    )
    run_id, incident_id = made["run_id"], made["incident_id"]
    try:
        to_map = map_stored(catalog, run_id, start)
        airflow.wait_for_run(DAG, run_id, timeout=TIMEOUT)
    finally:
        with contextlib.suppress(ApiError):
            airflow.request("POST", f"/urgentflow/incidents/{incident_id}/cancel")
    tis = {(t["task_id"], t["map_index"]): t for t in airflow.task_instances(DAG, run_id)}

    def took(task: str) -> float:
        t = tis[(task, -1)]
        return ts(t["end_date"]) - ts(t["start_date"])

    def began(task: str, index: int = -1) -> float:
        return ts(tis[(task, index)]["start_date"]) - start

    machine, member = slowest_member(machines, airflow, run_id, members)
    compute = took("prepare") + member + took("aggregate")
    return {
        "to_map": to_map,
        "compute": compute,
        "machine": machine,
        "steps": {
            "prepare start": began("prepare"),
            "prepare": took("prepare"),
            "select_machine": took("select_machine"),
            "member_args": took("member_args"),
            "simulate deferred": began("simulate", 0),
            "slowest member": member,
            # the members' jobs publish their own outputs: the map's task follows the last member's end
            "members done": max(ts(t["end_date"]) for (task, _), t in tis.items() if task == "simulate")
            - start,
            "aggregate start": began("aggregate"),
            "aggregate": took("aggregate"),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--members", type=int, default=8)
    args = parser.parse_args()
    logging.getLogger("operators.hpc.transport").setLevel(logging.WARNING)
    airflow, catalog, machines = AirflowClient(), Catalog(), Machines()
    airflow.wait_for_dag(DAG)
    airflow.unpause(DAG)
    rounds = []
    try:
        for i in range(args.runs):
            r = one_round(airflow, catalog, machines, args.members, i)
            rounds.append(r)
            steps = ", ".join(f"{k} {v:.1f}" for k, v in r["steps"].items())
            print(
                f"round {i + 1}: POST -> map {r['to_map']:.1f} s, critical-path compute {r['compute']:.1f} s "
                f"({r['to_map'] / r['compute']:.2f}x) on {r['machine']}; {steps}",
                flush=True,
            )
    finally:
        airflow.close()
    if rounds:
        to_map = [r["to_map"] for r in rounds]
        compute = [r["compute"] for r in rounds]
        ratio = [r["to_map"] / r["compute"] for r in rounds]
        print(f"\n{args.members} members, {len(rounds)} rounds (seconds): p50 / max")
        print(f"  ours: POST -> map stored            {percentile(to_map, 50):7.1f} {max(to_map):7.1f}")
        print(f"  baseline: critical-path compute     {percentile(compute, 50):7.1f} {max(compute):7.1f}")
        print(f"  ours / compute: median {statistics.median(ratio):.2f}x, max {max(ratio):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
