"""Airflow Connections looked up once a minute per process, not once per hook.

In the triggerer and the scheduler every lookup goes through their supervisor, one request at a time:
an ensemble's members (each with its hooks) would queue behind each other for the same Connection. A
lookup is kept ``CONNECTION_TTL_SECONDS`` and made again at once when the Connection's
``AIRFLOW_CONN_<ID>`` environment variable changes.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

CONNECTION_TTL_SECONDS = 60.0

# (conn_id, its AIRFLOW_CONN_ variable) -> (monotonic time of the lookup, the Airflow Connection)
_looked_up: dict[tuple[str, str | None], tuple[float, Any]] = {}
_lock = threading.Lock()


def cached_connection(conn_id: str) -> Any:
    """The Airflow Connection ``conn_id``, from this process's last lookup when it is recent enough."""
    from airflow.sdk import BaseHook

    key = (conn_id, os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}"))
    with _lock:
        found = _looked_up.get(key)
    if found and time.monotonic() - found[0] < CONNECTION_TTL_SECONDS:
        return found[1]
    connection = BaseHook.get_connection(conn_id)
    with _lock:
        _looked_up[key] = (time.monotonic(), connection)
    return connection
