"""Completion notices in the catalog (operators/hpc/notice.py; migration 008): each nonce accepted once,
and the triggerers told in the same transaction (``NOTIFY``, delivered when it commits)."""

from __future__ import annotations

from typing import Any

from operators.catalog.catalog import Catalog
from operators.hpc.notice import CHANNEL


class NoticeCatalog(Catalog):
    def accept_notice(self, machine: str, job_name: str, nonce: str) -> bool:
        """Record a notice and wake the machine's pollers; False when this nonce was already used."""
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO job_notices (machine, job_name, nonce) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING RETURNING 1",
                (machine, job_name, nonce),
            )
            if cur.fetchone() is None:
                return False
            cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, machine))
            return True

    def notices_of(self, machine: str, job_name: str) -> list[dict[str, Any]]:
        return self._all(
            "SELECT machine, job_name, nonce, received_at FROM job_notices"
            " WHERE machine = %s AND job_name = %s ORDER BY received_at",
            (machine, job_name),
        )
