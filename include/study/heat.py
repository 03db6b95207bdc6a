"""Steady heat conduction ``-k (T_xx + T_yy) = q`` on the unit square, Dirichlet boundaries.

Discretised on an ``n x n`` grid of interior nodes (spacing ``h = 1/(n+1)``) with the 5-point stencil;
``T[i][j]`` is the node at ``x = (j+1) h`` (west to east), ``y = (i+1) h`` (south to north). The linear
system is ``A T = f`` with ``(A T)_ij = k (4 T_ij - sum of the 4 neighbours) / h^2`` and ``f = q`` plus
the boundary neighbours' ``k T_b / h^2``. Pure functions over lists: no I/O, no numpy.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

SIDES = ("south", "north", "west", "east")
CHECK_EVERY = 10  # iterations between residual evaluations (each costs as much as a sweep)
Grid = list[list[float]]


class NotConverged(RuntimeError):
    """The solver reached its iteration limit above the tolerance."""


@dataclass(frozen=True)
class Problem:
    n: int
    conductivity: float
    boundary: dict[str, float]
    sources: list[dict[str, float]]
    q: Grid
    seed: int

    @property
    def h(self) -> float:
        return 1.0 / (self.n + 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "heat2d-steady",
            "n": self.n,
            "h": self.h,
            "conductivity": self.conductivity,
            "boundary": self.boundary,
            "sources": self.sources,
            "seed": self.seed,
            "q": self.q,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Problem:
        n = int(data["n"])
        q = [[float(v) for v in row] for row in data["q"]]
        if len(q) != n or any(len(row) != n for row in q):
            raise ValueError(f"source grid is not {n} x {n}")
        boundary = {side: float(data["boundary"][side]) for side in SIDES}
        return cls(n, float(data["conductivity"]), boundary, list(data["sources"]), q, int(data["seed"]))


def generate(n: int, source_strength: float, seed: int, conductivity: float = 1.0) -> Problem:
    """1 to 3 Gaussian heat sources (peak up to ``source_strength``) and boundary temperatures in
    [0, 10], drawn reproducibly from ``seed``."""
    if not 2 <= n <= 1024:
        raise ValueError(f"grid size must be in [2, 1024], got {n}")
    if source_strength < 0 or conductivity <= 0:
        raise ValueError("source strength must be >= 0 and conductivity > 0")
    rng = random.Random(seed)  # noqa: S311 - reproducible science, not secrets
    boundary = {side: round(rng.uniform(0.0, 10.0), 3) for side in SIDES}
    sources = [
        {
            "x": round(rng.uniform(0.2, 0.8), 4),
            "y": round(rng.uniform(0.2, 0.8), 4),
            "width": round(rng.uniform(0.05, 0.15), 4),
            "strength": round(source_strength * rng.uniform(0.5, 1.0), 6),
        }
        for _ in range(rng.randint(1, 3))
    ]
    h = 1.0 / (n + 1)
    q = [
        [
            sum(
                s["strength"]
                * math.exp(
                    -(((j + 1) * h - s["x"]) ** 2 + ((i + 1) * h - s["y"]) ** 2) / (2 * s["width"] ** 2)
                )
                for s in sources
            )
            for j in range(n)
        ]
        for i in range(n)
    ]
    return Problem(n, conductivity, boundary, sources, q, seed)


def padded(problem: Problem, interior: Grid | None = None) -> Grid:
    """``(n+2) x (n+2)``: the interior (zeros if not given) framed by the boundary temperatures."""
    n, b = problem.n, problem.boundary
    grid = [[0.0] * (n + 2) for _ in range(n + 2)]
    for k in range(1, n + 1):
        grid[0][k], grid[n + 1][k] = b["south"], b["north"]
        grid[k][0], grid[k][n + 1] = b["west"], b["east"]
    for i, row in enumerate(interior or []):
        grid[i + 1][1 : n + 1] = row
    return grid


def rhs_norm(problem: Problem) -> float:
    """``||f||_2``: the source plus the boundary neighbours' contribution."""
    n, c = problem.n, problem.conductivity / problem.h**2
    frame = padded(problem)
    total = 0.0
    for i in range(1, n + 1):
        for j in range(1, n + 1):
            boundary = sum(
                frame[a][b]
                for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1))
                if not _inside(a, b, n)
            )
            total += (problem.q[i - 1][j - 1] + c * boundary) ** 2
    return math.sqrt(total)


def _inside(a: int, b: int, n: int) -> bool:
    return 1 <= a <= n and 1 <= b <= n


def residual_norm(problem: Problem, grid: Grid) -> float:
    """``||f - A T||_2`` for the padded field ``grid``."""
    n, c = problem.n, problem.conductivity / problem.h**2
    total = 0.0
    for i in range(1, n + 1):
        up, row, down, q = grid[i - 1], grid[i], grid[i + 1], problem.q[i - 1]
        for j in range(1, n + 1):
            r = q[j - 1] - c * (4 * row[j] - up[j] - down[j] - row[j - 1] - row[j + 1])
            total += r * r
    return math.sqrt(total)


def optimal_omega(n: int) -> float:
    """The SOR relaxation factor that is optimal for the 5-point Laplacian on a square grid."""
    return 2.0 / (1.0 + math.sin(math.pi / (n + 1)))


@dataclass(frozen=True)
class Solution:
    field: Grid  # interior, n x n
    iterations: int
    relative_residual: float
    history: list[tuple[int, float]]  # (iteration, relative residual)
    omega: float


def solve(problem: Problem, tolerance: float, max_iterations: int) -> Solution:
    """SOR from T = 0 until ``||f - A T|| / ||f|| <= tolerance`` (checked every CHECK_EVERY sweeps)."""
    if not 0 < tolerance < 1 or max_iterations < 1:
        raise ValueError("tolerance must be in (0, 1) and max_iterations >= 1")
    n, omega = problem.n, optimal_omega(problem.n)
    scale = rhs_norm(problem) or 1.0
    grid = padded(problem)
    hq = [[problem.h**2 * v / problem.conductivity for v in row] for row in problem.q]
    history = [(0, residual_norm(problem, grid) / scale)]
    iteration = 0
    while history[-1][1] > tolerance:
        if iteration >= max_iterations:
            raise NotConverged(
                f"relative residual {history[-1][1]:.3e} > tolerance {tolerance:.1e} after {iteration} iterations"
            )
        for _ in range(min(CHECK_EVERY, max_iterations - iteration)):
            for i in range(1, n + 1):
                up, row, down, src = grid[i - 1], grid[i], grid[i + 1], hq[i - 1]
                for j in range(1, n + 1):
                    gauss_seidel = 0.25 * (up[j] + down[j] + row[j - 1] + row[j + 1] + src[j - 1])
                    row[j] += omega * (gauss_seidel - row[j])
            iteration += 1
        history.append((iteration, residual_norm(problem, grid) / scale))
    field = [row[1 : n + 1] for row in grid[1 : n + 1]]
    return Solution(field, iteration, history[-1][1], history, omega)


def energy_balance(problem: Problem, field: Grid) -> dict[str, float]:
    """Heat generated (``sum q h^2``) against heat conducted out through the boundary (per unit depth).

    Summing the discrete equations over all nodes cancels every interior flux: for the exact
    discrete solution both are equal, so the imbalance measures what the solver left undone.
    """
    n, k = problem.n, problem.conductivity
    grid = padded(problem, field)
    generated = sum(map(sum, problem.q)) * problem.h**2
    outflow = 0.0
    for m in range(1, n + 1):
        outflow += grid[1][m] - grid[0][m] + grid[n][m] - grid[n + 1][m]  # south, north
        outflow += grid[m][1] - grid[m][0] + grid[m][n] - grid[m][n + 1]  # west, east
    outflow *= k
    imbalance = generated - outflow
    return {
        "generated": generated,
        "boundary_outflow": outflow,
        "imbalance": imbalance,
        "relative_imbalance": abs(imbalance) / generated if generated else abs(imbalance),
    }
