"""A process looks an Airflow Connection up once a minute, and again at once when its variable changes."""

from __future__ import annotations

import pytest

from operators import connection_cache
from operators.connection_cache import CONNECTION_TTL_SECONDS, cached_connection


def test_a_connection_is_kept_for_its_ttl_then_looked_up_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_UF_CACHE_TEST", "postgresql://a@127.0.0.1:5432/one")
    now = [1000.0]
    monkeypatch.setattr(connection_cache.time, "monotonic", lambda: now[0])
    first = cached_connection("uf_cache_test")
    assert first.host == "127.0.0.1" and first.schema == "one"
    now[0] += CONNECTION_TTL_SECONDS - 1
    assert cached_connection("uf_cache_test") is first
    now[0] += 2
    again = cached_connection("uf_cache_test")
    assert again is not first and again.schema == "one"


def test_a_changed_variable_is_seen_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_UF_CACHE_TEST2", "postgresql://a@127.0.0.1:5432/one")
    assert cached_connection("uf_cache_test2").schema == "one"
    monkeypatch.setenv("AIRFLOW_CONN_UF_CACHE_TEST2", "postgresql://a@127.0.0.1:5432/two")
    assert cached_connection("uf_cache_test2").schema == "two"


def test_a_kept_connection_sends_its_extras_to_be_masked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import log as sdk_log

    masked: list[object] = []
    monkeypatch.setattr(sdk_log, "mask_secret", lambda secret, name=None: masked.append(secret))
    monkeypatch.setenv(
        "AIRFLOW_CONN_UF_CACHE_TEST3",
        '{"conn_type": "postgres", "host": "127.0.0.1", "extra": {"sslmode": "disable", "token": "t0k"}}',
    )
    connection = cached_connection("uf_cache_test3")
    assert {"sslmode": "disable", "token": "t0k"} in masked, "masked at the lookup"
    at_lookup = len(masked)
    extras = connection.extra_dejson
    assert extras == {"sslmode": "disable", "token": "t0k"}
    extras["sslmode"] = "require"  # a caller changing its copy changes no one else's
    assert cached_connection("uf_cache_test3").extra_dejson["sslmode"] == "disable"
    assert len(masked) == at_lookup, "not again per access"
    assert type(connection).__name__ == "Connection" and connection.host == "127.0.0.1"
