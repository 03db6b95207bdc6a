"""Staging operators: object store -> HPC machine before a job, results -> store (+ catalog) after it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.configuration import conf

from operators.catalog.catalog import Catalog, Producer
from operators.hpc.hook import BatchHook, run_workdir
from operators.storage.assets import event_extra, record_outlet_events
from operators.storage.hook import ObjectStoreHook, StoredObject
from operators.storage.staging import list_outputs_in, stage_in, stage_out_many

# Queue of the staging tasks: ``[urgentflow] transfer_queue`` when set (scaled mode sets ``transfer`` so
# data movement runs on the workers near the data), else Airflow's default queue. Read once, like
# Airflow's own operator defaults; a ``queue=`` argument or DAG default_args still win. The
# LocalExecutor ignores queues.
TRANSFER_QUEUE: str = conf.get("urgentflow", "transfer_queue", fallback="") or conf.get_mandatory_value(
    "operators", "default_queue"
)


class StageToMachineOperator(BaseOperator):
    """Copy objects ``keys`` into ``dest_dir`` on ``machine`` (each under its own key path).

    ``dest_dir`` defaults to ``<machine workdir>/<dag>/<run>/inputs``, next to the run's job work dirs.
    ``method="presigned"`` (default) has the machine fetch the bytes itself; ``"sftp"`` streams them
    through the worker. Returns ``[{key, path, size, sha256}]``.
    """

    template_fields: Sequence[str] = ("machine", "keys", "dest_dir", "method")

    def __init__(
        self,
        *,
        machine: str,
        keys: Sequence[str],
        dest_dir: str | None = None,
        method: str = "presigned",
        object_store_conn_id: str = "object_store",
        queue: str = TRANSFER_QUEUE,
        **kwargs: Any,
    ) -> None:
        super().__init__(queue=queue, **kwargs)
        self.machine = machine
        self.keys = keys
        self.dest_dir = dest_dir
        self.method = method
        self.object_store_conn_id = object_store_conn_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        hook = BatchHook(self.machine)
        ti = context["ti"]
        dest_dir = (
            self.dest_dir or f"{run_workdir(hook.machine.workdir, ti.dag_id, ti.run_id)}/inputs"
        ).rstrip("/")
        store = ObjectStoreHook(self.object_store_conn_id)
        staged = [
            stage_in(hook.transport, store, key, f"{dest_dir}/{key}", self.method).to_dict()
            for key in self.keys
        ]
        self.log.info("Staged %d object(s) to %s:%s by %s", len(staged), self.machine, dest_dir, self.method)
        return staged


class StageFromMachineOperator(BaseOperator):
    """Copy files matching ``pattern`` in ``source_dir`` on ``machine`` to ``key_prefix`` in the store,
    and record each as a catalog dataset with its producer and its ``input_dataset_ids`` (lineage).

    ``job`` is a ``BatchJobOperator`` result (its XCom): machine, job id and work dir come from it
    when given. ``jobs`` (a whole ensemble's results, e.g. a mapped ``BatchJobOperator``'s output)
    publishes every member's files in this one task: no worker task per member; the catalog row of
    member ``i`` carries map index ``i``, its machine and job id. Returns ``[{key, size, sha256,
    dataset_id, job_id}]``. Each Asset in ``outlets`` gets ONE event whose extra lists these objects
    (``operators.storage.assets``).
    """

    template_fields: Sequence[str] = (
        "machine",
        "source_dir",
        "pattern",
        "key_prefix",
        "job",
        "jobs",
        "input_dataset_ids",
        "incident_id",
    )

    def __init__(
        self,
        *,
        key_prefix: str,
        machine: str | None = None,
        source_dir: str | None = None,
        pattern: str = "*",
        job: dict[str, Any] | None = None,
        jobs: Sequence[dict[str, Any]] | None = None,
        input_dataset_ids: Sequence[int] = (),
        method: str = "presigned",
        incident_id: str | None = None,
        object_store_conn_id: str = "object_store",
        catalog_conn_id: str = "catalog_db",
        queue: str = TRANSFER_QUEUE,
        **kwargs: Any,
    ) -> None:
        super().__init__(queue=queue, **kwargs)
        self.key_prefix = key_prefix
        self.machine = machine
        self.source_dir = source_dir
        self.pattern = pattern
        self.job = job
        self.jobs = jobs
        self.input_dataset_ids = input_dataset_ids
        self.method = method
        self.incident_id = incident_id
        self.object_store_conn_id = object_store_conn_id
        self.catalog_conn_id = catalog_conn_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        if self.jobs is not None and (self.job or self.machine or self.source_dir):
            raise ValueError("give jobs= alone, or job= / machine and source_dir")
        sources = (
            [(i, j or {}) for i, j in enumerate(self.jobs)]
            if self.jobs is not None
            else [(None, self.job or {})]
        )
        store = ObjectStoreHook(self.object_store_conn_id)
        catalog = Catalog(self.catalog_conn_id)
        places = []
        for _, job in sources:
            machine = self.machine or job.get("machine")
            source_dir = self.source_dir or job.get("workdir")
            if not machine or not source_dir:
                raise ValueError("give machine and source_dir, or job= / jobs= (BatchJobOperator results)")
            places.append((str(machine), str(source_dir)))
        listed, stored = self._stage_out(store, places)
        results = []
        for (index, job), (machine, source_dir) in zip(sources, places, strict=True):
            producer = Producer.of(context["ti"], machine=machine, job_id=job.get("job_id"))
            if index is not None:
                producer = replace(producer, map_index=index)
            for path in listed[machine][source_dir]:
                obj = stored[(machine, path)]
                dataset_id = catalog.record_stored(
                    obj, producer, self.incident_id, [int(i) for i in self.input_dataset_ids]
                )
                results.append(
                    {
                        "key": obj.key,
                        "size": obj.size,
                        "sha256": obj.sha256,
                        "dataset_id": dataset_id,
                        "job_id": job.get("job_id"),
                    }
                )
        machines = sorted({str(j.get("machine") or self.machine) for _, j in sources})
        job_ids = [j.get("job_id") for _, j in sources]
        record_outlet_events(
            self.outlets,
            context,
            event_extra(
                store.bucket,
                results,
                incident_id=self.incident_id,
                machine=",".join(machines),
                job_id=job_ids[0] if len(job_ids) == 1 else None,
            ),
        )
        self.log.info("Staged %d file(s) of %d job(s) to %s", len(results), len(sources), self.key_prefix)
        return results

    def _stage_out(
        self, store: ObjectStoreHook, places: Sequence[tuple[str, str]]
    ) -> tuple[dict[str, dict[str, list[str]]], dict[tuple[str, str], StoredObject]]:
        """Every ``(machine, dir)``'s files, listed, checksummed and pushed together: a few remote commands
        per machine for a whole ensemble, not a few per file. Returns the listing and what was stored."""
        stored: dict[tuple[str, str], StoredObject] = {}
        listed: dict[str, dict[str, list[str]]] = {}
        for machine in dict.fromkeys(m for m, _ in places):
            transport = BatchHook(machine).transport
            dirs = list(dict.fromkeys(d for m, d in places if m == machine))
            listed[machine] = list_outputs_in(transport, dirs, self.pattern)
            files = [(path, self._key(path)) for d in dirs for path in listed[machine][d]]
            objects = stage_out_many(transport, store, files, self.method)
            stored.update({(machine, path): obj for (path, _), obj in zip(files, objects, strict=True)})
        return listed, stored

    def _key(self, path: str) -> str:
        return f"{self.key_prefix.rstrip('/')}/{path.rsplit('/', 1)[-1]}"
