"""Figures the e2e tests measure (recovery times, rates), collected and printed together at the end of
the run, so every ``make test`` log ends with them (``conftest.pytest_terminal_summary``).

A figure travels with its test's report (``user_properties``), so the summary has it also when the
test ran in another process (``make test`` runs the suite on two pytest-xdist workers)."""

from __future__ import annotations

PENDING: list[str] = []


def report(text: str) -> None:
    """Print ``text`` (kept with the test's output) and keep it for the report of the phase it is in."""
    print(text)
    PENDING.append(text)
