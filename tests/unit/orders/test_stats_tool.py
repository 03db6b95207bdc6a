"""The stats tool (include/images/tools-stats/stats.py) as the container runs it, checked against numpy;
its exit codes and messages for inputs it cannot use."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from modules import load_file

SCRIPT = Path(__file__).resolve().parents[3] / "include" / "images" / "tools-stats" / "stats.py"


@pytest.fixture(scope="module")
def stats() -> ModuleType:
    return load_file("tools_stats", SCRIPT)


def order(tmp_path: Path, files: dict[str, str], params: dict[str, Any]) -> tuple[str, str]:
    inputs = []
    for i, (name, body) in enumerate(files.items(), start=1):
        (tmp_path / name).write_text(body)
        inputs.append({"dataset_id": i, "name": name, "path": str(tmp_path / name)})
    (tmp_path / "order.json").write_text(json.dumps({"tool_params": params, "inputs": inputs}))
    (tmp_path / "out").mkdir()
    return str(tmp_path / "order.json"), str(tmp_path / "out")


@pytest.mark.parametrize("bins", [1, 3, 7])
def test_pooled_statistics_match_numpy(stats: ModuleType, tmp_path: Path, bins: int) -> None:
    rng = np.random.default_rng(bins)
    a, b = rng.normal(10, 3, 50), rng.uniform(-5, 5, 31)
    files = {
        "a.csv": "x,name\n" + "".join(f"{float(v)!r},n{i}\n" for i, v in enumerate(a)),
        "b.json": json.dumps({"x": b.tolist()}),
    }
    assert stats.main(list(order(tmp_path, files, {"bins": bins}))) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary["columns"]) == {"x"}
    data = np.concatenate([a, b])
    got = summary["columns"]["x"]
    counts, edges = np.histogram(data, bins=bins)
    assert got["count"] == 81 and got["histogram"]["counts"] == counts.tolist()
    assert got["histogram"]["edges"] == pytest.approx(edges.tolist(), rel=1e-12)
    assert got["mean"] == pytest.approx(data.mean(), rel=1e-12)
    assert got["std"] == pytest.approx(data.std(ddof=1), rel=1e-12)
    assert got["median"] == np.median(data) and (got["min"], got["max"]) == (data.min(), data.max())
    assert (tmp_path / "out" / "histograms.csv").read_text().count("\n") == bins + 1


def test_one_value_makes_one_centred_bin_like_numpy(stats: ModuleType) -> None:
    edges, counts = stats.histogram([2.0, 2.0], 2)
    np_counts, np_edges = np.histogram([2.0, 2.0], bins=2)
    assert counts == np_counts.tolist() and edges == np_edges.tolist()


@pytest.mark.parametrize(
    ("files", "params", "code", "message"),
    [
        ({"a.csv": "t\n1\nabc\n"}, {"columns": ["t"]}, 3, "a.csv row 2 column 't': 'abc' is not a number"),
        ({"a.csv": "t\n1\nnan\n"}, {"columns": ["t"]}, 3, "'nan' is not a number"),
        ({"a.csv": "t\n1\n"}, {"columns": ["u"]}, 3, "column 'u' has no values in any input"),
        ({"a.csv": "name\nx\n"}, {}, 3, "no numeric column"),
        ({"a.json": "{not json"}, {}, 2, "a.json: not valid JSON"),
        ({"a.json": '"text"'}, {}, 2, "a.json: JSON must be"),
        ({"a.txt": "1\n"}, {}, 2, "a.txt: neither CSV nor JSON"),
        ({"a.csv": "t\n1,2\n"}, {}, 2, "a.csv: a row has more cells than the header"),
    ],
)
def test_inputs_it_cannot_use_exit_non_zero_saying_why(
    stats: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    params: dict[str, Any],
    code: int,
    message: str,
) -> None:
    assert stats.main(list(order(tmp_path, files, params))) == code
    assert message in capsys.readouterr().err
    assert not list((tmp_path / "out").iterdir()), "nothing written on failure"
