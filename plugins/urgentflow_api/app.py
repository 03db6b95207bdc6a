"""The FastAPI app mounted by the Airflow API server at ``/urgentflow`` (OpenAPI at ``/urgentflow/openapi.json``)."""

from __future__ import annotations

from fastapi import FastAPI

from urgentflow_api import incidents, machines, services

URL_PREFIX = "/urgentflow"


def create_app() -> FastAPI:
    app = FastAPI(
        title="urgentflow",
        summary="Incidents, machines, services and data of urgentflow; authenticated with Airflow tokens.",
        version="1",
    )
    app.include_router(incidents.router)
    app.include_router(machines.router)
    app.include_router(services.router)
    return app
