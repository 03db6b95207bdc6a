"""Shared test set-up: the test bed's Airflow Connections, visible to every hook as env variables."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
# In-process Airflow (DagBag, hooks) gets a throw-away home of its own, never ~/airflow; the
# runtime under test has its own home (scripts/runtime.py).
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "var" / "airflow-test"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from connections import connection_env, load_connections  # noqa: E402

os.environ.update(connection_env())


def testbed_connection(conn_id: str) -> dict:
    """The recorded connection ``conn_id``; fails (never skips) when the test bed did not record it."""
    conns = load_connections()
    if conn_id not in conns:
        pytest.fail(
            f"test-bed connection {conn_id!r} is missing: run `scripts/testbed start` (make test does)",
            pytrace=False,
        )
    return conns[conn_id]
