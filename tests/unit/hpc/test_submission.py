"""Batched submission commands (pure): sizes, sections, what a record says."""

from __future__ import annotations

import pytest

from operators.hpc.adapters import get_adapter
from operators.hpc.spec import JobSpec
from operators.hpc.submission import (
    EXISTING,
    JUDGED,
    MAX_SCRIPT_BYTES,
    SECTION,
    Absent,
    Found,
    SubmissionError,
    chunks,
    lookup_command,
    parse_lookup,
    parse_submit,
    submit_command,
)
from operators.hpc.transport import MAX_COMMAND_BYTES


def spec(i: int, env_bytes: int = 0) -> JobSpec:
    return JobSpec(
        name=f"uf-hpc_drill-member-{i}-0123456789",
        command=["bash", "-c", "echo member", "x", str(i)],
        workdir=f"/home/urgent/urgentflow/jobs/hpc_drill/manual__2026-12-06T21_47_50.315870+00_00-1/member.{i}",
        environment={"BIG": "x" * env_bytes} if env_bytes else {},
    )


@pytest.mark.parametrize("batch_system", ["slurm", "gridengine", "local"])
@pytest.mark.parametrize(("members", "env_bytes"), [(500, 0), (200, 3000), (1, 0)])
def test_every_command_of_an_ensemble_fits_one_command_line(
    batch_system: str, members: int, env_bytes: int
) -> None:
    adapter = get_adapter(batch_system)
    specs = [spec(i, env_bytes) for i in range(members)]
    groups = chunks(adapter, specs)
    assert [s for g in groups for s in g] == specs, "every spec once, in order"
    for group in groups:
        seen = [Absent("$'4294967295;cluster\\n'")] * len(group)
        assert len(submit_command(adapter, group, seen).encode()) <= MAX_SCRIPT_BYTES, "stdin, bounded"
        assert len(lookup_command(adapter, group).encode()) <= MAX_COMMAND_BYTES
    if members == 500:
        assert len(groups) > 1, "a large ensemble is cut"
    if env_bytes:  # 600 KB of environment in the scripts: they go on stdin, only the look-ups are cut
        assert len(groups) == len(chunks(adapter, [spec(i) for i in range(members)]))


def test_lookup_decides_per_spec_live_then_unjudged_then_new() -> None:
    adapter = get_adapter("slurm")
    specs = [spec(i) for i in range(4)]
    live = f"{specs[0].name} 101\n"
    per_spec = [
        ("prepared", "", "", ""),
        ("prepared", "202", "202", "$'202\\n'"),
        ("prepared", "303;cluster", "", "$'303;cluster\\n'"),
        ("", "", "", ""),
    ]
    out = (
        live
        + f"{SECTION}\n"
        + "".join(
            f"{p}\n{SECTION}\n{r}\n{SECTION}\n{j}\n{SECTION}\n{c}\n{SECTION}\n" for p, r, j, c in per_spec
        )
    )
    found = parse_lookup(adapter, out, specs)
    assert found[0] == Found("101", "live")
    assert found[1] == Absent("$'202\\n'"), "judged: submit afresh, against the record as seen"
    assert not found[1].never_submitted
    assert found[2] == Found("303", "unjudged"), "the record holds what sbatch --parsable printed"
    assert isinstance(found[3], SubmissionError) and "creating" in str(found[3])


def test_a_job_another_submitter_made_meanwhile_is_re_attached_to() -> None:
    adapter = get_adapter("slurm")
    specs = [spec(0), spec(1), spec(2)]
    out = (
        f"{EXISTING}\n505\n{JUDGED}\n{SECTION}\n"  # recorded since the look-up, not judged: theirs
        f"{EXISTING}\n404\n{JUDGED}\n404\n{SECTION}\n"  # changed, yet judged: refuse, never guess
        f"606\n{SECTION}\n"
    )
    theirs, changed, ours = parse_submit(adapter, out, specs)
    assert theirs == Found("505", "unjudged")
    assert isinstance(changed, SubmissionError) and "meanwhile" in str(changed)
    assert ours == "606"


def test_each_submission_holds_its_job_s_lock_and_checks_the_record_it_saw() -> None:
    adapter = get_adapter("slurm")
    [one] = [spec(0)]
    script = submit_command(adapter, [one], [Absent("")])
    assert f"9> {one.record_file}.lock" in script
    assert "flock -w 60 9" in script
    assert f"uf_read {one.record_file}; if [ \"$s\" != '' ]" in script


def test_the_scripts_read_records_as_they_were_written_and_start_no_process_per_job_to_do_it(
    tmp_path,
) -> None:
    """The look-up and the submit script compare a record by its whole content, quoted on one line; a
    record that changed after the look-up (another submitter) makes the submission re-attach instead."""
    import subprocess

    adapter = get_adapter("local")
    specs = [
        JobSpec(name=f"uf-rec-{i}", command=["true"], workdir=str(tmp_path / f"m.{i}")) for i in range(3)
    ]
    (tmp_path / "m.1").mkdir()
    (tmp_path / "m.1" / "uf-rec-1.job").write_text("4242\n")
    (tmp_path / "m.1" / "uf-rec-1.judged").write_text("4242\n")
    (tmp_path / "m.2").mkdir()
    (tmp_path / "m.2" / "uf-rec-2.job").write_text("it's 5 o'clock\n")  # quotes and spaces stay data

    def run(script: str) -> str:
        return subprocess.run(["bash", "-s"], input=script, capture_output=True, text=True, check=True).stdout

    lookup = lookup_command(adapter, specs)
    assert lookup.count("mkdir") == 1, "one mkdir for the ensemble"
    found = parse_lookup(adapter, run(lookup), specs)
    assert found[0] == Absent("") and found[0].never_submitted
    assert found[1] == Absent("$'4242\\n'"), "judged: submit afresh, against the record as seen"
    assert isinstance(found[2], Absent) and found[2].seen and "5 o" in found[2].seen
    assert all((tmp_path / f"m.{i}").is_dir() for i in range(3))
    (tmp_path / "m.1" / "uf-rec-1.job").write_text("5353\n")  # another submitter, since the look-up
    script = submit_command(adapter, specs[1:2], [found[1]])
    assert parse_submit(adapter, run(script), specs[1:2]) == [Found("5353", "unjudged")]


def test_a_refused_submission_is_that_spec_s_error_only() -> None:
    adapter = get_adapter("slurm")
    specs = [spec(0), spec(1)]
    out = f"4242\n{SECTION}\nsbatch: error: invalid partition\nurgentflow-submit-failed 1\n{SECTION}\n"
    ok, refused = parse_submit(adapter, out, specs)
    assert ok == "4242"
    assert isinstance(refused, SubmissionError) and "invalid partition" in str(refused)
