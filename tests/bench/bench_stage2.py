"""Benchmark of the windows stage (stage 2) per event on the bench dataset, without Kafka.

Run from the repository root::

    python -m tests.bench.bench_stage2                  # 120,000 records, 10,000 agents
    python -m tests.bench.bench_stage2 --profile        # cProfile's top functions instead

The dataset of ``nps-pipeline bench`` (:func:`pipeline.bench.dataset.generate`: every
default segment of each event, mostly ordered event times, 2% late) is scored by
:class:`~pipeline.scoring.ScoringStage` in batches of 1,000 (not timed) and packed into
deltas records per deltas partition as stage 1 sends them
(:func:`~pipeline.scoring_service.pack_deltas`; ``crc32 % 4`` stands in for Kafka's
partitioner). Timed: what the windows agent does with them, 16 records per batch
(:meth:`WindowState.apply_packed <pipeline.aggregate.WindowState.apply_packed>` record by
record, then :meth:`~pipeline.aggregate.WindowState.changelog_write`: the changelog
records with their partitions and the marks). Not included:
alert rounds, snapshots, Faust and the network.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import time
import zlib

from pipeline.aggregate import WindowState
from pipeline.app import DELTAS_PER_BATCH
from pipeline.bench.dataset import generate
from pipeline.scoring import ScoringStage
from pipeline.scoring_service import encode_groups, pack_deltas
from pipeline.settings import load_settings
from pipeline.validate import RawRecord

PARTITIONS = 4


def packed_records(events: int, segments: int) -> list[tuple[int, bytes]]:
    settings = load_settings(text_analytics=False)
    data = generate(events, segments, end=time.time() - 60)
    stage = ScoringStage(settings)
    packed: list[tuple[int, bytes]] = []
    for b in range(0, len(data.values), 1000):
        batch = [
            RawRecord("raw", i % PARTITIONS, i, None, value)
            for i, value in enumerate(data.values[b : b + 1000], b)
        ]
        out = stage.process(batch)
        per = encode_groups(out.deltas, PARTITIONS, lambda key, n: zlib.crc32(key.encode()) % n)
        packed.extend(
            (p, pack_deltas([(0, b + len(batch), per[p])], out.clock or 0.0))
            for p in range(PARTITIONS)
        )
    return packed


def run(packed: list[tuple[int, bytes]]) -> tuple[float, int]:
    """Seconds of stage-2 CPU and changelog records written."""
    settings = load_settings(text_analytics=False)
    state = WindowState(settings)
    written = 0
    started = time.perf_counter()
    for i in range(0, len(packed), DELTAS_PER_BATCH):
        changes: dict[bytes, bytes | None] = {}
        for partition, value in packed[i : i + DELTAS_PER_BATCH]:
            changes.update(state.apply_packed([(partition, value)]))
        written += len(state.changelog_write(changes.items()))
    return time.perf_counter() - started, written


def main() -> None:
    parser = argparse.ArgumentParser(
        description="The windows stage per event on the bench dataset, in process."
    )
    parser.add_argument("--events", type=int, default=120_000, help="records (default 120,000)")
    parser.add_argument("--segments", type=int, default=10_000, help="agents (default 10,000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs, best printed (default 3)")
    parser.add_argument("--profile", action="store_true", help="cProfile one run instead")
    args = parser.parse_args()
    gc.set_threshold(*load_settings().gc_thresholds)  # as the worker
    print(f"scoring {args.events:,} records into deltas records ...", flush=True)
    packed = packed_records(args.events, args.segments)
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        run(packed)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)
        return
    best, written = min(run(packed) for _ in range(args.repeats))
    print(
        f"stage 2: {args.events / best:,.0f} events/s, {best * 1e6 / args.events:.1f} µs/event "
        f"(best of {args.repeats}); {len(packed):,} deltas records, "
        f"{written / args.events:.2f} changelog records per event"
    )


if __name__ == "__main__":
    main()
