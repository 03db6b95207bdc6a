"""The Slurm adapter on real outputs recorded from the test bed (tests/unit/fixtures/slurm)."""

from __future__ import annotations

from pathlib import Path

import pytest

from operators.hpc.adapters import JobRef
from operators.hpc.adapters.base import SECTION
from operators.hpc.adapters.slurm import SQUEUE_FAILED, SlurmAdapter, map_state
from operators.hpc.states import JobState

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"
slurm = SlurmAdapter()


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def status_output(squeue: str = "", sacct: str = "", exit_files: str = "") -> str:
    return f"{squeue}\n{SECTION}\n{sacct}\n{SECTION}\n{exit_files}\n"


def refs(*ids: str) -> list[JobRef]:
    return [JobRef(i, f"/w/{i}.exit") for i in ids]


def test_parse_submit_recorded() -> None:
    assert slurm.parse_submit(fixture("sbatch_parsable.txt")) == "43"
    assert slurm.parse_submit("12345;alpha\n") == "12345"


@pytest.mark.parametrize(
    "name", ["sbatch_rejected_too_many_cpus.txt", "sbatch_rejected_time_over_partition_limit.txt"]
)
def test_parse_submit_refusal_is_an_error(name: str) -> None:
    with pytest.raises(ValueError, match="no job id"):
        slurm.parse_submit(fixture(name))


def test_every_recorded_end_state_maps_to_ours() -> None:
    out = status_output(sacct=fixture("sacct_all_end_states.txt"))
    statuses = slurm.parse_status(out, refs("42", "43", "44", "45", "46"))
    assert {i: (s.state, s.exit_code) for i, s in statuses.items()} == {
        "42": (JobState.TIMEOUT, 0),
        "43": (JobState.COMPLETED, 0),
        "44": (JobState.FAILED, 3),
        "45": (JobState.OUT_OF_MEMORY, 0),
        "46": (JobState.CANCELLED, 0),
    }


def test_live_jobs_come_from_squeue_with_reasons() -> None:
    out = status_output(
        squeue=fixture("squeue_pending_running.txt"), sacct=fixture("sacct_running_pending.txt")
    )
    statuses = slurm.parse_status(out, refs("42", "47", "48"))
    assert statuses["42"].state is JobState.RUNNING
    assert (statuses["47"].state, statuses["47"].reason) == (JobState.PENDING, "Resources")
    assert (statuses["48"].state, statuses["48"].reason) == (JobState.PENDING, "JobHeldUser")


def test_accounting_placeholder_is_not_an_end() -> None:
    # out of the queue but PENDING in accounting: sacct lagging (the grace polls wait) or a job the
    # controller lost in a crash (accounting says PENDING for ever): UNKNOWN, never terminal at once
    out = status_output(sacct=fixture("sacct_placeholder_while_running.txt"))
    status = slurm.parse_status(out, refs("55"))["55"]
    assert status.state is JobState.UNKNOWN and not status.state.terminal
    assert "accounting still says PENDING" in status.reason


def test_an_unreachable_controller_is_a_failed_poll_not_news_about_jobs() -> None:
    down = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n" + SQUEUE_FAILED
    with pytest.raises(ValueError, match="squeue failed: slurm_load_jobs error: Unable to contact"):
        slurm.parse_status(status_output(squeue=down, sacct=fixture("sacct_running_pending.txt")), refs("42"))


def test_ids_the_queue_no_longer_knows_are_judged_from_accounting() -> None:
    gone = "slurm_load_jobs error: Invalid job id specified\n" + SQUEUE_FAILED
    out = status_output(squeue=gone, sacct=fixture("sacct_running_pending.txt"))
    assert slurm.parse_status(out, refs("42"))["42"].state is JobState.UNKNOWN


def test_exit_file_judges_a_job_nobody_remembers() -> None:
    out = status_output(exit_files="/w/7.exit:4\n/w/8.exit:0")
    statuses = slurm.parse_status(out, refs("7", "8", "9"))
    assert (statuses["7"].state, statuses["7"].exit_code) == (JobState.FAILED, 4)
    assert statuses["8"].state is JobState.COMPLETED
    assert statuses["9"].state is JobState.UNKNOWN


@pytest.mark.parametrize(
    ("native", "ours"),
    [
        ("CANCELLED by 1002", JobState.CANCELLED),
        ("NODE_FAIL", JobState.NODE_FAIL),
        ("BOOT_FAIL", JobState.NODE_FAIL),
        ("PREEMPTED", JobState.PREEMPTED),
        ("DEADLINE", JobState.TIMEOUT),
        ("COMPLETING", JobState.RUNNING),
        ("REQUEUED", JobState.PENDING),
        ("SOMETHING_NEW", JobState.UNKNOWN),
        ("", JobState.UNKNOWN),
    ],
)
def test_state_map(native: str, ours: JobState) -> None:
    assert map_state(native) is ours


def test_status_command_is_one_command_for_all_jobs_and_rejects_non_ids() -> None:
    command = slurm.status_command(refs("1", "2", "3"))
    assert command.count("squeue") == 1 and command.count("sacct") == 1
    assert "-j 1,2,3" in command
    with pytest.raises(ValueError):
        slurm.status_command(refs("1;rm -rf /"))
    with pytest.raises(ValueError):
        slurm.cancel_command(["$(reboot)"])


def test_load_of_idle_cluster() -> None:
    load = slurm.parse_load(fixture("load_idle_alpha.txt"))
    assert load.user == "urgent" and load.state == "up"
    debug = load.partitions["debug"]
    assert (debug.nodes_total, debug.nodes_idle, debug.cores_total, debug.cores_idle) == (2, 2, 8, 8)
    assert (load.jobs_running, load.jobs_pending) == (0, 0)


def test_load_of_full_cluster_counts_queue_ours_and_pending_cores() -> None:
    load = slurm.parse_load(fixture("load_full_alpha.txt"))
    debug = load.partitions["debug"]
    assert (debug.cores_idle, debug.cores_allocated, debug.nodes_idle) == (0, 8, 0)
    assert (debug.jobs_running, debug.jobs_pending, debug.cores_pending) == (2, 1, 4)
    assert (load.jobs_running, load.jobs_pending, load.ours_running, load.ours_pending) == (2, 1, 2, 1)
    assert load.partitions["long"].jobs_running == 0 and load.state == "up"


def test_drained_node_degrades_and_down_partition_is_down() -> None:
    drained = slurm.parse_load(fixture("load_drained_beta.txt"))
    assert drained.state == "degraded"
    debug = drained.partitions["debug"]
    assert (debug.nodes_down, debug.cores_idle, debug.cores_total) == (1, 4, 8)
    down = slurm.parse_load(fixture("load_partition_down_beta.txt"))
    assert down.state == "down" and down.partitions["debug"].cores_idle == 0


def test_estimate_now_later_and_refused() -> None:
    assert slurm.parse_estimate(fixture("estimate_idle_alpha.txt")).wait_seconds == 0
    later = slurm.parse_estimate(fixture("estimate_full_alpha.txt"))
    assert later.fits and later.wait_seconds == 14 * 60 + 58  # 22:34:49 -> 22:49:47
    cpus = slurm.parse_estimate(fixture("estimate_too_many_cpus_alpha.txt"))
    assert not cpus.fits and cpus.reason == "allocation failure: More processors requested than permitted"
    time_limit = slurm.parse_estimate(fixture("estimate_time_over_limit_alpha.txt"))
    assert not time_limit.fits and "time limit" in time_limit.reason


def test_estimate_command_quotes_the_partition() -> None:
    command = slurm.estimate_command("debug;touch x", 2, 1000, 10)
    assert "-p 'debug;touch x' -c 2 --mem=1000M --time=10" in command


def test_an_id_slurm_gave_to_another_job_after_losing_ours_is_not_read_as_ours() -> None:
    """Seen in CI: slurmctld killed just after job 422 (member 2) was submitted lost it, restarted its
    numbering from its saved state and gave 422 to member 0's retry, which completed. Member 2 must not
    be judged by that record."""
    ours = JobRef("422", "/w/uf-member-2.exit", "uf-member-2")
    other = "422|uf-member-0|COMPLETED|0:0|00:00:30"
    statuses = slurm.parse_status(status_output(sacct=other), [ours])
    assert statuses["422"].state is JobState.UNKNOWN  # no record of ours: the grace polls, then lost
    # its exit file still judges it (the job's script ran to its end)
    with_file = status_output(sacct=other, exit_files="/w/uf-member-2.exit:0")
    assert slurm.parse_status(with_file, [ours])["422"].native_state == "exit-file"
    # both records under the id (ours was accounted before the crash): ours is read
    both = status_output(
        squeue="422|uf-member-0|RUNNING|None", sacct=f"422|uf-member-2|FAILED|1:0|00:00:05\n{other}"
    )
    status = slurm.parse_status(both, [ours])["422"]
    assert (status.state, status.exit_code) == (JobState.FAILED, 1)
    # a job watched without a name (one started outside urgentflow) is read as before
    assert slurm.parse_status(status_output(sacct=other), [JobRef("422", "/w/x.exit")])["422"].state is (
        JobState.COMPLETED
    )
