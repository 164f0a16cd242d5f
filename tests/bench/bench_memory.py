"""Where a worker's memory goes: the benchmark dataset through both stages, in process.

Run from the repository root::

    python -m tests.bench.bench_memory                 # 300,000 records, 100,000 agents
    python -m tests.bench.bench_memory --text --trace  # + comment analytics, tracemalloc
    python -m tests.bench.bench_memory --dedupe-ids 50000  # bytes per remembered id

The records of :func:`pipeline.bench.dataset.generate` (what ``nps-pipeline bench``
produces) go through ``ScoringStage.process`` in batches of ``NPS_BATCH_SIZE``, their
deltas are packed per deltas partition as the scoring service packs them
(:func:`pipeline.scoring_service.pack_deltas`) and applied with
``WindowState.apply_packed``, the alert engine noting the detractor comments and the
business counters counting, as in the worker; no Kafka, no Faust. Printed: the growth
of the resident set over the run. With ``--trace`` (about 5x slower; the RSS then
includes tracemalloc's own records): the top allocation sites, and the bytes each part
holds, measured by dropping the parts one at a time (the dedupe memory, the alert
engine's comments, the emerging topics, the metric label cache, the window state).
With ``--text`` comment analytics are on as in the worker (the analysis in its child
process, theme segments, emerging topics); the child's memory is not counted here.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time
import tracemalloc
from collections.abc import Sequence

from pipeline import metrics
from pipeline.aggregate import WindowState
from pipeline.alert_rules import load_rules
from pipeline.alerts import AlertEngine
from pipeline.batchio import BatchProducer
from pipeline.bench.dataset import CHANNELS, DEPARTMENTS, PRODUCTS, REGIONS, agent_name, generate
from pipeline.dedupe import DuplicateFilter, content_digest, make_entry
from pipeline.scoring import ScoringStage
from pipeline.scoring_service import encode_groups, pack_deltas
from pipeline.settings import Settings, load_settings
from pipeline.text.emerging import EmergingTopics
from pipeline.validate import RawRecord

RAW_TOPIC = "feedback.raw"


def rss_mib() -> float:
    """Resident set size of this process (Linux), MiB."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def dedupe_bytes_per_id(count: int) -> None:
    """Bytes per remembered id (tracemalloc, id string and dict node included), entries
    shaped as the scoring stage makes them (interned segment values, 18% with an
    account value)."""
    rng = random.Random(1)
    agents = [sys.intern(agent_name(i)) for i in range(10_000)]
    ids = [f"bench-{i:09d}" for i in range(count)]
    now = time.time()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    dedupe = DuplicateFilter(86_400, count)
    for i, event_id in enumerate(ids):
        value = round(rng.uniform(1_000, 250_000), 2) if rng.random() < 0.18 else None
        fields = [sys.intern(rng.choice(c)) for c in (DEPARTMENTS, PRODUCTS, CHANNELS, REGIONS)]
        contribution = (
            int((now - 7200 + i * 0.1) // 60) * 60,
            "nps",
            rng.randint(0, 10),
            value,
            fields[0],
            rng.choice(agents),
            *fields[1:],
            None,
        )
        digest = content_digest(event_id.encode())
        dedupe.remember(event_id, make_entry(digest, time.time(), 0, contribution))
    dedupe.take_journal()
    held = tracemalloc.get_traced_memory()[0] - base + sum(map(sys.getsizeof, ids))
    tracemalloc.stop()
    print(f"dedupe: {held / count:.0f} bytes per remembered id ({count:,} ids)")


def raw_records(values: list[bytes], partitions: int) -> list[RawRecord]:
    """``values`` as records of the raw topic, spread round-robin over ``partitions``."""
    return [
        RawRecord(RAW_TOPIC, i % partitions, i // partitions, None, value)
        for i, value in enumerate(values)
    ]


def through_both_stages(
    raw: list[RawRecord],
    stage: ScoringStage,
    state: WindowState,
    engine: AlertEngine,
    settings: Settings,
    producer: BatchProducer,
) -> None:
    """``raw`` through ``stage`` in batches of ``NPS_BATCH_SIZE``, each batch's deltas
    packed per deltas partition and applied to ``state`` as the worker does."""
    size, partitions = settings.batch_size, settings.topic_partitions
    for i in range(0, len(raw), size):
        out = stage.process(raw[i : i + size])
        groups = encode_groups(out.deltas, partitions, producer.segment_partition)
        clock = out.clock if out.clock is not None else 0.0
        for partition, items in enumerate(groups):
            record = pack_deltas([(0, i + size, items)], clock)
            state.apply_packed([(partition, record)], engine.note_comments)
        state.take_dirty()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--segments", type=int, default=100_000)
    parser.add_argument("--trace", action="store_true", help="tracemalloc top sites")
    parser.add_argument(
        "--text", action="store_true", help="comment analytics on (child process, themes)"
    )
    parser.add_argument(
        "--dedupe-ids", type=int, default=0, help="only: bytes per remembered id over N ids"
    )
    args = parser.parse_args(argv)
    if args.dedupe_ids:
        dedupe_bytes_per_id(args.dedupe_ids)
        return 0
    settings = load_settings(text_analytics=args.text)
    data = generate(args.events, args.segments, end=time.time() - 60)
    raw = raw_records(data.values, settings.topic_partitions)
    del data
    counters = metrics.SegmentCounters(settings.metrics_dimensions)
    stage = ScoringStage(settings, counters)
    state = WindowState(settings)
    topics = EmergingTopics() if args.text else None
    engine = AlertEngine(load_rules(None), topics)
    # partitions the segments as the worker's does (its cache of them held to the end)
    producer = BatchProducer("unused:9092", max_request_size=1 << 20, client_id="bench")
    gc.collect()
    if args.trace:
        tracemalloc.start(1)
    before = rss_mib()
    t0 = time.perf_counter()
    through_both_stages(raw, stage, state, engine, settings, producer)
    seconds = time.perf_counter() - t0
    del raw
    gc.collect()
    after = rss_mib()
    segments = sum(len(p.segments) for p in state.partitions.values())
    buckets = sum(len(w) for p in state.partitions.values() for w in p.segments.values())
    print(
        f"{args.events:,} records, {segments:,} segments, {buckets:,} stored buckets, "
        f"{len(stage.dedupe):,} remembered ids, {seconds:.1f} s"
    )
    print(f"RSS growth {after - before:,.1f} MiB")
    if not args.trace:
        return 0
    snapshot = tracemalloc.take_snapshot()
    print(f"traced {tracemalloc.get_traced_memory()[0] / 2**20:,.1f} MiB; top sites:")
    for stat in snapshot.statistics("lineno")[:20]:
        frame = stat.traceback[0]
        where = f"{os.path.relpath(frame.filename)}:{frame.lineno}"
        print(f"  {stat.size / 2**20:8.1f} MiB {stat.count:>10,}  {where}")
    del snapshot
    parts = (
        ("dedupe memory", stage.dedupe._seen.clear),
        ("alert comments", engine.comments.clear),
        ("emerging topics", lambda: topics.recent.clear() if topics is not None else None),
        ("metric labels", counters._labels.clear),
        ("window state", state.partitions.clear),
    )
    print("held by each part (traced bytes freed when it is dropped):")
    for name, drop in parts:
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
        drop()
        gc.collect()
        print(f"  {name:15} {(held - tracemalloc.get_traced_memory()[0]) / 2**20:8.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
