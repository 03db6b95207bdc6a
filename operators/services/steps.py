"""ContainerStepOperator: one computational step of a pipeline (after oSPARC's computational services).

The step is a container run by the docker provider's ``DockerOperator`` on the engine of the
``docker_default`` Connection. It reads its inputs from and writes its outputs to the object store
itself, through presigned URLs, so no byte passes through the worker. The URLs reach it in the
private environment variable ``URGENTFLOW_STEP_IO`` (not templated, not rendered in the UI, masked
in the task log); its last stdout line reports each output's sha256 and size. The worker records
those checksums (``staging.record_upload``: the store must hold as many bytes as the container sent)
and catalogues every output with its producer and lineage (every input -> every output). A step that
fails leaves nothing: the outputs it may have written are deleted, none is catalogued.

The container-side half of this protocol is ``include/study/transfer.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk import Context

IO_ENV = "URGENTFLOW_STEP_IO"
OUTPUTS_MARKER = "URGENTFLOW_OUTPUTS "


class StepOutputError(RuntimeError):
    """The container's report of its outputs is missing or does not match what was asked."""


def upstream_outputs(results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{name: {key, sha256, dataset_id}}`` from earlier steps' results; names must be unique."""
    found: dict[str, dict[str, Any]] = {}
    for result in results:
        for output in result["outputs"]:
            if output["name"] in found:
                raise ValueError(f"two upstream steps produced an input named {output['name']!r}")
            found[output["name"]] = dict(output)
    return found


def parse_report(lines: Any, expected: set[str]) -> dict[str, dict[str, Any]]:
    """The container's last ``URGENTFLOW_OUTPUTS {name: {sha256, size}}`` line among its log ``lines``
    (stdout and stderr interleave in Docker's log: a stderr line may come after it), checked against
    ``expected``."""
    reports = [line for line in lines or [] if isinstance(line, str) and line.startswith(OUTPUTS_MARKER)]
    if not reports:
        raise StepOutputError("the container printed no outputs report")
    report = json.loads(reports[-1][len(OUTPUTS_MARKER) :])
    if not isinstance(report, dict) or set(report) != expected:
        raise StepOutputError(f"the container reported outputs {sorted(report)}, expected {sorted(expected)}")
    for name, item in report.items():
        digest, size = item.get("sha256"), item.get("size")
        if not isinstance(digest, str) or len(digest) != 64 or not isinstance(size, int) or size < 0:
            raise StepOutputError(f"output {name}: bad sha256/size in the report: {item!r:.200}")
    return report


class ContainerStepOperator(DockerOperator):
    """Run ``image``/``command`` as a pipeline step: ``inputs`` are earlier steps' results (their
    outputs, by name), ``outputs`` maps each output name to its content type; they are stored under
    ``output_prefix``. Returns ``{outputs: [{name, key, size, sha256, dataset_id}]}``.

    ``docker_url`` comes from the ``docker_engine_conn_id`` Connection (``extra.docker_url``), as for
    service containers; ``docker_conn_id`` stays None (it means a registry login, and images are local).
    The container must reach the object store at the presigned URLs' address (e.g. ``network_mode="host"``
    when the store listens on the Docker host's loopback).
    """

    template_fields: Sequence[str] = (
        *DockerOperator.template_fields,
        "inputs",
        "output_prefix",
        "incident_id",
    )
    ui_color = "#e0e8f8"

    def __init__(
        self,
        *,
        outputs: Mapping[str, str],
        output_prefix: str,
        inputs: Sequence[Mapping[str, Any]] = (),
        incident_id: str | None = None,
        url_expiry_minutes: int = 60,
        docker_engine_conn_id: str = "docker_default",
        object_store_conn_id: str = "object_store",
        catalog_conn_id: str = "catalog_db",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("mount_tmp_dir", False)
        kwargs.setdefault("auto_remove", "force")
        # every log line back from DockerOperator.execute: the report is looked up among them
        super().__init__(docker_conn_id=None, xcom_all=True, **kwargs)
        self.outputs = dict(outputs)
        self.output_prefix = output_prefix
        self.inputs = inputs
        self.incident_id = incident_id
        self.url_expiry_minutes = url_expiry_minutes
        self.docker_engine_conn_id = docker_engine_conn_id
        self.object_store_conn_id = object_store_conn_id
        self.catalog_conn_id = catalog_conn_id

    # the result is the catalogued outputs, not DockerOperator's last log line
    def execute(self, context: Context) -> dict[str, Any]:  # type: ignore[override]
        from airflow.sdk.log import mask_secret

        from operators.catalog.catalog import Catalog, Producer
        from operators.services.hook import ServiceHook
        from operators.storage.hook import ObjectStoreHook
        from operators.storage.keys import check_key
        from operators.storage.staging import record_upload

        store, catalog = ObjectStoreHook(self.object_store_conn_id), Catalog(self.catalog_conn_id)
        upstream = upstream_outputs(self.inputs)
        prefix = check_key(str(self.output_prefix).strip("/"))
        keys = {name: check_key(f"{prefix}/{name}") for name in self.outputs}
        if any("/" in name for name in keys):
            raise ValueError(f"output names must be single key segments: {sorted(keys)}")
        expiry = timedelta(minutes=self.url_expiry_minutes)
        io = {
            "inputs": {
                name: {"url": store.presigned_get(item["key"], expiry), "sha256": item["sha256"]}
                for name, item in upstream.items()
            },
            "outputs": {name: {"url": store.presigned_put(key, expiry)} for name, key in keys.items()},
        }
        for spec in (*io["inputs"].values(), *io["outputs"].values()):
            mask_secret(spec["url"])  # should a container ever print one, the task log hides it
        self._private_environment = {**self._private_environment, IO_ENV: json.dumps(io)}
        self.docker_url = ServiceHook(self.docker_engine_conn_id).docker_url
        self.log.info(
            "Step %s: inputs %s -> outputs under %s", self.task_id, sorted(upstream) or "none", prefix
        )
        incident_id = str(self.incident_id) if self.incident_id else None
        input_ids = [int(item["dataset_id"]) for item in upstream.values()]
        recorded: list[int] = []
        try:
            report = parse_report(super().execute(context), set(keys))
            stored = [
                record_upload(
                    store,
                    key,
                    report[name]["sha256"],
                    report[name]["size"],
                    f"output {name}",
                    self.outputs[name],
                )
                for name, key in keys.items()
            ]
            producer = Producer.of(context["ti"])
            results = []
            for name, obj in zip(keys, stored, strict=True):
                recorded.append(catalog.record_stored(obj, producer, incident_id, input_ids))
                results.append(
                    {
                        "name": name,
                        "key": obj.key,
                        "size": obj.size,
                        "sha256": obj.sha256,
                        "dataset_id": recorded[-1],
                    }
                )
        except BaseException:
            self._discard(store, catalog, list(keys.values()), recorded)
            raise
        self.log.info("Step %s: stored and catalogued %s", self.task_id, [r["key"] for r in results])
        return {"outputs": results}

    def _discard(self, store: Any, catalog: Any, keys: list[str], dataset_ids: list[int]) -> None:
        """A failed step leaves no object and no catalog row (an error here must not hide the first one)."""
        for dataset_id in dataset_ids:
            try:
                catalog.delete_dataset(dataset_id)
            except Exception:
                self.log.exception("Step %s: could not remove dataset %s", self.task_id, dataset_id)
        for key in keys:
            try:
                if store.exists(key):
                    store.delete(key)
                    self.log.info("Step %s failed: removed its output %s", self.task_id, key)
            except Exception:
                self.log.exception("Step %s: could not remove %s", self.task_id, key)
