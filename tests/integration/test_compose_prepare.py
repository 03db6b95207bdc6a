"""airflow-init's catalog step (deploy/init/prepare.py: ensure_database) on the machine's real Postgres
(the catalog part of the test bed: 127.0.0.1:5432, user postgres): creates the role and the database
once, is a no-op the second time, and the database belongs to the role. What it creates is dropped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from modules import load_file

pytestmark = pytest.mark.integration

PREPARE = Path(__file__).resolve().parents[2] / "deploy" / "init" / "prepare.py"


def load_prepare() -> Any:
    return load_file("compose_prepare", PREPARE)


@pytest.fixture
def admin() -> Iterator[Any]:
    try:
        connection = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    except psycopg2.OperationalError as exc:
        pytest.fail(
            f"the machine's Postgres does not answer: {exc}; run `scripts/testbed start catalog`",
            pytrace=False,
        )
    connection.autocommit = True
    yield connection
    connection.close()


def test_ensure_database_creates_once_and_owns(admin: Any) -> None:
    prepare = load_prepare()
    name, owner = f"uf_compose_{uuid.uuid4().hex[:8]}", f"uf_compose_owner_{uuid.uuid4().hex[:8]}"
    try:
        assert prepare.ensure_database(admin, name, owner, "first-secret") == [
            f"role {owner}",
            f"database {name}",
        ]
        assert prepare.ensure_database(admin, name, owner, "rotated-secret") == []
        with admin.cursor() as cur:
            cur.execute(
                "SELECT r.rolname, r.rolcanlogin FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba"
                " WHERE d.datname = %s",
                (name,),
            )
            assert cur.fetchone() == (owner, True)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cur.execute(f'DROP ROLE IF EXISTS "{owner}"')
