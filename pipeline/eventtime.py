"""Event-time checks of the scoring stage: a watermark per input partition.

The watermark of a partition is the highest event time seen on it minus the allowed
lateness. An event older than its partition's watermark is *late*; one further in the
future than the tolerance (wall clock) is *future*. Both are still valid answers: they
are published scored, but left out of the windows and dead-lettered with reason
``late`` / ``future`` so that the exclusion is visible and counted.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.validate import Rejection
from schemas import Reason

#: A partition without records for this many wall-clock seconds stops holding back
#: the low watermark (an idle input must not freeze every window).
IDLE_SECONDS = 30.0


class Watermarks:
    def __init__(self, allowed_lateness: float, future_tolerance: float) -> None:
        self.allowed_lateness = allowed_lateness
        self.future_tolerance = future_tolerance
        self.max_seen: dict[int, float] = {}
        self.last_wall: dict[int, float] = {}

    def low(self, wall_now: float) -> float | None:
        """The event time every active input partition has reached: the minimum of
        their newest event times, leaving out partitions idle for ``IDLE_SECONDS``.

        The windows' clock follows it, so that when one input partition lags (a
        backlog, a replay read unevenly) the windows and alerts wait for its data
        instead of judging minutes that are still arriving.
        """
        active = [
            seen
            for partition, seen in self.max_seen.items()
            if wall_now - self.last_wall.get(partition, wall_now) < IDLE_SECONDS
        ]
        if active:
            return min(active)
        return max(self.max_seen.values(), default=None)

    def resume(self, partition: int, newest: float, wall_now: float) -> None:
        """Take over a partition whose newest event time an earlier owner recorded."""
        seen = self.max_seen.get(partition)
        if seen is None or newest > seen:
            self.max_seen[partition] = newest
        self.last_wall[partition] = wall_now

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop partitions this worker no longer reads (after a rebalance)."""
        for partition in partitions:
            self.max_seen.pop(partition, None)
            self.last_wall.pop(partition, None)

    def watermark(self, partition: int) -> float | None:
        seen = self.max_seen.get(partition)
        return None if seen is None else seen - self.allowed_lateness

    def check(self, partition: int, ts: float, wall_now: float) -> Rejection | None:
        """None if ``ts`` may count in the windows, else why not; advances the watermark."""
        if ts > wall_now + self.future_tolerance:
            return Rejection(
                Reason.FUTURE,
                f"event time is {ts - wall_now:,.0f} s in the future (tolerance "
                f"{self.future_tolerance:,.0f} s, NPS_FUTURE_TOLERANCE_SECONDS); "
                "published scored but left out of the windows",
                "event_time",
            )
        self.last_wall[partition] = wall_now
        seen = self.max_seen.get(partition)
        if seen is None or ts > seen:
            self.max_seen[partition] = ts
            return None
        if ts < seen - self.allowed_lateness:
            return Rejection(
                Reason.LATE,
                f"event time is {seen - ts:,.0f} s behind the newest event of partition "
                f"{partition} (allowed lateness {self.allowed_lateness:,.0f} s, "
                "NPS_ALLOWED_LATENESS_SECONDS); published scored but left out of the windows",
                "event_time",
            )
        return None
