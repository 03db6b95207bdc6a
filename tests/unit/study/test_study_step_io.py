"""include/study/transfer.py and the CLI against a real HTTP server standing in for presigned URLs."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
from study import heat
from study.__main__ import main
from study.transfer import IO_ENV, OUTPUTS_MARKER


class Bucket(BaseHTTPRequestHandler):
    objects: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.objects.get(urlsplit(self.path).path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def do_PUT(self) -> None:
        self.objects[urlsplit(self.path).path] = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def bucket() -> Iterator[str]:
    Bucket.objects = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Bucket)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def io(base: str, inputs: dict[str, str | None], outputs: list[str]) -> str:
    return json.dumps(
        {
            "inputs": {
                n: {"url": f"{base}/{n}?X-Amz-Signature=secret", "sha256": s} for n, s in inputs.items()
            },
            "outputs": {n: {"url": f"{base}/out/{n}?X-Amz-Signature=secret"} for n in outputs},
        }
    )


def test_steps_chain_through_the_store(
    bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(IO_ENV, io(bucket, {}, ["problem.json"]))
    assert main(["generate", "--grid-size", "8", "--source-strength", "40", "--seed", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.startswith(OUTPUTS_MARKER)
    problem = Bucket.objects["/out/problem.json"]
    assert json.loads(out[len(OUTPUTS_MARKER) :]) == {
        "problem.json": {"sha256": hashlib.sha256(problem).hexdigest(), "size": len(problem)}
    }
    assert heat.Problem.from_dict(json.loads(problem)) == heat.generate(8, 40.0, 2)

    Bucket.objects["/problem.json"] = problem
    monkeypatch.setenv(
        IO_ENV,
        io(bucket, {"problem.json": hashlib.sha256(problem).hexdigest()}, ["field.json", "residuals.csv"]),
    )
    assert main(["solve", "--tolerance", "1e-8", "--max-iterations", "500"]) == 0
    field = json.loads(Bucket.objects["/out/field.json"])
    assert field["relative_residual"] <= 1e-8 and len(field["T"]) == 8


def test_a_corrupted_input_is_refused_without_showing_its_url(
    bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    Bucket.objects["/problem.json"] = b"{}"
    monkeypatch.setenv(IO_ENV, io(bucket, {"problem.json": "0" * 64}, ["field.json", "residuals.csv"]))
    assert main(["solve", "--tolerance", "1e-6", "--max-iterations", "10"]) == 3
    captured = capsys.readouterr()
    assert "input problem.json: sha256" in captured.err and "Signature" not in captured.out + captured.err
    monkeypatch.setenv(IO_ENV, io(bucket, {"missing.json": None}, []))
    assert main(["postprocess"]) == 3
    assert "GET of input missing.json: HTTP 404" in capsys.readouterr().err


def test_forced_failure_stops_after_the_first_output(bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    problem = json.dumps(heat.generate(6, 10.0, 0).to_dict()).encode()
    Bucket.objects["/problem.json"] = problem
    monkeypatch.setenv(IO_ENV, io(bucket, {"problem.json": None}, ["field.json", "residuals.csv"]))
    monkeypatch.setenv("STUDY_FAIL_STEP", "solve")
    assert main(["solve", "--tolerance", "1e-6", "--max-iterations", "1000"]) == 5
    assert sorted(k for k in Bucket.objects if k.startswith("/out/")) == ["/out/field.json"]


def test_arguments_are_validated() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--grid-size", "1000", "--source-strength", "1", "--seed", "0"])
    assert exc.value.code == 2
