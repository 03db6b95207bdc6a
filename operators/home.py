"""Where urgentflow keeps its state on this host (the same rule as scripts/lib.sh)."""

from __future__ import annotations

import os
from pathlib import Path


def urgentflow_home() -> Path:
    """``$URGENTFLOW_HOME``; else /var/lib/urgentflow as root, ~/.local/share/urgentflow otherwise."""
    if "URGENTFLOW_HOME" in os.environ:
        return Path(os.environ["URGENTFLOW_HOME"])
    return Path("/var/lib/urgentflow") if os.geteuid() == 0 else Path.home() / ".local/share/urgentflow"
