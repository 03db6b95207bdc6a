"""Airflow Connections of the test bed, shared by the runtime and the tests.

Each test-bed part writes one JSON file per connection id into ``$CONN_DIR`` (``scripts/lib.sh``:
``write_connection``). This module turns them into ``AIRFLOW_CONN_<ID>`` variables, the form every
Airflow component and hook reads without a database row.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def default_home() -> Path:
    """Where urgentflow keeps its state (same rule as scripts/lib.sh)."""
    if "URGENTFLOW_HOME" in os.environ:
        return Path(os.environ["URGENTFLOW_HOME"])
    if os.geteuid() == 0:
        return Path("/var/lib/urgentflow")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "urgentflow"


def connections_dir() -> Path:
    if "CONN_DIR" in os.environ:
        return Path(os.environ["CONN_DIR"])
    testbed = os.environ.get("TESTBED_DIR") or str(default_home() / "testbed")
    return Path(testbed) / "connections"


def load_connections(directory: Path | None = None) -> dict[str, dict]:
    """Return ``{conn_id: connection_json}`` for every connection the test bed recorded."""
    directory = directory or connections_dir()
    found: dict[str, dict] = {}
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            found[path.stem] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SystemExit(f"connection file {path} is not valid JSON: {exc}") from None
    return found


def connection_env(directory: Path | None = None) -> dict[str, str]:
    """``AIRFLOW_CONN_<ID>`` variables for every recorded connection."""
    return {
        f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)
        for conn_id, conn in load_connections(directory).items()
    }
