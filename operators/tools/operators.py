"""RunToolOperator: run an accepted order's tool in a container (the docker provider's DockerOperator).

Image, argv and limits come from the tool registry only: whatever the order says, nothing else runs.
The inputs are pulled from the object store into a directory on the Docker host (each verified against
the sha256 the catalog recorded) and mounted read-only at ``/order/in`` with ``order.json`` (the
order: tool params and the inputs' paths). The container runs as nobody, without network, under the
tool's memory limit. Its ``/order/out`` is copied out of the stopped container (a tar stream, no host
directory it can write to) and stored under ``orders/<order_id>/outputs/`` with sha256s. A tool that
exits non-zero fails the order with its exit code and the tail of its stderr, without a retry.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import re
import shutil
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from airflow.providers.docker.exceptions import DockerContainerFailedException
from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from operators.home import urgentflow_home
from operators.storage.hook import ChecksumMismatch, ChunkReader, ObjectStoreHook, StoredObject
from operators.storage.keys import check_key

ORDER_IN = "/order/in"
ORDER_OUT = "/order/out"
TOOL_USER = "65534:65534"  # nobody: tools never run as root
STDERR_TAIL_LINES = 20
MAX_OUTPUTS = 1000


def orders_dir() -> Path:
    """Work directories of running orders on this (the Docker) host."""
    return urgentflow_home() / "orders"


class RunToolOperator(DockerOperator):
    """Run the tool of ``order`` (the ``accept`` task's result: ``{order_id, tool, tool_params, inputs}``).

    Returns ``{order_id, exit_code, container_id, outputs: [StoredObject as dict]}``.
    """

    template_fields: Sequence[str] = (*DockerOperator.template_fields, "order")

    def __init__(
        self,
        *,
        order: Mapping[str, Any] | str,
        docker_engine_conn_id: str = "docker_default",
        object_store_conn_id: str = "object_store",
        catalog_conn_id: str = "catalog_db",
        **kwargs: Any,
    ) -> None:
        # The image, argv and limits are the registry's, set in execute(); docker_conn_id stays None
        # (a conn id there means a registry login: there is no registry, images are local).
        super().__init__(
            image="",
            docker_conn_id=None,
            network_mode="none",
            mount_tmp_dir=False,
            auto_remove="never",
            user=TOOL_USER,
            **kwargs,
        )
        self.order = order
        self.docker_engine_conn_id = docker_engine_conn_id
        self.object_store_conn_id = object_store_conn_id
        self.catalog_conn_id = catalog_conn_id

    # the order's result (not the container's last log line, as DockerOperator returns) goes to XCom
    def execute(self, context: Context) -> dict[str, Any]:  # type: ignore[override]
        from operators.orders import ORDER_ID_PATTERN
        from operators.services.hook import ServiceHook
        from operators.tools.registry import get_tool

        order = dict(self.order) if isinstance(self.order, Mapping) else {}
        order_id = str(order.get("order_id", ""))
        if not re.match(ORDER_ID_PATTERN, order_id) or not isinstance(order.get("inputs"), list):
            raise AirflowFailException(f"not an accepted order: {self.order!r:.300}")
        tool = get_tool(str(order.get("tool")))
        self.image, self.command = tool.image, list(tool.command)
        self.cpus, self.mem_limit = tool.cpus, f"{tool.memory_mb}m"
        self.labels = {"urgentflow.order_id": order_id, "urgentflow.tool": tool.name}
        self.docker_url = ServiceHook(self.docker_engine_conn_id).docker_url
        store = ObjectStoreHook(self.object_store_conn_id)
        orders_dir().mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"{order_id}-", dir=orders_dir()))
        try:
            self._prepare_inputs(store, order, workdir / "in")
            try:
                super().execute(context)
            except DockerContainerFailedException:
                self._fail_order(order_id, tool.name, tool.memory_mb)
            outputs = self._store_outputs(store, order_id)
            return {
                "order_id": order_id,
                "exit_code": 0,
                "container_id": self.container["Id"],
                "outputs": [asdict(o) for o in outputs],
            }
        finally:
            self._remove_container()
            shutil.rmtree(workdir, ignore_errors=True)

    def _prepare_inputs(self, store: ObjectStoreHook, order: dict[str, Any], inputs_dir: Path) -> None:
        """Pull every input (verified) into ``inputs_dir`` with ``order.json``; mount it read-only."""
        from docker.types import Mount

        inputs_dir.mkdir(mode=0o755)
        inputs_dir.chmod(0o755)  # whatever the umask: the tool (nobody) reads it
        manifest = []
        for item in order["inputs"]:
            name = f"{int(item['dataset_id'])}-{check_key(str(item['name']))}"
            if "/" in name:
                raise AirflowFailException(f"input name {item['name']!r} is not one path segment")
            stored = store.get_file(check_key(str(item["key"])), inputs_dir / name)
            if stored.sha256 != item["sha256"]:
                raise ChecksumMismatch(f"{item['key']}: sha256 {stored.sha256} != accepted {item['sha256']}")
            (inputs_dir / name).chmod(0o644)
            manifest.append({**item, "path": f"{ORDER_IN}/{name}"})
        body = {
            "order_id": order["order_id"],
            "tool_params": order.get("tool_params") or {},
            "inputs": manifest,
        }
        (inputs_dir / "order.json").write_text(json.dumps(body, indent=2))
        (inputs_dir / "order.json").chmod(0o644)
        self.mounts = [Mount(target=ORDER_IN, source=str(inputs_dir), type="bind", read_only=True)]
        self.log.info("Order %s: %d input(s) pulled and verified", order["order_id"], len(manifest))

    def _fail_order(self, order_id: str, tool: str, memory_mb: int) -> None:
        """Record the tool's exit code and stderr tail on the order; fail the task without a retry."""
        from operators.catalog.orders import OrderCatalog

        state = self.cli.inspect_container(self.container["Id"])["State"]
        exit_code = int(state.get("ExitCode", -1))
        if state.get("OOMKilled"):
            reason = f"tool {tool} was killed: out of memory (limit {memory_mb} MB)"
        else:
            raw = self.cli.logs(self.container["Id"], stdout=False, stderr=True, tail=STDERR_TAIL_LINES)
            tail = bytes(raw).decode(errors="replace").strip()
            reason = f"tool {tool} exited with code {exit_code}" + (f": {tail}" if tail else "")
        OrderCatalog(self.catalog_conn_id).finish_order(
            order_id, "failed", exit_code=exit_code, reason=reason
        )
        raise AirflowFailException(f"order {order_id} failed: {reason}")

    def _store_outputs(self, store: ObjectStoreHook, order_id: str) -> list[StoredObject]:
        """Every regular file under the stopped container's ``/order/out`` -> the object store."""
        chunks, _stat = self.cli.get_archive(self.container["Id"], ORDER_OUT)
        stored: list[StoredObject] = []
        with tarfile.open(fileobj=ChunkReader(chunks), mode="r|") as archive:  # type: ignore[call-overload]
            for member in archive:
                relative = member.name.split("/", 1)[1] if "/" in member.name else ""
                if member.isdir() or not relative:
                    continue
                if not member.isfile():
                    self.log.warning("Order %s: skipping %s (not a regular file)", order_id, member.name)
                    continue
                if len(stored) >= MAX_OUTPUTS:
                    raise AirflowFailException(
                        f"order {order_id}: the tool wrote more than {MAX_OUTPUTS} files"
                    )
                key = check_key(f"orders/{order_id}/outputs/{relative}")
                content_type = mimetypes.guess_type(relative)[0] or "application/octet-stream"
                source = archive.extractfile(member)
                assert source is not None  # a regular file has a body
                stored.append(store.put_stream(key, source, content_type, length=member.size))
        if not stored:
            from operators.catalog.orders import OrderCatalog

            reason = f"the tool exited 0 but wrote nothing to {ORDER_OUT}"
            OrderCatalog(self.catalog_conn_id).finish_order(order_id, "failed", exit_code=0, reason=reason)
            raise AirflowFailException(f"order {order_id} failed: {reason}")
        self.log.info("Order %s: stored %d output(s)", order_id, len(stored))
        return stored

    def _remove_container(self) -> None:
        if self.container is not None:
            from docker.errors import NotFound

            with contextlib.suppress(NotFound):  # already gone: nothing left behind
                self.cli.remove_container(self.container["Id"], force=True)

    def on_kill(self) -> None:
        super().on_kill()
        self._remove_container()
