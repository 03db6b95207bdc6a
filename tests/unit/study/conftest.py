"""include/study is run as a package in containers (``PYTHONPATH=/opt``): put include/ on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

INCLUDE = str(Path(__file__).resolve().parents[3] / "include")
if INCLUDE not in sys.path:
    sys.path.insert(0, INCLUDE)
