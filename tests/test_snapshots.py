"""Window snapshots are written in the background, a slice at a time: every changed
segment once per boundary, with the event loop free between slices (so that alert rounds
of the same boundary are not held back by thousands of snapshots)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.aggregate import WindowState, dimension_of
from pipeline.batchio import Record
from pipeline.catchup import CatchUpThrottle
from pipeline.segments import parse_segment_key
from pipeline.settings import load_settings
from pipeline.snapshots import SnapshotWriter, snapshot_records
from pipeline.windows import Counts, window_label
from schemas.windows import WindowSnapshot
from tests.deltas import deltas_record

SETTINGS = load_settings()
NOW = 1_800_000_000.0


def state_with(agents: range, at: float) -> WindowState:
    """One NPS answer per agent at event time ``at`` (agent i's segment in partition i % 4),
    then every partition's clock at ``at``."""
    state = WindowState(SETTINGS)
    for i in agents:
        counts = Counts.of_event("nps", i % 11)
        value = deltas_record(f"agent=a{i:04d}", {int(at // 60) * 60: counts}, at)
        state.apply_packed([(i % 4, value)])
    return state


def test_every_changed_segment_once_per_boundary_with_the_loop_free_between_slices() -> None:
    state = state_with(range(250), NOW)
    sends: list[list[Record]] = []
    ticks: list[int] = []  # send number when another task got the loop

    async def send(records: list[Record]) -> None:
        sends.append(records)  # a send that does not wait (as an idle broker's ack can be)

    async def other_task(stop: asyncio.Event) -> None:
        while not stop.is_set():
            ticks.append(len(sends))
            await asyncio.sleep(0)

    async def main() -> None:
        writer = SnapshotWriter(state, "nps.windows", send, CatchUpThrottle(0, 0), 100)
        stop = asyncio.Event()
        other = asyncio.create_task(other_task(stop))
        await asyncio.sleep(0)
        boundary = int(NOW // 60) * 60
        assert await writer.write(boundary) == 250
        stop.set()
        await other

    asyncio.run(main())
    assert [len(s) for s in sends] == [100, 100, 50]
    assert {1, 2} <= set(ticks), "the loop ran other work between slices"
    snapshots = [WindowSnapshot.model_validate_json(v) for s in sends for _, _, _, v in s]
    assert sorted(s.segment for s in snapshots) == [f"agent=a{i:04d}" for i in range(250)]
    boundary = int(NOW // 60) * 60
    assert all(s.snapshot_id == f"{s.segment}@{boundary}" for s in snapshots)
    one = next(s for s in snapshots if s.segment == "agent=a0003")
    assert one.windows["5m"].responses == 1 and one.windows["5m"].detractors == 1
    assert one.all_time.responses == 1
    assert all(topic == "nps.windows" and key is not None for s in sends for topic, _, key, _ in s)


def test_requests_while_writing_coalesce_into_the_newest_boundary() -> None:
    state = state_with(range(30), NOW)
    written: list[str] = []
    gate = asyncio.Event()

    async def send(records: list[Record]) -> None:
        await gate.wait()  # the broker is slow: the first boundary is still being written
        written.extend(orjson.loads(v)["snapshot_id"] for _, _, _, v in records)

    async def main() -> None:
        writer = SnapshotWriter(state, "nps.windows", send, CatchUpThrottle(0, 0), 10)
        task = asyncio.create_task(writer.run())
        first = int(NOW // 60) * 60
        writer.request(first)
        await asyncio.sleep(0.01)  # writing the first slice of `first`
        # meanwhile two more boundaries pass, and agent 5 changes again
        later = NOW + 125
        value = deltas_record(
            "agent=a0005", {int(later // 60) * 60: Counts.of_event("nps", 10)}, later
        )
        state.apply_packed([(1, value)])
        writer.request(first + 60)
        writer.request(first + 120)
        gate.set()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(written) == 31:
                break
        task.cancel()

    asyncio.run(main())
    first = int(NOW // 60) * 60
    assert sorted(written[:30]) == sorted(f"agent=a{i:04d}@{first}" for i in range(30))
    assert written[30:] == [f"agent=a0005@{first + 120}"]


SCORES = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
SEGMENTS = ("overall", "agent=a-1", "department=billing|channel=chat", "region=emea")


@st.composite
def answers(draw: st.DrawFn) -> tuple[str, int, float | None, str, float]:
    kind = draw(st.sampled_from(sorted(SCORES)))
    score = draw(st.integers(*SCORES[kind]))
    value = draw(st.none() | st.floats(0, 1e7, allow_nan=False)) if kind == "nps" else None
    ago = draw(st.floats(0, 30 * 3600))  # over the longest window, into the all-time total
    return kind, score, value, draw(st.sampled_from(SEGMENTS)), ago


@settings(max_examples=150, deadline=None)
@given(
    st.lists(answers(), max_size=40),
    st.floats(0, 59.999999),  # the clock's place in its minute (microseconds in as_of)
)
def test_a_snapshot_is_the_models_json_byte_for_byte(
    given_answers: list[tuple[str, int, float | None, str, float]], second: float
) -> None:
    """snapshot_records serializes without building the models: its bytes must be what
    WindowSnapshot(...).model_dump_json() gives (the contract of nps.windows)."""
    clock = NOW + second
    state = WindowState(SETTINGS)
    for i, (kind, score, value, segment, ago) in enumerate(given_answers):
        at = clock - ago
        record = deltas_record(
            segment, {int(at // 60) * 60: Counts.of_event(kind, score, value)}, at
        )
        state.apply_packed([(i % 4, record)])
    state.apply_packed([(p, deltas_record("overall", {}, clock)) for p in range(4)])
    keys = sorted(state.keys())
    boundary = int(clock // 60) * 60
    fast = list(snapshot_records(state, boundary, keys))
    assert len(fast) == len(keys)
    for (partition, segment), (key, value) in zip(keys, fast, strict=True):
        windows = state.partitions[partition].segments[segment]
        reference = WindowSnapshot(
            snapshot_id=f"{segment}@{boundary}",
            segment=segment,
            dimension=dimension_of(segment),
            fields=parse_segment_key(segment),
            as_of=datetime.fromtimestamp(state.clock, UTC),
            windows={window_label(w): windows.stats(w) for w in windows.windows},
            all_time=windows.stats(None),
        )
        assert key == segment.encode()
        assert value == reference.model_dump_json().encode()
