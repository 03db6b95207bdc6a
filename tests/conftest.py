"""Shared test set-up: the test bed's Airflow Connections, visible to every hook as env variables."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "plugins"))
# In-process Airflow (DagBag, hooks) gets a throw-away home of its own, never ~/airflow; the
# runtime under test has its own home (scripts/runtime.py).
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "var" / "airflow-test"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from connections import connection_env  # noqa: E402

os.environ.update(connection_env())
