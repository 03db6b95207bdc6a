"""A cap on request bodies, checked before any byte is read: JSON requests are small, so a body declared
larger than ``MAX_JSON_BYTES`` is refused with 413, and a body of unknown length (chunked) with 411.
``POST /incidents/{id}/data`` streams its body and counts it against its own, larger limit."""

from __future__ import annotations

import json
from typing import Any

MAX_JSON_BYTES = 1024 * 1024


class BodyLimit:
    """ASGI middleware for every path that does not end in ``exempt``."""

    def __init__(self, app: Any, limit: int = MAX_JSON_BYTES, exempt: str = "/data") -> None:
        self.app, self.limit, self.exempt = app, limit, exempt

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope["path"].endswith(self.exempt):
            headers = dict(scope.get("headers") or [])
            declared = headers.get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.limit:
                await _refuse(send, 413, f"the request body is larger than {self.limit} bytes")
                return
            if not declared and b"chunked" in headers.get(b"transfer-encoding", b""):
                await _refuse(send, 411, "send the request body with a Content-Length")
                return
        await self.app(scope, receive, send)


async def _refuse(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
