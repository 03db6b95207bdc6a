"""A small client for the embedded Airflow runtime's REST API v2 (used by demo.py, runtime.py and tests).

Where the runtime keeps its credentials is decided here too, so every user of the API finds them the
same way: ``$URGENTFLOW_HOME/runtime/passwords.json`` (``{"admin": "<password>"}``, mode 600).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from connections import default_home

USERNAME = "admin"
TERMINAL_RUN_STATES = frozenset({"success", "failed"})


def runtime_dir() -> Path:
    """State of the embedded runtime: pg/, airflow/ (AIRFLOW_HOME), logs/, run/, secrets."""
    return default_home() / "runtime"


def passwords_file() -> Path:
    return runtime_dir() / "passwords.json"


def api_port() -> int:
    return int(os.environ.get("URGENTFLOW_API_PORT", "8080"))


def base_url() -> str:
    """Base URL of the API server (``URGENTFLOW_API_URL`` overrides it, e.g. for a scaled deployment)."""
    return os.environ.get("URGENTFLOW_API_URL", f"http://127.0.0.1:{api_port()}").rstrip("/")


def read_password(username: str = USERNAME) -> str:
    path = passwords_file()
    try:
        return str(json.loads(path.read_text())[username])
    except FileNotFoundError:
        raise ApiError(f"no password file {path}: start the runtime first (make up)") from None
    except (KeyError, json.JSONDecodeError):
        raise ApiError(f"password file {path} has no entry for user {username!r}") from None


def run_url(dag_id: str, run_id: str, base: str | None = None) -> str:
    """The UI page of a DAG run."""
    return f"{base or base_url()}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe=':+')}"


class ApiError(RuntimeError):
    """An API call failed; ``status`` is the HTTP status (0 when the server could not be reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"].split("\n\n")[0][:500]
    if isinstance(body, dict) and "detail" in body:
        return json.dumps(body["detail"])[:500]
    return json.dumps(body)[:500]


def format_error(detail: Any, frames: int = 3) -> list[str]:
    """A task log's structured ``error_detail`` as a short Python-style traceback."""
    if not isinstance(detail, list):
        return [] if not detail else [str(detail)[:2000]]
    lines: list[str] = []
    for exc in detail:
        if not isinstance(exc, dict):
            continue
        stack = exc.get("frames") or []
        lines.append("Traceback (most recent call last):" + (" ..." if len(stack) > frames else ""))
        for frame in stack[-frames:]:
            lines.append(
                f'  File "{frame.get("filename")}", line {frame.get("lineno")}, in {frame.get("name")}'
            )
        lines.append(f"{exc.get('exc_type')}: {exc.get('exc_value')}")
    return lines


class AirflowClient:
    """Token-authenticated calls to ``/api/v2``; the token comes from ``POST /auth/token``."""

    def __init__(
        self,
        base: str | None = None,
        username: str = USERNAME,
        password: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base = (base or base_url()).rstrip("/")
        self.username = username
        self._password = password
        self._token: str | None = None
        self.http = httpx.Client(base_url=self.base, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- low level -------------------------------------------------------------------------------
    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach the Airflow API at {self.base}: {exc}") from None

    def token(self) -> str:
        """A JWT for ``username`` (cached)."""
        if self._token is None:
            password = self._password if self._password is not None else read_password(self.username)
            resp = self._send("POST", "/auth/token", json={"username": self.username, "password": password})
            if resp.status_code not in (200, 201):
                raise ApiError(f"POST /auth/token -> {resp.status_code}: {_detail(resp)}", resp.status_code)
            self._token = str(resp.json()["access_token"])
        return self._token

    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """Call ``path`` with the bearer token; return the decoded JSON body (or None when empty)."""
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        resp = self._send(method, path, headers=headers, **kwargs)
        if resp.status_code == 401:  # token expired or the secret changed: get a new one, once
            self._token = None
            headers["Authorization"] = f"Bearer {self.token()}"
            resp = self._send(method, path, headers=headers, **kwargs)
        if resp.status_code not in ok:
            raise ApiError(f"{method} {path} -> {resp.status_code}: {_detail(resp)}", resp.status_code)
        return resp.json() if resp.content else None

    def _paged(self, path: str, key: str, params: dict[str, Any] | None = None) -> list[dict]:
        items: list[dict] = []
        while True:
            page = self.request("GET", path, params={**(params or {}), "limit": 100, "offset": len(items)})
            items.extend(page[key])
            if not page[key] or len(items) >= page.get("total_entries", 0):
                return items

    # -- without auth ----------------------------------------------------------------------------
    def health(self) -> dict:
        resp = self._send("GET", "/api/v2/monitor/health")
        if resp.status_code != 200:
            raise ApiError(f"GET /api/v2/monitor/health -> {resp.status_code}", resp.status_code)
        return dict(resp.json())

    # -- DAGs ------------------------------------------------------------------------------------
    def get_dag(self, dag_id: str) -> dict | None:
        """The DAG, or None while it is not (yet) parsed."""
        try:
            return dict(self.request("GET", f"/api/v2/dags/{quote(dag_id, safe='')}"))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def import_errors(self) -> list[dict]:
        return self._paged("/api/v2/importErrors", "import_errors")

    def wait_for_dag(self, dag_id: str, timeout: float = 60.0) -> dict:
        """Wait (bounded) until the dag-processor has parsed ``dag_id``; report import errors if not."""
        deadline = time.monotonic() + timeout
        while True:
            dag = self.get_dag(dag_id)
            if dag is not None:
                return dag
            if time.monotonic() > deadline:
                errors = [
                    f"{e.get('filename')}: {str(e.get('stack_trace', '')).strip().splitlines()[-1:]}"
                    for e in self.import_errors()
                ]
                hint = ("; import errors: " + " | ".join(errors)) if errors else ""
                raise ApiError(f"DAG {dag_id!r} was not parsed within {timeout:.0f} s{hint}", 404)
            time.sleep(1.0)

    def unpause(self, dag_id: str) -> dict:
        return dict(
            self.request("PATCH", f"/api/v2/dags/{quote(dag_id, safe='')}", json={"is_paused": False})
        )

    def dag_tasks(self, dag_id: str) -> list[dict]:
        return list(self.request("GET", f"/api/v2/dags/{quote(dag_id, safe='')}/tasks")["tasks"])

    # -- runs ------------------------------------------------------------------------------------
    def trigger(self, dag_id: str, conf: dict | None = None, run_id: str | None = None) -> dict:
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return dict(
            self.request("POST", f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns", json=body, ok=(200, 201))
        )

    def get_run(self, dag_id: str, run_id: str) -> dict:
        return dict(
            self.request("GET", f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}")
        )

    def list_runs(self, dag_id: str) -> list[dict]:
        return self._paged(f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns", "dag_runs")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self._paged(
            f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances",
            "task_instances",
        )

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        """The XCom value (deserialized), or None when there is none."""
        path = (
            f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
            f"/taskInstances/{quote(task_id, safe='')}/xcomEntries/{quote(key, safe='')}"
        )
        try:
            entry = self.request("GET", path, params={"map_index": map_index, "deserialize": True})
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return entry.get("value")

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1
    ) -> list[str]:
        """The lines of one try's log, rendered as text."""
        path = (
            f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
            f"/taskInstances/{quote(task_id, safe='')}/logs/{try_number}"
        )
        body = self.request(
            "GET",
            path,
            params={"map_index": map_index, "full_content": True},
            headers={"Accept": "application/json"},
        )
        lines: list[str] = []
        in_group = False
        for item in body.get("content", []):
            if not isinstance(item, dict):
                lines.append(str(item))
                continue
            event = str(item.get("event", ""))
            if event.startswith("::group::") or event.startswith("::endgroup::"):
                in_group = event.startswith("::group::")  # the UI's folded "log source" block
                continue
            if in_group:
                continue
            stamp = str(item.get("timestamp") or "")[11:19]
            level = str(item.get("level") or "").upper()
            lines.append(f"{stamp} {level:<7} {event}".strip())
            lines.extend(format_error(item.get("error_detail")))
        return lines

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = 600.0,
        poll: float = 1.0,
        on_poll: Callable[[dict, list[dict]], None] | None = None,
    ) -> dict:
        """Poll the run until it ends (bounded); ``on_poll(run, task_instances)`` sees every poll."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(dag_id, run_id)
            if on_poll is not None:
                on_poll(run, self.task_instances(dag_id, run_id))
            if run["state"] in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise ApiError(f"run {run_id} of {dag_id} still {run['state']} after {timeout:.0f} s", 0)
            time.sleep(poll)
