"""Service containers per DAG run: start one (setup), open it from the task (extra link), stop it (teardown).

In a DAG: ``start >> work >> StopServiceOperator(task_id="stop", service_task_id="start").as_teardown(setups=start)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from airflow.sdk import BaseOperator, BaseOperatorLink, Context

from operators.catalog.catalog import Catalog, task_map_index
from operators.services.data import drop_service_data, pull_prefix, service_data_dir
from operators.services.hook import Service, ServiceHook
from operators.services.readiness import ServiceNotReady
from operators.services.spec import ServiceLabels, ServiceSpec, iso_utc, link_url, service_id


class ServiceLink(BaseOperatorLink):
    """The "Open service" button on a StartServiceOperator task: the URL it returned."""

    name = "Open service"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        result = XCom.get_value(ti_key=ti_key, key="return_value")
        url = result.get("url") if isinstance(result, Mapping) else None
        return link_url(url if isinstance(url, str) else None) or ""  # never a javascript: link


class _ServiceTask(BaseOperator):
    """What both service operators share: the engine (``docker_conn_id``) and the catalog."""

    def __init__(
        self, *, docker_conn_id: str = "docker_default", catalog_conn_id: str = "catalog_db", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.docker_conn_id = docker_conn_id
        self.catalog_conn_id = catalog_conn_id

    def _hooks(self) -> tuple[ServiceHook, Catalog]:
        return ServiceHook(self.docker_conn_id), Catalog(self.catalog_conn_id)


class StartServiceOperator(_ServiceTask):
    """Start ``image`` as a detached service container for this task instance and wait until it answers.

    Its port ``container_port`` is published on ``host_address`` at a free host port. A retry finds the
    container of an earlier try by its deterministic service id and reuses it when it still runs.
    ``data_prefix`` pulls the objects under that object-store prefix (each verified against its
    sha256) into a directory on the Docker host, mounted read-only at ``data_target`` (``/data``) and
    removed with the service. ``readiness_path`` is probed over HTTP (any status below 500 is ready);
    None probes TCP. A service
    that is not ready in ``ready_timeout`` seconds is removed and the task fails with its last log
    lines. The reaper removes it after ``ttl_minutes``, after ``keepalive_seconds`` without a
    keep-alive (if set), or once the DAG run is finished (unless ``outlive_run``: a result viewer
    meant to stay up after its run, until TTL or the last keep-alive). Returns ``{service_id, url, container_id,
    expires_at}`` and records the service in the catalog.

    The readiness wait (seconds, bounded by ``ready_timeout``) runs in the worker: unlike an HPC job
    it is short, and the container must be removed by the same try when it never comes up.
    """

    template_fields: Sequence[str] = (
        "image",
        "command",
        "env",
        "mounts",
        "container_port",
        "readiness_path",
        "ready_timeout",
        "ttl_minutes",
        "keepalive_seconds",
        "cpus",
        "memory_mb",
        "host_address",
        "data_prefix",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"command": "json", "env": "json", "mounts": "json"}
    operator_extra_links = (ServiceLink(),)
    ui_color = "#d8f0d2"

    def __init__(
        self,
        *,
        image: str,
        container_port: int,
        command: Sequence[str] | None = None,
        env: Mapping[str, Any] | None = None,
        mounts: Sequence[Mapping[str, Any]] | None = None,
        readiness_path: str | None = "/",
        ready_timeout: float = 60,
        ttl_minutes: float = 60,
        keepalive_seconds: int | None = None,
        cpus: float | None = 1.0,
        memory_mb: int | None = 512,
        host_address: str = "127.0.0.1",
        data_prefix: str | None = None,
        data_target: str = "/data",
        outlive_run: bool = False,
        object_store_conn_id: str = "object_store",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.data_prefix = data_prefix
        self.outlive_run = outlive_run
        self.data_target = data_target
        self.object_store_conn_id = object_store_conn_id
        self.image = image
        self.container_port = container_port
        self.command = command
        self.env = env
        self.mounts = mounts
        self.readiness_path = readiness_path
        self.ready_timeout = ready_timeout
        self.ttl_minutes = ttl_minutes
        self.keepalive_seconds = keepalive_seconds
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.host_address = host_address

    def _mounts(self, sid: str) -> list[Any]:
        """The given mounts, plus the objects under ``data_prefix`` pulled to the host (read-only)."""
        mounts = list(self.mounts or [])
        if self.data_prefix:
            from operators.storage.hook import ObjectStoreHook

            dest = service_data_dir(sid)
            pulled = pull_prefix(ObjectStoreHook(self.object_store_conn_id), self.data_prefix, dest)
            self.log.info("Pulled %d object(s) under %s for service %s", len(pulled), self.data_prefix, sid)
            mounts.append({"source": str(dest), "target": self.data_target, "read_only": True})
        return mounts

    def _identity(self, ti: Any) -> ServiceLabels:
        map_index = task_map_index(ti)
        return ServiceLabels(
            service_id=service_id(ti.dag_id, ti.run_id, ti.task_id, map_index),
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            map_index=map_index,
            owner=str(self.owner),
            expires_at=datetime.now(UTC) + timedelta(minutes=float(self.ttl_minutes)),
            keepalive_seconds=int(self.keepalive_seconds) if self.keepalive_seconds is not None else None,
            outlive_run=bool(self.outlive_run),
        )

    def _spec(self, identity: ServiceLabels) -> ServiceSpec:
        """What to start (pulling the service's data first): only when there is no container to reuse."""
        return ServiceSpec.build(
            identity,
            image=self.image,
            container_port=self.container_port,
            command=self.command,
            env=self.env,
            mounts=self._mounts(identity.service_id),
            cpus=float(self.cpus) if self.cpus is not None else None,
            memory_mb=int(self.memory_mb) if self.memory_mb is not None else None,
            host_address=self.host_address,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        identity = self._identity(context["ti"])
        sid = identity.service_id
        hook, catalog = self._hooks()
        service = hook.find(sid)
        if service is not None and service.running:
            self.log.info(
                "Reusing service %s: container %s at %s", sid, service.container_id[:12], service.url
            )
        else:
            if service is not None:  # an earlier try's container that stopped: start afresh
                hook.remove(service.container_id)
            service = hook.start(self._spec(identity))
            self.log.info(
                "Started service %s: container %s at %s", sid, service.container_id[:12], service.url
            )
        self._record(catalog, service, "starting")
        try:
            hook.wait_ready(service, self.readiness_path, float(self.ready_timeout))
        except ServiceNotReady:
            hook.remove(service.container_id)
            drop_service_data(sid)
            catalog.set_service_state(sid, "failed")
            raise
        self._record(catalog, service, "running")
        self.log.info("Service %s is ready at %s", sid, service.url)
        return {
            "service_id": sid,
            "url": service.url,
            "container_id": service.container_id,
            "expires_at": iso_utc(service.identity.expires_at) if service.identity.expires_at else None,
        }

    def _record(self, catalog: Catalog, service: Service, state: str) -> None:
        who = service.identity
        catalog.record_service(
            service_id=who.service_id,
            dag_id=who.dag_id,
            run_id=who.run_id,
            task_id=who.task_id,
            url=service.url,
            container_id=service.container_id,
            state=state,
            expires_at=who.expires_at,
            owner=who.owner,
            image=self.image,
        )


class StopServiceOperator(_ServiceTask):
    """Teardown of a StartServiceOperator task: export files, stop and remove its container, mark it stopped.

    Give ``service_task_id`` (the start task of this run; a mapped teardown stops the service of its
    own map index, an unmapped one every service that task started) or a ``service_id``. Files under
    ``export_paths`` in the container are copied to the object store under ``export_prefix`` (default
    ``services/<dag>/<run>/<service id>``) first; when that fails the container is kept, so a retry
    can export again (the reaper removes it once the run is finished). A container that is already
    gone is fine. Returns ``{stopped: [service ids], exported: [{service_id, path, key, size, sha256}]}``.
    """

    template_fields: Sequence[str] = ("service_task_id", "service_id", "export_paths", "export_prefix")

    def __init__(
        self,
        *,
        service_task_id: str | None = None,
        service_id: str | None = None,
        export_paths: Sequence[str] | None = None,
        export_prefix: str | None = None,
        object_store_conn_id: str = "object_store",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.service_task_id = service_task_id
        self.service_id = service_id
        self.export_paths = export_paths
        self.export_prefix = export_prefix
        self.object_store_conn_id = object_store_conn_id

    def _targets(self, ti: Any, hook: ServiceHook, catalog: Catalog) -> list[str]:
        if bool(self.service_task_id) == bool(self.service_id):
            raise ValueError("give exactly one of service_task_id and service_id")
        if self.service_id:
            return [self.service_id]
        task_id = str(self.service_task_id)
        if task_map_index(ti) >= 0:
            return [service_id(ti.dag_id, ti.run_id, task_id, task_map_index(ti))]
        running = hook.list_services(dag_id=ti.dag_id, run_id=ti.run_id, task_id=task_id)
        recorded = [r for r in catalog.services_of_run(ti.dag_id, ti.run_id) if r["task_id"] == task_id]
        return sorted({s.identity.service_id for s in running} | {r["id"] for r in recorded})

    def execute(self, context: Context) -> dict[str, Any]:
        from operators.services.export import export_paths
        from operators.storage.hook import ObjectStoreHook
        from operators.storage.keys import key_segment

        ti = context["ti"]
        hook, catalog = self._hooks()
        stopped, exported = [], []
        for sid in self._targets(ti, hook, catalog):
            service = hook.find(sid)
            if service is not None and self.export_paths:
                prefix = (
                    self.export_prefix or f"services/{key_segment(ti.dag_id)}/{key_segment(ti.run_id)}/{sid}"
                )
                store = ObjectStoreHook(self.object_store_conn_id)
                files = export_paths(hook, store, service.container_id, list(self.export_paths), prefix)
                exported += [{"service_id": sid, **f} for f in files]
                self.log.info("Exported %d file(s) of service %s to %s", len(files), sid, prefix)
            if service is None or not hook.remove(service.container_id):
                self.log.info("Service %s: its container is already gone", sid)
            drop_service_data(sid)
            catalog.set_service_state(sid, "stopped")
            stopped.append(sid)
        return {"stopped": stopped, "exported": exported}
