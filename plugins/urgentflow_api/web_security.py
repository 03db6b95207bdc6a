"""Browser-facing protection of the plugin app: cross-site request forgery and response hardening.

The Airflow UI's ``_token`` cookie (``SameSite=Lax``) is sent with requests from any page of the same
*site*, and service containers and the object store are that site (other ports of the same host). So a
write (any method but GET, HEAD, OPTIONS) that the cookie alone authenticates must prove it was not
sent by a foreign page: it carries ``X-Urgentflow-CSRF`` (a header a foreign page cannot add without a
CORS preflight, which the API server does not grant) or an ``Origin`` equal to the API server's
configured ``[api] base_url`` (never the request's own ``Host``). Otherwise: 403 with the reason. A
Bearer token is never sent by a browser on its own: such callers are not affected, and neither are
requests without the cookie (authentication refuses them).

Every response gets ``Cache-Control: no-store`` (JSON holds presigned links), ``nosniff``,
``Referrer-Policy: no-referrer``, ``X-Frame-Options: SAMEORIGIN`` and a Content-Security-Policy
(``frame-ancestors 'self'``: Airflow's UI shows our pages in a frame of its own origin). Pages run only
scripts carrying the response's nonce (``csp_nonce``) and show images of their own origin and of the
object store (map thumbnails redirect there). FastAPI's ``/docs`` and ``/redoc`` load their scripts
from a CDN and keep no CSP.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlsplit

from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
from airflow.configuration import conf
from airflow.exceptions import AirflowNotFoundException
from fastapi import Request
from fastapi.security.utils import get_authorization_scheme_param
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection

from operators.services.spec import link_url

CSRF_HEADER = "X-Urgentflow-CSRF"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HARDENING = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "SAMEORIGIN",
}
DATA_POLICY = "default-src 'none'; frame-ancestors 'self'"
_NONCE = "csp_nonce"


def origin_of(url: str | None) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL as a browser sends it in ``Origin`` (lower case, no
    default port); None for anything else (``null``, a bad port...)."""
    if link_url(url) is None:
        return None
    parts = urlsplit(str(url).strip())
    try:
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{parts.hostname}" + (f":{port}" if port and port != default else "")


def csp_nonce(request: Request) -> str:
    """The nonce this response's CSP allows scripts by (``<script nonce="...">``)."""
    return str(getattr(request.state, _NONCE))


def page_policy(nonce: str, store_origin: str | None) -> str:
    images = " ".join(filter(None, ("'self'", store_origin)))
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src {images}; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
    )


def _store_origin() -> str | None:
    from operators.storage.hook import ObjectStoreHook

    try:
        return ObjectStoreHook().origin
    except AirflowNotFoundException:  # no object store configured: no images from it either
        return None


def csrf_refusal(connection: HTTPConnection) -> str | None:
    """Why this request is refused as possibly forged, or None when it may go on."""
    if connection.scope["method"] in SAFE_METHODS or not connection.cookies.get(COOKIE_NAME_JWT_TOKEN):
        return None
    scheme, credentials = get_authorization_scheme_param(connection.headers.get("Authorization"))
    if scheme.lower() == "bearer" and credentials:  # Airflow then ignores the cookie
        return None
    if connection.headers.get(CSRF_HEADER):
        return None
    configured = origin_of(conf.get("api", "base_url", fallback=""))
    if configured is not None and origin_of(connection.headers.get("Origin")) == configured:
        return None
    return (
        f"a {connection.scope['method']} authenticated by the UI cookie needs the {CSRF_HEADER} header"
        f" (or an Origin of {configured or 'the configured [api] base_url'}); scripts send"
        " 'Authorization: Bearer <token>'"
    )


class WebSecurity:
    """ASGI middleware: refuses possibly forged writes and hardens every response (see the module)."""

    def __init__(self, app: Any, no_policy: tuple[str | None, ...] = ()) -> None:
        self.app, self.no_policy = app, frozenset(filter(None, no_policy))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(18)
        scope.setdefault("state", {})[_NONCE] = nonce
        path = scope["path"].removeprefix(scope.get("root_path", ""))

        async def hardened(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.update(HARDENING)
                if path not in self.no_policy:
                    html = headers.get("content-type", "").startswith("text/html")
                    store = await run_in_threadpool(_store_origin) if html else None
                    headers["Content-Security-Policy"] = page_policy(nonce, store) if html else DATA_POLICY
            await send(message)

        refusal = csrf_refusal(HTTPConnection(scope))
        if refusal is None:
            await self.app(scope, receive, hardened)
            return
        body = json.dumps({"detail": refusal}).encode()
        await hardened(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
