"""Summary statistics and histograms of numeric columns over CSV and JSON datasets (stdlib only).

Usage: ``stats.py ORDER_JSON OUT_DIR``. ``ORDER_JSON`` is the order as the analytics_order DAG hands
it over: ``{"tool_params": {"columns": [...], "bins": 10}, "inputs": [{"dataset_id", "name", "path",
"content_type"}, ...]}``. The values of every input are pooled per column; writes ``OUT_DIR/summary.json``
(count, mean, sample std, min, max, median, histogram per column, rows per input) and
``OUT_DIR/histograms.csv``. Histograms have ``bins`` equal-width bins from min to max, the last one
closed (numpy.histogram's rule).

Inputs: CSV with a header row; JSON as a list of records, an object of columns (name -> list) or a list
of numbers (column ``value``). Empty cells and JSON nulls are missing values. Exit codes: 0 done,
2 an input cannot be read, 3 a value or column does not fit the request (the message on stderr says
which input, row and column).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any


class InputError(Exception):
    """An input that cannot be read (exit 2)."""


class ValueProblem(Exception):
    """A value or column that does not fit the request (exit 3)."""


def read_records(path: Path, name: str, content_type: str) -> list[dict[str, Any]]:
    kind = "csv" if name.lower().endswith(".csv") or "csv" in content_type else None
    if kind is None and (name.lower().endswith(".json") or "json" in content_type):
        kind = "json"
    if kind is None:
        raise InputError(f"{name}: neither CSV nor JSON (by name or content type {content_type!r})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{name}: cannot read: {exc}") from None
    if kind == "csv":
        try:
            reader = csv.DictReader(text.splitlines())
            rows = list(reader)
        except csv.Error as exc:
            raise InputError(f"{name}: not valid CSV: {exc}") from None
        if not reader.fieldnames:
            raise InputError(f"{name}: CSV without a header row")
        if any(None in row for row in rows):
            raise InputError(f"{name}: a row has more cells than the header")
        return rows
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}: not valid JSON: {exc}") from None
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        return data
    if isinstance(data, list):
        return [{"value": item} for item in data]
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
        length = max((len(v) for v in data.values()), default=0)
        return [{k: (v[i] if i < len(v) else None) for k, v in data.items()} for i in range(length)]
    raise InputError(f"{name}: JSON must be a list of records, a list of numbers or an object of lists")


def number(value: Any) -> float | None:
    """The value as a finite float; None for a missing value; ValueError when it is not a number."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(value)
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(value)
    return result


def column_values(
    inputs: list[tuple[str, list[dict[str, Any]]]], columns: list[str] | None
) -> dict[str, list[float]]:
    """The pooled values per column: the requested columns (each value must be a number), or every
    column whose values are all numbers."""
    names = columns or sorted({c for _, rows in inputs for row in rows for c in row})
    pooled: dict[str, list[float]] = {}
    for column in names:
        values: list[float] = []
        numeric = True
        for name, rows in inputs:
            for index, row in enumerate(rows, start=1):
                try:
                    value = number(row.get(column))
                except (TypeError, ValueError):
                    if columns:
                        raise ValueProblem(
                            f"{name} row {index} column {column!r}: {row.get(column)!r} is not a number"
                        ) from None
                    numeric = False
                    break
                if value is not None:
                    values.append(value)
            if not numeric:
                break
        if columns and not values:
            raise ValueProblem(f"column {column!r} has no values in any input")
        if numeric and values:
            pooled[column] = values
    if not pooled:
        raise ValueProblem("no numeric column in the inputs")
    return pooled


def histogram(values: list[float], bins: int) -> tuple[list[float], list[int]]:
    """numpy.histogram(values, bins): equal-width edges from min to max, the last bin closed."""
    lo, hi = min(values), max(values)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    step = (hi - lo) / bins
    edges = [lo + i * step for i in range(bins)] + [hi]
    counts = [0] * bins
    norm = bins / (hi - lo)
    for x in values:
        i = min(int((x - lo) * norm), bins - 1)
        if x < edges[i]:  # float rounding: the same corrections numpy makes
            i -= 1
        elif i != bins - 1 and x >= edges[i + 1]:
            i += 1
        counts[i] += 1
    return edges, counts


def summarise(values: list[float], bins: int) -> dict[str, Any]:
    edges, counts = histogram(values, bins)
    return {
        "count": len(values),
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "min": min(values),
        "max": max(values),
        "median": statistics.median(values),
        "histogram": {"edges": edges, "counts": counts},
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: stats.py ORDER_JSON OUT_DIR", file=sys.stderr)
        return 2
    order = json.loads(Path(argv[0]).read_text())
    params = order.get("tool_params") or {}
    out = Path(argv[1])
    try:
        inputs = [
            (item["name"], read_records(Path(item["path"]), item["name"], item.get("content_type", "")))
            for item in order["inputs"]
        ]
        pooled = column_values(inputs, params.get("columns"))
    except InputError as exc:
        print(f"stats: cannot read an input: {exc}", file=sys.stderr)
        return 2
    except ValueProblem as exc:
        print(f"stats: {exc}", file=sys.stderr)
        return 3
    bins = int(params.get("bins", 10))
    summary = {
        "inputs": [
            {"dataset_id": item["dataset_id"], "name": name, "rows": len(rows)}
            for item, (name, rows) in zip(order["inputs"], inputs, strict=True)
        ],
        "columns": {column: summarise(values, bins) for column, values in pooled.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(out / "histograms.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["column", "bin", "lower", "upper", "count"])
        for column, stats in summary["columns"].items():
            edges, counts = stats["histogram"]["edges"], stats["histogram"]["counts"]
            for i, count in enumerate(counts):
                writer.writerow([column, i, repr(edges[i]), repr(edges[i + 1]), count])
    print(f"stats: {len(pooled)} column(s) over {len(inputs)} input(s) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
