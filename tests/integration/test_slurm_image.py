"""The compose deployment's Slurm image (deploy/slurm) built and run on the test bed's Docker engine, and
real batch jobs submitted to it over its sshd from this host through urgentflow's own BatchHook and
poller, with the compose machine catalog's entry (deploy/machines.compose.yaml).

Nothing can be pulled here, so the image is built FROM the local ``urgentflow/base:1`` (the Dockerfile's
default is ``debian:bookworm-slim``) with the build's network on the host (the engine's bridge has no
NAT; Debian's mirror is reachable from the host). The image is labelled with a hash of deploy/slurm and
of the base image and reused while both are unchanged, like the service images; the container is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import yaml
from airflow.providers.docker.hooks.docker import DockerHook
from bed import bed_connection

from operators.hpc.adapters import JobRef
from operators.hpc.hook import BatchHook
from operators.hpc.poller import get_poller
from operators.hpc.spec import JobSpec
from operators.hpc.states import JobState, JobStatus
from operators.machines.catalog import Machine, parse_catalog
from operators.services.images import CONTENT_LABEL, content_hash

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SLURM_DIR = ROOT / "deploy" / "slurm"
BASE_IMAGE = "urgentflow/base:1"
TAG = "urgentflow/slurm-test:1"
HEALTHY_WAIT_S = 120


@pytest.fixture(scope="module")
def api() -> Any:
    url = (bed_connection("docker_default").get("extra") or {}).get("docker_url")
    if not url:
        pytest.fail("connection docker_default has no extra.docker_url", pytrace=False)
    return DockerHook(docker_conn_id=None, base_url=url).api_client


def _label(api: Any) -> str | None:
    try:
        return (api.inspect_image(TAG)["Config"].get("Labels") or {}).get(CONTENT_LABEL)
    except docker.errors.ImageNotFound:
        return None


@pytest.fixture(scope="module")
def slurm_image(api: Any) -> str:
    digest = content_hash(SLURM_DIR, api.inspect_image(BASE_IMAGE)["Id"])
    if _label(api) == digest:
        return TAG
    started, output = time.monotonic(), []
    for event in api.build(
        path=str(SLURM_DIR),
        tag=TAG,
        buildargs={"BASE": BASE_IMAGE},
        network_mode="host",
        labels={CONTENT_LABEL: digest},
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
    ):
        output.append(str(event.get("stream") or event.get("status") or ""))
        if "error" in event:
            pytest.fail(f"building {TAG} failed: {event['error']}\n{''.join(output)[-3000:]}", pytrace=False)
    assert _label(api) == digest
    print(f"built {TAG} in {time.monotonic() - started:.1f} s")
    return TAG


@pytest.fixture(scope="module")
def ssh_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What airflow-init makes in compose: a client key, the container's host key, authorized_keys."""
    d = tmp_path_factory.mktemp("slurm-ssh")
    for name in ("client", "ssh_host_ed25519_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    return d


@pytest.fixture(scope="module")
def slurm_port(api: Any, slurm_image: str, ssh_dir: Path) -> Iterator[int]:
    container = api.create_container(
        image=slurm_image,
        name=f"uf-slurm-image-test-{uuid.uuid4().hex[:8]}",
        ports=[22],
        detach=True,
        host_config=api.create_host_config(
            port_bindings={22: ("127.0.0.1", None)},
            binds={str(ssh_dir): {"bind": "/etc/urgentflow/ssh", "mode": "ro"}},
            init=True,
        ),
    )
    cid = container["Id"]
    try:
        api.start(cid)
        started = time.monotonic()
        while (state := api.inspect_container(cid)["State"]).get("Health", {}).get("Status") != "healthy":
            assert state["Running"], (
                f"the Slurm container stopped: {state}; logs: {api.logs(cid).decode()[-1500:]}"
            )
            if time.monotonic() - started > HEALTHY_WAIT_S:
                pytest.fail(
                    f"the Slurm container is not healthy within {HEALTHY_WAIT_S} s: {api.logs(cid).decode()[-1500:]}"
                )
            time.sleep(0.5)
        print(f"Slurm container healthy {time.monotonic() - started:.1f} s after start")
        (binding,) = api.port(cid, 22)
        assert binding["HostIp"] == "127.0.0.1", binding
        yield int(binding["HostPort"])
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(cid, force=True)


@pytest.fixture
def machine(slurm_port: int, ssh_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Machine:
    """The compose catalog's machine `slurm`, its connection aimed at the published sshd (host key pinned)."""
    path = ROOT / "deploy" / "machines.compose.yaml"
    entry = parse_catalog(yaml.safe_load(path.read_text()), path)["slurm"]
    conn_id = f"uf_slurm_image_{uuid.uuid4().hex[:8]}"
    host_key = " ".join((ssh_dir / "ssh_host_ed25519_key.pub").read_text().split()[:2])
    conn = {
        "conn_type": "ssh",
        "host": "127.0.0.1",
        "port": slurm_port,
        "login": "urgent",
        "extra": {"key_file": str(ssh_dir / "client"), "host_key": host_key},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return dataclasses.replace(entry, connection=conn_id)


def test_jobs_run_and_are_judged_without_accounting(machine: Machine) -> None:
    hook = BatchHook(machine)
    tag = uuid.uuid4().hex[:8]
    ok = JobSpec(
        name=f"uf-img-ok-{tag}",
        command=["bash", "-c", "echo on $(hostname) node $SLURMD_NODENAME"],
        workdir=f"{machine.workdir}/img-ok-{tag}",
    )
    bad = JobSpec(
        name=f"uf-img-bad-{tag}",
        command=["bash", "-c", "echo broken input >&2; exit 3"],
        workdir=f"{machine.workdir}/img-bad-{tag}",
    )
    jobs = [(hook.submit(spec)[0], spec) for spec in (ok, bad)]

    async def watch() -> list[JobStatus]:
        poller = get_poller(machine.connection, "slurm", 1.0)
        return await asyncio.wait_for(
            asyncio.gather(*(poller.watch(JobRef(job_id, spec.exit_file)) for job_id, spec in jobs)), 120
        )

    done, failed = asyncio.run(watch())
    assert (done.state, done.exit_code) == (JobState.COMPLETED, 0)
    assert (failed.state, failed.exit_code) == (JobState.FAILED, 3)
    assert hook.tail(ok.stdout).strip().split(" node ")[1] in {"c1", "c2"}
    assert "broken input" in hook.tail(bad.stderr)
