"""The test bed's catalog database (``urgentflow_catalog`` on the machine's Postgres), reached as Airflow
reaches it: providers-postgres ``PostgresHook`` with the recorded connection ``catalog_db``.

Start it with ``scripts/testbed start catalog``; a missing test bed fails these tests, never skips them.
"""

from __future__ import annotations

import pytest
from airflow.providers.postgres.hooks.postgres import PostgresHook
from bed import bed_connection

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hook() -> PostgresHook:
    conn = bed_connection("catalog_db")
    hook = PostgresHook(postgres_conn_id="catalog_db")
    try:
        hook.get_conn().close()
    except Exception as exc:
        pytest.fail(
            f"cannot connect to the catalog database {conn.get('schema')} on {conn.get('host')}:"
            f"{conn.get('port')} with connection catalog_db: {exc!r}. Run `scripts/testbed start catalog`.",
            pytrace=False,
        )
    return hook


def test_connects_to_the_catalog_database(hook: PostgresHook) -> None:
    assert hook.get_first("select current_database()") == ("urgentflow_catalog",)
