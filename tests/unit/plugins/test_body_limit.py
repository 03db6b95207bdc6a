"""Request bodies over the JSON limit are refused before they are read; the data upload is exempt."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from urgentflow_api.limits import BodyLimit


def client(limit: int = 100) -> TestClient:
    app = FastAPI()

    @app.post("/incidents")
    async def incidents(request: Request) -> dict:
        return {"read": len(await request.body())}

    @app.post("/incidents/x/data")
    async def data(request: Request) -> dict:
        return {"read": len(await request.body())}

    app.add_middleware(BodyLimit, limit=limit)
    return TestClient(app)


def test_small_bodies_pass_and_large_ones_are_refused_unread() -> None:
    c = client()
    assert c.post("/incidents", content=b"x" * 100).json() == {"read": 100}
    refused = c.post("/incidents", content=b"x" * 101)
    assert refused.status_code == 413 and "larger than 100 bytes" in refused.json()["detail"]
    assert c.post("/incidents/x/data", content=b"x" * 1000).json() == {"read": 1000}


def test_a_body_of_unknown_length_is_refused() -> None:
    def chunks() -> Iterator[bytes]:
        yield b"x" * 10

    refused = client().post("/incidents", content=chunks())
    assert refused.status_code == 411
