#!/usr/bin/env python3
"""The embedded Airflow runtime: embedded Postgres (pgserver) + api-server, scheduler, dag-processor, triggerer.

    scripts/runtime.py start     start what is not running and wait until all is healthy (idempotent)
    scripts/runtime.py stop      stop every process of ours (data is kept)
    scripts/runtime.py restart   stop, then start
    scripts/runtime.py status    what runs, pids, URLs, memory (exit 3 when not fully running)
    scripts/runtime.py env       `export ...` lines to run `airflow` CLI commands against the runtime
    scripts/runtime.py token     print a JWT of the admin user (POST /auth/token)
    scripts/runtime.py --mode scaled start|stop|restart|status|env|token   the scaled (Celery) instance
    scripts/runtime.py --mode scaled worker --name w1 [--queues default,transfer] [--concurrency 2]
                       [--log-port N | --skip-serve-logs]   start a Celery worker (stop-worker --name w1)

State lives under $URGENTFLOW_HOME/runtime (default /var/lib/urgentflow/runtime as root):
pg/ (database), airflow/ (AIRFLOW_HOME, task logs), logs/<component>.log, run/ (pid files),
secrets.json and passwords.json (mode 600, generated once). The configuration is environment
variables only; AIRFLOW__*, AIRFLOW_CONN_* and AIRFLOW_VAR_* set by the caller win over ours (an
AIRFLOW__DATABASE__SQL_ALCHEMY_CONN of the caller replaces the embedded Postgres).
Ports: URGENTFLOW_API_PORT (8080), URGENTFLOW_WORKER_LOG_PORT (8793), URGENTFLOW_TRIGGER_LOG_PORT (8794).

Scaled mode (``--mode scaled`` or URGENTFLOW_MODE=scaled) is a second, fully separate instance:
CeleryExecutor with the machine's Redis as broker (redis://127.0.0.1:6379/5) and the machine's Postgres
for metadata and Celery results (database urgentflow_airflow_scaled, created if missing); the same DAGs,
plugins and test-bed connections; state in $URGENTFLOW_HOME/runtime-scaled (URGENTFLOW_SCALED_RUNTIME);
ports URGENTFLOW_SCALED_API_PORT (8090), URGENTFLOW_SCALED_WORKER_LOG_PORT (8795),
URGENTFLOW_SCALED_TRIGGER_LOG_PORT (8796). Celery workers are started one by one with `worker` (on this
host or another one that reaches the same broker, database and API); staging tasks go to the queue
``transfer`` ([urgentflow] transfer_queue), everything else to ``default``.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("URGENTFLOW_VENV", ROOT / ".venv"))


def reexec_in_venv() -> None:
    """Run under the project venv (pgserver, psycopg2, httpx live there) whatever python was used."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() != VENV.resolve() and python.exists():
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])  # noqa: S606


if __name__ == "__main__":
    reexec_in_venv()
warnings.filterwarnings("ignore", module="platformdirs")  # pgserver: "XDG_RUNTIME_DIR is not set"
sys.path.insert(0, str(ROOT / "scripts"))

from airflow_client import USERNAME, AirflowClient, ApiError, api_port, passwords_file, runtime_dir  # noqa: E402
from auth_users import USERS  # noqa: E402
from connections import connection_env, default_home  # noqa: E402

AIRFLOW_BIN = VENV / "bin" / "airflow"
RUNTIME = runtime_dir()
PG_DIR = RUNTIME / "pg"
AIRFLOW_HOME = RUNTIME / "airflow"
LOG_DIR = RUNTIME / "logs"
RUN_DIR = RUNTIME / "run"
SECRETS_FILE = RUNTIME / "secrets.json"
MIGRATED_STAMP = RUN_DIR / "migrated"
CONFIG_STAMP = RUN_DIR / "config.json"
# Every process we start carries this variable (a second way to recognise ours, never by name).
MARKER = "URGENTFLOW_RUNTIME"

START_TIMEOUT = float(os.environ.get("URGENTFLOW_START_TIMEOUT", "90"))
STOP_TIMEOUT = 20.0
API_HOST = "127.0.0.1"
WORKER_LOG_PORT = int(os.environ.get("URGENTFLOW_WORKER_LOG_PORT", "8793"))
TRIGGER_LOG_PORT = int(os.environ.get("URGENTFLOW_TRIGGER_LOG_PORT", "8794"))
HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}

# -- scaled mode (CeleryExecutor): its own state, ports, database and broker --------------------------
MODES = ("default", "scaled")
MODE = "default"
SCALED_DB_NAME = "urgentflow_airflow_scaled"
SCALED_DB_URL = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{SCALED_DB_NAME}"
SCALED_BROKER_URL = "redis://127.0.0.1:6379/5"
TRANSFER_QUEUE = "transfer"
WORKER_PREFIX = "worker-"


def scaled_runtime_dir() -> Path:
    return Path(os.environ.get("URGENTFLOW_SCALED_RUNTIME") or default_home() / "runtime-scaled")


def use_mode(mode: str) -> None:
    """Point the module's paths and ports at the instance of ``mode`` (the default needs no call)."""
    global MODE, RUNTIME, PG_DIR, AIRFLOW_HOME, LOG_DIR, RUN_DIR, SECRETS_FILE, MIGRATED_STAMP, CONFIG_STAMP
    global WORKER_LOG_PORT, TRIGGER_LOG_PORT
    if mode not in MODES:
        raise fail(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    if mode == "default":
        return
    MODE = mode
    RUNTIME = scaled_runtime_dir()
    PG_DIR = RUNTIME / "pg"  # never created: scaled mode has no embedded Postgres
    AIRFLOW_HOME = RUNTIME / "airflow"
    LOG_DIR = RUNTIME / "logs"
    RUN_DIR = RUNTIME / "run"
    SECRETS_FILE = RUNTIME / "secrets.json"
    MIGRATED_STAMP = RUN_DIR / "migrated"
    CONFIG_STAMP = RUN_DIR / "config.json"
    WORKER_LOG_PORT = int(os.environ.get("URGENTFLOW_SCALED_WORKER_LOG_PORT", "8795"))
    TRIGGER_LOG_PORT = int(os.environ.get("URGENTFLOW_SCALED_TRIGGER_LOG_PORT", "8796"))


def scaled() -> bool:
    return MODE == "scaled"


def instance_api_port() -> int:
    return int(os.environ.get("URGENTFLOW_SCALED_API_PORT", "8090")) if scaled() else api_port()


def instance_passwords_file() -> Path:
    return RUNTIME / "passwords.json" if scaled() else passwords_file()


def instance_client(timeout: float = 30.0) -> AirflowClient:
    if not scaled():
        return AirflowClient(timeout=timeout)
    password = None
    with contextlib.suppress(FileNotFoundError, KeyError, ValueError):
        password = str(json.loads(instance_passwords_file().read_text())[USERNAME])
    return AirflowClient(base=f"http://127.0.0.1:{instance_api_port()}", password=password, timeout=timeout)


def scaled_settings() -> dict[str, str]:
    """What scaled mode changes in the default configuration (the caller's AIRFLOW__* still win)."""
    db_url = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or SCALED_DB_URL
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": SCALED_DB_URL,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        # the scheduler's cap on queued + running tasks (deferred ones do not count); workers have their own
        "AIRFLOW__CORE__PARALLELISM": "16",
        "AIRFLOW__CELERY__BROKER_URL": SCALED_BROKER_URL,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{db_url}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        # Celery's own default, said explicitly (the provider warns otherwise): an unacknowledged message
        # of a dead worker comes back after this; Airflow finds such tasks long before (below)
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": "default",
        "AIRFLOW__URGENTFLOW__TRANSFER_QUEUE": TRANSFER_QUEUE,
        # A task whose message a dead worker had taken but not started stays queued: requeue it after 60 s
        # (5 min before: a worker killed with members prefetched held the ensemble that long)
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "60",
    }


@dataclass(frozen=True)
class Component:
    name: str
    args: tuple[str, ...]
    port: int | None  # the port it (or its serve-logs child) listens on
    port_what: str
    wildcard: bool = False  # serve-logs binds all interfaces


def components() -> list[Component]:
    port = instance_api_port()
    return [
        Component(
            "api-server",
            ("api-server", "--host", API_HOST, "--port", str(port)),
            port,
            "the Airflow API server and UI",
        ),
        # with Celery the workers serve task logs, not the scheduler
        Component("scheduler", ("scheduler",), None, "")
        if scaled()
        else Component("scheduler", ("scheduler",), WORKER_LOG_PORT, "the scheduler's log server", True),
        Component("dag-processor", ("dag-processor",), None, ""),
        Component("triggerer", ("triggerer",), TRIGGER_LOG_PORT, "the triggerer's log server", True),
    ]


class StartError(SystemExit):
    pass


def say(msg: str) -> None:
    print(f"[runtime] {msg}", flush=True)


def fail(msg: str) -> StartError:
    print(f"\n[runtime] ERROR: {msg}", file=sys.stderr, flush=True)
    return StartError(1)


# -- files and secrets -------------------------------------------------------------------------------


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    path.chmod(0o600)


def load_secrets() -> dict[str, str]:
    """Secrets generated once and kept: JWT secret, API secret key (log-server tokens), the jobs' completion
    notice secret (operators/hpc/notice.py), Fernet key."""
    wanted = {
        "jwt_secret": lambda: secrets.token_urlsafe(48),
        "api_secret_key": lambda: secrets.token_urlsafe(48),
        "notice_secret": lambda: secrets.token_urlsafe(48),
        "fernet_key": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
    }
    current: dict[str, str] = {}
    if SECRETS_FILE.exists():
        current = json.loads(SECRETS_FILE.read_text())
    missing = {k: make() for k, make in wanted.items() if not current.get(k)}
    if missing:
        current.update(missing)
        write_private(SECRETS_FILE, json.dumps(current, indent=2) + "\n")
    return current


def ensure_password() -> None:
    """A password for every user of ``auth_users.USERS`` (kept once generated; missing ones added)."""
    path = instance_passwords_file()
    current: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError, ValueError):
        current = {k: v for k, v in json.loads(path.read_text()).items() if isinstance(v, str) and v}
    missing = {name: secrets.token_urlsafe(16) for name in USERS if name not in current}
    if missing or not path.exists():
        write_private(path, json.dumps({**current, **missing}, indent=1) + "\n")
    path.chmod(0o600)


def ensure_users(env: dict[str, str]) -> None:
    """The users and roles of ``scripts/auth_users.py`` in the FAB auth manager, when they (or their
    passwords, or the database) changed since the last start."""
    script = ROOT / "scripts" / "auth_users.py"
    stamp_file = RUN_DIR / "users"
    stamp = hashlib.sha256(
        script.read_bytes() + instance_passwords_file().read_bytes() + MIGRATED_STAMP.read_bytes()
    ).hexdigest()
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return
    log = LOG_DIR / "migrate.log"
    with open(log, "ab") as out:
        rc = subprocess.run(
            [str(VENV / "bin" / "python"), str(script), str(instance_passwords_file())],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(AIRFLOW_HOME),
            check=False,
            timeout=300,
        ).returncode
    if rc != 0:
        raise fail(f"creating the users failed (exit {rc}). Last lines of {log}:\n{tail(log)}")
    stamp_file.write_text(stamp)
    say(f"users: {', '.join(f'{u} ({r})' for u, r in USERS.items())}")


def embedded_db_url() -> str:
    return f"postgresql+psycopg2://postgres@/airflow?host={PG_DIR}"


def uses_embedded_db() -> bool:
    if scaled():
        return False
    given = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    return not given or given == embedded_db_url()


def pg_bin(name: str) -> Path:
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin" / name


# -- the environment of the components ---------------------------------------------------------------


def config_env() -> dict[str, str]:
    """Everything that configures the components (what `env` prints and what a restart compares)."""
    sec = load_secrets()
    base = f"http://127.0.0.1:{instance_api_port()}"
    env = {
        "URGENTFLOW_HOME": str(default_home()),
        "URGENTFLOW_ROOT": str(ROOT),
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "PYTHONPATH": str(ROOT),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": embedded_db_url(),
        "AIRFLOW__CORE__EXECUTOR": "operators.executor.ResumeSafeLocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(max(2, 2 * (os.cpu_count() or 1))),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__FERNET_KEY": sec["fernet_key"],
        # per-DAG permissions: Airflow's FAB auth manager (users and roles: scripts/auth_users.py)
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__API__HOST": API_HOST,
        "AIRFLOW__API__PORT": str(instance_api_port()),
        "AIRFLOW__API__SECRET_KEY": sec["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": sec["jwt_secret"],
        # Recovery after a crash within a minute, not 5 (issue 16): a task whose process died (a killed
        # worker, or the scheduler's session with its LocalExecutor workers) stops heartbeating and is
        # failed and retried (its retry re-attaches to its batch job) after 30 s; tasks queued by a dead
        # scheduler are reset when its job is 30 s silent ([scheduler] scheduler_health_check_threshold),
        # looked for every 15 s instead of every 300 s.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "15",
        # Latency on the urgent path (issue 17): an idle scheduler looks again after 0.25 s, not 1 s;
        # each hop of a DAG (run created -> first tasks, a task ended -> the next) waited for that.
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "15",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(WORKER_LOG_PORT),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(TRIGGER_LOG_PORT),
    }
    if scaled():
        env.update(scaled_settings())
    # Where the machines' jobs send their completion notices (operators/hpc/notice.py): this API server,
    # which the test bed's machines (this host) reach; a deployment whose compute nodes reach it at
    # another address sets AIRFLOW_CONN_URGENTFLOW_NOTICE itself.
    env["AIRFLOW_CONN_URGENTFLOW_NOTICE"] = json.dumps(
        {"conn_type": "http", "host": base, "password": sec["notice_secret"]}
    )
    env.update(connection_env())
    for key, value in os.environ.items():  # the caller's Airflow settings win
        if key.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")):
            env[key] = value
    return env


def process_env(config: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(config)
    env["PATH"] = f"{VENV / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    env[MARKER] = str(RUNTIME)
    return env


def fingerprint(config: dict[str, str]) -> dict[str, str]:
    return {k: hashlib.sha256(v.encode()).hexdigest()[:16] for k, v in sorted(config.items())}


def changed_keys(config: dict[str, str]) -> list[str]:
    try:
        old = json.loads(CONFIG_STAMP.read_text())
    except (FileNotFoundError, ValueError):
        return []
    new = fingerprint(config)
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


# -- processes ---------------------------------------------------------------------------------------


def pid_file(name: str) -> Path:
    return RUN_DIR / f"{name}.pid"


def proc_environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def proc_stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name: [0] state, [1] ppid, [3] session, [19] start time."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return bool(stat) and stat[0] not in ("Z", "X")  # a zombie is not alive


def recorded() -> dict[str, tuple[int, int]]:
    """``{component: (pid, start time)}`` from the pid files (also of components that died)."""
    found = {}
    for path in RUN_DIR.glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid, started = (int(x) for x in path.read_text().split()[:2])
            found[path.stem] = (pid, started)
    return found


def is_ours(pid: int, sessions: dict[int, int] | None = None, marker: bool = True) -> bool:
    """Whether ``pid`` belongs to the runtime: it lives in the session of a component we started
    (each component is a session leader; its workers, serve-logs and tasks stay in its session even
    when they change process group), or it carries our marker variable. Airflow's setproctitle
    overwrites /proc/PID/environ, so the session is the reliable test."""
    stat = proc_stat(pid)
    if not stat:
        return False
    if sessions is None:
        sessions = dict(recorded().values())
    sid, started = int(stat[3]), int(stat[19])
    if sid in sessions:
        leader = proc_stat(sid)
        if leader and alive(sid):
            return int(leader[19]) == sessions[sid]  # same leader, not a reused pid
        return started >= sessions[sid]  # leader gone: members were born after it
    return marker and proc_environ(pid).get(MARKER) == str(RUNTIME)


def running_pid(name: str) -> int | None:
    """The pid of component ``name`` when it runs (pid file whose process still has its start time)."""
    pid, started = recorded().get(name, (0, 0))
    if not pid or not alive(pid):
        return None
    stat = proc_stat(pid)
    return pid if stat and int(stat[19]) == started else None


def our_processes(sessions: dict[int, int] | None = None, marker: bool = True) -> list[int]:
    """Every live process of the runtime (see is_ours), except us and our ancestors."""
    spared = {os.getpid()}
    pid = os.getpid()
    while pid > 1:
        stat = proc_stat(pid)
        if not stat:
            break
        pid = int(stat[1])
        spared.add(pid)
    if sessions is None:
        sessions = dict(recorded().values())
    found = []
    for entry in Path("/proc").iterdir():
        if (
            entry.name.isdigit()
            and int(entry.name) not in spared
            and is_ours(int(entry.name), sessions, marker)
        ):
            found.append(int(entry.name))
    return [p for p in found if alive(p)]


def pg_pid() -> int | None:
    try:
        pid = int((PG_DIR / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return pid if alive(pid) and str(PG_DIR) in proc_cmdline(pid) else None


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"    (no log file {path})"
    return "\n".join("    " + line for line in text[-lines:])


def rotate(log: Path, limit: int = 10 * 1024 * 1024) -> None:
    if log.exists() and log.stat().st_size > limit:
        log.replace(log.with_suffix(".log.1"))


def launch(comp: Component, env: dict[str, str]) -> int:
    log = LOG_DIR / f"{comp.name}.log"
    rotate(log)
    with open(log, "ab") as out:
        out.write(f"\n==== {datetime.now().isoformat(timespec='seconds')} starting {comp.name}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            [str(AIRFLOW_BIN), *comp.args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(AIRFLOW_HOME),
            start_new_session=True,  # setsid: its own session and process group (pgid == pid)
        )
    stat = proc_stat(proc.pid)
    pid_file(comp.name).write_text(f"{proc.pid} {stat[19] if stat else 0}\n")
    return proc.pid


def signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def stop_components(names: list[str] | None = None) -> list[str]:
    """TERM each component's process group, wait, then TERM/KILL whatever is left in its session
    (serve-logs, executor workers, task processes). Without ``names``: every component, plus any
    process that carries our marker."""
    chosen = {n: v for n, v in recorded().items() if names is None or n in names}
    stopped = []
    for name, (pid, _) in chosen.items():
        if running_pid(name) is not None:
            signal_group(pid, signal.SIGTERM)
            stopped.append(f"{name} ({pid})")
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and any(running_pid(n) for n in chosen):
        time.sleep(0.2)
    sessions = dict(chosen.values())
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        left = our_processes(sessions, marker=names is None)
        if not left:
            break
        if sig == signal.SIGKILL:
            stopped.append(f"{len(left)} leftover process(es) killed")
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and our_processes(sessions, marker=names is None):
            time.sleep(0.1)
    if not our_processes(sessions, marker=False):
        for name in chosen:
            pid_file(name).unlink(missing_ok=True)
    return stopped


def stop_pg() -> bool:
    pid = pg_pid()
    if pid is None:
        return False
    cmd = [str(pg_bin("pg_ctl")), "-D", str(PG_DIR), "-m", "fast", "-w", "stop"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "pgserver", "--", *cmd]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=60)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


# -- ports -------------------------------------------------------------------------------------------


def port_holder(port: int) -> tuple[int | None, str]:
    """(pid, command line) of the process listening on ``port``, from `ss` (best effort)."""
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False
        ).stdout
    except FileNotFoundError:
        return None, ""
    match = re.search(r"pid=(\d+)", out)
    if not match:
        return None, ""
    pid = int(match.group(1))
    return pid, proc_cmdline(pid) or "?"


def port_free(port: int, wildcard: bool) -> bool:
    family = socket.AF_INET6 if wildcard and socket.has_dualstack_ipv6() else socket.AF_INET
    host = "::" if family == socket.AF_INET6 else ("0.0.0.0" if wildcard else API_HOST)  # noqa: S104
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_port(comp: Component) -> None:
    if comp.port is None or port_free(comp.port, comp.wildcard):
        return
    pid, cmd = port_holder(comp.port)
    env_var = {
        "api-server": "URGENTFLOW_API_PORT",
        "scheduler": "URGENTFLOW_WORKER_LOG_PORT",
        "triggerer": "URGENTFLOW_TRIGGER_LOG_PORT",
    }[comp.name]
    if pid is not None and is_ours(pid):
        raise fail(
            f"port {comp.port} (needed by {comp.port_what}) is held by pid {pid} ({cmd}), a leftover "
            f"process of this runtime that has no pid file. Run `scripts/runtime.py stop` (make stop), "
            f"then start again."
        )
    who = f"pid {pid}: {cmd}" if pid is not None else "a process this user cannot see"
    raise fail(
        f"port {comp.port} (needed by {comp.port_what}) is already in use by {who}. It is not part of "
        f"the urgentflow runtime, so it was left alone and nothing was started. Stop that process, or "
        f"choose another port with {env_var}=<port> (the same variable must be set for demo.py and "
        f"the tests)."
    )


# -- health ------------------------------------------------------------------------------------------


def health() -> dict | None:
    try:
        with instance_client(timeout=3.0) as client:
            return client.health()
    except ApiError:
        return None


def _stamp(value: str | None) -> float:
    if not value:
        return 0.0
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(value).timestamp()
    return 0.0


def unhealthy(report: dict | None, launched: dict[str, float]) -> list[str]:
    """Components that are not healthy yet; a component launched now needs a heartbeat of its own."""
    if report is None:
        return ["api-server"]
    bad = []
    if report.get("metadatabase", {}).get("status") != "healthy":
        bad.append("metadatabase")
    for name, key in HEALTH_KEYS.items():
        entry = report.get(key) or {}
        if entry.get("status") != "healthy":
            bad.append(name)
        elif name in launched and _stamp(entry.get(f"latest_{key}_heartbeat")) < launched[name] - 1:
            bad.append(name)  # the heartbeat is still the one of a previous process
    return bad


# -- database ----------------------------------------------------------------------------------------


def start_pg() -> bool:
    """Start (or re-attach to) the embedded Postgres; create DB airflow. True when it was just created."""
    import pgserver
    import psycopg2

    PG_DIR.parent.mkdir(parents=True, exist_ok=True)
    started = pg_pid() is None
    try:
        pgserver.get_server(PG_DIR, cleanup_mode=None)
    except Exception as exc:
        raise fail(f"the embedded Postgres did not start ({exc}). Its log:\n{tail(PG_DIR / 'log')}") from None
    if started:
        say(f"embedded Postgres started (pid {pg_pid()}, socket in {PG_DIR})")
    conn = psycopg2.connect(host=str(PG_DIR), user="postgres", dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = 'airflow'")
            if cur.fetchone():
                return False
            cur.execute("CREATE DATABASE airflow")
            say("database airflow created")
            return True
    finally:
        conn.close()


def migrate(env: dict[str, str], fresh: bool) -> None:
    version = metadata.version("apache-airflow-core")
    url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    stamp = f"{version} {hashlib.sha256(url.encode()).hexdigest()}\n"
    if not fresh and MIGRATED_STAMP.exists() and MIGRATED_STAMP.read_text() == stamp:
        return
    say("airflow db migrate ...")
    log = LOG_DIR / "migrate.log"
    t0 = time.monotonic()
    with open(log, "ab") as out:
        out.write(f"\n==== {datetime.now().isoformat(timespec='seconds')} airflow db migrate\n".encode())
        out.flush()
        rc = subprocess.run(
            [str(AIRFLOW_BIN), "db", "migrate"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(AIRFLOW_HOME),
            check=False,
            timeout=600,
        ).returncode
    if rc != 0:
        raise fail(f"`airflow db migrate` failed (exit {rc}). Last lines of {log}:\n{tail(log)}")
    MIGRATED_STAMP.write_text(stamp)
    say(f"database migrated in {time.monotonic() - t0:.1f} s")


# -- scaled mode: the machine's Postgres and Redis, Celery workers -----------------------------------


def where(url: str) -> str:
    """``host:port/db`` of a database or broker URL: what may be printed (never the credentials)."""
    from sqlalchemy.engine import make_url

    u = make_url(url.removeprefix("db+"))
    return f"{u.host or 'localhost'}:{u.port or ''}/{u.database or ''}"


def prepare_scaled(config: dict[str, str]) -> bool:
    """Check the broker answers and create the metadata database when it is missing (True: created)."""
    import psycopg2
    import redis
    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    broker = config["AIRFLOW__CELERY__BROKER_URL"]
    if broker.startswith(("redis://", "rediss://")):
        try:
            redis.Redis.from_url(broker, socket_timeout=5, socket_connect_timeout=5).ping()
        except redis.RedisError as exc:
            raise fail(f"the Celery broker (Redis at {where(broker)}) does not answer: {exc}") from None
    url = make_url(config["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    if not url.drivername.startswith("postgresql"):
        say(f"using the database at {where(str(url))} as is")
        return False
    try:
        conn = psycopg2.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=url.username or "postgres",
            password=url.password,
            dbname="postgres",
            connect_timeout=10,
        )
    except psycopg2.Error as exc:
        raise fail(f"cannot reach Postgres at {where(str(url))}: {str(exc).strip()}") from None
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,))
            if cur.fetchone():
                return False
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(url.database)))
            say(f"database {url.database} created on {where(str(url))}")
            return True
    finally:
        conn.close()


def worker_names() -> list[str]:
    return sorted(n.removeprefix(WORKER_PREFIX) for n in recorded() if n.startswith(WORKER_PREFIX))


def worker_ready(log: Path, offset: int, name: str) -> bool:
    """Celery logs ``<name>@<host> ready.`` once it consumes its queues."""
    try:
        with open(log, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return False
    return re.search(rf"\b{re.escape(name)}@\S+ ready\.", text) is not None


def cmd_worker(args: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="runtime.py --mode scaled worker")
    parser.add_argument("--name", required=True, help="worker name; Celery calls it <name>@<host>")
    parser.add_argument("--queues", default=f"default,{TRANSFER_QUEUE}", help="queues it consumes")
    parser.add_argument("--concurrency", type=int, default=2, help="tasks it runs at once")
    logs = parser.add_mutually_exclusive_group()
    logs.add_argument("--log-port", type=int, help="port of its task-log server (one per worker and host)")
    logs.add_argument(
        "--skip-serve-logs", action="store_true", help="serve no task logs (same host as another)"
    )
    opts = parser.parse_args(args)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}", opts.name):
        raise fail(f"worker name {opts.name!r}: letters, digits, - and _ only (at most 40)")
    if not re.fullmatch(r"[A-Za-z0-9_-]+(,[A-Za-z0-9_-]+)*", opts.queues):
        raise fail(f"queues {opts.queues!r}: a comma-separated list of names")
    if not 1 <= opts.concurrency <= 64:
        raise fail("--concurrency must be between 1 and 64")
    t0 = time.monotonic()
    with locked():
        prepare_dirs()
        comp_name = f"{WORKER_PREFIX}{opts.name}"
        if running_pid(comp_name):
            say(f"worker {opts.name} is already running (pid {running_pid(comp_name)})")
            return 0
        if comp_name in recorded():
            stop_components([comp_name])  # what is left of a worker that died
        if not all(running_pid(c.name) for c in components()):
            say("note: the scaled instance is not (fully) running here; the worker waits for its broker")
        config = config_env()
        env = process_env(config)
        port = opts.log_port or WORKER_LOG_PORT
        if not opts.skip_serve_logs:
            env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(port)
            if not port_free(port, wildcard=True):
                holder, cmd = port_holder(port)
                raise fail(
                    f"port {port} (the task-log server of worker {opts.name}) is in use by "
                    f"{f'pid {holder}: {cmd}' if holder else 'another process'}. Give this worker "
                    f"--log-port <free port>, or --skip-serve-logs when another worker of this host serves them."
                )
        argv = [
            "celery",
            "worker",
            "--celery-hostname",
            f"{opts.name}@%h",
            "--queues",
            opts.queues,
            "--concurrency",
            str(opts.concurrency),
            "--pid",
            str(RUN_DIR / f"{comp_name}.celery-pid"),
        ]
        if opts.skip_serve_logs:
            argv.append("--skip-serve-logs")
        log = LOG_DIR / f"{comp_name}.log"
        offset = log.stat().st_size if log.exists() else 0
        rotated = log.exists() and offset > 10 * 1024 * 1024
        pid = launch(Component(comp_name, tuple(argv), None, ""), env)
        offset = 0 if rotated else offset
        say(f"worker {opts.name} started (pid {pid}, queues {opts.queues}, concurrency {opts.concurrency})")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not alive(pid):
                stop_components([comp_name])
                raise fail(f"worker {opts.name} exited. Last lines of {log}:\n{tail(log)}")
            if worker_ready(log, offset, opts.name):
                say(f"worker {opts.name} ready in {time.monotonic() - t0:.1f} s (log {log})")
                return 0
            time.sleep(0.5)
        stop_components([comp_name])
        raise fail(
            f"worker {opts.name} not ready after {START_TIMEOUT:.0f} s. Last lines of {log}:\n{tail(log)}"
        )


def cmd_stop_worker(args: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="runtime.py --mode scaled stop-worker")
    parser.add_argument("--name", required=True)
    opts = parser.parse_args(args)
    with locked():
        stopped = stop_components([f"{WORKER_PREFIX}{opts.name}"])
    say(("stopped " + ", ".join(stopped)) if stopped else f"worker {opts.name} was not running")
    return 0


# -- commands ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One start/stop at a time (several test sessions may call start together)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def prepare_dirs() -> None:
    for path in (RUNTIME, AIRFLOW_HOME, LOG_DIR, RUN_DIR):
        path.mkdir(parents=True, exist_ok=True)
    for path in (AIRFLOW_HOME, LOG_DIR, RUN_DIR):
        path.chmod(0o700)


def urls() -> list[str]:
    base = f"http://127.0.0.1:{instance_api_port()}"
    return [
        f"UI {base}  (user {USERNAME}, password in {instance_passwords_file()})",
        f"REST API {base}/api/v2  (docs {base}/docs)  component logs in {LOG_DIR}",
    ]


def cmd_start() -> int:
    t0 = time.monotonic()
    if not AIRFLOW_BIN.exists():
        raise fail(f"{AIRFLOW_BIN} not found: create the venv first (make venv)")
    with locked():
        prepare_dirs()
        ensure_password()
        config = config_env()
        env = process_env(config)
        comps = components()
        running = {c.name: running_pid(c.name) for c in comps}
        changed = changed_keys(config)
        if any(running.values()) and changed:
            say(f"configuration changed ({', '.join(changed)}): restarting the components")
            stop_components()
            running = dict.fromkeys(running)
        embedded = uses_embedded_db()
        if all(running.values()) and (not embedded or pg_pid()) and not unhealthy(health(), {}):
            say(f"already running and healthy ({time.monotonic() - t0:.1f} s)")
            for line in urls():
                say(line)
            return 0

        to_start = [c for c in comps if not running[c.name]]
        gone = [c.name for c in to_start if c.name in recorded()]
        if gone:  # a component died: clear what is left of its session (e.g. serve-logs on its port)
            say(f"not running any more: {', '.join(gone)}; clearing what is left of it")
            stop_components(gone)
        for comp in to_start:
            check_port(comp)
        if embedded:
            fresh = start_pg()
        elif scaled():
            fresh = prepare_scaled(config)
        else:
            say("using the database of AIRFLOW__DATABASE__SQL_ALCHEMY_CONN as is")
            fresh = False
        migrate(env, fresh)
        ensure_users(env)

        launched: dict[str, float] = {}
        pids: dict[str, int] = {}
        for comp in to_start:
            launched[comp.name] = time.time()
            pids[comp.name] = launch(comp, env)
        CONFIG_STAMP.write_text(json.dumps(fingerprint(config), indent=1) + "\n")
        if to_start:
            say("started " + ", ".join(f"{n} ({p})" for n, p in pids.items()) + "; waiting until healthy")

        deadline = time.monotonic() + START_TIMEOUT
        bad: list[str] = []
        while time.monotonic() < deadline:
            dead = [n for n, p in pids.items() if not alive(p)]
            if dead:
                return start_failed(dead, "exited", launched)
            bad = unhealthy(health(), launched)
            if not bad:
                break
            time.sleep(0.5)
        else:
            return start_failed(bad, f"not healthy after {START_TIMEOUT:.0f} s", launched)
        say(f"all components healthy in {time.monotonic() - t0:.1f} s")
        for line in urls():
            say(line)
        return 0


def start_failed(names: list[str], why: str, launched: dict[str, float]) -> int:
    parts = []
    for name in names:
        log = LOG_DIR / f"{name}.log"
        if name == "metadatabase":
            log = PG_DIR / "log" if uses_embedded_db() else LOG_DIR / "api-server.log"
        parts.append(f"--- {name}: last lines of {log}\n{tail(log)}")
    print(
        f"\n[runtime] ERROR: {', '.join(names)} {why}.\n" + "\n".join(parts),
        file=sys.stderr,
        flush=True,
    )
    stop_components(list(launched))
    if not any(running_pid(c.name) for c in components()):
        stop_pg()
    say(f"stopped what this start launched ({', '.join(launched) or 'nothing'}); logs are in {LOG_DIR}")
    return 1


def cmd_stop() -> int:
    with locked():
        stopped = stop_components()
        if stop_pg():
            stopped.append("embedded Postgres")
        left = our_processes()
        if left:
            say(f"ERROR: still running: {', '.join(f'{p} {proc_cmdline(p)[:80]}' for p in left)}")
            return 1
        say(("stopped " + ", ".join(stopped)) if stopped else "nothing was running")
        return 0


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def pg_processes(pid: int) -> list[int]:
    kids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid:
                    kids.append(int(entry.name))
    return kids


def cmd_status() -> int:
    complete = True
    for comp in components():
        pid = running_pid(comp.name)
        complete &= pid is not None
        print(f"{comp.name:<14} {'running, pid ' + str(pid) if pid else 'stopped'}")
    for name in worker_names() if scaled() else []:
        pid = running_pid(f"{WORKER_PREFIX}{name}")
        print(f"{'worker ' + name:<14} {'running, pid ' + str(pid) if pid else 'stopped'}")
    if uses_embedded_db():
        pid = pg_pid()
        complete &= pid is not None
        print(f"{'postgres':<14} {f'running, pid {pid}, socket in {PG_DIR}' if pid else 'stopped'}")
    elif scaled():
        config = config_env()
        db, broker = config["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], config["AIRFLOW__CELERY__BROKER_URL"]
        print(f"{'postgres':<14} {where(db)} (the machine's; Celery results there too)")
        print(f"{'broker':<14} {where(broker)} (Redis)")
    else:
        print(f"{'postgres':<14} external (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)")
    report = health()
    if report is not None:
        bad = unhealthy(report, {})
        print(f"{'health':<14} {'all healthy' if not bad else 'unhealthy: ' + ', '.join(bad)}")
    ours = our_processes()
    pg = pg_pid()
    pss = sum(pss_kb(p) for p in ours) + (sum(pss_kb(p) for p in pg_processes(pg)) if pg else 0)
    if pss:
        with_pg = " + embedded Postgres" if pg else ""
        print(f"{'memory':<14} {pss / 1024:.0f} MB PSS ({len(ours)} Airflow processes{with_pg})")
    for label, line in zip(("urls", ""), urls(), strict=True):
        print(f"{label:<14} {line}")
    return 0 if complete else 3


def cmd_env() -> int:
    config = config_env()
    config["PATH"] = f"{VENV / 'bin'}:$PATH"
    for key, value in config.items():
        print(f"export {key}={shlex.quote(value) if key != 'PATH' else chr(34) + value + chr(34)}")
    return 0


def cmd_token() -> int:
    try:
        with instance_client() as client:
            print(client.token())
    except ApiError as exc:
        print(f"[runtime] ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    mode = os.environ.get("URGENTFLOW_MODE") or "default"
    if argv[:1] == ["--mode"] and len(argv) > 1:
        mode, argv = argv[1], argv[2:]
    elif argv[:1] and argv[0].startswith("--mode="):
        mode, argv = argv[0].split("=", 1)[1], argv[1:]
    use_mode(mode)
    if scaled() and argv[:1] == ["worker"]:
        return cmd_worker(argv[1:])
    if scaled() and argv[:1] == ["stop-worker"]:
        return cmd_stop_worker(argv[1:])
    commands = {
        "start": cmd_start,
        "stop": cmd_stop,
        "restart": lambda: cmd_stop() or cmd_start(),
        "status": cmd_status,
        "env": cmd_env,
        "token": cmd_token,
    }
    if len(argv) != 1 or argv[0] not in commands:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `runtime.py env | head` ends quietly
    return commands[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
