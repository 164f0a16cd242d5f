"""Window snapshots on ``nps.windows``: each changed segment when a boundary passes.

The boundary is a multiple of ``NPS_SNAPSHOT_INTERVAL_SECONDS`` of event time. When the
worker's clock crosses one, every segment changed since the previous snapshot is
published with all its windows at the clock (``as_of``), keyed by segment, with the
deterministic id ``<segment>@<boundary>`` so that consumers can drop repeats (a
restarted worker publishes the current boundary again).

The snapshots of a boundary are written in the background (:class:`SnapshotWriter`), a
slice of segments at a time with the event loop free in between: at 10,000 agents a
boundary's snapshots took ~2-4 s of the loop, and written in one go they held back the
alert rounds of the same boundary (alerts ~2 s late) and the scoring of new events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime

import orjson

from pipeline.aggregate import WindowState, dimension_of
from pipeline.batchio import Record
from pipeline.catchup import CatchUpThrottle
from pipeline.segments import parse_segment_key
from pipeline.windows import window_label
from schemas.windows import WINDOWS_SCHEMA_VERSION


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


#: Segments per slice of snapshots (~4-5 ms of the loop: ~44 µs a snapshot, measured alone).
SNAPSHOT_SLICE = 100


def snapshot_records(
    state: WindowState, boundary: int, segments: Iterable[tuple[int, str]]
) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of the snapshots of ``segments`` ((partition, segment) pairs), their
    windows at the worker clock."""
    clock = state.clock if state.clock is not None else boundary
    as_of = datetime.fromtimestamp(clock, UTC)
    for partition, segment in segments:
        pstate = state.partitions.get(partition)
        if pstate is None:  # revoked since the boundary
            continue
        windows = pstate.segments.get(segment)
        if windows is None:
            continue
        state.advance(partition, segment, windows, clock)
        # WindowSnapshot(...).model_dump_json(), byte for byte, without building the
        # models: ~71-78 -> ~43-45 µs a snapshot (tests/test_snapshots.py checks the bytes)
        snapshot = {  # the fields in the model's order
            "schema_version": WINDOWS_SCHEMA_VERSION,
            "segment": segment,
            "dimension": dimension_of(segment),
            "fields": parse_segment_key(segment),
            "as_of": as_of,
            "windows": {window_label(w): windows.kpis(w) for w in windows.windows},
            "all_time": windows.kpis(None),
            "snapshot_id": f"{segment}@{boundary}",
        }
        yield segment.encode(), orjson.dumps(snapshot, option=orjson.OPT_UTC_Z)


class SnapshotWriter:
    """Writes the snapshots of the boundaries :meth:`request`-ed, in the background.

    :meth:`run` (a task of the app) takes the segments changed since the last snapshot
    when a boundary is requested and sends their snapshots ``slice_size`` at a time,
    each slice acknowledged before the next is built; the event loop is free between
    slices. A boundary requested while one is being written is written after it, with
    the segments changed meanwhile (boundaries requested together: only the newest).
    """

    def __init__(
        self,
        state: WindowState,
        topic: str,
        send: Callable[[list[Record]], Awaitable[None]],
        throttle: CatchUpThrottle,
        slice_size: int = SNAPSHOT_SLICE,
    ) -> None:
        self.state = state
        self.topic = topic
        self.send = send
        self.throttle = throttle
        self.slice_size = slice_size
        self._due: int | None = None
        self._wake = asyncio.Event()

    def request(self, boundary: int) -> None:
        """Snapshot the changed segments at ``boundary`` (soon, not now)."""
        self._due = boundary if self._due is None else max(self._due, boundary)
        self._wake.set()

    async def run(self) -> None:
        """Write requested boundaries until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            boundary, self._due = self._due, None
            if boundary is None:
                continue
            with self.throttle.running():
                await self.write(boundary)

    async def write(self, boundary: int) -> int:
        """Send the snapshots of every segment changed since the last one; their number."""
        dirty = self.state.take_dirty()
        sent = 0
        for i in range(0, len(dirty), self.slice_size):
            records: list[Record] = [
                (self.topic, None, key, value)
                for key, value in snapshot_records(
                    self.state, boundary, dirty[i : i + self.slice_size]
                )
            ]
            if records:
                await self.send(records)
                sent += len(records)
            await asyncio.sleep(0)  # a slice's send may not have waited: let others run
        return sent
