"""The container side of a pipeline step's I/O (see ``operators/services/steps.py`` for the other side).

The worker hands the step, in the environment variable ``URGENTFLOW_STEP_IO`` (never on the command
line, never logged), ``{"inputs": {name: {"url", "sha256"}}, "outputs": {name: {"url"}}}`` with
presigned GET and PUT URLs. The step downloads each input and checks its sha256, uploads each output
straight to the object store, and prints as its last stdout line ``URGENTFLOW_OUTPUTS {name: {sha256,
size}}`` for the worker to verify and catalogue. No URL ever appears in an output or error message.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

IO_ENV = "URGENTFLOW_STEP_IO"
OUTPUTS_MARKER = "URGENTFLOW_OUTPUTS "
ATTEMPTS = 3
TIMEOUT_S = 60


class TransferError(RuntimeError):
    """An input or output could not be moved whole; the message names it (never its URL)."""


class ForcedFailure(RuntimeError):
    """The failure asked for by the pipeline's ``fail_step`` (to test how a broken step is handled)."""


def load_io(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    try:
        io = json.loads(environ[IO_ENV])
    except (KeyError, json.JSONDecodeError) as exc:
        raise TransferError(f"{IO_ENV} is missing or not JSON ({type(exc).__name__})") from None
    if not isinstance(io.get("inputs"), dict) or not isinstance(io.get("outputs"), dict):
        raise TransferError(f"{IO_ENV} must hold the objects 'inputs' and 'outputs'")
    return io


def _request(url: str, what: str, data: bytes | None = None, method: str = "GET") -> bytes:
    """Bounded retries on connection errors and 5xx; the error names ``what``, not the URL."""
    if not url.startswith(("http://", "https://")):
        raise TransferError(f"{what}: not an http(s) URL")
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (scheme checked)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 (presigned http)
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == ATTEMPTS:
                raise TransferError(f"{what}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            if attempt == ATTEMPTS:
                reason = getattr(exc, "reason", exc)
                raise TransferError(f"{what}: {type(exc).__name__} ({reason})") from None
        time.sleep(attempt)
    raise AssertionError("unreachable")


def fetch(name: str, spec: Mapping[str, str]) -> bytes:
    data = _request(spec["url"], f"GET of input {name}")
    digest = hashlib.sha256(data).hexdigest()
    if spec.get("sha256") and digest != spec["sha256"]:
        raise TransferError(f"input {name}: sha256 {digest} != recorded {spec['sha256']}")
    return data


def put(name: str, spec: Mapping[str, str], data: bytes) -> dict[str, Any]:
    _request(spec["url"], f"PUT of output {name}", data, "PUT")
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def run_step(
    compute: Callable[[dict[str, bytes]], dict[str, bytes]], fail_after_first_output: bool = False
) -> None:
    """Fetch the inputs, ``compute`` the outputs, upload them and print the outputs line.

    ``fail_after_first_output`` stops after the first upload, like a step that crashes half-way
    through publishing: the worker must leave no half-written result behind.
    """
    io = load_io()
    inputs = {name: fetch(name, spec) for name, spec in io["inputs"].items()}
    outputs = compute(inputs)
    if set(outputs) != set(io["outputs"]):
        raise TransferError(f"step made {sorted(outputs)}, the pipeline expects {sorted(io['outputs'])}")
    written = {}
    for name in sorted(outputs):
        written[name] = put(name, io["outputs"][name], outputs[name])
        print(f"stored {name}: {written[name]['size']} B sha256 {written[name]['sha256']}", file=sys.stderr)
        if fail_after_first_output:
            raise ForcedFailure(f"forced failure after storing {name} (fail_step)")
    print(OUTPUTS_MARKER + json.dumps(written, sort_keys=True), flush=True)
