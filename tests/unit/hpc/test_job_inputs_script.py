"""Inputs a job fetches itself: validated links kept out of specs' dicts and command lines, checked
against the recorded sha256, fetched once per run and shared, and a failed fetch runs no command. The
jobs' scripts run here in bash against a local HTTP server standing in for the object store's links."""

from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from operators.hpc.adapters import get_adapter
from operators.hpc.spec import Download, JobSpec, JobSpecError

LINK = "http://127.0.0.1:19000/b/runs/r1/landscape.npz?X-Amz-Signature=abc&X-Amz-Credential=k%2F2026"
DATA = {"landscape.npz": b"\x00\x01land" * 1000, "scenario.json": b'{"wind": 6}\n'}
SHA = {name: hashlib.sha256(body).hexdigest() for name, body in DATA.items()}


class Store(http.server.ThreadingHTTPServer):
    """Answers GET /<name> with DATA[name] and counts the requests per name."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        store = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.split("?")[0].lstrip("/")
                store.requests[name] = store.requests.get(name, 0) + 1
                body = DATA.get(name)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def link(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}?X-Amz-Signature=s"


@pytest.fixture
def store() -> Iterator[Store]:
    server = Store()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def job(run: Path, member: int, downloads: list[Download], command: str) -> JobSpec:
    return JobSpec(
        name=f"uf-in-{member}",
        command=["bash", "-c", command],
        workdir=str(run / f"simulate.{member}"),
        downloads=downloads,
    )


def run_script(spec: JobSpec) -> subprocess.CompletedProcess[str]:
    Path(spec.workdir).mkdir(parents=True, exist_ok=True)
    script = Path(spec.workdir) / "job.sh"
    script.write_text(get_adapter("slurm").render_script(spec))
    env = {"PATH": "/usr/bin:/bin", "HOME": spec.workdir}
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False, env=env)


def checked(store: Store, *names: str) -> list[Download]:
    return [Download(n, f"runs/r1/inputs/{n}", SHA[n], store.link(n)) for n in names]


def test_the_members_of_a_run_fetch_each_input_once_and_run_on_checked_copies(
    store: Store, tmp_path: Path
) -> None:
    downloads = checked(store, "landscape.npz", "scenario.json")
    for member in range(3):
        done = run_script(job(tmp_path, member, downloads, "sha256sum landscape.npz scenario.json > sums"))
        assert done.returncode == 0, done.stderr
        workdir = tmp_path / f"simulate.{member}"
        assert (workdir / f"uf-in-{member}.exit").read_text() == "0\n"
        assert {
            line.split()[1]: line.split()[0] for line in (workdir / "sums").read_text().splitlines()
        } == SHA
    assert store.requests == {"landscape.npz": 1, "scenario.json": 1}, "fetched once for the run"
    kept = tmp_path / ".inputs" / SHA["landscape.npz"]
    assert kept.read_bytes() == DATA["landscape.npz"]
    assert not kept.stat().st_mode & 0o222, "the run's copy is read-only"
    assert (tmp_path / "simulate.2" / "landscape.npz").stat().st_ino == kept.stat().st_ino
    assert not list((tmp_path / ".inputs").glob("*.*")), "no partial file left"


def test_an_input_whose_bytes_differ_from_the_record_fails_the_job_before_its_command(
    store: Store, tmp_path: Path
) -> None:
    wrong = [Download("landscape.npz", "runs/r1/inputs/landscape.npz", "0" * 64, store.link("landscape.npz"))]
    spec = job(tmp_path, 0, wrong, "touch ran")
    done = run_script(spec)
    assert done.returncode == 66
    assert f"could not fetch input landscape.npz with sha256 {'0' * 64}" in done.stderr
    assert Path(spec.exit_file).read_text() == "66\n"
    assert not (Path(spec.workdir) / "ran").exists(), "the command did not run"
    assert not list((tmp_path / ".inputs").iterdir()), "nothing kept for the run's other jobs"


@pytest.mark.parametrize("link", ["http://127.0.0.1:9/x?X-Amz-Signature=s", "missing"])
def test_an_input_that_cannot_be_fetched_fails_the_job_before_its_command(
    store: Store, tmp_path: Path, link: str
) -> None:
    url = store.link("missing") if link == "missing" else link  # a 404, or nothing listening
    for sha in (SHA["scenario.json"], None):
        spec = job(tmp_path / str(sha), 0, [Download("scenario.json", "k/s", sha, url)], "touch ran")
        done = run_script(spec)
        assert done.returncode == 66 and "could not fetch input scenario.json" in done.stderr
        assert not (Path(spec.workdir) / "ran").exists()


def test_an_input_without_a_recorded_sha256_is_fetched_for_the_job_alone(
    store: Store, tmp_path: Path
) -> None:
    unchecked = [Download("scenario.json", "k/s", None, store.link("scenario.json"))]
    for member in range(2):
        assert run_script(job(tmp_path, member, unchecked, "cmp scenario.json scenario.json")).returncode == 0
    assert store.requests == {"scenario.json": 2}
    assert not (tmp_path / ".inputs").exists()


@pytest.mark.parametrize(
    ("name", "sha", "url"),
    [
        ("../up.npz", None, LINK),
        ("dir/a.npz", None, LINK),
        (".hidden", None, LINK),
        ("a b", None, LINK),
        ("ok.npz", "abc", LINK),
        ("ok.npz", "'; touch /tmp/x; '" + "0" * 40, LINK),
        ("ok.npz", None, 'http://h/k?a="; touch /tmp/x; "'),
        ("ok.npz", None, "http://h/k\nurl = http://evil/"),
        ("ok.npz", None, "file:///etc/passwd"),
    ],
)
def test_a_download_with_an_unsafe_name_checksum_or_link_is_refused(
    name: str, sha: str | None, url: str
) -> None:
    with pytest.raises(JobSpecError, match="invalid") as caught:
        Download(name, "runs/r1/x", sha, url)
    assert "Signature" not in str(caught.value)


def test_two_inputs_of_one_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match="distinct input names"):
        job(tmp_path, 0, [Download("a.npz", "k/a", None, LINK), Download("a.npz", "j/a", None, LINK)], "true")


@pytest.mark.parametrize("system", ["slurm", "gridengine", "local"])
def test_the_links_stay_out_of_dicts_reprs_and_command_lines(tmp_path: Path, system: str) -> None:
    one = job(tmp_path, 0, [Download("landscape.npz", "k/l", SHA["landscape.npz"], LINK)], "true")
    two = job(tmp_path, 0, [Download("landscape.npz", "k/l", SHA["landscape.npz"], LINK + "x")], "true")
    assert one.to_dict() == two.to_dict(), "each rendering signs afresh: the ahead digest still agrees"
    assert one.to_dict()["downloads"] == [
        {"name": "landscape.npz", "key": "k/l", "sha256": SHA["landscape.npz"]}
    ]
    assert "Signature" not in repr(one) and "Signature" not in json.dumps(one.to_dict())
    script = get_adapter(system).render_script(one)
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    assert [line for line in script.splitlines() if LINK in line] == [f'url = "{LINK}"']
