"""include/study/heat.py, post.py, png.py: the solver against a direct solve, the energy balance, the map."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from study import heat, png, post


def direct(problem: heat.Problem) -> np.ndarray:
    """The same 5-point system solved densely by numpy."""
    n, h, k = problem.n, problem.h, problem.conductivity
    frame = np.array(heat.padded(problem))
    f = np.array(problem.q) + k / h**2 * (
        frame[:-2, 1:-1] + frame[2:, 1:-1] + frame[1:-1, :-2] + frame[1:-1, 2:]
    )
    a = np.zeros((n * n, n * n))
    for i in range(n):
        for j in range(n):
            a[i * n + j, i * n + j] = 4 * k / h**2
            for r, c in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)):
                if 0 <= r < n and 0 <= c < n:
                    a[i * n + j, r * n + c] = -k / h**2
    return np.linalg.solve(a, f.ravel()).reshape(n, n)


def test_generate_is_reproducible_and_checked() -> None:
    one, two = heat.generate(12, 50.0, seed=3), heat.generate(12, 50.0, seed=3)
    assert one == two and one != heat.generate(12, 50.0, seed=4)
    assert heat.Problem.from_dict(one.to_dict()) == one
    assert 1 <= len(one.sources) <= 3 and all(0 <= v <= 10 for v in one.boundary.values())
    assert all(
        0.2 <= s["x"] <= 0.8 and 0.2 <= s["y"] <= 0.8 and 0.05 <= s["width"] <= 0.15 for s in one.sources
    )
    assert all(25.0 <= s["strength"] <= 50.0 for s in one.sources)
    # the source field is exactly the recorded Gaussians, recomputed here with numpy
    centres = (np.arange(12) + 1) / 13
    x, y = np.meshgrid(centres, centres)
    expected = sum(
        s["strength"] * np.exp(-((x - s["x"]) ** 2 + (y - s["y"]) ** 2) / (2 * s["width"] ** 2))
        for s in one.sources
    )
    assert np.allclose(np.asarray(one.q), expected, rtol=1e-12, atol=1e-12)
    assert max(map(max, one.q)) <= 50.0 * len(one.sources)
    with pytest.raises(ValueError):
        heat.generate(1, 50.0, 0)
    with pytest.raises(ValueError, match="12 x 12"):
        heat.Problem.from_dict({**one.to_dict(), "q": one.q[:-1]})


@pytest.mark.parametrize("n", [5, 14])
def test_solver_reaches_the_tolerance_and_the_direct_solution(n: int) -> None:
    problem = heat.generate(n, 80.0, seed=n)
    solution = heat.solve(problem, 1e-9, 10_000)
    assert solution.relative_residual <= 1e-9 and solution.history[-1] == (
        solution.iterations,
        solution.relative_residual,
    )
    assert [i for i, _ in solution.history] == sorted({i for i, _ in solution.history})
    exact = direct(problem)
    assert np.abs(np.array(solution.field) - exact).max() < 1e-6 * (exact.max() - exact.min())
    balance = heat.energy_balance(problem, solution.field)
    assert balance["relative_imbalance"] < 1e-6 and balance["generated"] > 0


def test_no_source_and_equal_boundaries_give_a_uniform_field() -> None:
    problem = heat.Problem(6, 2.0, dict.fromkeys(heat.SIDES, 7.5), [], [[0.0] * 6 for _ in range(6)], 0)
    solution = heat.solve(problem, 1e-10, 1000)
    assert np.allclose(solution.field, 7.5, atol=1e-8)
    assert heat.energy_balance(problem, solution.field)["generated"] == 0.0


def test_too_few_iterations_is_an_error_not_a_result() -> None:
    with pytest.raises(heat.NotConverged, match="after 3 iterations"):
        heat.solve(heat.generate(10, 50.0, 0), 1e-8, 3)


def test_summary_recomputes_the_residual_and_finds_the_hot_spot() -> None:
    problem = heat.Problem(9, 1.0, dict.fromkeys(heat.SIDES, 0.0), [], [[0.0] * 9 for _ in range(9)], 0)
    problem.q[2][6] = 500.0  # one hot node: x = 7 h, y = 3 h
    solution = heat.solve(problem, 1e-8, 5000)
    report = post.summary(problem, solution.field, solution.history)
    assert report["hottest"]["x"] == pytest.approx(0.7) and report["hottest"]["y"] == pytest.approx(0.3)
    assert report["relative_residual"] == pytest.approx(solution.relative_residual, rel=1e-9)
    assert report["energy"]["generated"] == pytest.approx(500.0 * problem.h**2)
    assert post.parse_history(post.format_history(solution.history))[-1][0] == solution.iterations
    with pytest.raises(ValueError, match="header"):
        post.parse_history("1,0.5\n")


def test_png_decodes_to_the_field_colours_north_up() -> None:
    field = [[0.0, 1.0, 2.0], [3.0, 4.0, 8.0]]  # row 0 is south: drawn at the bottom
    data = png.render(field, scale=2)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (6, 4)
    idat_len = struct.unpack(">I", data[33:37])[0]
    assert data[37:41] == b"IDAT"
    raw = zlib.decompress(data[41 : 41 + idat_len])
    rows = [raw[r * (1 + 3 * width) + 1 : (r + 1) * (1 + 3 * width)] for r in range(height)]
    assert rows[0][-3:] == bytes(png.colour(1.0)) and rows[-1][:3] == bytes(png.colour(0.0))
    assert png.colour(-1) == png.RAMP[0] and png.colour(2) == png.RAMP[-1]
