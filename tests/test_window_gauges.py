"""The rolling-window gauges on ``/metrics``: which segments are exported (equal to a
brute-force sort of every segment, hypothesis), and the ranking a scrape does in steps
with the event loop free in between (a scrape at 100,000 segments held the loop
0.4-1 s before)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import metrics
from pipeline.aggregate import WindowState
from pipeline.metrics import WindowGauges
from pipeline.segments import OVERALL, segment_labels
from pipeline.settings import load_settings
from pipeline.windows import Counts
from tests.deltas import deltas_record, every_segment

SETTINGS = load_settings()
NOW = 1_800_000_000.0
T = TypeVar("T")
DIMENSIONS = ("department", "channel")


def state_of(answers: list[tuple[str, int]]) -> WindowState:
    """(segment key, NPS score) answers, one minute apart, in a fresh state (each
    segment in a partition of its own hash, as a key lands in one partition)."""
    state = WindowState(SETTINGS)
    items = []
    for i, (key, score) in enumerate(answers):
        ts = NOW - 3 * 3600 + i * 60  # some older than the 1 h window: ranked by 24 h
        value = deltas_record(key, {int(ts // 60) * 60: Counts.of_event("nps", score)}, ts)
        items.append((sum(key.encode()) % 4, value))
    state.apply_packed(items)
    state.apply_packed([(sum(OVERALL.encode()) % 4, deltas_record(OVERALL, {}, NOW))])
    return state


def exported(gauges: WindowGauges) -> tuple[list[tuple[str, str]], float]:
    """(dimension, segment) of the exported segments, in order, and the dropped count."""
    families = {family.name: family for family in gauges.collect()}
    seen: list[tuple[str, str]] = []
    for sample in families["nps_pipeline_window_responses"].samples:
        pair = (sample.labels["dimension"], sample.labels["segment"])
        if pair not in seen:
            seen.append(pair)
    return seen, families["nps_pipeline_window_segments_dropped"].samples[0].value


def brute_force(state: WindowState, max_segments: int) -> tuple[list[tuple[str, str]], int]:
    rows = []
    for key, windows in every_segment(state):
        dimension, segment = segment_labels(key)
        if dimension == OVERALL:
            rank = -1
        else:
            rank = DIMENSIONS.index(dimension) if dimension in DIMENSIONS else len(DIMENSIONS)
        responses = windows.stats(max(state.windows)).responses
        rows.append((rank, -responses, dimension, segment))
    rows.sort()
    return [(d, s) for _, _, d, s in rows[:max_segments]], len(rows) - min(len(rows), max_segments)


segment_key = st.sampled_from(
    [f"department=d{i}" for i in range(4)]
    + [f"channel=c{i}" for i in range(3)]
    + [f"agent=a{i}" for i in range(12)]
    + [f"department=d{i}|channel=c{j}" for i in range(2) for j in range(2)]
)


@settings(max_examples=60, deadline=None)
@given(
    answers=st.lists(st.tuples(segment_key, st.integers(0, 10)), min_size=1, max_size=80),
    max_segments=st.integers(0, 25),
    refreshed=st.booleans(),
)
def test_exported_segments_equal_a_full_sort(
    answers: list[tuple[str, int]], max_segments: int, refreshed: bool
) -> None:
    state = state_of(answers)
    gauges = WindowGauges()
    gauges.attach(state, max_segments, DIMENSIONS)
    if refreshed:  # as /metrics does it: the ranking in steps first
        gauges.STEP = 3
        asyncio.run(gauges.refresh())
    want, dropped = brute_force(state, max_segments)
    assert exported(gauges) == (want, dropped)


def test_a_scrape_ranks_in_steps_and_lets_the_loop_run() -> None:
    answers = [(f"agent=a{i}", i % 11) for i in range(5_000)]
    state = state_of(answers)
    gauges = WindowGauges()
    gauges.attach(state, 50, DIMENSIONS)
    want = exported(gauges)

    # 5,001 segments, 2,000 per step: the loop ran other work between the steps
    _, turns = asyncio.run(with_other_work(gauges.refresh()))
    assert turns >= 2
    assert exported(gauges) == want  # the refreshed choice, used by the next collect
    assert gauges._prepared is None  # and used once: a later plain collect ranks anew


def test_a_scrape_writes_what_a_plain_render_writes_and_lets_the_loop_run() -> None:
    state = state_of([(f"agent=a{i}", i % 11) for i in range(5_000)])
    metrics.WINDOW_GAUGES.attach(state, 500, DIMENSIONS)
    try:
        want = _window_lines(metrics.render()[0])

        (body, _), turns = asyncio.run(with_other_work(metrics.scrape()))
        assert _window_lines(body) == want
        assert len(want) > 500 * 3  # 500 segments x 3 windows of gauges, at least
        # ranked in 3 steps, statistics in 5: 8 turns; the text written in a thread
        # gives the loop at least one more while it waits (written on the loop: 8 exactly;
        # how many more depends on the machine's load, so no more is asserted)
        assert turns > 8, turns
    finally:
        metrics.WINDOW_GAUGES.state = None


def _window_lines(body: bytes) -> list[str]:
    return [line for line in body.decode().splitlines() if "nps_pipeline_window_" in line]


async def with_other_work(work: Awaitable[T]) -> tuple[T, int]:
    """``work``'s result and how many turns another task (e.g. the scoring stage,
    waiting for its turn) got on the event loop while it ran."""
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    task = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    started = turns
    result = await work
    task.cancel()
    return result, turns - started
