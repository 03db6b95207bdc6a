"""Post-processing of a solved heat problem: statistics, the energy balance and the report."""

from __future__ import annotations

from typing import Any

from study.heat import Grid, Problem, energy_balance, padded, residual_norm, rhs_norm


def summary(problem: Problem, field: Grid, history: list[tuple[int, float]]) -> dict[str, Any]:
    """What a reader of the study wants first: the temperature range, the hot spot, how well the
    field satisfies the equations (residual recomputed here, not trusted from the solver) and the
    energy balance."""
    n, h = problem.n, problem.h
    values = [v for row in field for v in row]
    hottest = max(range(n * n), key=values.__getitem__)
    i, j = divmod(hottest, n)
    relative_residual = residual_norm(problem, padded(problem, field)) / (rhs_norm(problem) or 1.0)
    return {
        "kind": "heat2d-steady-report",
        "n": n,
        "h": h,
        "temperature": {"min": min(values), "max": max(values), "mean": sum(values) / len(values)},
        "hottest": {"x": (j + 1) * h, "y": (i + 1) * h, "temperature": values[hottest]},
        "relative_residual": relative_residual,
        "iterations": history[-1][0] if history else 0,
        "energy": energy_balance(problem, field),
        "sources": problem.sources,
        "boundary": problem.boundary,
    }


def parse_history(text: str) -> list[tuple[int, float]]:
    """``residuals.csv`` (header ``iteration,relative_residual``) -> [(iteration, residual)]."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "iteration,relative_residual":
        raise ValueError("residuals.csv must start with the header iteration,relative_residual")
    history = []
    for line in lines[1:]:
        iteration, residual = line.split(",")
        history.append((int(iteration), float(residual)))
    return history


def format_history(history: list[tuple[int, float]]) -> str:
    return "iteration,relative_residual\n" + "".join(f"{i},{r:.6e}\n" for i, r in history)
