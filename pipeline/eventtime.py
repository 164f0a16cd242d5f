"""Event-time checks of the scoring stage: a watermark per input partition.

The watermark of a partition is the highest event time seen on it minus the allowed
lateness. An event older than its partition's watermark is *late*; one further in the
future than the tolerance (wall clock) is *future*. Both are still valid answers: they
are published scored, but left out of the windows and dead-lettered with reason
``late`` / ``future`` so that the exclusion is visible and counted.
"""

from __future__ import annotations

from pipeline.validate import Rejection
from schemas import Reason


class Watermarks:
    def __init__(self, allowed_lateness: float, future_tolerance: float) -> None:
        self.allowed_lateness = allowed_lateness
        self.future_tolerance = future_tolerance
        self.max_seen: dict[int, float] = {}

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
