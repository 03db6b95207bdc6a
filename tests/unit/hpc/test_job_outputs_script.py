"""Outputs a job publishes itself: validated links, kept out of specs' dicts and command lines, and the
job's report of them read back from its exit file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from operators.hpc.adapters import JobRef, get_adapter
from operators.hpc.adapters.base import parse_exit_files
from operators.hpc.spec import JobSpec, JobSpecError, Upload
from operators.hpc.states import JobState, JobStatus, Output

LINK = "http://127.0.0.1:19000/b/runs/r1/member-0.npz?X-Amz-Signature=abc&X-Amz-Credential=k%2F2026"


def spec(tmp_path: Path, uploads: list[Upload], command: list[str] | None = None) -> JobSpec:
    return JobSpec(name="uf-out-1", command=command or ["true"], workdir=str(tmp_path), uploads=uploads)


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("/etc/passwd", LINK),
        ("../up.npz", LINK),
        ("a b.npz", LINK),
        ("x;touch y", LINK),
        ("ok.npz", 'http://h/k?a="; touch /tmp/x; "'),
        ("ok.npz", "http://h/k\nurl = http://evil/"),
        ("ok.npz", "file:///etc/passwd"),
        ("ok.npz", "http://h/k\\"),
    ],
)
def test_an_upload_with_an_unsafe_name_or_link_is_refused(name: str, url: str) -> None:
    with pytest.raises(JobSpecError, match="invalid") as caught:
        Upload(name, "runs/r1/x", url)
    assert "Signature" not in str(caught.value)


def test_two_uploads_of_one_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match="distinct"):
        spec(tmp_path, [Upload("a.npz", "k/a", LINK), Upload("a.npz", "k/b", LINK)])


def test_the_links_stay_out_of_the_specs_dict_and_repr(tmp_path: Path) -> None:
    """Two renderings of one task sign links afresh: their dicts (ahead's digest) must still agree."""
    one = spec(tmp_path, [Upload("member-0.npz", "runs/r1/member-0.npz", LINK)])
    two = spec(tmp_path, [Upload("member-0.npz", "runs/r1/member-0.npz", LINK + "x")])
    assert one.to_dict() == two.to_dict()
    assert one.to_dict()["uploads"] == [{"name": "member-0.npz", "key": "runs/r1/member-0.npz"}]
    assert "Signature" not in repr(one) and "Signature" not in json.dumps(one.to_dict())


@pytest.mark.parametrize("system", ["slurm", "gridengine", "local"])
def test_the_link_is_in_the_script_only_as_curl_input_never_on_a_command_line(
    tmp_path: Path, system: str
) -> None:
    script = get_adapter(system).render_script(spec(tmp_path, [Upload("member-0.npz", "k/m", LINK)]))
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    lines = [line for line in script.splitlines() if LINK in line]
    assert lines == [f'url = "{LINK}"'], "a here-document line, read by curl -K -"


def run_script(tmp_path: Path, job: JobSpec, path: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "job.sh"
    script.write_text(get_adapter("slurm").render_script(job))
    env = {"PATH": path, "HOME": str(tmp_path)}
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False, env=env)


def test_a_missing_output_fails_the_job_with_a_clear_message_and_reports_nothing(tmp_path: Path) -> None:
    job = spec(tmp_path, [Upload("member-0.npz", "k/m", LINK)], ["bash", "-c", "echo ran"])
    done = run_script(tmp_path, job, "/usr/bin:/bin")
    assert done.returncode == 75
    assert "urgentflow: output member-0.npz was not written" in done.stderr
    assert Path(job.exit_file).read_text() == "75\n"


def test_a_failed_command_publishes_nothing_and_keeps_its_code(tmp_path: Path) -> None:
    job = spec(tmp_path, [Upload("member-0.npz", "k/m", LINK)], ["bash", "-c", "touch member-0.npz; exit 4"])
    done = run_script(tmp_path, job, "/usr/bin:/bin")
    assert done.returncode == 4 and "urgentflow" not in done.stderr
    assert Path(job.exit_file).read_text() == "4\n"


def test_an_upload_that_fails_fails_the_job(tmp_path: Path) -> None:
    """Nothing listens on port 9 here: curl fails, the job says which output and ends 75."""
    job = spec(
        tmp_path,
        [Upload("a.npz", "k/a", "http://127.0.0.1:9/b/k/a?X-Amz-Signature=s")],
        ["bash", "-c", "echo data > a.npz"],
    )
    done = run_script(tmp_path, job, "/usr/bin:/bin")
    assert done.returncode == 75 and "could not publish output a.npz" in done.stderr
    assert Path(job.exit_file).read_text() == "75\n"


def test_the_exit_files_report_of_outputs_reaches_the_status_whoever_judged_it() -> None:
    jobs = [JobRef("11", "/w/a.exit", "a"), JobRef("12", "/w/b.exit", "b")]
    lines = [
        "/w/a.exit:0",
        f"/w/a.exit:output {'f' * 64} 1234 member-0.npz",
        "/w/b.exit:3",
        "/w/c.exit:output x 1 y",
    ]
    statuses = {"11": JobStatus("11", JobState.COMPLETED, 0), "12": JobStatus("12", JobState.FAILED, 3)}
    exit_files = parse_exit_files(lines, jobs)
    assert exit_files.codes == {"11": 0, "12": 3}
    judged = exit_files.with_outputs(statuses)
    assert judged["11"].outputs == (Output("member-0.npz", "f" * 64, 1234),)
    assert judged["12"].outputs == ()
    assert JobStatus.from_dict(json.loads(json.dumps(judged["11"].to_dict()))) == judged["11"]


def test_the_exit_code_is_still_read_from_an_exit_file_that_reports_outputs() -> None:
    adapter = get_adapter("local")
    job = JobRef("4242", "/w/a.exit", "a")
    stdout = f"#--urgentflow-section--\n/w/a.exit:0\n/w/a.exit:output {'e' * 64} 7 out.txt\n"
    status = adapter.parse_status(stdout, [job])["4242"]
    assert (status.state, status.exit_code) == (JobState.COMPLETED, 0)
    assert status.outputs == (Output("out.txt", "e" * 64, 7),)


def test_inputs_and_outputs_on_a_machine_whose_jobs_cannot_reach_the_store_are_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from operators.hpc.operators import BatchJobOperator
    from operators.machines.catalog import load_catalog

    catalog = tmp_path / "machines.yaml"
    catalog.write_text(
        "machines:\n  closed:\n    connection: null\n    batch_system: local\n    workdir: /tmp/uf\n"
        "    jobs_reach_store: false\n    partitions:\n"
        "      p: {default: true, nodes: 1, cores_per_node: 1, memory_mb_per_node: 100, max_walltime_minutes: 5}\n"
    )
    monkeypatch.setenv("URGENTFLOW_MACHINES", str(catalog))
    load_catalog.cache_clear()
    try:
        op = BatchJobOperator(
            task_id="t", machine="closed", command=["true"], outputs=["a.txt"], output_prefix="p"
        )
        with pytest.raises(ValueError, match=r"cannot reach the object store .* StageFromMachineOperator"):
            op._uploads()
        without = BatchJobOperator(task_id="u", machine="closed", command=["true"], outputs=["a.txt"])
        with pytest.raises(ValueError, match="need an output_prefix"):
            without._uploads()
        assert BatchJobOperator(task_id="v", machine="closed", command=["true"])._uploads() == []
        fetching = BatchJobOperator(task_id="w", machine="closed", command=["true"], inputs=["k/a.npz"])
        with pytest.raises(ValueError, match=r"cannot reach the object store .* StageToMachineOperator"):
            fetching._downloads()
    finally:
        load_catalog.cache_clear()
