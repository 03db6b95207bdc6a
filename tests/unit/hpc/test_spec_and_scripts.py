"""Job specs reject what cannot be sent safely, and rendered scripts keep hostile values inert."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from operators.hpc.adapters import get_adapter
from operators.hpc.spec import JobSpec, JobSpecError

HOSTILE = [
    "; touch {canary}",
    "$(touch {canary})",
    "`touch {canary}`",
    "' ; touch {canary} ; '",
    '" ; touch {canary} ; "',
    "a\ntouch {canary}",
    "&& touch {canary}",
    "| touch {canary}",
]


def spec(tmp_path: Path, **overrides: object) -> JobSpec:
    values: dict = {"name": "uf-test-1", "command": ["true"], "workdir": str(tmp_path)}
    values.update(overrides)
    return JobSpec(**values)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "a b"),
        ("name", "x;rm -rf /"),
        ("name", "-leading-dash"),
        ("workdir", "/tmp/a b"),
        ("workdir", "/tmp/../etc"),
        ("workdir", "/tmp/$(x)"),
        ("workdir", "/tmp/a\nb"),
        ("command", []),
        ("command", "echo hi"),
        ("partition", "debug;x"),
        ("account", "a b"),
        ("walltime_minutes", 0),
        ("nodes", -1),
        ("memory_mb", 0),
        ("environment", {"BAD-NAME": "x"}),
        ("environment", {"X": "nul\x00"}),
        ("setup", ["module load x\nrm -rf /"]),
    ],
)
def test_spec_rejects(tmp_path: Path, field: str, value: object) -> None:
    with pytest.raises(JobSpecError, match="invalid"):
        spec(tmp_path, **{field: value})


@pytest.mark.parametrize("system", ["slurm", "local"])
def test_rendered_script_is_valid_bash(tmp_path: Path, system: str) -> None:
    script = get_adapter(system).render_script(spec(tmp_path, environment={"A": "1"}, partition="debug"))
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


@pytest.mark.parametrize("system", ["slurm", "local"])
def test_hostile_values_are_inert(tmp_path: Path, system: str) -> None:
    """Run the rendered script for real: every hostile value arrives as data, no canary appears."""
    canary = tmp_path / "canary"
    values = [h.format(canary=canary) for h in HOSTILE]
    job = spec(
        tmp_path,
        command=[
            "python3",
            "-c",
            "import json,os,sys; print(json.dumps([sys.argv[1:], os.environ['EVIL']]))",
            *values,
        ],
        environment={"EVIL": values[1]},
    )
    script = tmp_path / "job.sh"
    script.write_text(get_adapter(system).render_script(job))
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    import json

    argv, env_value = json.loads(done.stdout)
    assert argv == values
    assert env_value == values[1]
    assert not canary.exists()
    assert (tmp_path / "uf-test-1.exit").read_text().strip() == "0"


@pytest.mark.parametrize(("code", "expected"), [(0, "0"), (3, "3")])
def test_script_records_exit_code(tmp_path: Path, code: int, expected: str) -> None:
    job = spec(tmp_path, command=["bash", "-c", f"exit {code}"])
    script = tmp_path / "job.sh"
    script.write_text(get_adapter("slurm").render_script(job))
    done = subprocess.run(["bash", str(script)], check=False)
    assert done.returncode == code
    assert job.exit_file == str(tmp_path / "uf-test-1.exit")
    assert Path(job.exit_file).read_text().strip() == expected


def test_slurm_directives(tmp_path: Path) -> None:
    script = get_adapter("slurm").render_script(
        spec(
            tmp_path,
            walltime_minutes=7,
            nodes=2,
            tasks=4,
            cpus_per_task=3,
            memory_mb=512,
            partition="long",
            account="proj1",
        )
    )
    for line in (
        "#SBATCH --job-name=uf-test-1",
        "#SBATCH --time=7",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks=4",
        "#SBATCH --cpus-per-task=3",
        "#SBATCH --mem=512M",
        "#SBATCH --partition=long",
        "#SBATCH --account=proj1",
        f"#SBATCH --output={tmp_path}/uf-test-1.out",
    ):
        assert line in script.splitlines()
