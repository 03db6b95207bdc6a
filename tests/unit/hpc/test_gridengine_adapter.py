"""The Grid Engine adapter on real outputs recorded from the test bed (tests/unit/fixtures/gridengine)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from operators.hpc.adapters import JobRef, get_adapter
from operators.hpc.adapters.gridengine import GridEngineAdapter, map_state, parse_qacct
from operators.hpc.spec import JobSpec
from operators.hpc.states import JobState

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gridengine"
ge = GridEngineAdapter()
BASE = "/home/urgent/urgentflow/jobs/fixtures"
NAMES = {
    "15": "uf-fx-completed",
    "16": "uf-fx-failed3",
    "17": "uf-fx-walltime",
    "18": "uf-fx-cancelled",
    "19": "uf-fx-pending-with-a-long-name",
    "20": "uf-fx-held",
    "21": "uf-fx-eqw",
}


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def refs(*ids: str) -> list[JobRef]:
    return [JobRef(i, f"{BASE}/{NAMES[i]}/{NAMES[i]}.exit") for i in ids or NAMES]


def states(name: str, *ids: str) -> dict[str, tuple[JobState, int | None]]:
    statuses = ge.parse_status(fixture(name), refs(*ids))
    return {i: (s.state, s.exit_code) for i, s in statuses.items()}


def test_registered_under_its_name() -> None:
    assert isinstance(get_adapter("gridengine"), GridEngineAdapter)


def test_parse_submit_recorded() -> None:
    assert ge.parse_submit(fixture("qsub_terse.txt")) == "15"
    assert ge.parse_submit("42.1-10:1\n") == "42"  # array jobs print id.range
    with pytest.raises(ValueError, match="no job id"):
        ge.parse_submit('Unable to run job: job rejected: the job name "x" is invalid.\nExiting.\n')


def test_just_submitted_jobs_are_live_even_with_exit_files() -> None:
    """qstat still lists the two short jobs in state t (their exit files exist): qstat wins."""
    assert states("status_just_submitted.txt") == {
        "15": (JobState.RUNNING, None),
        "16": (JobState.RUNNING, None),
        "17": (JobState.PENDING, None),
        "18": (JobState.PENDING, None),
        "19": (JobState.PENDING, None),
        "20": (JobState.PENDING, None),
        "21": (JobState.PENDING, None),
    }
    held = ge.parse_status(fixture("status_just_submitted.txt"), refs("20"))["20"]
    assert (held.native_state, held.reason) == ("hqw", "held")


def test_running_pending_and_ended_from_qacct() -> None:
    assert states("status_running_pending.txt") == {
        "15": (JobState.COMPLETED, 0),
        "16": (JobState.FAILED, 3),
        "17": (JobState.RUNNING, None),
        "18": (JobState.RUNNING, None),
        "19": (JobState.PENDING, None),
        "20": (JobState.PENDING, None),
        "21": (JobState.PENDING, None),
    }


def test_deletion_in_progress_is_still_running() -> None:
    status = ge.parse_status(fixture("status_deleting.txt"), refs("18"))["18"]
    assert (status.state, status.native_state, status.reason) == (
        JobState.RUNNING,
        "dr",
        "deletion in progress",
    )


def test_every_end_state_and_eqw() -> None:
    statuses = ge.parse_status(fixture("status_ended_and_eqw.txt"), refs())
    assert {i: (s.state, s.exit_code) for i, s in statuses.items()} == {
        "15": (JobState.COMPLETED, 0),
        "16": (JobState.FAILED, 3),
        "17": (JobState.TIMEOUT, 137),
        "18": (JobState.CANCELLED, 137),
        "19": (JobState.RUNNING, None),
        "20": (JobState.PENDING, None),
        "21": (JobState.FAILED, None),
    }
    assert "qmaster enforced h_rt" in statuses["17"].reason
    eqw = statuses["21"]
    assert eqw.native_state == "Eqw"
    assert "can't chdir to /nonexistent/dir" in eqw.reason


def test_deleted_jobs_and_the_one_that_never_ran() -> None:
    statuses = ge.parse_status(fixture("status_all_gone.txt"), refs())
    assert {i: (s.state, s.exit_code) for i, s in statuses.items()} == {
        "15": (JobState.COMPLETED, 0),
        "16": (JobState.FAILED, 3),
        "17": (JobState.TIMEOUT, 137),
        "18": (JobState.CANCELLED, 137),
        "19": (JobState.CANCELLED, 137),
        "20": (JobState.UNKNOWN, None),  # deleted while held: no accounting record at all
        "21": (JobState.FAILED, None),  # deleted in Eqw: "failed 28 : changing into working directory"
    }
    assert statuses["21"].reason == "changing into working directory"


def test_qacct_records_parse_and_the_last_record_of_an_id_wins() -> None:
    walltime = parse_qacct(fixture("qacct_walltime.txt").splitlines())["17"]
    assert (walltime.failed, walltime.exit_status, walltime.wallclock_seconds) == (37, 137, 6.0)
    assert walltime.requests == {"h_rt": "5"}
    rerun = fixture("qacct_eqw.txt") + fixture("qacct_eqw.txt").replace(
        "failed       28  : changing into working directory", "failed       0"
    )
    assert parse_qacct(rerun.splitlines())["21"].failed == 0


def test_exit_file_judges_a_job_nobody_remembers_and_qstat_failure_is_unknown() -> None:
    out = "#urgentflow-qstat-failed\n#--urgentflow-section--\n#--urgentflow-section--\n#--urgentflow-section--\n"
    out += f"{BASE}/uf-fx-failed3/uf-fx-failed3.exit:4\n"
    statuses = ge.parse_status(out, refs("16", "17"))
    assert (statuses["16"].state, statuses["16"].exit_code) == (JobState.FAILED, 4)
    assert statuses["17"].state is JobState.UNKNOWN
    assert "qstat failed" in statuses["17"].reason


@pytest.mark.parametrize(
    ("letters", "ours"),
    [
        ("qw", JobState.PENDING),
        ("hqw", JobState.PENDING),
        ("hRwq", JobState.PENDING),
        ("t", JobState.RUNNING),
        ("r", JobState.RUNNING),
        ("Rr", JobState.RUNNING),
        ("dr", JobState.RUNNING),
        ("dt", JobState.RUNNING),
        ("s", JobState.PENDING),
        ("S", JobState.PENDING),
        ("Eqw", JobState.FAILED),
        ("Ehqw", JobState.FAILED),
        ("", JobState.UNKNOWN),
        ("zz", JobState.UNKNOWN),
    ],
)
def test_state_letters(letters: str, ours: JobState) -> None:
    assert map_state(letters)[0] is ours


def test_status_command_is_one_command_and_rejects_non_ids() -> None:
    command = ge.status_command(refs("15", "16", "17"))
    assert command.count("qstat -u") == 1 and command.count("qacct -j") == 1
    assert "for j in 15 16 17;" in command
    with pytest.raises(ValueError):
        ge.status_command([JobRef("1;rm -rf /", "/w/x.exit")])
    with pytest.raises(ValueError):
        ge.cancel_command(["$(reboot)"])
    assert ge.cancel_command(["18", "19"]) == "qdel 18 19"


def test_status_command_runs_in_bash_with_fake_tools(tmp_path: Path) -> None:
    """The shell plumbing: qacct only for jobs qstat no longer lists, qstat -j only for E states."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    qstat_out = "".join(fixture("status_ended_and_eqw.txt").partition("#--urgentflow-section--")[0])
    (tmp_path / "qstat.txt").write_text(qstat_out)
    (bin_dir / "qstat").write_text(
        f'#!/bin/bash\nif [ "$1" = -j ]; then echo "job_number: $2"; echo "error reason 1: boom";'
        f" else cat {tmp_path}/qstat.txt; fi\n"
    )
    (bin_dir / "qacct").write_text(f'#!/bin/bash\necho "$2" >> {tmp_path}/qacct.calls\n')
    for tool in ("qstat", "qacct"):
        (bin_dir / tool).chmod(0o755)
    command = ge.status_command(refs())
    done = subprocess.run(
        ["bash", "-c", command],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert (tmp_path / "qacct.calls").read_text().split() == ["15", "16", "17", "18"]
    assert "job_number: 21" in done.stdout and "error reason 1: boom" in done.stdout


def _run_find(name: str, qstat_r: str) -> str:
    """The awk half of find_command on a recorded ``qstat -r`` (the part after the pipe)."""
    script = ge.find_command(name, "/w").split("| ", 1)[1]
    done = subprocess.run(["bash", "-c", script], input=qstat_r, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_find_by_full_name_from_qstat_r() -> None:
    assert ge.parse_find(fixture("find_pending_long_name.txt")) == "19"
    recorded = fixture("find_qstat_r.txt")
    assert _run_find("uf-fx-pending-with-a-long-name", recorded) == "19"
    assert _run_find("uf-fx-walltime", recorded) == "17"
    assert _run_find("uf-fx-pend", recorded) == ""  # the cut name of the job line is not a match
    assert _run_find("uf-fx-eqw", recorded) == "21"  # qw when recorded


def test_find_excludes_error_and_deleting_states() -> None:
    recorded = fixture("find_qstat_r.txt")
    in_error = recorded.replace(
        "urgent       qw    11/26/2026 22:53:06", "urgent       Eqw   11/26/2026 22:53:06"
    )
    assert _run_find("uf-fx-eqw", in_error) == ""
    deleting = recorded.replace(
        "urgent       r     11/26/2026 22:53:06 all.q@vm", "urgent       dr    11/26/2026 22:53:06 all.q@vm"
    )
    assert _run_find("uf-fx-walltime", deleting) == ""


def test_load_busy_and_idle() -> None:
    busy = ge.parse_load(fixture("load_busy.txt"))
    assert busy.user == "urgent" and busy.state == "up"
    part = busy.partitions["all.q"]
    assert (part.nodes_total, part.cores_total, part.cores_allocated, part.cores_idle) == (1, 2, 2, 0)
    assert (part.jobs_running, part.jobs_pending, part.cores_pending) == (2, 3, 3)
    assert (busy.jobs_running, busy.jobs_pending, busy.ours_running, busy.ours_pending) == (2, 3, 2, 3)
    idle = ge.parse_load(fixture("load_idle.txt"))
    assert (idle.partitions["all.q"].cores_idle, idle.partitions["all.q"].nodes_idle) == (2, 1)
    alarm = fixture("load_idle.txt").replace("lx-amd64      ", "lx-amd64      au")
    assert ge.parse_load(alarm).state == "down"


def test_rendered_script(tmp_path: Path) -> None:
    spec = JobSpec(
        name="uf-x-1",
        command=["true"],
        workdir=str(tmp_path),
        walltime_minutes=2,
        cpus_per_task=2,
        memory_mb=1001,
        partition="all.q",
        account="proj1",
    )
    script = ge.render_script(spec)
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    directives = [line for line in script.splitlines() if line.startswith("#$ ")]
    assert directives == [
        "#$ -N uf-x-1",
        "#$ -S /bin/bash",
        f"#$ -wd {tmp_path}",
        f"#$ -o {tmp_path}/uf-x-1.out",
        f"#$ -e {tmp_path}/uf-x-1.err",
        "#$ -j n",
        "#$ -r n",
        "#$ -l h_rt=120",
        "#$ -pe smp 2",
        "#$ -q all.q",
        "#$ -A proj1",
        "#$ -l h_vmem=501M",
        "#$ -ac urgentflow=1",
    ]
    with pytest.raises(ValueError, match="one host"):
        ge.render_script(JobSpec(name="uf-x-2", command=["true"], workdir=str(tmp_path), nodes=2))
