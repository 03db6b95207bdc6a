"""Completion notices: how late a job's end is known, with notices vs polling at the interval, same run.

N real Slurm jobs on `beta` (which has ``completion_notice: true``), ending one after the other, are
watched by the machine's poller with ``--interval`` seconds between polls and no wait on the machine
(``watch_exit_files: false``: where notices matter), three ways, one after the other, each with fresh
jobs: polling at the interval only (the baseline), with the jobs' completion notices (sent to the plugin
app, served here by uvicorn with a secret of its own; its NOTIFY on the catalog database wakes the
poller), and, for comparison, the default wait on the machine for exit files. "Known late" is when the
watch returned minus the job's exit file's mtime (one clock: the test bed's machines are this host).
Run: ``.venv/bin/python benchmarks/completion_notice.py --jobs 10 --interval 10``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "plugins"))
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "var" / "airflow-bench"))

from connections import connection_env  # noqa: E402
from plugin_app import serving_plugin_app  # noqa: E402

os.environ.update(connection_env())


from operators.hpc.adapters import JobRef  # noqa: E402
from operators.hpc.hook import BatchHook  # noqa: E402
from operators.hpc.notice import notice_for  # noqa: E402
from operators.hpc.poller import get_poller  # noqa: E402
from operators.hpc.spec import JobSpec  # noqa: E402

MACHINE = "beta"


def submit(hook: BatchHook, n: int, notices: bool, tag: str) -> list[JobRef]:
    """N jobs ending 1.3 s apart (from 3 s on), each with a notice when ``notices``."""
    refs = []
    for i in range(n):
        name = f"uf-bench-notice-{tag}-{i}"
        spec = JobSpec(
            name=name,
            command=["sleep", f"{3 + 1.3 * i:.1f}"],
            workdir=f"{hook.machine.workdir}/bench/notice/{tag}",
            notice=notice_for(MACHINE, name) if notices else None,
        )
        job_id, _ = hook.submit(spec)
        refs.append(JobRef(job_id, spec.exit_file, spec.name))
    return refs


async def watch(
    hook: BatchHook, refs: list[JobRef], interval: float, wait_there: bool, notices: bool
) -> dict:
    poller = get_poller(
        hook.machine.connection, "slurm", interval, wait_there, notices_of=MACHINE if notices else None
    )

    async def one(ref: JobRef) -> float:
        await poller.watch(ref, interval)
        return time.time()

    known = await asyncio.gather(*(one(r) for r in refs))
    return {"known": dict(zip([r.job_id for r in refs], known, strict=True)), "polls": poller.polls}


def run(hook: BatchHook, n: int, interval: float, way: str) -> tuple[list[float], int]:
    tag = f"{way.split()[0]}-{uuid.uuid4().hex[:6]}"
    notices, wait_there = way == "notices", way == "exit-file wait"
    refs = submit(hook, n, notices, tag)
    try:
        result = asyncio.run(watch(hook, refs, interval, wait_there, notices))
    finally:  # also on failure or interrupt: nothing of ours is left running (ended ones: a no-op)
        hook.transport.run(hook.adapter.cancel_command([r.job_id for r in refs]))
    files = " ".join(r.exit_file for r in refs)
    out = hook.transport.run(f"stat -c '%.9Y %n' {files}").check("stat")
    ended = {line.split(" ", 1)[1]: float(line.split(" ", 1)[0]) for line in out.stdout.splitlines()}
    late = [result["known"][r.job_id] - ended[r.exit_file] for r in refs]
    return late, result["polls"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--interval", type=float, default=10.0)
    args = parser.parse_args()
    with serving_plugin_app():
        return measure(args.jobs, args.interval)


def measure(jobs: int, interval: float) -> int:
    hook = BatchHook(MACHINE)
    print(f"{jobs} jobs on {MACHINE}, ending 1.3 s apart; poll interval {interval:g} s")
    figures = {}
    for way in ("interval only", "notices", "exit-file wait"):
        late, polls = run(hook, jobs, interval, way)
        figures[way] = statistics.median(late)
        print(
            f"  {way:15} known late: p50 {statistics.median(late):.2f} s, max {max(late):.2f} s"
            f" ({polls} status commands)"
        )
    print(f"  notices vs interval only: p50 {figures['notices'] / figures['interval only']:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
