"""Files a batch job moves itself: inputs it fetches before its command and outputs it publishes after,
so no task copies them onto or off the machine.

Each input gets a presigned GET link in the job's spec (``spec.Download``) with the sha256 the store
recorded for it; the job fetches it into its work directory, checks it and keeps it once per run for the
run's other jobs (``include/templates/fetch.sh``).

Each declared output gets a presigned PUT link to ``<prefix>/<name>`` in the job's spec (``spec.Upload``);
the job script pushes the file when the command succeeded and reports its sha256 and size (computed on
the machine) with its exit code. When the job's end is judged, ``record_outputs`` checks each object in
the store against that report, records the sha256 on it and catalogues it with its lineage.
"""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import lru_cache
from typing import Any

from operators.catalog.catalog import Catalog, Producer
from operators.hpc.spec import Download, Upload
from operators.hpc.states import JobStatus
from operators.storage.hook import ObjectStoreHook
from operators.storage.keys import check_key
from operators.storage.staging import record_upload

# A link must outlive the job's wait in the queue and its run; S3 signs for at most 7 days. It allows one
# PUT of one key, and the catalog keeps the sha256 the job reported (verify_published re-checks it).
LINK_LIFETIME = timedelta(days=7)


class OutputsError(RuntimeError):
    """A completed job whose declared outputs are not in the store as it reported them."""


def output_key(prefix: str, name: str) -> str:
    return check_key(f"{prefix.rstrip('/')}/{name}")


@lru_cache(maxsize=8)
def _presigner(conn_id: str, period: int) -> ObjectStoreHook:
    """One hook per connection and minute: its client learns the bucket's region once, not per link."""
    return ObjectStoreHook(conn_id)


def upload_links(conn_id: str, prefix: str, names: Sequence[str]) -> list[Upload]:
    """A presigned PUT link per output name (signing is local: no request per link)."""
    store = _presigner(conn_id, int(time.monotonic() // 60))
    return [
        Upload(name, key, store.presigned_put(key, LINK_LIFETIME))
        for name, key in ((n, output_key(prefix, n)) for n in names)
    ]


@lru_cache(maxsize=1024)
def _recorded_sha256(conn_id: str, key: str, period: int) -> str | None:
    """The sha256 the store recorded for ``key`` (asked once per key and minute: an ensemble's members
    share their inputs); an input that is not there is refused before anything is submitted."""
    stored = _presigner(conn_id, period).stat_if_exists(check_key(key))
    if stored is None:
        raise ValueError(f"input {key} is not in the object store")
    return stored.sha256 or None


def download_links(conn_id: str, keys: Sequence[str]) -> list[Download]:
    """A presigned GET link per input key, saved in the job's work directory under the key's last part."""
    period = int(time.monotonic() // 60)
    store = _presigner(conn_id, period)
    return [
        Download(
            key.rsplit("/", 1)[-1],
            key,
            _recorded_sha256(conn_id, key, period),
            store.presigned_get(key, LINK_LIFETIME),
        )
        for key in keys
    ]


def record_outputs(
    conn_id: str,
    catalog: Catalog | None,
    producer: Producer,
    status: JobStatus,
    names: Sequence[str],
    prefix: str,
    inputs: Sequence[int] = (),
    incident_id: str | None = None,
) -> list[dict[str, Any]]:
    """Every declared output of a completed job: in the store with the size the job reported, its sha256
    recorded on the object and (when ``catalog``) a catalog dataset with lineage ``inputs`` -> output.
    Returns ``[{key, size, sha256, dataset_id, job_id}]`` in the order of ``names``."""
    reported = {o.name: o for o in status.outputs}
    missing = [name for name in names if name not in reported]
    if missing:
        raise OutputsError(
            f"job {status.job_id} completed without reporting its outputs {missing} (a script written "
            "before they were declared, or an exit file written by hand)"
        )
    store = ObjectStoreHook(conn_id)
    published = []
    for name in names:
        out, key = reported[name], output_key(prefix, name)
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        try:
            stored = record_upload(store, key, out.sha256, out.size, f"job {status.job_id}: {name}", kind)
        except Exception as exc:
            raise OutputsError(
                f"output {name} of job {status.job_id} is not in the store as reported: {exc}"
            ) from exc
        dataset_id = catalog.record_stored(stored, producer, incident_id, inputs) if catalog else None
        published.append(
            {
                "key": key,
                "size": out.size,
                "sha256": out.sha256,
                "dataset_id": dataset_id,
                "job_id": status.job_id,
            }
        )
    return published
