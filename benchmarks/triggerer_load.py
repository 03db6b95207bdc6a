"""Triggerer load: one trigger-runner process holding 1000 deferred batch jobs, CPU and memory over time.

Airflow's own ``TriggerRunner`` (the class the triggerer runs in its async subprocess) is fed
``RunTrigger`` workloads of our ``BatchJobTrigger`` directly, in a child process of this script, and
runs them the way the triggerer does (``create_triggers``: one asyncio task per trigger through
``run_trigger``; ``cleanup_finished_triggers`` once a second). Left out is the supervisor half of the
triggerer (the metadata-database sync of the trigger set and the log forwarding): it needs trigger
rows bound to real deferred task instances, i.e. 1000 task runs on the shared runtime, and its cost
grows with the rows, not with what the triggers do.

The jobs are real Slurm jobs submitted held (they stay PENDING and watchable for the whole window)
on this host by another Unix user than the SSH test user, so the per-user job limit that machine
selection checks (``max_jobs_per_user`` in include/machines.yaml) stays free for everyone else on the
test bed; the triggers watch them over SSH as the test user, like any job. Two fresh child processes
run one after the other for ``--minutes`` each: the baseline (``--baseline-jobs``, 10; 0 = idle) and
the load (``--jobs``, 1000). Each child's CPU time and RSS are read from /proc every ``--sample``
seconds; every job is cancelled at the end, also on failure or interrupt.
Run: ``.venv/bin/python benchmarks/triggerer_load.py [--minutes 10]`` (needs the Slurm test bed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "var" / "airflow-bench"))

from connections import connection_env, default_home  # noqa: E402

os.environ.update(connection_env())

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
HELD_USER = "nobody"
READY_TIMEOUT = 300.0
MiB = 1024


def slurm_conf(machine: str) -> str:
    """The test bed's config of a cluster (held jobs are submitted on this host with it)."""
    testbed = Path(os.environ.get("TESTBED_DIR") or default_home() / "testbed")
    path = testbed / "slurm" / machine / "slurm.conf"
    if not path.is_file():
        raise SystemExit(f"no Slurm test bed config {path}: start it (scripts/testbed start slurm sshd)")
    return str(path)


def as_held_user(machine: str, command: str, timeout: float) -> str:
    done = subprocess.run(
        ["runuser", "-u", HELD_USER, "--", "bash", "-c", command],
        env={**os.environ, "SLURM_CONF": slurm_conf(machine)},
        cwd="/tmp",  # noqa: S108 - sbatch needs a working directory the user may enter
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command[:60]}... failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def submit_held(machine: str, n: int, name: str) -> list[str]:
    """N held jobs (they never start), in one local loop of sbatch calls."""
    out = as_held_user(
        machine,
        f"for i in $(seq 1 {n}); do sbatch --parsable -H -J {name} -o /dev/null -e /dev/null "
        "--wrap 'sleep 1' || exit 1; done",
        timeout=max(120.0, n * 0.5),
    )
    ids = [line.strip() for line in out.splitlines() if line.strip().isdigit()]
    if len(ids) != n:
        raise RuntimeError(f"submitted {len(ids)} of {n} held jobs")
    return ids


# -- the child: Airflow's TriggerRunner holding the triggers ------------------------------------------


async def hold_triggers(spec: dict[str, Any]) -> dict[str, Any]:
    """Create one BatchJobTrigger per job in a TriggerRunner, report readiness, run until SIGTERM."""
    from airflow.executors.workloads import RunTrigger
    from airflow.jobs.triggerer_job_runner import TriggerRunner
    from airflow.models.trigger import Trigger

    from operators.hpc.poller import get_poller
    from operators.hpc.transport import STATS
    from operators.hpc.triggers import BatchJobTrigger

    conn_id, interval = spec["connection"], float(spec["interval"])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    runner = TriggerRunner()
    for number, job_id in enumerate(spec["jobs"], start=1):
        classpath, kwargs = BatchJobTrigger(
            machine=spec["machine"],
            connection=conn_id,
            batch_system="slurm",
            job_id=job_id,
            exit_file=f"{spec['exit_dir']}/{job_id}.exit",
            poll_interval=interval,
        ).serialize()
        runner.to_create.append(
            RunTrigger(id=number, classpath=classpath, encrypted_kwargs=Trigger.encrypt_kwargs(kwargs))
        )
    poller = get_poller(conn_id, "slurm", interval)  # the one the triggers will share
    await runner.create_triggers()
    deadline = time.monotonic() + READY_TIMEOUT
    while spec["jobs"] and poller.polls < 1 and time.monotonic() < deadline and not stop.is_set():
        await asyncio.sleep(0.1)  # ready once the first status command covered every job
    start = {"polls": poller.polls, "commands": STATS[f"{conn_id}:commands"]}
    Path(spec["ready_file"]).write_text(json.dumps({"triggers": len(runner.triggers), **start}))
    events = failures = 0
    while not stop.is_set():  # what TriggerRunner.arun does each second, minus the supervisor sync
        await runner.cleanup_finished_triggers()
        events += len(runner.events)
        failures += len(runner.failed_triggers)
        runner.events.clear()
        runner.failed_triggers.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    polls, commands = poller.polls - start["polls"], STATS[f"{conn_id}:commands"] - start["commands"]
    # A check that the watch was real: every job is still seen, and seen PENDING (held).
    refs = [watch.ref for entries in poller.watches.values() for watch in entries[:1]]
    out = await poller.transport.run(poller.adapter.status_command(refs))
    states = [status.state.value for status in poller.adapter.parse_status(out.stdout, refs).values()]
    result = {
        "pending_at_end": states.count("PENDING"),
        "triggers_running": len(runner.triggers),
        "events": events,
        "failures": failures,
        "polls": polls,
        "commands": commands,
        "connects": STATS[f"{conn_id}:connects"],
    }
    tasks = [details["task"] for details in runner.triggers.values()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result


def child_main(spec_path: str) -> int:
    from cryptography.fernet import Fernet

    os.environ.setdefault("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())
    spec = json.loads(Path(spec_path).read_text())
    result = asyncio.run(hold_triggers(spec))
    Path(spec["result_file"]).write_text(json.dumps(result))
    return 0


# -- the parent: runs the phases, samples /proc ---------------------------------------------------


@dataclass
class Phase:
    name: str
    jobs: int
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (wall s, CPU s, RSS KiB)
    ready_s: float = 0.0
    ready: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)

    def cpu_percent(self) -> tuple[float, float]:
        """Mean and max CPU % (one core = 100 %) over the sampling intervals."""
        (w0, c0, _), (w1, c1, _) = self.samples[0], self.samples[-1]
        steps = [
            100 * (b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(self.samples, self.samples[1:], strict=False)
        ]
        return 100 * (c1 - c0) / (w1 - w0), max(steps)

    def rss_mib(self) -> tuple[float, float, float]:
        rss = [s[2] for s in self.samples]
        return rss[0] / MiB, max(rss) / MiB, rss[-1] / MiB


def proc_sample(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS KiB) of one process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    rss = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return cpu, rss


def run_phase(phase: Phase, spec: dict[str, Any], tmp: Path, seconds: float, every: float) -> None:
    spec = {
        **spec,
        "ready_file": str(tmp / f"{phase.name}.ready"),
        "result_file": str(tmp / f"{phase.name}.result"),
    }
    (tmp / f"{phase.name}.json").write_text(json.dumps(spec))
    with open(tmp / f"{phase.name}.log", "w") as log:
        child = subprocess.Popen(
            [sys.executable, __file__, "--child", str(tmp / f"{phase.name}.json")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        started = time.monotonic()
        while not Path(spec["ready_file"]).exists():
            if child.poll() is not None or time.monotonic() - started > READY_TIMEOUT:
                tail = (tmp / f"{phase.name}.log").read_text()[-3000:]
                raise RuntimeError(f"the {phase.name} child did not get ready; its log ends:\n{tail}")
            time.sleep(0.2)
        phase.ready_s = time.monotonic() - started
        phase.ready = json.loads(Path(spec["ready_file"]).read_text())
        end = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            phase.samples.append((now, *proc_sample(child.pid)))
            if now >= end:
                break
            time.sleep(min(every, end - now))
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)
        phase.result = json.loads(Path(spec["result_file"]).read_text())
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        return child_main(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machine", default="alpha")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--baseline-jobs", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=5.0, help="poll interval (the operator's default)")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between /proc samples")
    args = parser.parse_args()
    if not 0 <= args.baseline_jobs < args.jobs <= 1000:
        parser.error("need 0 <= --baseline-jobs < --jobs <= 1000 (the test bed's queue is shared)")
    from operators.machines.catalog import get_machine

    machine = get_machine(args.machine)
    assert machine.connection and machine.batch_system == "slurm", "triggerer_load needs a Slurm machine"
    name = f"uf-bench-load-{int(time.time())}"
    seconds = args.minutes * 60
    print(
        f"machine {args.machine}, poll interval {args.interval:g} s, {args.minutes:g} min per phase, "
        f"samples every {args.sample:g} s; submitting {args.jobs} held jobs as {HELD_USER} ..."
    )
    phases = [Phase("baseline", args.baseline_jobs), Phase("load", args.jobs)]
    try:
        ids = submit_held(args.machine, args.jobs, name)
        with tempfile.TemporaryDirectory(dir=str(ROOT / "var")) as tmp:
            for phase in phases:
                spec = {
                    "machine": args.machine,
                    "connection": machine.connection,
                    "jobs": ids[: phase.jobs],
                    "exit_dir": f"{machine.workdir}/bench/{name}",
                    "interval": args.interval,
                }
                print(f"{phase.name}: {phase.jobs} triggers for {args.minutes:g} min ...", flush=True)
                run_phase(phase, spec, Path(tmp), seconds, args.sample)
    finally:
        with contextlib.suppress(Exception):
            as_held_user(args.machine, f"scancel -n {name}", timeout=120)
    intervals = seconds / args.interval
    print(
        f"\n{'phase':<9} {'triggers':>8} | {'ready s':>7} | {'CPU % mean':>10} {'max':>6} {'CPU s':>6} | "
        f"{'RSS MiB start':>13} {'max':>6} {'end':>6} | {'cmds/int':>8} {'conns':>5} {'events':>6} {'PENDING':>7}"
    )
    for p in phases:
        mean, peak = p.cpu_percent()
        start, high, end = p.rss_mib()
        print(
            f"{p.name:<9} {p.ready.get('triggers', 0):>8} | {p.ready_s:>7.1f} | {mean:>10.2f} {peak:>6.1f} "
            f"{p.samples[-1][1] - p.samples[0][1]:>6.2f} | {start:>13.0f} {high:>6.0f} {end:>6.0f} | "
            f"{p.result['commands'] / intervals:>8.2f} {p.result['connects']:>5} {p.result['events']:>6} {p.result['pending_at_end']:>7}"
        )
    base, load = phases
    extra = load.jobs - base.jobs
    (bm, _), (lm, _) = base.cpu_percent(), load.cpu_percent()
    rss_delta = load.rss_mib()[2] - base.rss_mib()[2]
    print(
        f"load / baseline: CPU {lm / bm if bm else float('inf'):.1f}x, RSS at the end +{rss_delta:.0f} MiB "
        f"({rss_delta * 1024 / extra:.0f} KiB per extra trigger)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
