"""A durable outbox: records that must reach the catalog, written later by a background thread.

Callers that must never wait for the catalog (the exit-handler listener runs inside the scheduler's
loop) ``put`` a JSON record: it is written to a spool directory (one file per record, atomically) and a
writer thread applies it with ``apply``. A record that cannot be applied now (the catalog stalled or
down) stays and is retried with backoff, in order; records survive a crash of the process and are
applied by the next process that starts an outbox on the same directory. Each process claims a record
by renaming it before applying it, so two processes never apply the same record at once; a claim of a
process that died is taken back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
CLAIMED = ".claimed-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Outbox:
    def __init__(
        self,
        directory: Path,
        apply: Callable[[dict[str, Any]], None],
        max_backoff: float = 30.0,
    ) -> None:
        self.directory = directory
        self.apply = apply
        self.max_backoff = max_backoff
        self._wake = threading.Event()
        self._seq = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def put(self, record: dict[str, Any]) -> None:
        """Spool ``record`` (durably) and wake the writer; never touches the catalog."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._seq += 1
            name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.json"
        tmp = self.directory / f".{name}.tmp"
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(record, out, default=str)
            out.flush()
            os.fsync(out.fileno())
        tmp.rename(self.directory / name)
        self.start()
        self._wake.set()

    def start(self) -> None:
        """The writer thread (a daemon), once per process."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="urgentflow-outbox", daemon=True)
                self._thread.start()

    def pending(self) -> list[Path]:
        """Records not applied yet, oldest first (claimed by a live process or not)."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.name.endswith(".json") or CLAIMED in p.name)

    def drain(self) -> int:
        """Apply every record this process can claim, in order; stop at the first that fails (kept for
        later: order matters, e.g. ``running`` before ``success``). How many are left."""
        self._take_back_dead_claims()
        for path in sorted(self.directory.glob("*.json")) if self.directory.is_dir() else []:
            claimed = path.with_name(f"{path.name}{CLAIMED}{os.getpid()}")
            try:
                path.rename(claimed)
            except FileNotFoundError:  # another process claimed it
                continue
            try:
                self.apply(json.loads(claimed.read_text(encoding="utf-8")))
            except Exception as exc:
                claimed.rename(path)
                log.warning(
                    "outbox: %s not written yet (%s: %s); retrying", path.name, type(exc).__name__, exc
                )
                break
            claimed.unlink()
        return len(self.pending())

    def _take_back_dead_claims(self) -> None:
        if not self.directory.is_dir():
            return
        for path in self.directory.iterdir():
            name, sep, pid = path.name.partition(CLAIMED)
            if sep and pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    path.rename(path.with_name(name))

    def _run(self) -> None:
        backoff = 1.0
        while True:
            self._wake.clear()  # before draining: a put() meanwhile makes the wait below return at once
            try:
                left = self.drain()
            except Exception:  # the writer never dies: an unexpected error is retried like a failed write
                log.exception("outbox: drain failed")
                left = 1
            if left:
                self._wake.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            else:
                self._wake.wait()
                backoff = 1.0
