"""Staging: our ObjectStoreHook vs the raw minio SDK, presigned vs through-worker, peak RSS at 2 GiB.

All measured in one run against the test bed (S3 server and the `alpha` host over sshd):
1. 1 GiB file up and down: ObjectStoreHook.put_file/get_file (sha256 while streaming, verified
   reads) vs raw ``fput_object``/``fget_object`` (no checksums), MB/s and the ratio.
2. 256 MiB file from the HPC host to the store: ``presigned`` (curl on the host) vs ``sftp``
   (through this worker), seconds and bytes that passed through this process (counted by the
   transport's streaming methods, the only way bytes enter the worker on this path).
3. Peak RSS of a fresh worker process moving a 2 GiB object store -> file -> store.
Run: ``.venv/bin/python benchmarks/staging.py`` (needs ``scripts/testbed start s3 slurm sshd``).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
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
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def sdk_vs_hook(store: ObjectStoreHook, tmp: Path) -> None:
    size = 1024 * MiB
    source = tmp / "one-gib.bin"
    make_file(source, size)
    prefix = f"bench/{uuid.uuid4().hex[:8]}"
    raw = store.client
    raw_up = timed(
        lambda: raw.fput_object(store.bucket, f"{prefix}/raw.bin", str(source), part_size=16 * MiB)
    )
    ours_up = timed(lambda: store.put_file(f"{prefix}/ours.bin", source))
    raw_down = timed(lambda: raw.fget_object(store.bucket, f"{prefix}/raw.bin", str(tmp / "raw.out")))
    ours_down = timed(lambda: store.get_file(f"{prefix}/ours.bin", tmp / "ours.out"))
    for name in ("raw.bin", "ours.bin"):
        store.delete(f"{prefix}/{name}")
    mb = size / 1e6
    print("1 GiB file        |  raw SDK MB/s |  ours MB/s | ours / raw")
    print(f"upload            | {mb / raw_up:>13.0f} | {mb / ours_up:>10.0f} | {raw_up / ours_up:>9.2f}x")
    print(
        f"download          | {mb / raw_down:>13.0f} | {mb / ours_down:>10.0f} | {raw_down / ours_down:>9.2f}x"
    )
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


def _peak_rss_child(key: str, target: str, queue: multiprocessing.Queue) -> None:
    store = ObjectStoreHook()
    store.stat(key)  # imports and connection set up: the baseline before any byte moves
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    store.get_file(key, target)
    store.put_file(key + ".back", target)
    store.delete(key + ".back")
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def peak_rss(store: ObjectStoreHook, tmp: Path) -> None:
    source = tmp / "two-gib.bin"
    make_file(source, 2048 * MiB)
    key = f"bench/{uuid.uuid4().hex[:8]}/two-gib.bin"
    store.put_file(key, source)
    source.unlink()
    queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
    child = multiprocessing.get_context("spawn").Process(
        target=_peak_rss_child, args=(key, str(tmp / "back.bin"), queue)
    )
    child.start()
    baseline_kib = queue.get(timeout=120)
    peak_kib = queue.get(timeout=900)
    child.join()
    store.delete(key)
    print(
        f"\n2 GiB store -> file -> store in a fresh worker process: peak RSS {peak_kib / 1024:.0f} MiB "
        f"(after imports, before any transfer: {baseline_kib / 1024:.0f} MiB; "
        f"transfer adds {(peak_kib - baseline_kib) / 1024:.0f} MiB)"
    )


def main() -> int:
    store = ObjectStoreHook()
    with tempfile.TemporaryDirectory(dir=str(ROOT / "var")) as tmp:
        sdk_vs_hook(store, Path(tmp))
        presigned_vs_worker(store)
        peak_rss(store, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
