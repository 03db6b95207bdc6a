"""Build the service images (``include/images/<name>/`` -> ``urgentflow/<name>:1``) on the local engine.

Offline: every image builds FROM a local image (``urgentflow/base:1``) and is never pulled. Each build
is labelled with a hash of its directory and of its base image's id, so a repeated call skips images
whose inputs did not change. Run as ``python -m operators.services.images --docker-url unix:///...``
(``scripts/testbed start docker`` does).
"""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path
from typing import Any

IMAGES_DIR = Path(__file__).resolve().parents[2] / "include" / "images"
IMAGES = {
    "viewer": "urgentflow/viewer:1",
    "notebook": "urgentflow/notebook:1",
    "tools-stats": "urgentflow/tools-stats:1",
}
CONTENT_LABEL = "urgentflow.content_sha256"
_FROM = re.compile(r"^\s*FROM\s+(\S+)", re.IGNORECASE | re.MULTILINE)


def content_hash(directory: Path, base_image_id: str) -> str:
    sha = hashlib.sha256(base_image_id.encode())
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        sha.update(b"\0" + str(path.relative_to(directory)).encode() + b"\0")
        sha.update(path.read_bytes())
    return sha.hexdigest()


def _label_of(api: Any, tag: str) -> str | None:
    from docker.errors import ImageNotFound

    try:
        return (api.inspect_image(tag)["Config"].get("Labels") or {}).get(CONTENT_LABEL)
    except ImageNotFound:
        return None


def build_image(api: Any, directory: Path, tag: str) -> bool:
    """Build ``tag`` from ``directory`` unless it exists with the same content; True when it was built."""
    base = _FROM.search((directory / "Dockerfile").read_text())
    if base is None:
        raise ValueError(f"{directory}/Dockerfile has no FROM line")
    digest = content_hash(directory, api.inspect_image(base.group(1))["Id"])
    if _label_of(api, tag) == digest:
        return False
    output = []
    for event in api.build(
        path=str(directory),
        tag=tag,
        rm=True,
        forcerm=True,
        pull=False,
        labels={CONTENT_LABEL: digest},
        decode=True,
    ):
        output.append(str(event.get("stream") or event.get("status") or ""))
        if "error" in event:
            raise RuntimeError(f"building {tag} failed: {event['error']}\n{''.join(output)[-2000:]}")
    if _label_of(api, tag) != digest:
        raise RuntimeError(f"building {tag} left no image with label {CONTENT_LABEL}={digest}")
    return True


def build_images(api: Any, images_dir: Path = IMAGES_DIR) -> dict[str, bool]:
    """``{tag: built}`` for every service image (False: it was current)."""
    return {tag: build_image(api, images_dir / name, tag) for name, tag in IMAGES.items()}


def main(argv: list[str] | None = None) -> None:
    from airflow.providers.docker.hooks.docker import DockerHook

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docker-url", required=True, help="the engine, e.g. unix:///.../docker.sock")
    args = parser.parse_args(argv)
    api = DockerHook(docker_conn_id=None, base_url=args.docker_url).api_client
    for tag, built in build_images(api).items():
        print(f"{tag}: {'built' if built else 'current'}")


if __name__ == "__main__":
    main()
