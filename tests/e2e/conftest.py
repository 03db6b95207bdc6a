"""Shared e2e set-up: the embedded runtime, started once per session through scripts/runtime.py.

The session fixture starts the runtime with ``scripts/runtime.py start`` and stops it afterwards only
when it was not running before (a runtime someone left running stays up, with its data).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from airflow_client import AirflowClient
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


@pytest.fixture(scope="session")
def airflow() -> Iterator[AirflowClient]:
    was_running = _runtime("status").returncode == 0
    started = _runtime("start")
    if started.returncode != 0:
        pytest.fail(
            f"scripts/runtime.py start failed (exit {started.returncode}):\n{started.stdout}{started.stderr}",
            pytrace=False,
        )
    client = AirflowClient()
    try:
        yield client
    finally:
        client.close()
        if not was_running:
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
