"""What a ``/metrics`` scrape costs a worker with many segments, and how long it holds
the event loop.

Run from the repository root::

    python -m tests.bench.bench_scrape                          # 300,000 records, 100,000 agents
    python -m tests.bench.bench_scrape --events 60000 --segments 10000

The records of :func:`pipeline.bench.dataset.generate` go through ``ScoringStage`` and
``WindowState.apply_packed`` in process (as ``tests.bench.bench_memory`` does, the
worker's collector thresholds set), then the window gauges are attached as in the worker
and a scrape is timed ``--repeats`` times two ways: in one go (``metrics.render()``, the
ranking of every segment inside it), and as ``/metrics`` does it (``await
metrics.scrape()``: ranking in steps, the text written in a thread), with a task beside
it counting event-loop turns: the longest time between two turns is how long the scrape
held the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Sequence

from pipeline import metrics
from pipeline.aggregate import WindowState
from pipeline.alert_rules import load_rules
from pipeline.alerts import AlertEngine
from pipeline.batchio import BatchProducer
from pipeline.bench.dataset import generate
from pipeline.scoring import ScoringStage
from pipeline.settings import load_settings
from tests.bench.bench_memory import raw_records, through_both_stages


def build(events: int, segments: int) -> tuple[WindowState, metrics.SegmentCounters]:
    settings = load_settings(text_analytics=False)
    gc.set_threshold(*settings.gc_thresholds)
    data = generate(events, segments, end=time.time() - 60)
    raw = raw_records(data.values, settings.topic_partitions)
    counters = metrics.SegmentCounters(settings.metrics_dimensions)
    stage = ScoringStage(settings, counters)
    state = WindowState(settings)
    producer = BatchProducer("unused:9092", max_request_size=1 << 20, client_id="bench")
    engine = AlertEngine(load_rules(None), None)
    through_both_stages(raw, stage, state, engine, settings, producer)
    metrics.WINDOW_GAUGES.attach(state, settings.metrics_max_segments, settings.metrics_dimensions)
    return state, counters


async def stepped_scrape(counters: metrics.SegmentCounters) -> tuple[float, float, int, int]:
    """(seconds, longest loop hold, loop turns, bytes) of a scrape as ``/metrics`` does it."""
    holds: list[float] = []

    async def other_work() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0)
            now = time.perf_counter()
            holds.append(now - last)
            last = now

    task = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    started = time.perf_counter()
    body, _ = await metrics.scrape(counters.after_scrape)
    await asyncio.sleep(0)  # the turn after the scrape: its last hold is measured too
    seconds = time.perf_counter() - started
    task.cancel()
    return seconds, max(holds), len(holds), len(body)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300_000, help="records (300,000)")
    parser.add_argument("--segments", type=int, default=100_000, help="agents (100,000)")
    parser.add_argument("--repeats", type=int, default=3, help="scrapes of each kind (3)")
    args = parser.parse_args(argv)
    state, counters = build(args.events, args.segments)
    segments = sum(len(p.segments) for p in state.partitions.values())
    print(f"{segments:,} segments")
    for _ in range(args.repeats):
        started = time.perf_counter()
        body, _ = metrics.render(counters.after_scrape)
        held = time.perf_counter() - started
        print(f"  in one go: loop held {held * 1000:,.0f} ms ({len(body):,} bytes)")
    for _ in range(args.repeats):
        seconds, hold, turns, size = asyncio.run(stepped_scrape(counters))
        print(
            f"  in steps:  {seconds * 1000:,.0f} ms, loop held at most {hold * 1000:,.0f} ms "
            f"({turns} turns of other work; {size:,} bytes)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
