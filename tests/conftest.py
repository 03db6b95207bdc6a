"""Shared test set-up: the test bed's Airflow Connections, visible to every hook as env variables."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "plugins"))
# In-process Airflow (DagBag, hooks) gets a throw-away home of its own, never ~/airflow; the
# runtime under test has its own home (scripts/runtime.py).
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "var" / "airflow-test"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from connections import connection_env  # noqa: E402

os.environ.update(connection_env())


# --- Two tests at a time (``make test``: pytest-xdist, two workers, ``--dist loadscope``) ---
# The e2e tests share one embedded runtime, so they are one scope: one worker runs them, in order; the
# scaled-mode module (an instance of its own) is another scope; every other test is a scope of its own.
# A test marked ``exclusive`` stops or breaks a server of the shared test bed (sshd, slurmctld, S3, the
# machine's Postgres, Grid Engine), fills a cluster or counts a shared table: it runs with no other
# test-bed test beside it. Killing a component of the embedded runtime needs no mark: only the e2e
# tests use that runtime, and they run one at a time.
# (xdist's own ``loadgroup`` marks do not work with pytest 9: xdist renames items through a private
# attribute pytest 9 no longer reads.)
SCALED = "tests/e2e/test_scaled_mode.py"


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class RuntimeScope(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(SCALED):
                return SCALED
            return "tests/e2e" if nodeid.startswith("tests/e2e/") else nodeid

    return RuntimeScope(config, log)


@contextlib.contextmanager
def bed_turn(folder: Path, *, exclusive: bool) -> Iterator[None]:
    """A turn on the shared test bed: shared by any number of tests, or one exclusive test alone.

    Two ``flock`` files: the turn itself (shared or exclusive) and a gate in front of it that an
    exclusive test holds while it waits, so no shared test starts after it asked (no starvation)."""
    with open(folder / "bed.gate", "a") as gate, open(folder / "bed.turn", "a") as turn:
        if exclusive:
            fcntl.flock(gate, fcntl.LOCK_EX)
            fcntl.flock(turn, fcntl.LOCK_EX)
        else:
            fcntl.flock(gate, fcntl.LOCK_SH)
            fcntl.flock(turn, fcntl.LOCK_SH)
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield  # the files' locks go when they are closed


@pytest.fixture(autouse=True)
def _bed_turn(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    node = request.node
    on_bed = any(node.get_closest_marker(m) for m in ("integration", "e2e"))
    if "PYTEST_XDIST_WORKER" not in os.environ or not on_bed:
        yield
        return
    # the parent of a worker's base temp is the one folder all workers of this run share
    with bed_turn(
        tmp_path_factory.getbasetemp().parent, exclusive=bool(node.get_closest_marker("exclusive"))
    ):
        yield


# --- Figures the e2e tests measure (tests/e2e/figures.py), printed together at the end of the run ---
# Here, not in tests/e2e/conftest.py: under xdist the controller, which prints the summary, loads only
# this conftest. A figure arrives in its test's report (``user_properties``).
FIGURES: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    FIGURES.extend((report.nodeid, str(text)) for name, text in report.user_properties if name == "figure")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Every figure the e2e tests reported (fault recovery times first among them), one line each."""
    if FIGURES:
        terminalreporter.section("figures measured by the e2e tests")
        for test, text in FIGURES:
            terminalreporter.write_line(f"{test}: {' '.join(text.split())}")
