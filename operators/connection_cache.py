"""Airflow Connections looked up once a minute per process, not once per hook.

In the triggerer and the scheduler every lookup goes through their supervisor, one request at a time:
an ensemble's members (each with its hooks) would queue behind each other for the same Connection. A
lookup is kept ``CONNECTION_TTL_SECONDS`` and made again at once when the Connection's
``AIRFLOW_CONN_<ID>`` environment variable changes.

A kept Connection parses its extras once, at the lookup. Airflow's ``Connection.extra_dejson`` sends the
extras to be masked on every access, and in the triggerer that is a request to its supervisor: a hook
opening a database connection (``PostgresHook.get_conn`` reads the extras) queued behind every other
request of an ensemble's members (measured with 200 members: catalog writes waited 6-24 s there).
"""

from __future__ import annotations

import copy
import functools
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
    connection = _extras_parsed_once(BaseHook.get_connection(conn_id))
    with _lock:
        _looked_up[key] = (time.monotonic(), connection)
    return connection


def _extras_parsed_once(connection: Any) -> Any:
    """``connection`` with its extras parsed and masked now (in this process and, from a task or a
    trigger, its supervisor); every access then gives a copy of them. Only the Task SDK's Connection
    (a plain attrs class) is changed."""
    from airflow.sdk import Connection

    if type(connection) is not Connection:
        return connection
    extra = connection.extra_dejson
    connection.__class__ = _extras_kept()
    connection.__dict__[_EXTRA] = extra
    return connection


_EXTRA = "_urgentflow_extra"


@functools.cache
def _extras_kept() -> type:
    from airflow.sdk import Connection

    class ExtrasKept(Connection):
        @property
        def extra_dejson(self) -> dict:
            return copy.deepcopy(self.__dict__[_EXTRA])

    ExtrasKept.__name__ = ExtrasKept.__qualname__ = Connection.__name__
    return ExtrasKept
