"""Cross-site request forgery and browser hardening of the whole plugin app (``create_app``), through
FastAPI's TestClient: Airflow's user dependency overridden at the boundary (the ``_token`` cookie or a
Bearer header is still what the request carries), the catalog and the permission check faked.

A write authenticated by the UI cookie alone is refused unless it is a request a foreign page cannot
send without a CORS preflight (the ``X-Urgentflow-CSRF`` header) or comes from the API server's
configured origin; every response carries the hardening headers; pages get a nonce-based CSP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from airflow.api_fastapi.core_api.security import get_user
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from urgentflow_api import incidents, incidents_page, machines, services
from urgentflow_api.app import create_app

BASE_URL = "https://airflow.test:8443/"
ORIGIN = "https://airflow.test:8443"
COOKIE = {"Cookie": "_token=a.ui.token"}
CSRF = {"X-Urgentflow-CSRF": "1"}
LIVE = "svc-" + "a" * 24
EVIL = "svc-" + "b" * 24
NOW = datetime(2026, 11, 26, 22, 0, tzinfo=UTC)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def service(service_id: str, url: str) -> dict[str, Any]:
    return {
        "id": service_id,
        "dag_id": "wildfire_forecast",
        "run_id": "manual__1",
        "task_id": "viewer",
        "url": url,
        "state": "running",
        "image": "urgentflow/viewer:1",
        "owner": "ada",
        "expires_at": None,
        "last_seen": None,
        "created_at": NOW,
    }


class FakeCatalog:
    """The catalog of services and incidents (one incident whose run has both services)."""

    services: ClassVar[dict[str, dict[str, Any]]] = {
        LIVE: service(LIVE, "http://127.0.0.1:4711/"),
        EVIL: service(EVIL, "javascript:alert(1)"),
    }
    touched: ClassVar[list[str]] = []

    def service(self, service_id: str) -> dict[str, Any] | None:
        return self.services.get(service_id)

    def recent_services(self, limit: int) -> list[dict[str, Any]]:
        return list(self.services.values())[:limit]

    def touch_service(self, service_id: str) -> None:
        self.touched.append(service_id)

    def incidents(self, limit: int = 100) -> list[dict[str, Any]]:
        return []

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        payload = {"name": "Monchique"}
        return {"id": incident_id, "kind": "wildfire", "status": "running", "payload": payload} | {
            "created_at": NOW,
            "updated_at": NOW,
        }

    def runs_of_incident(self, incident_id: str) -> list[dict[str, Any]]:
        return [
            {"dag_id": "wildfire_forecast", "run_id": "manual__1", "state": "running", "role": "incident"}
        ]

    def datasets_of_run(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return []

    def jobs_of_run(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return []

    def services_of_run(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return list(self.services.values())

    def datasets_of_incident(self, incident_id: str, prefix: str = "") -> list[dict[str, Any]]:
        return []


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, grant_all: None) -> FastAPI:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)
    monkeypatch.setenv(
        "AIRFLOW_CONN_OBJECT_STORE",
        '{"conn_type": "generic", "host": "store.test", "port": 19000, "extra": {"secure": false}}',
    )
    FakeCatalog.touched = []
    for module in (services, incidents, incidents_page):
        monkeypatch.setattr(module, "Catalog", FakeCatalog)
    monkeypatch.setattr(machines, "machines_report", list)
    app = create_app()
    app.dependency_overrides[get_user] = lambda: {"name": "ada"}
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def keepalive(client: TestClient, headers: dict[str, str]) -> Any:
    return client.post(f"/services/{LIVE}/keepalive", headers=headers)


def writes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every state-changing route of the app, with plausible ids filled in."""
    ids = {"incident_id": "inc-0123456789ab", "order_id": "ord-0123456789ab", "service_id": LIVE}
    return [
        (method, route.path.format(**ids))
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods - SAFE_METHODS)
    ]


def test_every_write_authenticated_by_the_cookie_alone_is_refused(app: FastAPI, client: TestClient) -> None:
    found = writes(app)
    assert {m for m, _ in found} >= {"POST"} and len(found) >= 4
    for method, path in found:
        for extra in ({}, {"Origin": "http://127.0.0.1:4711"}, {"Origin": "null"}):
            response = client.request(method, path, headers={**COOKIE, **extra}, json={})
            assert response.status_code == 403, (method, path, extra, response.text)
            assert "X-Urgentflow-CSRF" in response.json()["detail"]
    assert FakeCatalog.touched == []


def test_the_csrf_header_or_the_configured_origin_lets_a_cookie_write_through(client: TestClient) -> None:
    assert keepalive(client, {**COOKIE, **CSRF}).status_code == 200
    assert keepalive(client, {**COOKIE, "Origin": ORIGIN}).status_code == 200
    assert keepalive(client, {**COOKIE, "Origin": "HTTPS://Airflow.test:8443"}).status_code == 200
    assert FakeCatalog.touched == [LIVE, LIVE, LIVE]


def test_the_origin_is_read_from_configuration_never_from_the_request(client: TestClient) -> None:
    # the request's own Host would match this Origin: it is not what is trusted
    forged = {**COOKIE, "Host": "evil.test:4711", "Origin": "http://evil.test:4711"}
    assert keepalive(client, forged).status_code == 403
    assert keepalive(client, {**COOKIE, "Origin": "https://airflow.test"}).status_code == 403  # other port
    assert FakeCatalog.touched == []


def test_bearer_callers_and_anonymous_ones_are_not_affected(client: TestClient) -> None:
    assert keepalive(client, {"Authorization": "Bearer t0ken", **COOKIE}).status_code == 200
    assert keepalive(client, {"Authorization": "bearer t0ken"}).status_code == 200
    # a scheme a browser may add by itself (HTTP Basic of a proxy) is no proof: the cookie still authenticates
    assert keepalive(client, {"Authorization": "Basic YTpi", **COOKIE}).status_code == 403
    assert keepalive(client, {"Authorization": "Bearer ", **COOKIE}).status_code == 403
    assert FakeCatalog.touched == [LIVE, LIVE]


def test_without_a_cookie_a_write_is_left_to_authentication(app: FastAPI) -> None:
    app.dependency_overrides.clear()
    with TestClient(app) as client:
        assert keepalive(client, {}).status_code == 401


@pytest.mark.parametrize(
    "path", ["/services", f"/services/{LIVE}", "/ui/services", "/ui/incidents", "/ui/machines"]
)
def test_every_response_is_hardened(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    assert response.headers["referrer-policy"] == "no-referrer"
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in policy and "default-src 'none'" in policy
    assert "unsafe-inline" not in directive(policy, "script-src")


def test_refusals_are_hardened_too(client: TestClient) -> None:
    response = keepalive(client, COOKIE)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


class BrokenCatalog:
    def recent_services(self, limit: int) -> list[dict[str, Any]]:
        raise RuntimeError("the catalog broke")


def test_an_unexpected_error_is_hardened_too(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Starlette answers an unhandled error outside the app's middleware: the 500 carries the headers
    itself (and says nothing of the error but a reference to the log)."""
    monkeypatch.setattr(services, "Catalog", BrokenCatalog)
    response = client.get("/services")
    assert response.status_code == 500 and "broke" not in response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'self'"


def directive(policy: str, name: str) -> str:
    return next((d.strip() for d in policy.split(";") if d.strip().startswith(name + " ")), "")


def test_the_services_page_script_runs_by_nonce_and_sends_the_csrf_header(client: TestClient) -> None:
    first, second = client.get("/ui/services"), client.get("/ui/services")
    nonce = re.fullmatch(
        r"script-src 'nonce-([A-Za-z0-9_-]{16,})'",
        directive(first.headers["content-security-policy"], "script-src"),
    )
    assert nonce is not None
    scripts = re.findall(r"<script([^>]*)>", first.text)
    assert scripts and all(attrs == f' nonce="{nonce.group(1)}"' for attrs in scripts)
    assert nonce.group(1) not in second.text  # a fresh nonce per response
    assert "'X-Urgentflow-CSRF': '1'" in first.text


def test_pages_may_show_images_of_the_object_store(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = client.get("/ui/incidents").headers["content-security-policy"]
    assert directive(policy, "img-src") == "img-src 'self' http://store.test:19000"
    monkeypatch.delenv("AIRFLOW_CONN_OBJECT_STORE")
    policy = client.get("/ui/incidents").headers["content-security-policy"]
    assert directive(policy, "img-src") == "img-src 'self'"


def test_the_api_docs_keep_their_cdn_scripts(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200 and "content-security-policy" not in response.headers
    assert response.headers["x-frame-options"] == "SAMEORIGIN"


def test_a_service_url_is_a_link_only_when_it_is_http(client: TestClient) -> None:
    page = client.get("/ui/services").text
    assert 'href="http://127.0.0.1:4711/"' in page and "javascript:" not in page
    listed = {s["service_id"]: s["url"] for s in client.get("/services").json()}
    assert listed == {LIVE: "http://127.0.0.1:4711/", EVIL: None}
    assert client.get(f"/services/{EVIL}").json()["url"] is None
    detail = client.get("/incidents/inc-0123456789ab").json()
    assert [s["url"] for s in detail["runs"][0]["services"]] == ["http://127.0.0.1:4711/", None]
