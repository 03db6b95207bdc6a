"""Completion notices: a job tells urgentflow's API that it ended, and its machine's poller looks at once.

Where the poller cannot wait on the machine for exit files (``watch_exit_files: false``: exit files on
a file system the login node sees late, or a site that does not allow a waiting command), a job's end
would be known only at the next poll. A machine with ``completion_notice: true`` in the machine catalog
gives each job a notice: right after its exit file is written the job POSTs its machine, name, a
random nonce and ``token = HMAC-SHA256(secret, machine, name, nonce)`` to the API
(``POST /urgentflow/jobs/notice``). The API checks the token (no one without the deployment's secret can
make one), accepts each nonce once, and tells every triggerer through Postgres ``NOTIFY`` on the catalog
database (operators.hpc.notice_listener): the machine's pollers poll at once. A notice only ever causes
a poll (the poll is what judges the job), and one that does not arrive changes nothing: polling at the
interval stays the fallback.

The API's address as the machines' compute nodes reach it (host: a base URL) and the secret (password)
are the Airflow Connection ``urgentflow_notice`` (``scripts/runtime.py`` makes one per deployment).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Any

from operators.connection_cache import cached_connection
from operators.hpc.spec import Notice

log = logging.getLogger(__name__)

NOTICE_CONN_ID = "urgentflow_notice"
NOTICE_PATH = "/urgentflow/jobs/notice"
CHANNEL = "urgentflow_job_notice"  # the catalog database's NOTIFY channel; the payload is the machine
_warned: set[str] = set()


def sign(secret: str, machine: str, job_name: str, nonce: str) -> str:
    message = "\n".join((machine, job_name, nonce)).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(secret: str, machine: str, job_name: str, nonce: str, token: str) -> bool:
    return hmac.compare_digest(sign(secret, machine, job_name, nonce), token)


def notice_secret(conn_id: str = NOTICE_CONN_ID) -> str | None:
    """The deployment's notice secret (None: no notice connection is configured)."""
    connection = _connection(conn_id)
    return str(connection.password) if connection is not None and connection.password else None


def notice_for(machine: str, job_name: str, conn_id: str = NOTICE_CONN_ID) -> Notice | None:
    """A fresh notice for one submission of ``job_name`` on ``machine``; None (logged once per process)
    when the deployment has no notice connection: the job is then only polled."""
    connection = _connection(conn_id)
    if connection is None or not connection.host or not connection.password:
        if conn_id not in _warned:
            _warned.add(conn_id)
            log.warning(
                "%s has completion_notice on but the Connection %r (host: the API's base URL, password: "
                "the notice secret) is missing or incomplete: its jobs are polled only",
                machine,
                conn_id,
            )
        return None
    nonce = secrets.token_hex(16)
    url = f"{str(connection.host).rstrip('/')}{NOTICE_PATH}"
    return Notice(url, machine, nonce, sign(str(connection.password), machine, job_name, nonce))


def _connection(conn_id: str) -> Any:
    from airflow.exceptions import AirflowNotFoundException

    try:
        return cached_connection(conn_id)
    except AirflowNotFoundException:
        return None
