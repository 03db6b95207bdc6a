"""A service's data directory on the Docker host: objects under a store prefix, pulled (verified) at
start and mounted read-only; removed with the service."""

from __future__ import annotations

import shutil
from pathlib import Path

from operators.home import urgentflow_home
from operators.storage.hook import ObjectStoreHook
from operators.storage.keys import check_key, check_prefix


def service_data_dir(service_id: str) -> Path:
    return urgentflow_home() / "services" / service_id / "data"


def pull_prefix(store: ObjectStoreHook, prefix: str, dest: Path) -> list[str]:
    """Every object under ``prefix`` -> ``dest/<key minus prefix>``, each checked against its sha256."""
    check_prefix(prefix)
    base = prefix if prefix.endswith("/") or not prefix else prefix + "/"
    dest.mkdir(parents=True, exist_ok=True)
    pulled = []
    for obj in store.list_objects(base):
        relative = check_key(obj.key[len(base) :])  # a valid key: no '..', no absolute part
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        store.get_file(obj.key, target)
        pulled.append(obj.key)
    return pulled


def drop_service_data(service_id: str) -> None:
    shutil.rmtree(service_data_dir(service_id).parent, ignore_errors=True)
