"""The FastAPI app mounted by the Airflow API server at ``/urgentflow`` (OpenAPI at ``/urgentflow/openapi.json``)."""

from __future__ import annotations

from fastapi import FastAPI

from urgentflow_api import incidents, incidents_page, machines, observations, orders, services
from urgentflow_api.limits import BodyLimit

URL_PREFIX = "/urgentflow"


def create_app() -> FastAPI:
    app = FastAPI(
        title="urgentflow",
        summary="Incidents, orders, machines, services and data of urgentflow; authenticated with Airflow tokens.",
        version="1",
    )
    app.include_router(incidents.router)
    app.include_router(incidents_page.router)
    app.include_router(observations.router)
    app.include_router(machines.router)
    app.include_router(services.router)
    app.include_router(orders.router)
    app.add_middleware(BodyLimit)
    return app
