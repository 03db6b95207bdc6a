"""Cross-site request forgery on the real runtime: the UI's own cookie (Airflow's JWT as ``_token``, read by
the API server when no Bearer header is sent) authenticates the plugin app, but a write it alone carries
(what a page of a service container or of the object store could make a browser send) is refused with
403 and leaves no incident row and no DAG run; the same write with ``X-Urgentflow-CSRF``, or from the
configured origin, passes the check (and is then judged on its body)."""

from __future__ import annotations

import httpx
import pytest
from airflow_client import AirflowClient
from test_hostile_input import INCIDENT

from operators.catalog.catalog import Catalog

pytestmark = [pytest.mark.e2e, pytest.mark.exclusive("catalog")]  # counts every incident in the catalog
DAG_ID = "wildfire_forecast"


def incident_count() -> int:
    return len(Catalog()._all("SELECT id FROM incidents"))


def test_a_cookie_write_without_the_csrf_header_is_refused_and_leaves_nothing(airflow: AirflowClient) -> None:
    cookie = {"Cookie": f"_token={airflow.token()}"}
    assert airflow.http.get("/urgentflow/incidents", headers=cookie).status_code == 200  # the cookie works
    incidents, runs = incident_count(), len(airflow.list_runs(DAG_ID))
    body = {**INCIDENT, "name": "forged"}
    for origin in ({}, {"Origin": "http://127.0.0.1:19000"}, {"Origin": "null"}):
        refused = airflow.http.post("/urgentflow/incidents", json=body, headers={**cookie, **origin})
        assert refused.status_code == 403, refused.text
        assert "X-Urgentflow-CSRF" in refused.json()["detail"]
        assert refused.headers["cache-control"] == "no-store"
    keepalive = airflow.http.post(f"/urgentflow/services/svc-{'0' * 24}/keepalive", headers=cookie)
    assert keepalive.status_code == 403
    assert incident_count() == incidents and len(airflow.list_runs(DAG_ID)) == runs
    # the check lets a page of ours through: an empty body is then judged on its merits (422, nothing made)
    for proof in ({"X-Urgentflow-CSRF": "1"}, {"Origin": airflow.base}):
        judged = airflow.http.post("/urgentflow/incidents", json={}, headers={**cookie, **proof})
        assert judged.status_code == 422, judged.text
    assert incident_count() == incidents and len(airflow.list_runs(DAG_ID)) == runs


def test_the_services_page_sends_the_header_under_a_nonce_policy(airflow: AirflowClient) -> None:
    page = airflow.http.get("/urgentflow/ui/services", headers={"Cookie": f"_token={airflow.token()}"})
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'nonce-" in policy and "frame-ancestors 'self'" in policy
    assert page.headers["x-frame-options"] == "SAMEORIGIN"
    assert "'X-Urgentflow-CSRF': '1'" in page.text


def test_bearer_callers_are_not_asked_for_the_header(airflow: AirflowClient) -> None:
    response = httpx.post(
        f"{airflow.base}/urgentflow/incidents",
        json={},
        headers={"Authorization": f"Bearer {airflow.token()}"},
        timeout=30,
    )
    assert response.status_code == 422, response.text
