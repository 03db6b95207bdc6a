"""Completion notices (operators/hpc/notice.py): signed per job and nonce, out of specs' dicts, reprs and
command lines, and sent by the job script for real after its exit file, whatever the command's code."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from operators.hpc import notice as notice_module
from operators.hpc.adapters import get_adapter
from operators.hpc.notice import NOTICE_PATH, notice_for, sign, verify
from operators.hpc.notice_listener import NoticeListener
from operators.hpc.spec import JobSpec, JobSpecError, Notice

SECRET = "s" * 48
NONCE = "0123456789abcdef0123456789abcdef"


def a_notice(url: str = "http://127.0.0.1:9/urgentflow/jobs/notice", nonce: str = NONCE) -> Notice:
    return Notice(url, "beta", nonce, sign(SECRET, "beta", "uf-job-1", nonce))


def spec(tmp_path: Path, notice: Notice | None, command: list[str] | None = None) -> JobSpec:
    return JobSpec(name="uf-job-1", command=command or ["true"], workdir=str(tmp_path), notice=notice)


def test_a_token_holds_for_its_machine_job_and_nonce_only() -> None:
    token = sign(SECRET, "beta", "uf-job-1", NONCE)
    assert verify(SECRET, "beta", "uf-job-1", NONCE, token)
    for machine, job, nonce, secret in (
        ("alpha", "uf-job-1", NONCE, SECRET),
        ("beta", "uf-job-2", NONCE, SECRET),
        ("beta", "uf-job-1", "f" * 32, SECRET),
        ("beta", "uf-job-1", NONCE, "another secret"),
    ):
        assert not verify(secret, machine, job, nonce, token)


@pytest.mark.parametrize(
    ("url", "machine", "nonce", "token"),
    [
        ('http://h/x"; touch /tmp/x; "', "beta", NONCE, "a" * 64),
        ("file:///etc/passwd", "beta", NONCE, "a" * 64),
        ("http://h/x", "be ta", NONCE, "a" * 64),
        ("http://h/x", "beta", "short", "a" * 64),
        ("http://h/x", "beta", NONCE, 'a" b'),
    ],
)
def test_a_notice_with_an_unsafe_value_is_refused_without_showing_its_token(
    url: str, machine: str, nonce: str, token: str
) -> None:
    with pytest.raises(JobSpecError, match="invalid") as caught:
        Notice(url, machine, nonce, token)
    assert "a" * 64 not in str(caught.value)


def test_the_notice_stays_out_of_the_specs_dict_and_repr(tmp_path: Path) -> None:
    """Two renderings of one task draw their own nonces: their dicts (ahead's digest) must still agree."""
    one, two = spec(tmp_path, a_notice()), spec(tmp_path, a_notice(nonce="f" * 32))
    assert one.to_dict() == two.to_dict() and one.to_dict()["notice"] is True
    assert spec(tmp_path, None).to_dict()["notice"] is False
    token = one.notice.token if one.notice else ""
    assert token not in repr(one) and token not in json.dumps(one.to_dict())


@pytest.mark.parametrize("system", ["slurm", "gridengine", "local"])
def test_the_token_is_in_the_script_only_as_curl_input_after_the_exit_file(
    tmp_path: Path, system: str
) -> None:
    job = spec(tmp_path, a_notice())
    script = get_adapter(system).render_script(job)
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    lines = script.splitlines()
    token = job.notice.token if job.notice else ""
    (with_token,) = [i for i, line in enumerate(lines) if token in line]
    assert lines[with_token].startswith('data = "{') and lines[with_token + 1] == "URGENTFLOW_NOTICE"
    exit_file_written = max(i for i, line in enumerate(lines) if line.startswith("printf '%s\\n'"))
    assert exit_file_written < with_token
    assert "URGENTFLOW_NOTICE" not in get_adapter(system).render_script(spec(tmp_path, None))


class Receiver(BaseHTTPRequestHandler):
    """Records each POST with whether the job's exit file was already there."""

    received: ClassVar[list[dict[str, Any]]] = []
    exit_file: ClassVar[Path]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(
            {
                "path": self.path,
                "type": self.headers["Content-Type"],
                "body": json.loads(body),
                "exit_file": self.exit_file.read_text() if self.exit_file.exists() else None,
            }
        )
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("OneReceiver", (Receiver,), {"received": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}{NOTICE_PATH}", handler
    finally:
        server.shutdown()
        server.server_close()


def run_script(tmp_path: Path, job: JobSpec) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "job.sh"
    script.write_text(get_adapter("slurm").render_script(job))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False, env=env)


@pytest.mark.parametrize("code", [0, 3])
def test_the_job_sends_its_notice_after_its_exit_file_and_keeps_its_code(
    tmp_path: Path, receiver: tuple[str, type[Receiver]], code: int
) -> None:
    url, handler = receiver
    job = spec(tmp_path, a_notice(url), ["bash", "-c", f"exit {code}"])
    handler.exit_file = Path(job.exit_file)
    done = run_script(tmp_path, job)
    assert done.returncode == code and done.stderr == ""
    (got,) = handler.received
    assert got["path"] == NOTICE_PATH and got["type"] == "application/json"
    assert got["exit_file"] == f"{code}\n", "the exit file is whole before the notice goes"
    body = got["body"]
    assert (body["machine"], body["job"], body["nonce"]) == ("beta", "uf-job-1", NONCE)
    assert verify(SECRET, body["machine"], body["job"], body["nonce"], body["token"])


def test_a_notice_nobody_receives_changes_nothing_for_the_job(tmp_path: Path) -> None:
    """Nothing listens on port 9 here: the job ends with its own code, quietly."""
    job = spec(tmp_path, a_notice(), ["bash", "-c", "exit 4"])
    done = run_script(tmp_path, job)
    assert (done.returncode, done.stderr) == (4, "")
    assert Path(job.exit_file).read_text() == "4\n"


def test_notice_for_signs_with_the_deployments_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    connection = {"conn_type": "http", "host": "http://api.example:8080/", "password": SECRET}
    monkeypatch.setenv("AIRFLOW_CONN_URGENTFLOW_NOTICE", json.dumps(connection))
    made = notice_for("beta", "uf-job-1")
    assert made is not None and made.url == "http://api.example:8080/urgentflow/jobs/notice"
    assert verify(SECRET, "beta", "uf-job-1", made.nonce, made.token)
    again = notice_for("beta", "uf-job-1")
    assert again is not None and again.nonce != made.nonce, "a nonce per submission"


def test_without_a_notice_connection_the_job_is_only_polled_and_that_is_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_URGENTFLOW_NOTICE_NONE", raising=False)
    monkeypatch.setattr(notice_module, "_warned", set())
    with caplog.at_level(logging.WARNING, logger=notice_module.__name__):
        assert notice_for("beta", "uf-job-1", conn_id="urgentflow_notice_none") is None
        assert notice_for("beta", "uf-job-2", conn_id="urgentflow_notice_none") is None
    assert [r.getMessage() for r in caplog.records if "polled only" in r.getMessage()] == [
        "beta has completion_notice on but the Connection 'urgentflow_notice_none' (host: the API's base "
        "URL, password: the notice secret) is missing or incomplete: its jobs are polled only"
    ]


class Poller:
    def __init__(self, watching: bool = True) -> None:
        self.watches: dict[str, Any] = {"1": ["a watch"]} if watching else {}
        self.notices = 0

    def noticed(self) -> None:
        self.notices += 1


def test_a_notice_wakes_the_pollers_of_its_machine_only() -> None:
    async def scenario() -> tuple[Poller, Poller, Poller]:
        listener = NoticeListener()
        beta, beta_too, gamma = Poller(), Poller(), Poller()
        for machine, poller in (("beta", beta), ("beta", beta_too), ("beta", beta), ("gamma", gamma)):
            listener.pollers.setdefault(machine, [])
            if not any(p is poller for p in listener.pollers[machine]):
                listener.pollers[machine].append(poller)
        listener._notice("beta")
        listener._notice("delta")
        return beta, beta_too, gamma

    beta, beta_too, gamma = asyncio.run(scenario())
    assert (beta.notices, beta_too.notices, gamma.notices) == (1, 1, 0)


def test_a_watcher_that_comes_while_the_listener_closes_is_listened_for() -> None:
    """The listener closes its connection (an await) when nobody watches; a poller registering then
    finds its task not yet done and starts none: the listener must listen again, not end."""

    async def scenario() -> int:
        listener = NoticeListener()
        late = Poller(watching=False)
        listener.pollers["beta"] = [late]
        calls = 0

        async def listen() -> None:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0)  # closing the connection
            late.watches = {"1": ["a watch"]} if calls == 1 else {}  # a watcher came during the first close

        listener._listen = listen  # type: ignore[method-assign]
        await asyncio.wait_for(listener._run(), 5)
        return calls

    assert asyncio.run(scenario()) == 2
