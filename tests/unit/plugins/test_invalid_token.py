"""A token that fails verification gets 401 from the plugin app (Airflow's own check says 403), an expired
or missing one 401 as before, and a real 403 (a user without the right) stays 403. Airflow's token
check runs for real, against the auth manager's JWT signer, through FastAPI's TestClient."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from urgentflow_api import app as plugin_app


class Manager:
    async def get_user_from_token(self, token: str) -> Any:
        claims = jwt.decode(token, "k" * 64, algorithms=["HS512"], audience="apache-airflow")
        return {"name": claims["sub"]}


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setattr("airflow.api_fastapi.core_api.security.get_auth_manager", lambda: Manager())
    app = FastAPI()
    app.add_exception_handler(HTTPException, plugin_app.invalid_token_is_401)

    @app.get("/who")
    def who(user: GetUserDep) -> Any:
        return user

    @app.get("/forbidden")
    def forbidden(user: GetUserDep) -> None:
        raise HTTPException(status_code=403, detail="you may not")

    return TestClient(app)


def token(secret: str = "k" * 64, **claims: Any) -> str:
    return jwt.encode({"sub": "ada", "aud": "apache-airflow", **claims}, secret, algorithm="HS512")


def test_a_token_that_fails_verification_is_401(client: TestClient) -> None:
    for bad in ("abc.def.ghi", token(secret="x" * 64), "not-a-jwt"):
        response = client.get("/who", headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401, (bad, response.text)
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_missing_and_expired_tokens_stay_401_and_a_valid_one_passes(client: TestClient) -> None:
    assert client.get("/who").status_code == 401
    expired = client.get("/who", headers={"Authorization": f"Bearer {token(exp=1)}"})
    assert expired.status_code == 401 and expired.json()["detail"] == "Token Expired"
    assert client.get("/who", headers={"Authorization": f"Bearer {token()}"}).json() == {"name": "ada"}


def test_a_real_403_stays_403(client: TestClient) -> None:
    response = client.get("/forbidden", headers={"Authorization": f"Bearer {token()}"})
    assert response.status_code == 403 and response.json() == {"detail": "you may not"}


def test_the_plugin_app_installs_the_handler() -> None:
    app = plugin_app.create_app()
    assert app.exception_handlers[HTTPException] is plugin_app.invalid_token_is_401
