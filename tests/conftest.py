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
# The e2e tests share one embedded runtime (tests/e2e/conftest.py). Most of them are one scope, run by one
# worker in order: many stop or break a server and so run alone anyway, and beside the other worker's
# mostly short integration tests they wait little. The ``SIDE`` modules (long, none of their tests
# exclusive) are a scope each, run beside that one; every other test is a scope of its own. (One scope
# per e2e module was measured slower: 32 min against 29, each exclusive e2e test waiting for the other
# worker's long e2e test in flight.) A test marked ``exclusive``
# stops or breaks a server of the shared test bed (sshd, slurmctld, S3, the machine's Postgres, Grid
# Engine, the embedded runtime), fills a cluster or counts a shared table: it runs with no other test of
# that server beside it. Turns are per server (``bed_turns.SERVERS``): a test on the bed holds a shared
# turn on every server it can use (the runtime only for e2e tests) unless ``bed(*servers)`` names the
# only ones it uses (a long test that then holds up no exclusive test of another server), and
# ``exclusive(*servers)`` names the ones it breaks (none named: all), holding those alone and a shared
# turn on the rest. An ``exclusive`` mark on an e2e module holds its turn for the whole module, its
# module fixtures included (they pause DAGs, create incidents). (xdist's own ``loadgroup`` marks do not
# work with pytest 9: xdist renames items through a private attribute pytest 9 no longer reads.)
E2E = "tests/e2e/"
SIDE = tuple(
    f"{E2E}{name}.py"
    for name in ("test_scaled_mode", "test_services_dag", "test_study_pipeline", "test_observations")
)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class RuntimeScope(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            if not module.startswith(E2E):
                return nodeid
            return module if module in SIDE else E2E

    return RuntimeScope(config, log)


def _turns_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """The folder of this run's turn files, when tests run at once (None: they do not, or not on the bed)."""
    on_bed = any(request.node.get_closest_marker(m) for m in ("integration", "e2e"))
    if "PYTEST_XDIST_WORKER" not in os.environ or not on_bed:
        return None
    # the parent of a worker's base temp is the one folder all workers of this run share
    return tmp_path_factory.getbasetemp().parent


def _module_marked(node: pytest.Item | pytest.Module) -> bool:
    module = node if isinstance(node, pytest.Module) else node.getparent(pytest.Module)
    return (
        module is not None
        and module.nodeid.startswith(E2E)
        and any(m.name == "exclusive" for m in module.own_markers)
    )


@pytest.fixture(autouse=True, scope="module")
def _module_bed_turn(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    folder = _turns_folder(request, tmp_path_factory)
    if folder is None or not _module_marked(request.node):
        yield
        return
    with bed_turn(folder, bed_claims(request.node)):
        yield


@pytest.fixture(autouse=True)
def _bed_turn(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    folder = _turns_folder(request, tmp_path_factory)
    if folder is None or _module_marked(request.node):
        yield
        return
    with bed_turn(folder, bed_claims(request.node)):
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
