"""scripts/runtime.py creates the scaled mode's metadata database on the machine's Postgres (the test bed's
catalog server) under exactly the name the configured URL gives, quoted as an identifier: a name with a
quote, a space or SQL in it is a name, never a statement."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import quote

import psycopg2
import pytest
from psycopg2 import sql
from runtime import prepare_scaled

pytestmark = pytest.mark.integration
SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}


def databases() -> set[str]:
    with psycopg2.connect(**SERVER) as conn, conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database")
        return {row[0] for row in cur.fetchall()}


@pytest.fixture
def name() -> Iterator[str]:
    made = f'uf-test {secrets.token_hex(3)}"; DROP DATABASE postgres; --'
    yield made
    conn = psycopg2.connect(**SERVER)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(made)))
    conn.close()


def test_the_database_gets_exactly_the_configured_name(name: str) -> None:
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{quote(name, safe='')}"
    config = {"AIRFLOW__CELERY__BROKER_URL": "amqp://unused", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url}
    assert prepare_scaled(config) is True
    assert name in databases() and "postgres" in databases()
    assert prepare_scaled(config) is False  # found by its name the second time
