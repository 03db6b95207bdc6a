"""Ensemble throughput: a 200-member mapped ensemble (hpc_drill) vs a raw sbatch loop, same jobs.

Both sides run the same 200 one-core jobs on one machine (our Slurm script for each member, its body
hpc_drill's member command: hash a small input, sleep ``--seconds``, exit 0), one side after the other:
1. baseline: the member scripts are rendered and uploaded first (not timed), then a loop of ``sbatch``
   calls over one already-open SSH connection submits them (timed, client side);
2. ours: ``hpc_drill`` is triggered through the REST API with ``members``/``seconds``/``machine``;
   its mapped ``member`` task (BatchJobOperator) starts in the triggerer, which submits the members'
   jobs together (a few remote commands per batch) and watches them. Submission times are the jobs'
   record files on the machine (their mtime: written by the submitting shell as each sbatch returns).
   Once every member task has ended, the run is failed through the REST API so its ``publish`` task
   (and the Asset event it leads to) does not occupy the shared runtime (``--keep-run`` lets it finish).
Figures: submission rate ((N - 1) / (last - first submission)), makespan (from the start of the
submissions, i.e. the loop start or the trigger POST, to the last job's End in sacct) against the ideal
(sum of the jobs' Elapsed / the partition's CPUs from sinfo), and for ours also when Airflow knew (the
last member task's end). Every job is cancelled at the end, also on failure or interrupt.
Run: ``.venv/bin/python benchmarks/throughput.py --members 200`` (needs ``make up``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "var" / "airflow-bench"))

from airflow_client import AirflowClient, ApiError  # noqa: E402
from connections import connection_env  # noqa: E402

os.environ.update(connection_env())

from hpc_drill import MEMBER  # noqa: E402

from operators.hpc.hook import BatchHook  # noqa: E402
from operators.hpc.spec import JobSpec, record_file  # noqa: E402

DAG = "hpc_drill"
WALLTIME_MINUTES = 5  # hpc_drill's default
TERMINAL_TI = {"success", "failed", "upstream_failed", "skipped", "removed"}


@dataclass
class Side:
    label: str
    started: float  # wall clock at the start of the submissions
    submitted: list[float]  # wall clock of each submission
    job_ids: list[str]
    airflow_done: float | None = None  # ours: the last member task's end
    ends: list[float] | None = None  # sacct End of every job
    elapsed: list[float] | None = None  # sacct Elapsed of every job (s)

    def rate(self) -> float:
        first, last = min(self.submitted), max(self.submitted)
        return (len(self.submitted) - 1) / (last - first) if last > first else float("inf")


def slots(hook: BatchHook) -> tuple[int, int]:
    """(CPUs, idle CPUs) of the machine's default partition, from sinfo."""
    part = shlex.quote(hook.machine.default_partition or "")
    out = hook.transport.run(f"sinfo -h -p {part} -o '%C'").check("sinfo").stdout.split()[0]
    _alloc, idle, _other, total = (int(n) for n in out.split("/"))
    return total, idle


def sacct_times(hook: BatchHook, job_ids: list[str]) -> dict[str, tuple[str, float, float]]:
    """job id -> (state, End as epoch seconds, Elapsed seconds); whole seconds, as sacct has them."""
    rows: dict[str, tuple[str, float, float]] = {}
    for chunk in range(0, len(job_ids), 200):
        ids = ",".join(str(int(j)) for j in job_ids[chunk : chunk + 200])
        out = hook.transport.run(f"sacct -X -P -n -j {ids} -o JobID,State,End,ElapsedRaw").stdout
        for line in out.splitlines():
            fields = line.strip().split("|")
            if len(fields) != 4:
                continue
            job_id, state, end, elapsed = fields
            with contextlib.suppress(ValueError):
                rows[job_id] = (state.split()[0], datetime.fromisoformat(end).timestamp(), float(elapsed))
            rows.setdefault(job_id, (state.split()[0] if state else "?", 0.0, 0.0))
    return rows


def wait_ended(hook: BatchHook, side: Side, timeout: float) -> None:
    """Poll sacct until every job has an End; fill ends/elapsed."""
    deadline = time.monotonic() + timeout
    while True:
        rows = sacct_times(hook, side.job_ids)
        done = [rows[j] for j in side.job_ids if j in rows and rows[j][1] > 0]
        if len(done) == len(side.job_ids):
            side.ends = [r[1] for r in done]
            side.elapsed = [r[2] for r in done]
            bad = sorted({r[0] for r in done} - {"COMPLETED"})
            if bad:
                print(f"  {side.label}: some jobs ended {', '.join(bad)}")
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{side.label}: {len(done)}/{len(side.job_ids)} jobs ended in {timeout:.0f} s")
        time.sleep(2.0)


def raw_loop(hook: BatchHook, members: int, seconds: int, tag: str) -> Side:
    workdir = f"{hook.machine.workdir}/bench/throughput-{tag}"
    hook.transport.run(f"mkdir -p {workdir} && echo 'throughput input' > {workdir}/input.txt").check("input")
    scripts = []
    for i in range(members):
        spec = JobSpec(
            name=f"uf-bench-tput-{tag}-{i}",
            command=["bash", "-c", MEMBER, "member", str(i), str(seconds), "0", f"{workdir}/input.txt"],
            workdir=f"{workdir}/member.{i}",
            walltime_minutes=WALLTIME_MINUTES,
            partition=hook.machine.default_partition,
            setup=hook.machine.setup_lines(),
        )
        hook.transport.run(hook.adapter.prepare_command(spec)).check("prepare")
        hook.transport.put_text(spec.script_path, hook.adapter.render_script(spec), mode=0o750)
        scripts.append(spec)
    started = time.time()
    submitted, job_ids = [], []
    for spec in scripts:
        out = hook.transport.run(hook.adapter.submit_command(spec)).check("sbatch")
        job_ids.append(hook.adapter.parse_submit(out.stdout))
        submitted.append(time.time())
    return Side("raw sbatch loop", started, submitted, job_ids)


def member_jobs(
    airflow: AirflowClient, hook: BatchHook, run_id: str, members: int
) -> list[tuple[str, float]]:
    """(native id, submission time) of the run's member jobs. The time is when the machine wrote the job's
    record (the batch system's answer, in the same shell right after the submission): catalog rows of
    jobs submitted ahead for their siblings are written together after the batch, so their times would
    not be the submissions'."""
    jobs = [airflow.xcom(DAG, run_id, "member", key="batch_job", map_index=i) for i in range(members)]
    jobs = [j for j in jobs if j and j["machine"] == hook.machine.name]
    records = " ".join(shlex.quote(record_file(j["workdir"], j["name"])) for j in jobs)
    out = hook.transport.run(f"stat -c %.9Y {records}").check("the jobs' record times")
    return [(j["job_id"], float(t)) for j, t in zip(jobs, out.stdout.split(), strict=True)]


def drill(airflow: AirflowClient, hook: BatchHook, args: argparse.Namespace) -> tuple[Side, str]:
    airflow.wait_for_dag(DAG)
    airflow.unpause(DAG)  # as the e2e tests do; schedule=None
    started = time.time()
    run = airflow.trigger(
        DAG, {"machine": hook.machine.name, "members": args.members, "seconds": args.seconds}
    )
    run_id = run["dag_run_id"]
    deadline = time.monotonic() + args.timeout
    members: list[dict] = []
    while time.monotonic() < deadline:
        tis = airflow.task_instances(DAG, run_id)
        members = [t for t in tis if t["task_id"] == "member" and t.get("map_index", -1) >= 0]
        if len(members) == args.members and all(t["state"] in TERMINAL_TI for t in members):
            break
        if airflow.get_run(DAG, run_id)["state"] in ("failed", "success") and not members:
            raise RuntimeError(f"{DAG} run {run_id} ended before its members ran")
        time.sleep(2.0)
    else:
        raise TimeoutError(f"{DAG} run {run_id}: members not done within {args.timeout:.0f} s")
    ends = [datetime.fromisoformat(str(t["end_date"]).replace("Z", "+00:00")).timestamp() for t in members]
    states = sorted({t["state"] for t in members})
    if states != ["success"]:
        print(f"  ours: member task states {states}")
    jobs = member_jobs(airflow, hook, run_id, args.members)
    side = Side(
        f"ours ({DAG}, mapped BatchJobOperator)",
        started,
        [j[1] for j in jobs],
        [j[0] for j in jobs],
        airflow_done=max(ends),
    )
    return side, run_id


def report(sides: list[Side], cpus: int) -> None:
    print(
        f"\n{'':<42} {'jobs':>4} {'submit/s':>8} {'makespan s':>10} {'ideal s':>7} {'/ideal':>6} "
        f"{'Airflow knew s':>14}"
    )
    for s in sides:
        assert s.ends is not None and s.elapsed is not None
        makespan = max(s.ends) - s.started
        ideal = sum(s.elapsed) / cpus
        knew = f"{s.airflow_done - s.started:>14.1f}" if s.airflow_done else f"{'':>14}"
        print(
            f"{s.label:<42} {len(s.job_ids):>4} {s.rate():>8.2f} {makespan:>10.1f} {ideal:>7.1f} "
            f"{makespan / ideal:>6.2f} {knew}"
        )
        print(
            f"{'':<42} first submission {min(s.submitted) - s.started:.1f} s after the start, "
            f"last {max(s.submitted) - s.started:.1f} s"
        )
    raw, ours = sides
    print(
        f"ours / raw: submission rate {ours.rate() / raw.rate():.3f}x, "
        f"makespan {(max(ours.ends or [0]) - ours.started) / (max(raw.ends or [0]) - raw.started):.2f}x"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machine", default="alpha")
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=5, help="run time of each job")
    parser.add_argument("--timeout", type=float, default=1800.0, help="bound on each side's wait")
    parser.add_argument("--keep-run", action="store_true", help="let the hpc_drill run finish (publish)")
    args = parser.parse_args()
    if not 1 < args.members <= 500:
        parser.error("--members: 2..500 (hpc_drill's limit; the test bed is shared)")
    for noisy in ("operators.hpc.transport", "paramiko"):  # a line per command / sftp upload otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    hook, airflow = BatchHook(args.machine), AirflowClient()
    hook.transport.run("true").check("connect")  # the connection is open before any clock runs
    cpus, idle = slots(hook)
    tag = str(int(time.time()))
    print(
        f"{args.members} jobs of {args.seconds} s on {args.machine} "
        f"({cpus} CPUs in {hook.machine.default_partition}, {idle} idle at the start)"
    )
    sides: list[Side] = []
    run_id = None
    try:
        raw = raw_loop(hook, args.members, args.seconds, tag)
        sides.append(raw)
        wait_ended(hook, raw, args.timeout)
        print(f"  raw done; {slots(hook)[1]} CPUs idle before ours", flush=True)
        ours, run_id = drill(airflow, hook, args)
        sides.append(ours)
        wait_ended(hook, ours, args.timeout)
    finally:
        if run_id and not args.keep_run:
            with contextlib.suppress(ApiError):
                airflow.request("PATCH", f"/api/v2/dags/{DAG}/dagRuns/{run_id}", json={"state": "failed"})
        for side in sides:
            with contextlib.suppress(Exception):
                hook.cancel(side.job_ids)
        with contextlib.suppress(Exception):
            hook.transport.run(  # raw jobs submitted before an interrupt, found by their name prefix
                f"squeue -h -u \"$(id -un)\" -o '%i %j' | awk '$2 ~ /^uf-bench-tput-{tag}-/ {{print $1}}' "
                "| xargs -r scancel"
            )
        airflow.close()
    report(sides, cpus)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
