"""The runtime's users and roles in Airflow's FAB auth manager (per-DAG permissions), created idempotently.

    python scripts/auth_users.py PASSWORDS_JSON     (run with the runtime's Airflow environment)
    python scripts/auth_users.py --from-env         (Compose's airflow-init: AIRFLOW_<USER>_PASSWORD)

Users (passwords in the runtime's passwords.json, generated once; in Compose one required ``.env``
variable per user, named by ``password_variable``, read from airflow-init's environment so that no file
holds them): one per standard role — ``admin`` (Admin), ``op`` (Op), ``user`` (User), ``viewer``
(Viewer) — and ``study_reader``, whose role ``StudyReader`` may read ``study_pipeline`` and nothing
else: FAB grants a DAG's sub-entities (runs, task instances, logs) only together with the right on the
DAG itself (``DAG:<dag_id>``), so the role holds the Viewer's rights minus "read every DAG", plus "read
DAG:study_pipeline". A user that exists keeps its row; its role and password are set to what is
configured here.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

USERS = {"admin": "Admin", "op": "Op", "user": "User", "viewer": "Viewer", "study_reader": "StudyReader"}
READ_ONLY_DAGS = {"StudyReader": ("study_pipeline",)}


def ensure(passwords: dict[str, str]) -> list[str]:
    """Create the custom roles and every user of ``USERS``; what was created or updated."""
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
    from airflow.providers.fab.www.security import permissions

    done = []
    with get_application_builder() as appbuilder:
        sm = appbuilder.sm
        sm.sync_roles()  # the standard roles (Admin, Op, User, Viewer, Public) and their permissions
        every_dag = (permissions.ACTION_CAN_READ, permissions.RESOURCE_DAG)
        for role_name, dag_ids in READ_ONLY_DAGS.items():
            perms = [p for p in sm.VIEWER_PERMISSIONS if p != every_dag]
            perms += [
                (permissions.ACTION_CAN_READ, permissions.resource_name(d, permissions.RESOURCE_DAG))
                for d in dag_ids
            ]
            sm.bulk_sync_roles([{"role": role_name, "perms": perms}])
        for username, role_name in USERS.items():
            role = sm.find_role(role_name)
            user = sm.find_user(username=username)
            if user is None:
                sm.add_user(
                    username, username, role_name, f"{username}@urgentflow.invalid", role, passwords[username]
                )
                done.append(f"created {username} ({role_name})")
                continue
            user.roles = [role]
            sm.update_user(user)
            sm.reset_password(user.id, passwords[username])
            done.append(f"updated {username} ({role_name})")
    return done


def password_variable(username: str) -> str:
    """The environment variable holding ``username``'s password with ``--from-env`` (``AIRFLOW_OP_PASSWORD``)."""
    return f"AIRFLOW_{username.upper()}_PASSWORD"


def passwords_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Every user's password from its ``password_variable``; refuses (naming the variables, never a
    value) while one is unset or empty."""
    missing = [password_variable(name) for name in USERS if not environ.get(password_variable(name))]
    if missing:
        raise SystemExit(f"set {', '.join(missing)} (see .env.example)")
    return {name: environ[password_variable(name)] for name in USERS}


def main(argv: list[str]) -> int:
    if argv[1:] == ["--from-env"]:
        passwords = passwords_from_env(os.environ)
    else:
        passwords = json.loads(Path(argv[1]).read_text())
    for line in ensure(passwords):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
