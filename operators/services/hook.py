"""ServiceHook: long-lived service containers on the Docker engine of the ``docker_default`` Connection.

The engine URL is the connection's ``extra.docker_url``; the client is the docker provider's
``DockerHook(docker_conn_id=None, base_url=...)`` (a conn id there would mean a registry login, and
there is no registry). Containers run detached, carry our labels (``spec.ServiceLabels``) and publish
their one port on a host port Docker picks. Images are never pulled: they are built locally.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from operators.services.readiness import ServiceNotReady, http_probe, tcp_probe, wait_ready
from operators.services.spec import SERVICE_LABEL, ServiceLabels, ServiceSpec, container_name

STOP_TIMEOUT_S = 10
LOG_TAIL_LINES = 40
_ANY_ADDRESS = ("", "0.0.0.0", "::")  # noqa: S104 - recognised, not bound


@dataclass(frozen=True)
class Service:
    """One of our containers as the engine reports it."""

    container_id: str
    state: str  # Docker's: created, running, exited, ...
    identity: ServiceLabels
    host: str | None
    port: int | None
    created_at: datetime

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def address(self) -> str:
        """Where to reach it: the published address (loopback when published on every address)."""
        return "127.0.0.1" if self.host in _ANY_ADDRESS or self.host is None else self.host

    @property
    def url(self) -> str | None:
        return f"http://{self.address}:{self.port}" if self.port is not None else None

    @classmethod
    def from_listing(cls, item: dict[str, Any]) -> Service | None:
        """From one entry of ``GET /containers/json``; None when the container is not ours."""
        identity = ServiceLabels.parse(item.get("Labels") or {})
        if identity is None:
            return None
        published = [p for p in item.get("Ports") or [] if p.get("PublicPort")]
        return cls(
            container_id=item["Id"],
            state=item.get("State", ""),
            identity=identity,
            host=published[0].get("IP") if published else None,
            port=int(published[0]["PublicPort"]) if published else None,
            created_at=datetime.fromtimestamp(int(item.get("Created", 0)), UTC),
        )


class ServiceHook(BaseHook):
    conn_name_attr = "docker_conn_id"
    default_conn_name = "docker_default"
    conn_type = "docker"
    hook_name = "urgentflow service containers"

    def __init__(self, docker_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.docker_conn_id = docker_conn_id

    @cached_property
    def docker_url(self) -> str:
        url = self.get_connection(self.docker_conn_id).extra_dejson.get("docker_url")
        if not url:
            raise ValueError(f"connection {self.docker_conn_id} has no extra.docker_url (the engine URL)")
        return str(url)

    @cached_property
    def api(self) -> Any:
        from airflow.providers.docker.hooks.docker import DockerHook

        return DockerHook(docker_conn_id=None, base_url=self.docker_url).api_client

    def get_conn(self) -> Any:
        return self.api

    def start(self, spec: ServiceSpec) -> Service:
        """Create and start the container detached; a name clash means another try started it: that one."""
        from docker.errors import APIError

        port = spec.container_port
        host_config = self.api.create_host_config(
            port_bindings={port: (spec.host_address, None)},  # None: Docker picks a free host port
            binds={m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in spec.mounts},
            nano_cpus=spec.nano_cpus,
            mem_limit=spec.mem_limit_bytes,
            init=True,
        )
        try:
            created = self.api.create_container(
                image=spec.image,
                command=list(spec.command) if spec.command is not None else None,
                name=container_name(spec.identity.service_id),
                environment=dict(spec.env),
                labels=spec.identity.labels(),
                ports=[port],
                detach=True,
                host_config=host_config,
            )
        except APIError as exc:
            if exc.status_code != 409 or (found := self.find(spec.identity.service_id)) is None:
                raise
            return found
        try:
            self.api.start(created["Id"])
        except Exception:
            self.api.remove_container(created["Id"], force=True)  # never leave a created-only husk
            raise
        started = self.find(spec.identity.service_id)
        if started is None:
            raise RuntimeError(f"container {created['Id'][:12]} vanished right after its start")
        return started

    def list_services(self, **labels: str) -> list[Service]:
        """Our containers (label ``urgentflow.service=1``), optionally narrowed by more of our labels."""
        wanted = [f"{SERVICE_LABEL}=1", *(f"urgentflow.{k}={v}" for k, v in labels.items())]
        listing = self.api.containers(all=True, filters={"label": wanted})
        return [s for s in map(Service.from_listing, listing) if s is not None]

    def find(self, service_id: str) -> Service | None:
        found = self.list_services(service_id=service_id)
        return found[0] if found else None

    def wait_ready(self, service: Service, path: str | None, timeout_s: float) -> None:
        """Return once the service answers (HTTP GET ``path`` below 500, or TCP when ``path`` is None)."""
        if service.url is None or service.port is None:
            raise ServiceNotReady(self._with_logs(service.container_id, "it publishes no port"))
        url, host, port = service.url, service.address, service.port

        def probe() -> bool:
            return http_probe(f"{url}/{path.lstrip('/')}") if path is not None else tcp_probe(host, port)

        def alive() -> bool:
            from docker.errors import NotFound

            try:
                return bool(self.api.inspect_container(service.container_id)["State"]["Running"])
            except NotFound:  # removed meanwhile (by hand, or another remover): not running
                return False

        why = wait_ready(probe, alive, timeout_s)
        if why is not None:
            raise ServiceNotReady(self._with_logs(service.container_id, why))

    def logs_tail(self, container_id: str, lines: int = LOG_TAIL_LINES) -> str:
        from docker.errors import NotFound

        try:
            raw = self.api.logs(container_id, stdout=True, stderr=True, tail=lines)
        except NotFound:
            return "(container gone: no logs)"
        return bytes(raw).decode(errors="replace")

    def _with_logs(self, container_id: str, why: str) -> str:
        return f"service container {container_id[:12]} not ready: {why}. Its last log lines:\n{self.logs_tail(container_id)}"

    def remove(self, container_id: str) -> bool:
        """Stop (SIGTERM, then SIGKILL after 10 s) and remove; False when it was already gone."""
        from docker.errors import APIError, NotFound

        try:
            self.api.stop(container_id, timeout=STOP_TIMEOUT_S)
            self.api.remove_container(container_id, force=True, v=True)
        except NotFound:
            return False
        except APIError as exc:
            if exc.status_code == 409 and "in progress" in str(exc):  # another remover was first
                return False
            raise
        return True

    def archive(self, container_id: str, path: str) -> Iterator[bytes]:
        """A tar stream of ``path`` (file or directory) in the container."""
        chunks, _stat = self.api.get_archive(container_id, path)
        return iter(chunks)
