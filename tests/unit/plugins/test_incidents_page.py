"""The Incidents page and its thumbnails, through FastAPI's TestClient: Airflow's own user dependency
(401 without a token), the catalog, Airflow's auth manager and the object store faked at their boundary."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.api_fastapi.core_api.security import get_user
from fastapi import FastAPI
from fastapi.testclient import TestClient

from operators.storage.hook import ObjectStoreHook
from urgentflow_api import incidents_page
from urgentflow_api.incidents_page import IncidentRow, render_page

MINE, DONE, QUIET, OTHER = "inc-00000000000a", "inc-00000000000b", "inc-00000000000c", "inc-00000000000d"
CREATED = datetime(2026, 11, 26, 22, 0, tzinfo=UTC)


def run(incident: str, n: int, state: str, reason: str = "") -> dict[str, Any]:
    return {
        "dag_id": "wildfire_forecast",
        "run_id": f"manual__{incident}-{n}",
        "role": "incident",
        "state": state,
        "reason": reason,
    }


INCIDENTS = [
    {
        "id": MINE,
        "kind": "wildfire",
        "status": "running",
        "payload": {"name": "<script>x()</script> fire"},
    },
    {"id": DONE, "kind": "wildfire", "status": "succeeded", "payload": {"name": "Monchique"}},
    {"id": QUIET, "kind": "wildfire", "status": "open", "payload": {}},
    {"id": OTHER, "kind": "flood", "status": "open", "payload": {"name": "not a DAG we know"}},
]
RUNS: dict[str, list[dict[str, Any]]] = {
    MINE: [run(MINE, 1, "success"), run(MINE, 2, "failed", "walltime <exceeded>")],
    DONE: [run(DONE, 1, "success")],
    QUIET: [],
}
DATASETS = {
    f"manual__{MINE}-1": [{"key": f"incidents/{MINE}/r1/forecast/burn_probability.png", "bucket": "b"}],
    f"manual__{DONE}-1": [{"key": f"incidents/{DONE}/r1/forecast/burn_probability.csv", "bucket": "b"}],
}
SERVICES = {
    f"manual__{MINE}-1": [
        {"url": "http://127.0.0.1:4711/", "state": "running"},
        {"url": "javascript:alert(1)", "state": "running"},
        {"url": "http://127.0.0.1:4712/", "state": "stopped"},
    ]
}


class FakeCatalog:
    def incidents(self, limit: int = 100) -> list[dict[str, Any]]:
        return [{**r, "created_at": CREATED} for r in INCIDENTS[:limit]]

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        return next((r for r in self.incidents(1000) if r["id"] == incident_id), None)

    def runs_of_incident(self, incident_id: str) -> list[dict[str, Any]]:
        return RUNS.get(incident_id, [])

    def datasets_of_run(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return DATASETS.get(run_id, [])

    def services_of_run(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return SERVICES.get(run_id, [])


class User:
    def __init__(self, readable: set[str]) -> None:
        self.readable = readable


class AuthManager:
    """Airflow's auth manager: the user may read the runs of the DAGs in ``readable``, and change none."""

    def is_authorized_dag(self, *, method: str, access_entity: Any, details: Any, user: User) -> bool:
        return method == "GET" and details.id in user.readable


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    monkeypatch.setattr(incidents_page, "Catalog", FakeCatalog)
    manager = AuthManager()
    monkeypatch.setattr("airflow.api_fastapi.app.get_auth_manager", lambda: manager)
    monkeypatch.setattr(
        ObjectStoreHook,
        "presigned_get",
        lambda self, key, expires: f"http://s3.test/{self.bucket}/{key}?X-Amz-Signature=s",
    )
    app = FastAPI()
    app.include_router(incidents_page.router)
    return app


def client_as(app: FastAPI, readable: set[str]) -> Iterator[TestClient]:
    app.dependency_overrides[get_user] = lambda: User(readable)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def reader(app: FastAPI) -> Iterator[TestClient]:
    yield from client_as(app, {"wildfire_forecast"})


@pytest.fixture
def stranger(app: FastAPI) -> Iterator[TestClient]:
    yield from client_as(app, set())


def test_without_a_token_nothing_is_shown(app: FastAPI) -> None:
    with TestClient(app) as client:
        assert client.get("/ui/incidents").status_code == 401
        assert client.get(f"/incidents/{MINE}/thumbnail").status_code == 401


def test_page_lists_readable_incidents_escaped_with_runs_maps_and_viewers(reader: TestClient) -> None:
    response = reader.get("/ui/incidents")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<script>x()</script>" not in page and "&lt;script&gt;x()&lt;/script&gt; fire" in page
    assert page.index(MINE) < page.index(DONE) < page.index(QUIET)  # the catalog's order: newest first
    assert OTHER not in page  # its kind has no DAG: nobody may read it
    # latest run (failed, with its reason), linked to the Airflow UI
    assert f'href="/dags/wildfire_forecast/runs/manual__{MINE}-2" target="_top"' in page
    assert "walltime &lt;exceeded&gt;" in page
    # a map from the latest *successful* run; DONE's successful run made no PNG
    assert f'<img src="../incidents/{MINE}/thumbnail"' in page
    assert f'<img src="../incidents/{DONE}/thumbnail"' not in page and "no map yet" in page
    # live services only, and never a javascript: link
    assert 'href="http://127.0.0.1:4711/"' in page
    assert "4712" not in page and "javascript:" not in page
    assert 'style="background:#2e7d32">succeeded<' in page


def test_a_user_without_the_right_sees_no_incident(stranger: TestClient) -> None:
    page = stranger.get("/ui/incidents").text
    assert "No incidents yet." in page and MINE not in page


def test_thumbnail_redirects_to_the_map(reader: TestClient) -> None:
    response = reader.get(f"/incidents/{MINE}/thumbnail", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"].startswith(
        f"http://s3.test/b/incidents/{MINE}/r1/forecast/burn_probability.png?"
    )


@pytest.mark.parametrize("incident", [DONE, QUIET])
def test_thumbnail_placeholder_without_a_map(reader: TestClient, incident: str) -> None:
    response = reader.get(f"/incidents/{incident}/thumbnail")
    assert response.status_code == 200 and response.headers["content-type"] == "image/svg+xml"
    assert "no map yet" in response.text


@pytest.mark.parametrize("incident", ["inc-ffffffffffff", "not-an-id", OTHER])
def test_thumbnail_of_unknown_or_unreadable_incident_is_404(reader: TestClient, incident: str) -> None:
    assert reader.get(f"/incidents/{incident}/thumbnail", follow_redirects=False).status_code == 404


def test_thumbnail_hidden_from_a_user_without_the_right(stranger: TestClient) -> None:
    assert stranger.get(f"/incidents/{MINE}/thumbnail", follow_redirects=False).status_code == 404


def test_render_escapes_run_ids_and_empty_page() -> None:
    row = IncidentRow(
        incident_id=MINE,
        kind="wildfire",
        name='a "quoted" <name>',
        status="weird<state>",
        created_at="2026-11-26T22:00:00+00:00",
        run={"dag_id": "wildfire_forecast", "run_id": 'r"><b>', "state": "queued", "reason": ""},
        has_map=False,
    )
    page = render_page([row])
    assert '"><b>' not in page and "r%22%3E%3Cb%3E" in page and "weird&lt;state&gt;" in page
    assert "No incidents yet." in render_page([])


def test_thumbnail_documents_what_it_serves(app: FastAPI) -> None:
    """The OpenAPI spec says 200 is an SVG placeholder (schemathesis found it documented as JSON)."""
    responses = app.openapi()["paths"]["/incidents/{incident_id}/thumbnail"]["get"]["responses"]
    assert set(responses["200"]["content"]) == {"image/svg+xml"}
    assert {"307", "404"} <= set(responses)
