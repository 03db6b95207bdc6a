"""Batch-system adapters, one per batch system, behind one interface (``BatchAdapter``)."""

from __future__ import annotations

from operators.hpc.adapters.base import BatchAdapter, JobRef
from operators.hpc.adapters.gridengine import GridEngineAdapter
from operators.hpc.adapters.local import LocalAdapter
from operators.hpc.adapters.slurm import SlurmAdapter

ADAPTERS: dict[str, type[BatchAdapter]] = {
    "slurm": SlurmAdapter,
    "local": LocalAdapter,
    "gridengine": GridEngineAdapter,
}


def get_adapter(batch_system: str) -> BatchAdapter:
    try:
        return ADAPTERS[batch_system]()
    except KeyError:
        raise ValueError(
            f"unknown batch system {batch_system!r} (known: {', '.join(sorted(ADAPTERS))})"
        ) from None


__all__ = ["ADAPTERS", "BatchAdapter", "JobRef", "get_adapter"]
