"""The wildfire science code lives in include/wildfire (not a package): load its modules by path under
names of their own (wildfire_model, wildfire_landscape, wildfire_aggregate) so the tests can import them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

WILDFIRE = Path(__file__).resolve().parents[3] / "include" / "wildfire"
MODEL_SCRIPT = WILDFIRE / "model.py"
SYSTEM_PYTHON = "/usr/bin/python3"

for _name in ("model", "landscape", "aggregate"):
    _module_name = f"wildfire_{_name}"
    if _module_name not in sys.modules:
        _spec = importlib.util.spec_from_file_location(_module_name, WILDFIRE / f"{_name}.py")
        assert _spec is not None and _spec.loader is not None
        _module = importlib.util.module_from_spec(_spec)
        sys.modules[_module_name] = _module
        _spec.loader.exec_module(_module)


def _system_numpy() -> str | None:
    """numpy version of the HPC-like system python (Debian python3-numpy), None when it has none."""
    try:
        out = subprocess.run(
            [SYSTEM_PYTHON, "-c", "import numpy; print(numpy.__version__)"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@pytest.fixture(scope="session")
def system_python() -> str:
    if _system_numpy() is None:
        pytest.skip(
            f"{SYSTEM_PYTHON} has no numpy: apt-get install python3-numpy (the test bed's HPC hosts have it)"
        )
    return SYSTEM_PYTHON


@pytest.fixture(scope="session", params=["venv", "system"])
def python(request: pytest.FixtureRequest) -> str:
    """Both interpreters model.py must run with: the venv's (numpy 2.x) and the system python3 (numpy 1.24)."""
    if request.param == "venv":
        return sys.executable
    return str(request.getfixturevalue("system_python"))
