"""What a service container is, as data: its deterministic id, its labels, its mounts and limits.

Pure: no Docker, no Airflow. The labels are the single source of truth the reaper reads, so a
service left behind by a crashed worker can still be judged (TTL, keep-alive, its DAG run).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

LABEL = "urgentflow."
SERVICE_LABEL = f"{LABEL}service"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def service_id(dag_id: str, run_id: str, task_id: str, map_index: int | None = -1) -> str:
    """The same task instance (whatever its try) always gets the same id: a retry finds its container."""
    index = -1 if map_index is None else int(map_index)
    identity = "\x1f".join((dag_id, run_id, task_id, str(index)))
    return f"svc-{hashlib.sha256(identity.encode()).hexdigest()[:24]}"


def link_url(url: str | None) -> str | None:
    """``url`` when it may be shown as a service's link (http or https, with a host), else None: never a
    ``javascript:`` or ``data:`` link. Escaping it for HTML is still the page's job."""
    try:
        parts = urlsplit((url or "").strip())
    except ValueError:
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.hostname else None


def container_name(sid: str) -> str:
    """Docker refuses a second container of this name: two racing tries cannot both start one."""
    return f"uf-{sid}"


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Mount:
    """A bind mount: host ``source`` at ``target`` in the container, read-only unless said otherwise."""

    source: str
    target: str
    read_only: bool = True

    def __post_init__(self) -> None:
        for path in (self.source, self.target):
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"bind mount paths must be absolute: {self.source!r} -> {self.target!r}")

    @classmethod
    def of(cls, value: Mount | Mapping[str, Any]) -> Mount:
        if isinstance(value, Mount):
            return value
        return cls(str(value["source"]), str(value["target"]), bool(value.get("read_only", True)))


@dataclass(frozen=True)
class ServiceLabels:
    """Who a service belongs to and when it may be removed; ``labels()`` <-> ``parse()`` round-trip."""

    service_id: str
    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    owner: str = ""
    expires_at: datetime | None = None
    keepalive_seconds: int | None = None
    outlive_run: bool = False  # kept after its DAG run ends (until TTL or missed keep-alive)

    def labels(self) -> dict[str, str]:
        labels = {
            SERVICE_LABEL: "1",
            f"{LABEL}service_id": self.service_id,
            f"{LABEL}dag_id": self.dag_id,
            f"{LABEL}run_id": self.run_id,
            f"{LABEL}task_id": self.task_id,
            f"{LABEL}map_index": str(self.map_index),
            f"{LABEL}owner": self.owner,
        }
        if self.expires_at is not None:
            labels[f"{LABEL}expires_at"] = iso_utc(self.expires_at)
        if self.keepalive_seconds is not None:
            labels[f"{LABEL}keepalive_seconds"] = str(int(self.keepalive_seconds))
        if self.outlive_run:
            labels[f"{LABEL}outlive_run"] = "1"
        return labels

    @classmethod
    def parse(cls, labels: Mapping[str, str]) -> ServiceLabels | None:
        """The labels of one of our containers, or None for anything else (never ours to touch)."""
        if labels.get(SERVICE_LABEL) != "1" or not labels.get(f"{LABEL}service_id"):
            return None
        expires = labels.get(f"{LABEL}expires_at")
        keepalive = labels.get(f"{LABEL}keepalive_seconds")
        return cls(
            service_id=labels[f"{LABEL}service_id"],
            dag_id=labels.get(f"{LABEL}dag_id", ""),
            run_id=labels.get(f"{LABEL}run_id", ""),
            task_id=labels.get(f"{LABEL}task_id", ""),
            map_index=int(labels.get(f"{LABEL}map_index", "-1")),
            owner=labels.get(f"{LABEL}owner", ""),
            expires_at=datetime.fromisoformat(expires) if expires else None,
            keepalive_seconds=int(keepalive) if keepalive else None,
            outlive_run=labels.get(f"{LABEL}outlive_run") == "1",
        )


@dataclass(frozen=True)
class ServiceSpec:
    """Everything needed to start one service container; validated on construction."""

    identity: ServiceLabels
    image: str
    container_port: int
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    cpus: float | None = None
    memory_mb: int | None = None
    host_address: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if self.command is not None and not all(isinstance(a, str) for a in self.command):
            raise TypeError(f"command must be a list of strings (an argv), got {self.command!r}")
        for name, value in self.env.items():
            if not _ENV_NAME.match(name) or not isinstance(value, str):
                raise ValueError(f"environment variables need a plain name and a string value: {name!r}")
        if not 0 < int(self.container_port) < 65536:
            raise ValueError(f"container_port out of range: {self.container_port}")
        if (self.cpus is not None and self.cpus <= 0) or (self.memory_mb is not None and self.memory_mb <= 0):
            raise ValueError("cpus and memory_mb must be positive")

    @classmethod
    def build(
        cls,
        identity: ServiceLabels,
        *,
        image: str,
        container_port: int,
        command: Sequence[str] | None = None,
        env: Mapping[str, Any] | None = None,
        mounts: Sequence[Mount | Mapping[str, Any]] | None = None,
        **limits: Any,
    ) -> ServiceSpec:
        """From rendered operator arguments: an argv list, any env values (as text), mount dicts."""
        if isinstance(command, str):
            raise TypeError("command must be a list of strings (an argv), not a shell string")
        return cls(
            identity=identity,
            image=image,
            container_port=int(container_port),
            command=tuple(command) if command is not None else None,
            env={str(k): str(v) for k, v in (env or {}).items()},
            mounts=tuple(Mount.of(m) for m in mounts or ()),
            **limits,
        )

    @property
    def nano_cpus(self) -> int | None:
        return round(self.cpus * 1e9) if self.cpus is not None else None

    @property
    def mem_limit_bytes(self) -> int | None:
        return self.memory_mb * 1024 * 1024 if self.memory_mb is not None else None
