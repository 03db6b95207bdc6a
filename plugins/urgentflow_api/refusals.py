"""Bad input is refused with a 4xx that says where and why, never a 5xx.

- ``StrictJSONBodies``: a JSON request body is parsed by ``operators.jsoninput.loads`` before any route
  sees it, so NaN, Infinity, ``1e400``, malformed text and deep nesting are a 422 and no route (nor
  FastAPI's own lenient parser) ever holds a value that cannot be written back as JSON.
- ``validation_error_is_422``: FastAPI's 422 repeats the caller's input, and input it cannot write
  (a non-finite float, undecodable bytes) turns the refusal into a 500. Ours gives each error's
  location and message only.
- ``unexpected_error_is_logged``: anything else that escapes a route is a fault of ours: logged with
  its traceback and a reference the caller is given, answered 500 as JSON.
"""

from __future__ import annotations

import email.message
import logging
import secrets
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from operators.jsoninput import JSONInputError, loads
from urgentflow_api.web_security import DATA_POLICY, HARDENING

log = logging.getLogger(__name__)


def _is_json(content_type: str) -> bool:
    """Would FastAPI parse a body of this type as JSON? (``application/json`` or ``application/*+json``)"""
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def refusal(errors: list[dict[str, Any]]) -> JSONResponse:
    """422 with each error's type, location and message (never its input)."""
    return JSONResponse(
        status_code=422,
        content={"detail": [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in errors]},
    )


class StrictJSONBodies:
    """ASGI middleware for every path that does not end in ``exempt`` (a data upload parses its own
    body, off the event loop). Bodies are small here: ``BodyLimit`` runs first."""

    def __init__(self, app: Any, exempt: str = "/data") -> None:
        self.app, self.exempt = app, exempt

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = dict(scope.get("headers") or []) if scope["type"] == "http" else {}
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        if not content_type or not _is_json(content_type) or scope["path"].endswith(self.exempt):
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body:
            try:
                loads(body)
            except JSONInputError as exc:
                await refusal([{"type": "json_invalid", "loc": ["body"], "msg": str(exc)}])(
                    scope, receive, send
                )
                return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return dict(await receive())
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def validation_error_is_422(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return refusal(list(exc.errors()))


async def unexpected_error_is_logged(request: Request, exc: Exception) -> Response:
    reference = secrets.token_hex(6)
    log.error("%s %s failed (reference %s)", request.method, request.url.path, reference, exc_info=exc)
    # Starlette answers this outside every middleware of the app (WebSecurity's hardening included)
    return JSONResponse(
        status_code=500,
        content={"detail": f"internal error (reference {reference}); it has been logged"},
        headers={**HARDENING, "Content-Security-Policy": DATA_POLICY},
    )
