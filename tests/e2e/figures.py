"""Figures the e2e tests measure (recovery times, rates), collected and printed together at the end of
the run, so every ``make test`` log ends with them (``conftest.pytest_terminal_summary``)."""

from __future__ import annotations

import os

FIGURES: list[tuple[str, str]] = []


def report(text: str) -> None:
    """Print ``text`` (kept with the test's output) and keep it, with the test's id, for the summary."""
    print(text)
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" (", 1)[0]
    FIGURES.append((test, text))
