"""The outbox: put() never waits for the catalog; records are applied in order, retried, and survive."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from operators.catalog.outbox import CLAIMED, Outbox


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time limit"
        time.sleep(0.01)


def test_put_returns_at_once_while_the_catalog_stalls_and_records_arrive_in_order_after(
    tmp_path: Path,
) -> None:
    stalled, applied = threading.Event(), []

    def apply(record: dict[str, Any]) -> None:
        if not stalled.is_set():
            stalled.wait(5)  # the catalog hangs (a SIGSTOPped Postgres) ...
            raise TimeoutError("statement timeout")  # ... until the statement timeout
        applied.append(record["n"])

    box = Outbox(tmp_path, apply, max_backoff=0.05)
    t0 = time.monotonic()
    for n in range(5):
        box.put({"n": n, "state": "running" if n % 2 else "success"})
    assert time.monotonic() - t0 < 1.0, "put() waited for the catalog"
    assert applied == [] and len(box.pending()) == 5
    stalled.set()
    wait_for(lambda: applied == [0, 1, 2, 3, 4])
    wait_for(lambda: box.pending() == [])


def test_records_of_a_crashed_process_are_applied_by_the_next(tmp_path: Path) -> None:
    left = Outbox(tmp_path, lambda r: None)
    # as a process that died before writing: spooled, one even claimed by the (dead) pid 2**22 + 1
    left.directory.mkdir(parents=True, exist_ok=True)
    (tmp_path / "00000000000000000001-1-000001.json").write_text(json.dumps({"n": 1}))
    (tmp_path / f"00000000000000000002-1-000002.json{CLAIMED}{2**22 + 1}").write_text(json.dumps({"n": 2}))
    applied: list[int] = []
    assert Outbox(tmp_path, lambda r: applied.append(r["n"])).drain() == 0
    assert applied == [1, 2]


def test_a_record_claimed_by_a_live_process_is_left_to_it(tmp_path: Path) -> None:
    mine = tmp_path / f"00000000000000000001-1-000001.json{CLAIMED}{os.getpid()}"
    tmp_path.mkdir(exist_ok=True)
    mine.write_text(json.dumps({"n": 1}))
    applied: list[int] = []
    assert Outbox(tmp_path, lambda r: applied.append(r["n"])).drain() == 1
    assert applied == [] and mine.exists()


def test_an_unexpected_error_in_apply_keeps_the_record_and_the_writer_alive(tmp_path: Path) -> None:
    calls: list[int] = []

    def apply(record: dict[str, Any]) -> None:
        calls.append(record["n"])
        if len(calls) < 3:
            raise KeyError("a bug")

    box = Outbox(tmp_path, apply, max_backoff=0.05)
    box.put({"n": 7})
    wait_for(lambda: calls == [7, 7, 7] and box.pending() == [])
