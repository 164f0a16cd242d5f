"""Window snapshots on ``nps.windows``: each changed segment when a boundary passes.

The boundary is a multiple of ``NPS_SNAPSHOT_INTERVAL_SECONDS`` of event time. When the
worker's clock crosses one, every segment changed since the previous snapshot is
published with all its windows at the clock (``as_of``), keyed by segment, with the
deterministic id ``<segment>@<boundary>`` so that consumers can drop repeats (a
restarted worker publishes the current boundary again).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from pipeline.aggregate import WindowState, dimension_of
from pipeline.segments import parse_segment_key
from pipeline.windows import window_label
from schemas.windows import WindowSnapshot


class SnapshotClock:
    def __init__(self, interval_seconds: int) -> None:
        self.interval = interval_seconds
        self.last: int | None = None

    def crossed(self, clock: float | None) -> int | None:
        """The newest boundary crossed since the previous call, if any."""
        if clock is None:
            return None
        boundary = int(clock // self.interval) * self.interval
        if self.last is not None and boundary <= self.last:
            return None
        self.last = boundary
        return boundary


def snapshot_records(state: WindowState, boundary: int) -> Iterator[tuple[bytes, bytes]]:
    clock = state.clock if state.clock is not None else boundary
    as_of = datetime.fromtimestamp(clock, UTC)
    for partition, segment in sorted(state.take_dirty()):
        windows = state.partitions[partition].segments.get(segment)
        if windows is None:
            continue
        state.advance(partition, segment, windows, clock)
        snapshot = WindowSnapshot(
            snapshot_id=f"{segment}@{boundary}",
            segment=segment,
            dimension=dimension_of(segment),
            fields=parse_segment_key(segment),
            as_of=as_of,
            windows={window_label(w): windows.stats(w) for w in windows.windows},
            all_time=windows.stats(None),
        )
        yield segment.encode(), snapshot.model_dump_json().encode()
