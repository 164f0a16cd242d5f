"""How often the per-boundary work runs while the windows catch up with a backlog.

Alert rounds and window snapshots are due each time the windows' clock (event time)
crosses a boundary (every minute by default). Live, that is once a minute of wall
time and costs little. While the worker works through a backlog or a replay of
history, hours of event time pass in seconds of wall time, and judging every minute
of it would cost more than the windows themselves. So, while the clock is more than
``behind_seconds`` behind the wall clock, a round (or snapshot) runs at most once per
``interval_seconds`` of wall time, and not sooner than ``BUSY_FACTOR`` times its own
last duration after it ended (so that it takes at most a tenth of the worker's time),
and judges the newest boundary reached; the skipped boundaries are not judged. Live
(clock within ``behind_seconds`` of the wall clock) every boundary is judged.
``interval_seconds = 0`` judges every boundary always.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

#: While catching up, wait at least this many times the last run's duration.
BUSY_FACTOR = 9.0


class CatchUpThrottle:
    def __init__(self, interval_seconds: float, behind_seconds: float) -> None:
        self.interval = interval_seconds
        self.behind = behind_seconds
        self.next_allowed = -float("inf")
        self.skipped = 0
        self._running = False

    def allow(self, clock: float | None) -> bool:
        """True if the work due at event time ``clock`` should run now."""
        if self.interval <= 0 or clock is None:
            return True
        now = time.time()
        if now - clock <= self.behind:
            return True
        # while catching up, not while the last run is still going (work that runs in
        # the background, like snapshots, would otherwise be asked for back to back)
        if not self._running and time.monotonic() >= self.next_allowed:
            return True
        self.skipped += 1
        return False

    @contextmanager
    def running(self) -> Iterator[None]:
        """Wrap the work that :meth:`allow` let through (its duration sets the next gap)."""
        started = time.monotonic()
        self._running = True
        try:
            yield
        finally:
            self._running = False
            ended = time.monotonic()
            self.next_allowed = max(
                started + self.interval, ended + BUSY_FACTOR * (ended - started)
            )
