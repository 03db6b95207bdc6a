"""What airflow-init prepares besides Airflow's own database (docker-compose.yaml, deploy/init/airflow-init.sh).

- the catalog database and its owner role (from the ``catalog_db`` connection; created with the admin
  account of the Airflow metadata database, which the postgres image makes a superuser), then the
  catalog migrations (``include/sql``) as that owner;
- the object-store bucket (``extra.bucket`` of the ``object_store`` connection).

Every step is idempotent: ``airflow-init`` runs at each ``docker compose up``.
Run as ``python deploy/init/prepare.py`` with the deployment's environment.
"""

from __future__ import annotations

from typing import Any


def ensure_database(admin: Any, name: str, owner: str, password: str) -> list[str]:
    """Create role ``owner`` (login, ``password``) and database ``name`` owned by it, if missing.

    ``admin`` is an autocommit DB-API connection of a superuser; returns what was created.
    """
    from psycopg2 import sql

    created = []
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,))
        verb = "ALTER" if cur.fetchone() else "CREATE"
        # the password is (re)set each time, so rotating it in .env takes effect at the next start
        cur.execute(
            sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(owner), sql.Literal(password))
        )
        if verb == "CREATE":
            created.append(f"role {owner}")
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if not cur.fetchone():
            cur.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner))
            )
            created.append(f"database {name}")
    return created


def _admin_connection() -> Any:
    """Autocommit connection to the Airflow metadata database's server, as its (superuser) account."""
    import psycopg2
    from airflow.configuration import conf
    from sqlalchemy.engine import make_url

    url = make_url(conf.get("database", "sql_alchemy_conn")).set(drivername="postgresql")
    connection = psycopg2.connect(url.render_as_string(hide_password=False))
    connection.autocommit = True
    return connection


def prepare_catalog(conn_id: str = "catalog_db") -> None:
    from airflow.sdk import BaseHook

    from operators.catalog.catalog import Catalog

    target = BaseHook.get_connection(conn_id)
    if not (target.schema and target.login and target.password):
        raise SystemExit(f"connection {conn_id} needs schema (the database), login and password")
    admin = _admin_connection()
    try:
        created = ensure_database(admin, target.schema, target.login, target.password)
    finally:
        admin.close()
    applied = Catalog(conn_id).migrate()
    print(f"catalog {target.schema}: created {', '.join(created) or 'nothing'}; migrations applied {applied}")


def prepare_bucket(conn_id: str = "object_store") -> None:
    from operators.storage.hook import ObjectStoreHook

    hook = ObjectStoreHook(conn_id)
    if hook.client.bucket_exists(hook.bucket):
        print(f"bucket {hook.bucket}: exists")
    else:
        hook.client.make_bucket(hook.bucket)
        print(f"bucket {hook.bucket}: created")


if __name__ == "__main__":
    prepare_catalog()
    prepare_bucket()
