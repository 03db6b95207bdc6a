"""ObjectSensor: wait (deferred, in the triggerer) until keys or prefixes exist in the object store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from operators.storage.hook import ObjectStoreHook
from operators.storage.keys import check_key, check_prefix


def missing(store: ObjectStoreHook, keys: Sequence[str], prefixes: Sequence[str]) -> list[str]:
    """The keys and prefixes (``prefix/``) that have no object yet."""
    absent = [key for key in keys if not store.exists(key)]
    absent.extend(p for p in prefixes if not store.list_objects(p))
    return absent


class ObjectTrigger(BaseTrigger):
    """Polls the store (the minio SDK in a thread) until nothing is missing; one event."""

    def __init__(
        self, *, keys: list[str], prefixes: list[str], object_store_conn_id: str, poll_interval: float = 10.0
    ) -> None:
        super().__init__()
        self.keys = keys
        self.prefixes = prefixes
        self.object_store_conn_id = object_store_conn_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "keys": self.keys,
                "prefixes": self.prefixes,
                "object_store_conn_id": self.object_store_conn_id,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        store = ObjectStoreHook(self.object_store_conn_id)
        try:
            while absent := await asyncio.to_thread(missing, store, self.keys, self.prefixes):
                self.log.info("Waiting for %d object(s), e.g. %s", len(absent), absent[0])
                await asyncio.sleep(self.poll_interval)
        except Exception as exc:
            yield TriggerEvent({"status": "error", "message": str(exc)})
            return
        yield TriggerEvent({"status": "found", "keys": self.keys, "prefixes": self.prefixes})


class ObjectSensor(BaseSensorOperator):
    """Succeeds when every key in ``keys`` exists and every prefix in ``prefixes`` holds an object."""

    template_fields: Sequence[str] = ("keys", "prefixes")

    def __init__(
        self,
        *,
        keys: Sequence[str] = (),
        prefixes: Sequence[str] = (),
        object_store_conn_id: str = "object_store",
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.keys = keys
        self.prefixes = prefixes
        self.object_store_conn_id = object_store_conn_id
        self.deferrable = deferrable

    def _validated(self) -> tuple[list[str], list[str]]:
        keys = [check_key(k) for k in self.keys]
        prefixes = [check_prefix(p) for p in self.prefixes]
        if not keys and not prefixes:
            raise AirflowException("ObjectSensor needs keys or prefixes to wait for")
        return keys, prefixes

    def execute(self, context: Context) -> Any:
        keys, prefixes = self._validated()
        if not self.deferrable:
            return super().execute(context)
        self.defer(
            trigger=ObjectTrigger(
                keys=keys,
                prefixes=prefixes,
                object_store_conn_id=self.object_store_conn_id,
                poll_interval=float(self.poke_interval),
            ),
            method_name="execute_complete",
        )

    def poke(self, context: Context) -> bool:
        keys, prefixes = self._validated()
        return not missing(ObjectStoreHook(self.object_store_conn_id), keys, prefixes)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") != "found":
            raise AirflowException(f"waiting for objects failed: {event.get('message')}")
        return event
