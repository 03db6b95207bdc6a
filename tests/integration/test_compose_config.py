"""docker-compose (Debian's 1.29, installed by ``scripts/testbed start docker``) renders docker-compose.yaml
with a generated .env: the file is valid for Compose, every variable resolves, and a missing secret
stops it. Nothing is started (no image can be pulled here)."""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SOCKET_OVERRIDE = ROOT / "deploy" / "compose.docker-socket.yaml"
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


def generated_env() -> dict[str, str]:
    """.env.example with a fresh random value for every empty (secret) setting."""
    values: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^([A-Z_]+)=(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2) or secrets.token_hex(24)
    values["AIRFLOW_FERNET_KEY"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
    values["DOCKER_GID"] = "998"
    return values


def compose(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.fail("docker-compose is missing: `scripts/testbed start docker` installs it", pytrace=False)
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    env_file.chmod(0o600)
    # a clean environment: nothing from the caller's shell may fill a variable the .env lacks
    return subprocess.run(
        [
            tool,
            "--project-directory",
            str(ROOT),
            "--env-file",
            str(env_file),
            "-f",
            str(ROOT / "docker-compose.yaml"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        check=False,
    )


def rendered(tmp_path: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    result = compose(tmp_path, env, *args, "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_config_renders_with_a_generated_env(tmp_path: Path) -> None:
    env = generated_env()
    config = rendered(tmp_path, env)
    services = config["services"]
    assert set(services) >= {"postgres", "redis", "minio", "airflow-init", "api-server", "worker", "slurm"}
    scheduler_env = services["scheduler"]["environment"]
    assert scheduler_env["AIRFLOW__CORE__FERNET_KEY"] == env["AIRFLOW_FERNET_KEY"]
    assert scheduler_env["AIRFLOW__CELERY__BROKER_URL"] == f"redis://:{env['REDIS_PASSWORD']}@redis:6379/0"
    assert services["redis"]["command"] == ["redis-server", "--requirepass", env["REDIS_PASSWORD"]]
    assert services["worker"]["command"][-1] == env["AIRFLOW_DEFAULT_QUEUE"]
    assert services["worker-transfer"]["command"][-1] == f"{env['AIRFLOW_DEFAULT_QUEUE']},transfer"
    assert scheduler_env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == env["AIRFLOW_DEFAULT_QUEUE"]
    assert f'"password": "{env["CATALOG_DB_PASSWORD"]}"' in scheduler_env["AIRFLOW_CONN_CATALOG_DB"]
    # HOSTNAME is the container's, not interpolated (config keeps the $$ escape: its output is a compose file)
    assert '"$${HOSTNAME}"' in " ".join(services["triggerer"]["healthcheck"]["test"])
    assert services["api-server"]["ports"] == [f"127.0.0.1:{env['AIRFLOW_API_PORT']}:8080/tcp"]
    assert services["slurm"]["build"]["args"] == {"BASE": "debian:bookworm-slim"}
    # the FAB auth manager everywhere; each user's password reaches airflow-init, and only it
    for name in ("airflow-init", "api-server", "scheduler", "worker"):
        assert services[name]["environment"]["AIRFLOW__CORE__AUTH_MANAGER"] == FAB_AUTH_MANAGER, name
    for user in ("ADMIN", "OP", "USER", "VIEWER", "STUDY_READER"):
        variable = f"AIRFLOW_{user}_PASSWORD"
        assert services["airflow-init"]["environment"][variable] == env[variable], variable
        assert variable not in services["api-server"]["environment"], variable
    assert "airflow-auth" not in (config.get("volumes") or {})


@pytest.mark.parametrize("secret", ["MINIO_ROOT_PASSWORD", "AIRFLOW_STUDY_READER_PASSWORD"])
def test_compose_refuses_to_render_without_a_secret(tmp_path: Path, secret: str) -> None:
    env = generated_env()
    del env[secret]
    result = compose(tmp_path, env, "config")
    assert result.returncode != 0
    assert f"set {secret}" in result.stderr


def test_docker_socket_override_adds_the_engine_to_the_right_services(tmp_path: Path) -> None:
    services = rendered(tmp_path, generated_env(), "-f", str(SOCKET_OVERRIDE))["services"]
    with_socket = {
        name
        for name, service in services.items()
        if "/var/run/docker.sock:/var/run/docker.sock:rw" in service.get("volumes", [])
    }
    assert with_socket == {"worker", "worker-transfer", "triggerer", "api-server"}
    for name in with_socket:
        service = services[name]
        assert "AIRFLOW_CONN_DOCKER_DEFAULT" in service["environment"], name
        # the override adds to the service, it does not replace what the main file gives it
        assert "AIRFLOW_CONN_OBJECT_STORE" in service["environment"], name
        assert "hpc-ssh-client:/home/airflow/.ssh:ro" in service["volumes"], name
        assert service["group_add"] == ["998"], name
