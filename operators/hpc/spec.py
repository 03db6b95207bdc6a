"""The job spec: what to run and with which resources, validated before anything reaches a shell."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Remote paths reach #SBATCH lines, which the batch system parses without shell quoting: keep them plain.
PATH_RE = re.compile(r"^[A-Za-z0-9._/+~-]{1,1024}$")
WORD_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# A presigned link goes into the job script between double quotes of a curl config: no quote, backslash
# or white space can end it early.
URL_RE = re.compile(r"^https?://[^\s\"\\]{1,8000}$")


class JobSpecError(ValueError):
    """A job spec value that cannot be sent to a batch system."""


def _check(ok: bool, what: str, value: object) -> None:
    if not ok:
        raise JobSpecError(f"invalid {what}: {value!r}")


def check_path(value: str, what: str = "path") -> str:
    _check(
        isinstance(value, str) and bool(PATH_RE.match(value)) and ".." not in value.split("/"), what, value
    )
    return value


def judged_file(workdir: str, name: str) -> str:
    return f"{workdir}/{name}.judged"


def exit_file(workdir: str, name: str) -> str:
    return f"{workdir}/{name}.exit"


def record_file(workdir: str, name: str) -> str:
    return f"{workdir}/{name}.job"


@dataclass(frozen=True)
class Upload:
    """A file the job publishes itself when its command succeeds: ``name`` (relative to the work
    directory) is PUT to ``url`` (a presigned link to object ``key``), its sha256 and size computed on
    the machine and reported with the exit code (``states.Output``)."""

    name: str
    key: str
    url: str = field(repr=False)

    def __post_init__(self) -> None:
        check_path(self.name, "output name")
        _check(not self.name.startswith("/"), "output name (relative to the work directory)", self.name)
        _check(isinstance(self.url, str) and bool(URL_RE.match(self.url)), "upload link", "(hidden)")


SHA256_RE = re.compile(r"^[0-9a-f]{64}$")  # a SHA-256 digest in hex: checksums, HMAC-SHA256 tokens
# An input's name in the job's work directory: one plain file name.
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Download:
    """An object the job fetches itself before its command runs: ``url`` (a presigned GET link to object
    ``key``) is saved as ``name`` in the work directory and checked against ``sha256`` (the store's record;
    ``None`` when it holds none: the file is then neither checked nor shared). A checked input is fetched
    once per run on the machine and shared by the run's other jobs."""

    name: str
    key: str
    sha256: str | None
    url: str = field(repr=False)

    def __post_init__(self) -> None:
        _check(isinstance(self.name, str) and bool(FILE_NAME_RE.match(self.name)), "input name", self.name)
        _check(self.sha256 is None or bool(SHA256_RE.match(str(self.sha256))), "input sha256", self.sha256)
        _check(isinstance(self.url, str) and bool(URL_RE.match(self.url)), "download link", "(hidden)")


# The job's completion notice: an HMAC-SHA256 (hex) over a random nonce, for a job of a named machine.
NONCE_RE = re.compile(r"^[0-9a-f]{32}$")
TOKEN_RE = SHA256_RE


@dataclass(frozen=True)
class Notice:
    """The job tells urgentflow it ended, right after its exit file is written: ``POST url`` with the
    machine, the job's name, ``nonce`` and ``token`` (operators.hpc.notice), so the machine's poller looks
    at once instead of at its next interval. Best effort: a notice that does not arrive changes nothing,
    polling finds the end."""

    url: str
    machine: str
    nonce: str
    token: str = field(repr=False)

    def __post_init__(self) -> None:
        _check(isinstance(self.url, str) and bool(URL_RE.match(self.url)), "notice address", self.url)
        _check(bool(WORD_RE.match(self.machine)), "machine", self.machine)
        _check(bool(NONCE_RE.match(self.nonce)), "notice nonce", self.nonce)
        _check(bool(TOKEN_RE.match(self.token)), "notice token", "(hidden)")


@dataclass(frozen=True)
class JobSpec:
    """A batch job. ``command`` is an argv list: every element is quoted, so values stay data.

    ``setup`` lines (e.g. ``module load gcc``) come from the machine catalog or the DAG author and are
    written to the script as they are; never put user input there.
    """

    name: str
    command: Sequence[str]
    workdir: str
    walltime_minutes: int = 10
    nodes: int = 1
    tasks: int = 1
    cpus_per_task: int = 1
    memory_mb: int | None = None
    partition: str | None = None
    account: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    setup: Sequence[str] = ()
    uploads: Sequence[Upload] = ()
    downloads: Sequence[Download] = ()
    notice: Notice | None = None

    def __post_init__(self) -> None:
        _check(bool(NAME_RE.match(self.name)), "job name (letters, digits, . _ -; at most 128)", self.name)
        _check(
            isinstance(self.command, list | tuple)
            and len(self.command) > 0
            and all(isinstance(a, str) and "\x00" not in a for a in self.command),
            "command (a non-empty list of strings)",
            self.command,
        )
        check_path(self.workdir, "workdir")
        for what, number, low, high in (
            ("walltime_minutes", self.walltime_minutes, 1, 60 * 24 * 30),
            ("nodes", self.nodes, 1, 100_000),
            ("tasks", self.tasks, 1, 10_000_000),
            ("cpus_per_task", self.cpus_per_task, 1, 10_000),
        ):
            _check(isinstance(number, int) and low <= number <= high, what, number)
        if self.memory_mb is not None:
            _check(
                isinstance(self.memory_mb, int) and 1 <= self.memory_mb <= 64 * 1024 * 1024,
                "memory_mb",
                self.memory_mb,
            )
        for what, word in (("partition", self.partition), ("account", self.account)):
            _check(word is None or bool(WORD_RE.match(word)), what, word)
        for key, value in self.environment.items():
            _check(bool(ENV_KEY_RE.match(key)), "environment variable name", key)
            _check(isinstance(value, str) and "\x00" not in value, f"value of {key}", value)
        for line in self.setup:
            _check(isinstance(line, str) and "\n" not in line and "\x00" not in line, "setup line", line)
        names = [u.name for u in self.uploads]
        _check(
            all(isinstance(u, Upload) for u in self.uploads) and len(set(names)) == len(names),
            "uploads (distinct output names)",
            names,
        )
        fetched = [d.name for d in self.downloads]
        _check(
            all(isinstance(d, Download) for d in self.downloads) and len(set(fetched)) == len(fetched),
            "downloads (distinct input names)",
            fetched,
        )
        _check(self.notice is None or isinstance(self.notice, Notice), "notice", self.notice)

    @property
    def stdout(self) -> str:
        return f"{self.workdir}/{self.name}.out"

    @property
    def stderr(self) -> str:
        return f"{self.workdir}/{self.name}.err"

    @property
    def exit_file(self) -> str:
        return exit_file(self.workdir, self.name)

    @property
    def record_file(self) -> str:
        """The id of the job submitted for this spec (written right after submission)."""
        return record_file(self.workdir, self.name)

    @property
    def judged_file(self) -> str:
        """The id of the job whose end a task has already judged (its outcome is consumed)."""
        return judged_file(self.workdir, self.name)

    @property
    def inputs_cache(self) -> str:
        """Where the run's checked inputs are kept once for all its jobs: beside their work directories."""
        return f"{posixpath.dirname(self.workdir.rstrip('/')) or '.'}/.inputs"

    @property
    def script_path(self) -> str:
        return f"{self.workdir}/{self.name}.sh"

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready data; the upload and download links and the notice are left out but for whether there
        is one (each rendering of a task signs them afresh, and they are credentials): two renderings of
        one task give the same dict."""
        data = asdict(self)
        data["command"] = list(self.command)
        data["setup"] = list(self.setup)
        data["environment"] = dict(self.environment)
        data["uploads"] = [{"name": u.name, "key": u.key} for u in self.uploads]
        data["downloads"] = [{"name": d.name, "key": d.key, "sha256": d.sha256} for d in self.downloads]
        data["notice"] = self.notice is not None
        return data
