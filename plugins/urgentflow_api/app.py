"""The FastAPI app mounted by the Airflow API server at ``/urgentflow`` (OpenAPI at ``/urgentflow/openapi.json``)."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from urgentflow_api import incidents, incidents_page, machines, notices, observations, orders, services
from urgentflow_api.limits import BodyLimit
from urgentflow_api.refusals import StrictJSONBodies, unexpected_error_is_logged, validation_error_is_422
from urgentflow_api.web_security import WebSecurity

URL_PREFIX = "/urgentflow"
# What Airflow's token check says (with 403) about a token it cannot verify: forged, garbled, wrong key.
INVALID_TOKEN = "Invalid JWT token"  # noqa: S105 - a message, not a password


async def invalid_token_is_401(request: Request, exc: Exception) -> Response:
    """A token that fails verification authenticates nobody: 401 with ``WWW-Authenticate`` (RFC 6750),
    like a missing or expired one, rather than Airflow's 403 (kept for a valid user without the right)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 403 and exc.detail == INVALID_TOKEN:
        return JSONResponse(
            status_code=401,
            content={"detail": INVALID_TOKEN},
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return await http_exception_handler(request, exc)


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
    app.include_router(notices.router)
    app.add_exception_handler(HTTPException, invalid_token_is_401)
    app.add_exception_handler(RequestValidationError, validation_error_is_422)
    app.add_exception_handler(Exception, unexpected_error_is_logged)
    app.add_middleware(StrictJSONBodies)  # inside BodyLimit: reads only bodies BodyLimit let through
    app.add_middleware(BodyLimit)
    # outermost: a refusal from any layer inside is hardened too
    app.add_middleware(
        WebSecurity, no_policy=(app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
    )
    return app
