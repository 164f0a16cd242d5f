"""The catch-up throttle of alert rounds and snapshots (pipeline.catchup)."""

from __future__ import annotations

import time

import pytest

from pipeline import catchup
from pipeline.catchup import BUSY_FACTOR, CatchUpThrottle


class Clock:
    def __init__(self) -> None:
        self.wall = 1_800_000_000.0
        self.mono = 1000.0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(catchup.time, "time", lambda: fake.wall)
    monkeypatch.setattr(catchup.time, "monotonic", lambda: fake.mono)
    return fake


def test_live_every_boundary_runs(clock: Clock) -> None:
    throttle = CatchUpThrottle(interval_seconds=1.0, behind_seconds=120)
    for _ in range(5):  # clock 60 s behind the wall: live
        assert throttle.allow(clock.wall - 60)
        with throttle.running():
            clock.mono += 0.5
    assert throttle.skipped == 0


def test_catching_up_runs_at_most_once_per_interval_and_a_tenth_of_the_time(clock: Clock) -> None:
    throttle = CatchUpThrottle(interval_seconds=1.0, behind_seconds=120)
    behind = clock.wall - 3600
    assert throttle.allow(behind)
    with throttle.running():
        clock.mono += 0.01  # a quick run: the interval decides
    clock.mono += 0.5
    assert not throttle.allow(behind)
    clock.mono += 0.5
    assert throttle.allow(behind)
    with throttle.running():
        clock.mono += 2.0  # a slow run: BUSY_FACTOR x 2 s must pass
    clock.mono += 2.0 * BUSY_FACTOR - 0.1
    assert not throttle.allow(behind)
    clock.mono += 0.2
    assert throttle.allow(behind)
    assert throttle.skipped == 2
    # caught up: live again, no wait
    assert throttle.allow(clock.wall - 10)


def test_catching_up_nothing_more_is_asked_while_a_run_is_going(clock: Clock) -> None:
    """Work run in the background (snapshots) is asked for again only once it ended and
    its gap passed: not back to back while it is still going."""
    throttle = CatchUpThrottle(interval_seconds=1.0, behind_seconds=120)
    behind = clock.wall - 3600
    assert throttle.allow(behind)
    with throttle.running():
        clock.mono += 5.0  # long past the interval, but still running
        assert not throttle.allow(behind)
        assert throttle.allow(clock.wall - 10)  # live work is never held back
    clock.mono += 5.0 * BUSY_FACTOR
    assert throttle.allow(behind)
    assert throttle.skipped == 1


def test_zero_interval_never_throttles() -> None:
    throttle = CatchUpThrottle(interval_seconds=0, behind_seconds=0)
    with throttle.running():
        time.sleep(0.01)
    assert throttle.allow(0.0)
