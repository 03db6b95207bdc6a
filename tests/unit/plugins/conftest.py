"""Shared by the plugin-app tests: an Airflow auth manager that grants everything, patched in where Airflow
looks it up (the boundary), for tests about something other than permissions."""

from __future__ import annotations

from typing import Any

import pytest


class GrantAll:
    def is_authorized_dag(self, **kwargs: Any) -> bool:
        return True

    def is_authorized_view(self, **kwargs: Any) -> bool:
        return True


@pytest.fixture
def grant_all(monkeypatch: pytest.MonkeyPatch) -> None:
    manager = GrantAll()
    monkeypatch.setattr("airflow.api_fastapi.app.get_auth_manager", lambda: manager)
    monkeypatch.setattr("airflow.api_fastapi.core_api.security.get_auth_manager", lambda: manager)
