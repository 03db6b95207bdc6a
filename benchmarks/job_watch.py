"""Job watching: our shared per-machine poller vs the providers-ssh SSHRemoteJobTrigger, same jobs, same run.

For each N it submits N real Slurm jobs (held, so they stay watchable for the whole window), then
watches all of them for ``--window`` seconds twice: once with our BatchJobTrigger machinery (one
poller per machine) and once with N real ``SSHRemoteJobTrigger`` instances (providers-ssh, installed
version) pointed at the same jobs' exit-code files. It counts remote commands and SSH connection
opens (wrapping the peer's own connect/run methods), the CPU time of this process and its RSS growth
during the window (peak VmRSS, sampled every 0.2 s, minus VmRSS just before), then cancels the jobs.
The RSS figures are growth over what the process already holds: run a size alone (``--sizes 1000``)
for figures untouched by earlier rounds. Run: ``.venv/bin/python benchmarks/job_watch.py --sizes 10,100,500``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "var" / "airflow-bench"))

from connections import connection_env  # noqa: E402

os.environ.update(connection_env())

from airflow.providers.ssh.triggers.ssh_remote_job import SSHRemoteJobTrigger  # noqa: E402

from operators.hpc.adapters import JobRef  # noqa: E402
from operators.hpc.hook import BatchHook  # noqa: E402
from operators.hpc.poller import get_poller  # noqa: E402
from operators.hpc.transport import STATS  # noqa: E402


def submit_held(hook: BatchHook, n: int, tag: str) -> list[JobRef]:
    """N jobs submitted on hold in one remote command (they never start; released=cancelled at the end)."""
    workdir = f"{hook.machine.workdir}/bench/{tag}"
    script = f"{workdir}/job.sh"
    hook.transport.run(f"mkdir -p {workdir} && printf '#!/bin/bash\\nsleep 1\\n' > {script}").check("prepare")
    out = hook.transport.run(
        f"for i in $(seq 1 {n}); do sbatch --parsable -H -J uf-bench-{tag} -o /dev/null {script}; done",
        timeout=max(60.0, n * 0.3),
    ).check("submit")
    ids = [line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()]
    assert len(ids) == n, out.stderr[-500:]
    return [JobRef(i, f"{workdir}/{i}.exit") for i in ids]


async def watch_ours(conn_id: str, jobs: list[JobRef], interval: float, window: float) -> None:
    poller = get_poller(conn_id, "slurm", interval)
    tasks = [asyncio.ensure_future(poller.watch(j)) for j in jobs]
    await asyncio.sleep(window)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def watch_peer(conn_id: str, jobs: list[JobRef], interval: float, window: float) -> dict[str, int]:
    counts = {"commands": 0, "connects": 0, "connect_failures": 0}
    connect = SSHRemoteJobTrigger._connect
    run_command = SSHRemoteJobTrigger._run_command

    async def counting_connect(self):
        counts["connects"] += 1
        try:
            return await connect(self)
        except Exception:
            counts["connect_failures"] += 1
            raise

    async def counting_run(self, conn, command):
        counts["commands"] += 1
        return await run_command(self, conn, command)

    SSHRemoteJobTrigger._connect = counting_connect  # type: ignore[method-assign]
    SSHRemoteJobTrigger._run_command = counting_run  # type: ignore[method-assign]
    try:
        triggers = [
            SSHRemoteJobTrigger(
                ssh_conn_id=conn_id,
                remote_host=None,
                job_id=j.job_id,
                job_dir=j.exit_file.rsplit("/", 1)[0],
                log_file="/dev/null",
                exit_code_file=j.exit_file,
                remote_os="posix",
                poll_interval=int(interval),
            )
            for j in jobs
        ]

        async def drain(trigger: SSHRemoteJobTrigger) -> None:
            async for _event in trigger.run():
                return

        tasks = [asyncio.ensure_future(drain(t)) for t in triggers]
        await asyncio.sleep(window)
        for t in tasks:
            t.cancel()
        # Bounded: at large N some peer connections hang in sshd's MaxStartups throttling.
        _done, stuck = await asyncio.wait(tasks, timeout=15)
        counts["stuck_at_end"] = len(stuck)
    finally:
        SSHRemoteJobTrigger._connect = connect  # type: ignore[method-assign]
        SSHRemoteJobTrigger._run_command = run_command  # type: ignore[method-assign]
    return counts


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def with_peak_rss(coro: Coroutine[Any, Any, Any]) -> tuple[Any, int]:
    """Run ``coro`` while sampling this process's RSS; (its result, the peak RSS in KiB)."""
    peak = rss_kib()

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss_kib())
            await asyncio.sleep(0.2)

    sampler = asyncio.ensure_future(sample())
    try:
        result = await coro
    finally:
        sampler.cancel()
    return result, max(peak, rss_kib())


def measure(coro: Coroutine[Any, Any, Any]) -> tuple[float, float, Any]:
    """CPU seconds and RSS growth (MiB) of this process while ``coro`` runs; tasks still stuck
    afterwards are abandoned."""
    cpu, before = time.process_time(), rss_kib()
    loop = asyncio.new_event_loop()
    try:
        result, peak = loop.run_until_complete(with_peak_rss(coro))
    finally:
        loop.close()
    return time.process_time() - cpu, (peak - before) / 1024, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machine", default="alpha")
    parser.add_argument("--sizes", default="10,100,500")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--window", type=float, default=10.0)
    args = parser.parse_args()
    hook = BatchHook(args.machine)
    conn_id = hook.machine.connection
    assert conn_id, "job_watch needs an SSH machine"
    intervals = args.window / args.interval
    print(
        f"machine {args.machine}, poll interval {args.interval:g} s, window {args.window:g} s ({intervals:g} intervals)"
    )
    print(
        f"{'N':>5} | {'ours cmd/int':>12} {'conns':>5} {'CPU s':>6} {'RSS +MiB':>8} | "
        f"{'peer cmd/int':>12} {'conns':>5} {'refused':>7} {'CPU s':>6} {'RSS +MiB':>8} | {'fewer cmds':>10}"
    )
    for n in [int(s) for s in args.sizes.split(",")]:
        jobs = submit_held(hook, n, f"n{n}-{int(time.time())}")
        try:
            before_cmd, before_conn = STATS[f"{conn_id}:commands"], STATS[f"{conn_id}:connects"]
            ours_cpu, ours_rss, _ = measure(watch_ours(conn_id, jobs, args.interval, args.window))
            ours_cmd = STATS[f"{conn_id}:commands"] - before_cmd
            ours_conn = STATS[f"{conn_id}:connects"] - before_conn
            peer_cpu, peer_rss, peer = measure(watch_peer(conn_id, jobs, args.interval, args.window))
        finally:
            with contextlib.suppress(Exception):
                hook.cancel([j.job_id for j in jobs])
        assert isinstance(peer, dict)
        ratio = (peer["commands"] / ours_cmd) if ours_cmd else float("inf")
        print(
            f"{n:>5} | {ours_cmd / intervals:>12.1f} {ours_conn:>5} {ours_cpu:>6.2f} {ours_rss:>8.1f} | "
            f"{peer['commands'] / intervals:>12.1f} {peer['connects']:>5} {peer['connect_failures']:>7} "
            f"{peer_cpu:>6.2f} {peer_rss:>8.1f} | {ratio:>9.0f}x"
            + (
                f"  (peer: {peer['stuck_at_end']} triggers still stuck 15 s after cancel)"
                if peer.get("stuck_at_end")
                else ""
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
