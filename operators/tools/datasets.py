"""An order's input datasets: resolved from the catalog and checked against the object store (the object
must exist and carry the sha256 the catalog recorded) before any container starts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from operators.catalog.catalog import Catalog
from operators.storage.hook import ObjectStoreHook


class InputProblem(ValueError):
    """An input dataset the order cannot use; the message names it and says why."""


def resolve_inputs(
    catalog: Catalog, store: ObjectStoreHook, dataset_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """``[{dataset_id, key, sha256, size, content_type, name}]`` in the order given, or InputProblem.

    Only a store or catalog outage raises anything else (and is worth a retry).
    """
    resolved = []
    for dataset_id in dataset_ids:
        row = catalog.dataset(int(dataset_id))
        if row is None:
            raise InputProblem(f"input dataset {dataset_id} is not in the catalog")
        if row["bucket"] != store.bucket:
            raise InputProblem(
                f"input dataset {dataset_id} is in bucket {row['bucket']!r}, not {store.bucket!r}"
            )
        if not store.exists(row["key"]):
            raise InputProblem(f"input dataset {dataset_id}: its object {row['key']} is gone from the store")
        recorded = store.stat(row["key"]).sha256
        if recorded != row["sha256"].strip():
            raise InputProblem(
                f"input dataset {dataset_id}: object {row['key']} has sha256 {recorded or '(none)'},"
                f" the catalog says {row['sha256'].strip()}"
            )
        resolved.append(
            {
                "dataset_id": int(row["id"]),
                "key": row["key"],
                "sha256": recorded,
                "size": int(row["size"]),
                "content_type": row["content_type"],
                "name": row["key"].rsplit("/", 1)[-1],
            }
        )
    return resolved
