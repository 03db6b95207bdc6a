"""Staging: our ObjectStoreHook vs the raw minio SDK, presigned vs through-worker, peak RSS at 2 GiB.

All measured in one run against the test bed (S3 server and the `alpha` host over sshd):
1. 1 GiB file up and down: ObjectStoreHook.put_file/get_file (sha256 while streaming, verified
   reads) vs raw ``fput_object``/``fget_object`` (no checksums), MB/s and the ratio of medians over
   five rounds in alternating order.
2. 256 MiB file from the HPC host to the store: ``presigned`` (curl on the host) vs ``sftp``
   (through this worker), seconds and bytes that passed through this process (counted by the
   transport's streaming methods, the only way bytes enter the worker on this path).
3. Peak RSS of a fresh worker process moving a 2 GiB object store -> file -> store, ours vs the raw SDK
   (both after the same imports and connection lookup, which set the floor).
Run: ``.venv/bin/python benchmarks/staging.py`` (needs ``scripts/testbed start s3 slurm sshd``).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "var" / "airflow-bench"))

from connections import connection_env  # noqa: E402

os.environ.update(connection_env())

from operators.hpc.hook import BatchHook  # noqa: E402
from operators.hpc.transport import STATS  # noqa: E402
from operators.storage.hook import ObjectStoreHook  # noqa: E402
from operators.storage.staging import stage_out  # noqa: E402

MiB = 1024 * 1024


def make_file(path: Path, size: int) -> None:
    block = os.urandom(4 * MiB)
    with open(path, "wb") as handle:
        for i in range(size // len(block)):
            handle.write(i.to_bytes(4, "big") + block[4:])


def timed(action: Callable[[], object]) -> float:
    os.sync()  # start clean: the previous transfer's dirty pages must not throttle this one's writes
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def sdk_vs_hook(store: ObjectStoreHook, tmp: Path, rounds: int = 5) -> None:
    """Each round uploads and downloads with both, the order alternating between rounds (so neither
    always runs on a warmer or busier server); the medians are compared."""
    size = 1024 * MiB
    source = tmp / "one-gib.bin"
    make_file(source, size)
    prefix = f"bench/{uuid.uuid4().hex[:8]}"
    raw = store.client
    actions: dict[str, Callable[[], object]] = {
        "raw up": lambda: raw.fput_object(store.bucket, f"{prefix}/raw.bin", str(source), part_size=16 * MiB),
        "ours up": lambda: store.put_file(f"{prefix}/ours.bin", source),
        "raw down": lambda: raw.fget_object(store.bucket, f"{prefix}/raw.bin", str(tmp / "raw.out")),
        "ours down": lambda: store.get_file(f"{prefix}/ours.bin", tmp / "ours.out"),
    }
    seconds: dict[str, list[float]] = {name: [] for name in actions}
    for i in range(rounds):
        for direction in ("up", "down"):
            order = ("raw", "ours") if i % 2 == 0 else ("ours", "raw")
            for who in order:
                seconds[f"{who} {direction}"].append(timed(actions[f"{who} {direction}"]))
    for name in ("raw.bin", "ours.bin"):
        store.delete(f"{prefix}/{name}")
    mb = size / 1e6
    print(
        f"1 GiB file, median of {rounds} rounds | raw SDK MB/s | ours MB/s | ours / raw | each round ours/raw"
    )
    for direction in ("up", "down"):
        raw_s, ours_s = seconds[f"raw {direction}"], seconds[f"ours {direction}"]
        each = " ".join(f"{r / o:.2f}" for r, o in zip(raw_s, ours_s, strict=True))
        r, o = statistics.median(raw_s), statistics.median(ours_s)
        print(f"{direction + 'load':<30} | {mb / r:>12.0f} | {mb / o:>9.0f} | {r / o:>9.2f}x | {each}")
    print("(ours also computes sha256 on upload and verifies it on download; raw does neither)")


def presigned_vs_worker(store: ObjectStoreHook) -> None:
    transport = BatchHook("alpha").transport
    path = f"/home/urgent/urgentflow/jobs/bench/{uuid.uuid4().hex[:8]}.bin"
    transport.run(f"mkdir -p {path.rsplit('/', 1)[0]} && head -c {256 * MiB} /dev/urandom > {path}").check(
        "make"
    )
    print("\n256 MiB host->store | seconds | bytes through this worker")
    for method in ("presigned", "sftp"):
        before = STATS["hpc_alpha:stream_bytes"]
        key = f"bench/{method}.bin"
        start = time.perf_counter()
        stage_out(transport, store, path, key, method)
        seconds = time.perf_counter() - start
        moved = STATS["hpc_alpha:stream_bytes"] - before
        print(f"{method:<19} | {seconds:>7.2f} | {moved / MiB:>10.1f} MiB")
        store.delete(key)
    transport.run(f"rm -f {path}")


def _peak_rss_child(who: str, key: str, target: str, queue: multiprocessing.Queue) -> None:
    store = ObjectStoreHook()
    store.stat(key)  # imports and connection set up: the baseline before any byte moves
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    if who == "ours":
        store.get_file(key, target)
        store.put_file(key + ".back", target)
    else:
        store.client.fget_object(store.bucket, key, target)
        store.client.fput_object(store.bucket, key + ".back", target, part_size=16 * MiB)
    store.delete(key + ".back")
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def peak_rss(store: ObjectStoreHook, tmp: Path) -> None:
    source = tmp / "two-gib.bin"
    make_file(source, 2048 * MiB)
    key = f"bench/{uuid.uuid4().hex[:8]}/two-gib.bin"
    store.put_file(key, source)
    source.unlink()
    spawn = multiprocessing.get_context("spawn")
    print(
        "\n2 GiB store -> file -> store, fresh process | peak RSS MiB | before any transfer | transfer adds"
    )
    for who in ("raw", "ours"):
        queue: multiprocessing.Queue = spawn.Queue()
        child = spawn.Process(target=_peak_rss_child, args=(who, key, str(tmp / "back.bin"), queue))
        child.start()
        baseline_kib = queue.get(timeout=120)
        peak_kib = queue.get(timeout=900)
        child.join()
        (tmp / "back.bin").unlink(missing_ok=True)
        print(
            f"{who + (' SDK' if who == 'raw' else ' hook'):<42} | {peak_kib / 1024:>12.0f} | "
            f"{baseline_kib / 1024:>19.0f} | {(peak_kib - baseline_kib) / 1024:>9.0f} MiB"
        )
    store.delete(key)


def main() -> int:
    store = ObjectStoreHook()
    with tempfile.TemporaryDirectory(dir=str(ROOT / "var")) as tmp:
        sdk_vs_hook(store, Path(tmp))
        presigned_vs_worker(store)
        peak_rss(store, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
