"""``python -m study {generate,solve,postprocess} [options]``: one step of the study pipeline.

Inputs and outputs move through the object store (``study.transfer``); options are validated here.
``STUDY_FAIL_STEP=<step>`` makes that step fail on purpose after storing its first output. Exit codes:
0 done, 2 bad arguments (argparse), 3 a failed transfer, 4 the solver did not converge, 5 forced failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from study import heat, png, post
from study.transfer import ForcedFailure, TransferError, run_step

Step = Callable[[dict[str, bytes]], dict[str, bytes]]


def _bounded(kind: type, low: float, high: float) -> Callable[[str], float | int]:
    def parse(text: str) -> float | int:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside [{low}, {high}]")
        return value  # type: ignore[no-any-return]

    return parse


def generate_step(args: argparse.Namespace) -> Step:
    def compute(inputs: dict[str, bytes]) -> dict[str, bytes]:
        problem = heat.generate(args.grid_size, args.source_strength, args.seed)
        return {"problem.json": json.dumps(problem.to_dict()).encode()}

    return compute


def solve_step(args: argparse.Namespace) -> Step:
    def compute(inputs: dict[str, bytes]) -> dict[str, bytes]:
        problem = heat.Problem.from_dict(json.loads(inputs["problem.json"]))
        solution = heat.solve(problem, args.tolerance, args.max_iterations)
        print(
            f"converged: relative residual {solution.relative_residual:.3e} after {solution.iterations}"
            f" iterations (omega {solution.omega:.4f})",
            file=sys.stderr,
        )
        field = {
            "n": problem.n,
            "h": problem.h,
            "tolerance": args.tolerance,
            "iterations": solution.iterations,
            "relative_residual": solution.relative_residual,
            "omega": solution.omega,
            "T": solution.field,
        }
        return {
            "field.json": json.dumps(field).encode(),
            "residuals.csv": post.format_history(solution.history).encode(),
        }

    return compute


def postprocess_step(args: argparse.Namespace) -> Step:
    def compute(inputs: dict[str, bytes]) -> dict[str, bytes]:
        problem = heat.Problem.from_dict(json.loads(inputs["problem.json"]))
        field = json.loads(inputs["field.json"])["T"]
        report = post.summary(problem, field, post.parse_history(inputs["residuals.csv"].decode()))
        return {
            "report.json": json.dumps(report, indent=2).encode(),
            "temperature.png": png.render(field, scale=max(1, 256 // problem.n)),
        }

    return compute


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m study", description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    gen = steps.add_parser("generate", help="the problem: grid, heat sources, boundary temperatures")
    gen.add_argument("--grid-size", type=_bounded(int, 4, 256), required=True)
    gen.add_argument("--source-strength", type=_bounded(float, 0.0, 1e6), required=True)
    gen.add_argument("--seed", type=_bounded(int, 0, 2**31 - 1), required=True)
    gen.set_defaults(make=generate_step)
    sol = steps.add_parser("solve", help="SOR down to a relative residual")
    sol.add_argument("--tolerance", type=_bounded(float, 1e-12, 0.1), required=True)
    sol.add_argument("--max-iterations", type=_bounded(int, 1, 1_000_000), required=True)
    sol.set_defaults(make=solve_step)
    steps.add_parser("postprocess", help="statistics, energy balance, map").set_defaults(
        make=postprocess_step
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        run_step(args.make(args), fail_after_first_output=os.environ.get("STUDY_FAIL_STEP") == args.step)
    except TransferError as exc:
        print(f"{args.step}: {exc}", file=sys.stderr)
        return 3
    except heat.NotConverged as exc:
        print(f"{args.step}: not converged: {exc}", file=sys.stderr)
        return 4
    except ForcedFailure as exc:
        print(f"{args.step}: {exc}", file=sys.stderr)
        return 5
    return 0


if __name__ == "__main__":
    sys.exit(main())
