"""docker-compose.yaml, its images and its files hold together (it cannot be pulled and run here: no
image registry). ``tests/integration/test_compose_config.py`` has docker-compose itself render it;
``tests/integration/test_slurm_image.py`` builds and runs the Slurm image."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from modules import load_file

from operators.machines.catalog import parse_catalog

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yaml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, Any] = COMPOSE["services"]
AIRFLOW = [
    "airflow-init",
    "api-server",
    "scheduler",
    "dag-processor",
    "triggerer",
    "worker",
    "worker-transfer",
]
LONG_RUNNING_AIRFLOW = AIRFLOW[1:]
BACKENDS = ["postgres", "redis", "minio"]
VARIABLE = re.compile(r"(?<!\$)\$\{(\w+)(?::?([-?])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET")
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


def load_auth_users() -> Any:
    """scripts/auth_users.py (not a package; importing it imports no Airflow)."""
    return load_file("compose_auth_users", ROOT / "scripts" / "auth_users.py")


AUTH_USERS = load_auth_users()
PASSWORD_VARIABLES = [AUTH_USERS.password_variable(name) for name in AUTH_USERS.USERS]


def env_of(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service]["environment"].items()}


def connection(name: str) -> dict[str, Any]:
    """An AIRFLOW_CONN_* value as JSON, each ${...} replaced by the name of its variable."""
    raw = env_of("scheduler")[f"AIRFLOW_CONN_{name.upper()}"]
    return json.loads(VARIABLE.sub(lambda m: f"<{m.group(1)}>", raw))


def dockerfile_copy_targets(dockerfile: Path) -> dict[str, str]:
    """Each COPY source of a Dockerfile and where it goes in the image."""
    targets = {}
    for line in dockerfile.read_text().splitlines():
        words = shlex.split(line) if line.strip().upper().startswith("COPY") else []
        for source in [w for w in words[1:-1] if not w.startswith("--")]:
            target = words[-1]
            targets[source] = target + Path(source).name if target.endswith("/") else target
    return targets


def dockerfile_copies(dockerfile: Path) -> list[str]:
    return list(dockerfile_copy_targets(dockerfile))


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides; a
    ``!`` pattern lets the path in again."""
    parts = Path(path).parts
    ignored = False
    for pattern in patterns:
        glob = pattern.removeprefix("!").rstrip("/")
        if any(fnmatch.fnmatchcase("/".join(parts[:i]), glob) for i in range(1, len(parts) + 1)):
            ignored = not pattern.startswith("!")
    return ignored


def test_every_component_is_there() -> None:
    assert set(SERVICES) == set(AIRFLOW + BACKENDS + ["slurm"])


@pytest.mark.parametrize("name", AIRFLOW)
def test_airflow_services_run_our_image_with_celery(name: str) -> None:
    service = SERVICES[name]
    assert service["image"].startswith("${AIRFLOW_IMAGE_NAME:-urgentflow/airflow:3.3.2")
    assert service["build"]["context"] == "."
    env = env_of(name)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].endswith("@redis:6379/0")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://api-server:8080/execution/"
    for backend in BACKENDS:
        assert service["depends_on"][backend]["condition"] == "service_healthy"
    if name != "airflow-init":
        assert service["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_the_image_is_built_from_the_matching_airflow_release() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG AIRFLOW_IMAGE=(\S+)$", dockerfile, re.M)
    assert base and re.search(r"^FROM \$\{AIRFLOW_IMAGE\}$", dockerfile, re.M)
    pinned = re.search(r"^apache-airflow==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pinned and base.group(1) == f"apache/airflow:{pinned.group(1)}-python3.11"
    assert (
        SERVICES["scheduler"]["build"]["args"]["AIRFLOW_IMAGE"]
        == "${AIRFLOW_BASE_IMAGE:-" + base.group(1) + "}"
    )


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "deploy/slurm/Dockerfile"])
def test_every_file_an_image_copies_is_in_its_context(dockerfile: str) -> None:
    path = ROOT / dockerfile
    sources = dockerfile_copies(path)
    assert sources
    for source in sources:
        assert (path.parent / source).exists(), f"{dockerfile}: COPY {source} is missing"


def test_dockerignore_keeps_secrets_out_and_what_the_image_copies_in() -> None:
    ignored = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert dockerignored(".env", ignored) and not dockerignored(".env.example", ignored)
    assert dockerignored("scripts/runtime.py", ignored)  # of scripts/, only what the image copies
    for source in dockerfile_copies(ROOT / "Dockerfile"):
        assert not dockerignored(source, ignored), source


def test_healthchecks_follow_airflows_compose_file() -> None:
    def check(name: str) -> str:
        test = SERVICES[name]["healthcheck"]["test"]
        return " ".join(test[1:])

    assert "http://localhost:8080/api/v2/version" in check("api-server")
    for name, job in [
        ("scheduler", "SchedulerJob"),
        ("dag-processor", "DagProcessorJob"),
        ("triggerer", "TriggererJob"),
    ]:
        assert f"airflow jobs check --job-type {job}" in check(name), name
    for name in ("worker", "worker-transfer"):
        assert "celery_executor.app inspect ping" in check(name), name
    assert check("postgres") == "pg_isready -U airflow"
    assert check("redis") == "redis-cli ping"
    assert check("minio") == "mc ready local"
    assert check("slurm") == "urgentflow-slurm health"
    assert "healthcheck" not in SERVICES["airflow-init"]  # it runs once and exits


def test_worker_queues_match_the_default_queue() -> None:
    default = env_of("worker")["AIRFLOW__OPERATORS__DEFAULT_QUEUE"]
    assert default == "${AIRFLOW_DEFAULT_QUEUE:-default}"

    def queues(name: str) -> list[str]:
        command = SERVICES[name]["command"]
        assert command[:2] == ["celery", "worker"], name
        return command[command.index("--queues") + 1].split(",")

    assert queues("worker") == [default]
    assert queues("worker-transfer") == [default, "transfer"]
    for name in ("worker", "worker-transfer"):
        assert env_of(name)["DUMB_INIT_SETSID"] == "0"


def test_no_secret_is_written_in_the_compose_files() -> None:
    texts = {
        "docker-compose.yaml": COMPOSE_TEXT,
        "deploy/compose.docker-socket.yaml": (ROOT / "deploy/compose.docker-socket.yaml").read_text(),
    }
    for name, text in texts.items():
        for key, value in re.findall(r"^\s*(\w*(?:PASSWORD|SECRET|FERNET)\w*):[ ]*(\S+)", text, re.M):
            if not key.endswith("_FILE"):  # a path to a secret is no secret
                assert value.startswith("${") and ":?" in value, (name, key, value)
    # credentials inside URLs and JSON connections are required variables too
    env = env_of("scheduler")
    for key in (
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__CELERY__BROKER_URL",
    ):
        assert re.search(r"://\w*:\$\{\w+:\?[^}]*\}@", env[key]), key
    for conn_id in ("object_store", "catalog_db"):
        assert connection(conn_id)["password"].startswith("<"), conn_id
    assert "password" not in connection("hpc_slurm")  # key login only


def test_env_example_names_every_variable_and_fills_no_secret() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in lines if re.match(r"^#? ?[A-Z_]+=", line))
    settings = {k.lstrip("# "): v for k, v in settings.items()}
    used = VARIABLE.findall(COMPOSE_TEXT + (ROOT / "deploy/compose.docker-socket.yaml").read_text())
    for name, kind, _ in used:
        assert name in settings, f"{name} is used by compose but not described in .env.example"
        if kind == "?" and SECRET_NAME.search(name):
            assert settings[name] == "", f".env.example must leave the secret {name} empty"
    required = {name for name, kind, _ in used if kind == "?"}
    assert {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "MINIO_ROOT_PASSWORD", "CATALOG_DB_PASSWORD"} <= required
    assert {"AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY"} <= required
    assert set(PASSWORD_VARIABLES) <= required  # one login per user of scripts/auth_users.py


def test_connections_point_at_services_of_this_file() -> None:
    store = connection("object_store")
    assert (store["host"], store["port"]) == ("minio", 9000)
    assert store["login"] == "<MINIO_ROOT_USER>" and store["extra"]["secure"] is False
    catalog = connection("catalog_db")
    assert (catalog["host"], catalog["schema"]) == ("postgres", "urgentflow_catalog")
    hpc = connection("hpc_slurm")
    assert hpc["host"] == SERVICES["slurm"]["hostname"] == "slurm"
    # the client key is in the volume airflow-init fills, mounted where the key_file says
    key_dir = str(Path(hpc["extra"]["key_file"]).parent)
    assert f"hpc-ssh-client:{key_dir}:ro" in SERVICES["scheduler"]["volumes"]
    assert "hpc-ssh-client:/opt/urgentflow-ssh/client" in SERVICES["airflow-init"]["volumes"]


def test_published_ports_bind_loopback_only() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_airflow_init_prepares_keys_catalog_and_bucket() -> None:
    init = SERVICES["airflow-init"]
    assert init["user"] == "0:0" and init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    script = Path(init["command"][0])
    assert script.parent == Path("/opt/urgentflow/deploy/init")
    text = (ROOT / "deploy/init" / script.name).read_text()
    for step in ("ssh-keygen", "known_hosts", "authorized_keys", "/entrypoint airflow version"):
        assert step in text, step
    assert "deploy/init/prepare.py" in text
    prepare = (ROOT / "deploy/init/prepare.py").read_text()
    assert "make_bucket" in prepare and "CREATE DATABASE" in prepare and ".migrate()" in prepare


def test_airflow_uses_the_fab_auth_manager_for_per_dag_rights() -> None:
    for name in AIRFLOW:
        assert env_of(name)["AIRFLOW__CORE__AUTH_MANAGER"] == FAB_AUTH_MANAGER, name
    # nothing of the simple auth manager is left: its settings, its password file, its volume
    init_script = (ROOT / "deploy/init/airflow-init.sh").read_text()
    for text in (COMPOSE_TEXT, init_script):
        assert "SIMPLE_AUTH_MANAGER" not in text and "passwords.json" not in text
    assert "airflow-auth" not in (COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        assert not any("/opt/airflow/auth" in str(v) for v in service.get("volumes", [])), name
    # the image installs the FAB provider: it is pinned, and the Dockerfile's filter keeps it
    requirements = (ROOT / "requirements.txt").read_text()
    fab = re.search(r"^apache-airflow-providers-fab==\S+$", requirements, re.M)
    assert fab and re.search(rf"^{re.escape(fab.group(0))}$", (ROOT / "constraints.txt").read_text(), re.M)
    dockerfile = (ROOT / "Dockerfile").read_text()
    dropped = re.search(r"grep -vE '([^']+)' /opt/urgentflow/requirements.txt > (\S+)", dockerfile)
    assert dropped and not re.search(dropped.group(1), fab.group(0))
    assert (
        f"pip install --no-cache-dir -r {dropped.group(2)} -c /opt/urgentflow/constraints.txt" in dockerfile
    )


def test_airflow_init_creates_the_users_and_roles_from_required_variables() -> None:
    init = SERVICES["airflow-init"]
    text = (ROOT / "deploy/init" / Path(init["command"][0]).name).read_text()
    lines = [line.strip() for line in text.splitlines()]
    # scripts/auth_users.py, where the image has it, after the migration that creates FAB's tables and
    # before anything else uses the database
    (run,) = [i for i, line in enumerate(lines) if "auth_users.py" in line and not line.startswith("#")]
    command = shlex.split(lines[run])
    assert command[0] == "python3" and command[2:] == ["--from-env"]
    assert dockerfile_copy_targets(ROOT / "Dockerfile")["scripts/auth_users.py"] == command[1]
    assert lines.index("/entrypoint airflow version") < run
    assert run < [i for i, line in enumerate(lines) if "deploy/init/prepare.py" in line][-1]
    # each password is a required variable of airflow-init alone, passed on through the environment:
    # the script neither expands it (no file, no log line) nor traces its commands
    assert set(AUTH_USERS.USERS) == {"admin", "op", "user", "viewer", "study_reader"}
    for variable in PASSWORD_VARIABLES:
        assert env_of("airflow-init")[variable] == f"${{{variable}:?set {variable}}}", variable
        for name in LONG_RUNNING_AIRFLOW:
            assert variable not in env_of(name), (name, variable)
    assert not re.search(r"\$\{?\w*PASSWORD", text)
    assert not re.search(r"set -\w*x|xtrace", text)


def test_auth_users_reads_every_password_from_the_environment() -> None:
    environ = {variable: f"secret-{i}" for i, variable in enumerate(PASSWORD_VARIABLES)}
    assert AUTH_USERS.password_variable("study_reader") == "AIRFLOW_STUDY_READER_PASSWORD"
    assert AUTH_USERS.passwords_from_env(environ) == {
        name: f"secret-{i}" for i, name in enumerate(AUTH_USERS.USERS)
    }
    for missing in ("AIRFLOW_OP_PASSWORD", "AIRFLOW_STUDY_READER_PASSWORD"):
        with pytest.raises(SystemExit) as refused:
            AUTH_USERS.passwords_from_env({**environ, missing: ""})
        assert missing in str(refused.value)
        assert "secret-" not in str(refused.value)  # names the variable, never a value


def test_slurm_service_is_optional_and_gets_the_init_keys() -> None:
    slurm = SERVICES["slurm"]
    assert slurm["profiles"] == ["hpc"]
    assert slurm["build"] == {
        "context": "deploy/slurm",
        "args": {"BASE": "${SLURM_BASE_IMAGE:-debian:bookworm-slim}"},
    }
    dockerfile = (ROOT / "deploy/slurm/Dockerfile").read_text()
    assert re.search(r"^ARG BASE=debian:bookworm-slim$", dockerfile, re.M)
    assert re.search(r"^FROM \$\{BASE\}$", dockerfile, re.M)
    ssh_dir = re.search(r"^ENV URGENTFLOW_SSH_DIR=(\S+)$", dockerfile, re.M)
    assert ssh_dir and f"hpc-ssh-server:{ssh_dir.group(1)}:ro" in slurm["volumes"]
    assert "hpc-ssh-server:/opt/urgentflow-ssh/server" in SERVICES["airflow-init"]["volumes"]
    assert slurm["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    for name in LONG_RUNNING_AIRFLOW:  # Airflow runs without the optional cluster
        assert "slurm" not in SERVICES[name]["depends_on"], name


def slurm_conf() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    nodes, partitions = [], []
    for line in (ROOT / "deploy/slurm/slurm.conf").read_text().splitlines():
        fields = (
            dict(f.split("=", 1) for f in line.split()) if "=" in line and not line.startswith("#") else {}
        )
        if "NodeName" in fields:
            nodes.append(fields)
        elif "PartitionName" in fields:
            partitions.append(fields)
    return nodes, partitions


def test_compose_machine_catalog_matches_the_slurm_container() -> None:
    path = ROOT / "deploy/machines.compose.yaml"
    catalog = parse_catalog(yaml.safe_load(path.read_text()), path)
    assert env_of("scheduler")["URGENTFLOW_MACHINES"] == "/opt/urgentflow/deploy/machines.compose.yaml"
    machine = catalog["slurm"]
    assert (machine.connection, machine.batch_system) == ("hpc_slurm", "slurm")
    assert machine.workdir.startswith("/home/urgent/") and connection("hpc_slurm")["login"] == "urgent"
    nodes, partitions = slurm_conf()
    (partition_conf,) = partitions
    partition = machine.partitions[partition_conf["PartitionName"]]
    assert partition.default and partition_conf["Default"] == "YES"
    assert partition.nodes == len(nodes) == len(partition_conf["Nodes"].split(","))
    assert partition.max_walltime_minutes == int(partition_conf["MaxTime"])
    for node in nodes:
        assert int(node["CPUs"]) == partition.cores_per_node, node
        assert int(node["RealMemory"]) == partition.memory_mb_per_node, node
    entrypoint = (ROOT / "deploy/slurm/entrypoint.sh").read_text()
    assert f"NODES=({' '.join(n['NodeName'] for n in nodes)})" in entrypoint
