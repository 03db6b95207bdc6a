"""The test bed's Docker engine (dockerd on its own socket), reached through the docker provider's
``DockerHook`` with the engine URL recorded in the connection ``docker_default`` (``extra.docker_url``).

DockerHook takes the engine only from ``base_url``; its ``docker_conn_id`` names a *registry* to log in
to, and there is none here, so the form is ``DockerHook(docker_conn_id=None, base_url=docker_url)``.

Start it with ``scripts/testbed start docker``; a missing test bed fails these tests, never skips them.
"""

from __future__ import annotations

import contextlib
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import docker.errors
import pytest
from airflow.providers.docker.hooks.docker import DockerHook
from bed import bed_connection

pytestmark = pytest.mark.integration

BASE_IMAGE = "urgentflow/base:1"
BUSYBOX_IMAGE = "urgentflow/busybox:1"
HTTP_WAIT_S = 30


@pytest.fixture(scope="module")
def docker_url() -> str:
    conn = bed_connection("docker_default")
    url = (conn.get("extra") or {}).get("docker_url")
    if not url:
        pytest.fail(f"connection docker_default has no extra.docker_url: {conn}", pytrace=False)
    return url


@pytest.fixture(scope="module")
def api(docker_url: str) -> Any:
    hook = DockerHook(docker_conn_id=None, base_url=docker_url)
    try:
        return hook.api_client
    except Exception as exc:
        pytest.fail(
            f"cannot reach the test-bed Docker engine at {docker_url} through DockerHook: {exc!r}. "
            "Run `scripts/testbed start docker`.",
            pytrace=False,
        )


@pytest.fixture
def http_container(api: Any) -> Iterator[tuple[str, int]]:
    """A detached ``python3 -m http.server 8000`` from the base image, published on 127.0.0.1."""
    container = api.create_container(
        image=BASE_IMAGE,
        command=["python3", "-m", "http.server", "8000"],
        name=f"uf-testbed-smoke-{uuid.uuid4().hex[:8]}",
        ports=[8000],
        detach=True,
        host_config=api.create_host_config(
            # no host port given: the engine picks a free one on 127.0.0.1
            port_bindings={8000: ("127.0.0.1", None)},
            init=True,
        ),
    )
    cid = container["Id"]
    try:
        api.start(cid)
        bindings = api.port(cid, 8000)
        assert bindings, (
            f"port 8000 of {cid[:12]} is not published: {api.inspect_container(cid)['NetworkSettings']}"
        )
        assert bindings[0]["HostIp"] == "127.0.0.1", bindings
        yield cid, int(bindings[0]["HostPort"])
    finally:
        with contextlib.suppress(docker.errors.NotFound):  # the test removed it already
            api.remove_container(cid, force=True)


def test_images_are_there(api: Any) -> None:
    for image in (BASE_IMAGE, BUSYBOX_IMAGE):
        assert api.images(name=image), f"image {image} is missing: `scripts/testbed start docker` builds it"


def test_detached_http_server_is_reachable_and_removed(api: Any, http_container: tuple[str, int]) -> None:
    cid, port = http_container
    deadline = time.monotonic() + HTTP_WAIT_S
    last: Exception | None = None
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                status, body = response.status, response.read().decode(errors="replace")
            break
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = exc
        state = api.inspect_container(cid)["State"]
        assert state["Running"], f"the container stopped: {state}; logs: {api.logs(cid).decode()[-800:]}"
        if time.monotonic() > deadline:
            pytest.fail(
                f"no HTTP answer from the container on 127.0.0.1:{port} within {HTTP_WAIT_S} s: {last}"
            )
        time.sleep(0.2)
    assert status == 200
    assert "Directory listing" in body

    api.remove_container(cid, force=True)
    assert api.containers(all=True, filters={"id": cid}) == []
    with pytest.raises(docker.errors.NotFound):
        api.inspect_container(cid)


def test_docker_conn_id_means_registry_login(docker_url: str) -> None:
    """Why the form is ``docker_conn_id=None``: with a conn id the hook logs in to that registry."""
    from airflow.providers.common.compat.sdk import AirflowNotFoundException

    hook = DockerHook(docker_conn_id="docker_default", base_url=docker_url)
    with pytest.raises(AirflowNotFoundException, match="Registry"):
        _ = hook.api_client
