"""``POST /urgentflow/jobs/notice``: a job's completion notice is taken only with its own valid token, once,
for a machine that takes notices; anything else is a clear 4xx that wakes no poller. The machine
catalog is the real one (beta takes notices, alpha does not); the catalog's accept is faked at its
boundary (tests/integration/test_completion_notice.py runs it on the real database)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from operators.hpc.notice import sign
from urgentflow_api import notices
from urgentflow_api.app import create_app

SECRET = "n" * 48
NONCE = "0123456789abcdef0123456789abcdef"
PATH = "/jobs/notice"


class FakeNotices:
    accepted: ClassVar[list[tuple[str, str, str]]] = []

    def accept_notice(self, machine: str, job_name: str, nonce: str) -> bool:
        if any(seen[0] == machine and seen[2] == nonce for seen in self.accepted):
            return False
        self.accepted.append((machine, job_name, nonce))
        return True


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    connection = {"conn_type": "http", "host": "http://127.0.0.1:8080", "password": SECRET}
    monkeypatch.setenv("AIRFLOW_CONN_URGENTFLOW_NOTICE", json.dumps(connection))
    monkeypatch.setattr(FakeNotices, "accepted", [])
    monkeypatch.setattr(notices, "NoticeCatalog", FakeNotices)
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


def body(machine: str = "beta", job: str = "uf-job-1", nonce: str = NONCE, **extra: Any) -> dict[str, Any]:
    return {
        "machine": machine,
        "job": job,
        "nonce": nonce,
        "token": sign(SECRET, machine, job, nonce),
    } | extra


def test_a_valid_notice_is_taken_once_without_an_airflow_token(client: TestClient) -> None:
    first = client.post(PATH, json=body())
    assert (first.status_code, first.json()) == (202, {"accepted": True})
    assert FakeNotices.accepted == [("beta", "uf-job-1", NONCE)]
    replayed = client.post(PATH, json=body())
    assert replayed.status_code == 409 and "already received" in replayed.json()["detail"]
    assert len(FakeNotices.accepted) == 1


def test_a_token_of_another_job_or_secret_is_refused(client: TestClient) -> None:
    other_job = body() | {"token": sign(SECRET, "beta", "uf-job-2", NONCE)}
    other_secret = body() | {"token": sign("another secret", "beta", "uf-job-1", NONCE)}
    for sent in (other_job, other_secret):
        response = client.post(PATH, json=sent)
        assert response.status_code == 403 and response.json() == {"detail": notices.REFUSED}
    assert FakeNotices.accepted == []


@pytest.mark.parametrize("machine", ["alpha", "nosuch"])
def test_a_machine_that_takes_no_notices_is_refused_like_a_bad_token(
    client: TestClient, machine: str
) -> None:
    """The same answer as a wrong token: a caller without the secret learns nothing of the machines."""
    response = client.post(PATH, json=body(machine=machine))
    assert response.status_code == 403 and response.json() == {"detail": notices.REFUSED}
    assert FakeNotices.accepted == []


def test_without_a_notice_secret_no_notice_is_taken(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notices, "notice_secret", lambda: None)
    assert client.post(PATH, json=body()).status_code == 403
    assert FakeNotices.accepted == []


@pytest.mark.parametrize(
    "sent",
    [
        body(extra_field=1),
        body(nonce="0123"),
        body(job="uf job; rm -rf /"),
        body(machine="../beta"),
        {k: v for k, v in body().items() if k != "token"},
        body() | {"token": 12},
        body() | {"token": "'" * 64},
    ],
)
def test_a_malformed_notice_is_422_and_taken_by_no_one(client: TestClient, sent: dict[str, Any]) -> None:
    response = client.post(PATH, json=sent)
    assert response.status_code == 422, response.text
    assert FakeNotices.accepted == []
