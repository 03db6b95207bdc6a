"""The bounded readiness wait, on a fake clock."""

from __future__ import annotations

from operators.services.readiness import wait_ready


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds


def test_ready_after_some_probes() -> None:
    clock, answers = Clock(), iter([False, False, True])
    assert wait_ready(lambda: next(answers), lambda: True, 10, 1, clock, clock.sleep) is None
    assert clock.sleeps == 2


def test_gives_up_at_the_deadline_even_if_the_clock_stands_still() -> None:
    clock = Clock()
    assert wait_ready(lambda: False, lambda: True, 5, 1, clock, clock.sleep) == "no answer within 5 s"
    frozen = Clock()
    why = wait_ready(lambda: False, lambda: True, 5, 1, frozen, lambda s: None)
    assert why == "no answer within 5 s"  # bounded by the number of attempts, not only by time


def test_stops_waiting_when_the_container_dies() -> None:
    clock = Clock()
    assert wait_ready(lambda: False, lambda: False, 60, 1, clock, clock.sleep) == "its container stopped"
    assert clock.sleeps == 0
