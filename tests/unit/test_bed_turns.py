"""Turns on the shared test bed: a test that breaks one server waits only for tests of that server."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from bed_turns import SERVERS, bed_claims, bed_turn


class Node:
    """What bed_claims reads of a test: its closest ``exclusive`` and ``bed`` marks."""

    nodeid = "tests/x.py::test_x"

    def __init__(self, **marks: tuple[str, ...]) -> None:
        self.marks = {name: getattr(pytest.mark, name)(*args).mark for name, args in marks.items()}

    def get_closest_marker(self, name: str) -> Any:
        return self.marks.get(name)


def test_the_marks_name_what_a_test_holds_alone_and_what_it_shares() -> None:
    assert bed_claims(Node()) == dict.fromkeys(SERVERS, False)
    assert bed_claims(Node(exclusive=())) == dict.fromkeys(SERVERS, True)
    assert bed_claims(Node(exclusive=("alpha",))) == {s: s == "alpha" for s in SERVERS}
    assert bed_claims(Node(bed=("s3",))) == {"s3": False}
    for bad in (Node(bed=("delta",)), Node(exclusive=("alpha",), bed=("s3",))):
        with pytest.raises(pytest.UsageError, match="name servers of"):
            bed_claims(bad)


def waited(folder: Path, held: dict[str, bool], wanted: dict[str, bool]) -> float:
    """How long a turn on ``wanted`` waits while another test holds ``held`` for 0.6 s."""
    inside = threading.Event()

    def hold() -> None:
        with bed_turn(folder, held):
            inside.set()
            time.sleep(0.6)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(5)
    started = time.monotonic()
    with bed_turn(folder, wanted):
        took = time.monotonic() - started
    holder.join()
    return took


def test_a_test_of_other_servers_runs_beside_an_exclusive_one(tmp_path: Path) -> None:
    assert waited(tmp_path, bed_claims(Node(exclusive=("alpha",))), bed_claims(Node(bed=("s3",)))) < 0.3
    assert waited(tmp_path, bed_claims(Node(bed=("s3",))), bed_claims(Node(exclusive=("catalog",)))) < 0.3


def test_a_test_of_a_broken_server_waits_for_the_exclusive_one_and_the_other_way_round(
    tmp_path: Path,
) -> None:
    alone_on_alpha = bed_claims(Node(exclusive=("alpha",)))
    assert waited(tmp_path, alone_on_alpha, bed_claims(Node())) > 0.4, "an unmarked test uses every server"
    assert waited(tmp_path, alone_on_alpha, bed_claims(Node(exclusive=("gamma",)))) > 0.4, "it shares alpha"
    assert waited(tmp_path, bed_claims(Node(bed=("alpha",))), alone_on_alpha) > 0.4
