"""Shared e2e set-up: the embedded runtime, started once per run through scripts/runtime.py.

The session fixture starts the runtime with ``scripts/runtime.py start`` and stops it afterwards only
when it was not running before (a runtime someone left running stays up, with its data). Under xdist
both workers run e2e modules against the one runtime: the first to need it starts it, the last to
leave stops it (a count of its users in the folder the workers share), and starting waits for a
shared turn on it, so no worker starts it while a test of the other has it stopped on purpose.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow_client import AirflowClient
from bed_turns import RUNTIME as RUNTIME_SERVER
from bed_turns import bed_turn
from figures import PENDING

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = [sys.executable, str(ROOT / "scripts" / "runtime.py")]


def _runtime(command: str) -> subprocess.CompletedProcess[str]:
    # The runtime configures itself (and reads the test bed's connections itself): AIRFLOW* variables
    # of the test process (e.g. the AIRFLOW_CONN_* that conftest exports) are not passed on, so the
    # runtime keeps the configuration `make up` gives it instead of restarting with another one.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    return subprocess.run(
        [*RUNTIME, command], capture_output=True, text=True, env=env, timeout=300, check=False
    )


@contextlib.contextmanager
def _users(folder: Path) -> Iterator[dict[str, Any]]:
    """The runtime's users in this run (``{"count": n, "was_running": bool}``), read and written back
    under a lock on the file."""
    with open(folder / "runtime.users", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.seek(0)
        users = json.loads(held.read() or '{"count": 0, "was_running": true}')
        yield users
        held.seek(0)
        held.truncate()
        held.write(json.dumps(users))


@pytest.fixture(scope="session")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowClient]:
    # the folder all xdist workers of this run share (tests/conftest.py); without xdist, this session's own
    base = tmp_path_factory.getbasetemp()
    folder = base.parent if "PYTEST_XDIST_WORKER" in os.environ else base
    with bed_turn(folder, {RUNTIME_SERVER: False}), _users(folder) as users:
        if users["count"] == 0:
            users["was_running"] = _runtime("status").returncode == 0
        started = _runtime("start")
        if started.returncode != 0:
            pytest.fail(
                f"scripts/runtime.py start failed (exit {started.returncode}):\n{started.stdout}{started.stderr}",
                pytrace=False,
            )
        users["count"] += 1
    client = AirflowClient()
    try:
        yield client
    finally:
        client.close()
        with _users(folder) as users:
            users["count"] -= 1
            stop = users["count"] == 0 and not users["was_running"]
            if stop:
                stopped = _runtime("stop")
                assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """The figures reported during a phase (set-up, call, tear-down) go with that phase's report
    (``user_properties``: to the xdist controller too); tests/conftest.py prints them at the end."""
    report: pytest.TestReport = yield
    report.user_properties.extend(("figure", text) for text in PENDING)
    PENDING.clear()
    return report
