"""Shared test set-up: the test bed's Airflow Connections, visible to every hook as env variables."""

from __future__ import annotations

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

from bed_turns import bed_claims, bed_turn  # noqa: E402
from connections import connection_env  # noqa: E402

os.environ.update(connection_env())


# --- Two tests at a time (``make test``: pytest-xdist, two workers, ``--dist loadscope``) ---
# The e2e tests share one embedded runtime, so they are one scope: one worker runs them, in order; the
# scaled-mode module (an instance of its own) is another scope; every other test is a scope of its own.
# A test marked ``exclusive`` stops or breaks a server of the shared test bed (sshd, slurmctld, S3, the
# machine's Postgres, Grid Engine), fills a cluster or counts a shared table: it runs with no other
# test of that server beside it. Turns are per server (``bed_turns.SERVERS``): a test on the bed holds a shared
# turn on every server unless ``bed(*servers)`` names the only ones it uses (a long test that then
# holds up no exclusive test of another server), and ``exclusive(*servers)`` names the ones it breaks
# (none named: all), holding those alone and a shared turn on the rest. Killing a component of the
# embedded runtime needs no mark: only the e2e tests use that runtime, and they run one at a time.
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


@pytest.fixture(autouse=True)
def _bed_turn(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    node = request.node
    on_bed = any(node.get_closest_marker(m) for m in ("integration", "e2e"))
    if "PYTEST_XDIST_WORKER" not in os.environ or not on_bed:
        yield
        return
    # the parent of a worker's base temp is the one folder all workers of this run share
    with bed_turn(tmp_path_factory.getbasetemp().parent, bed_claims(node)):
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
