"""Benchmark of stage 1's CPU per event as the worker spends it, without Kafka.

Run from the repository root::

    python -m tests.bench.bench_stage1                       # 20,000 records, best of 3
    python -m tests.bench.bench_stage1 --events 40000 --profile

Per batch of 1,000 simulator records (40% commented, 4 raw partitions, event times in
the last five minutes) it does what :class:`pipeline.scoring_service.ScoringConsumer`
does between poll and send: :meth:`ScoringStage.process <pipeline.scoring.ScoringStage
.process>` per raw partition, the progress records and the output records
(``_progress`` / ``_records``: packed deltas, partitions of the deltas), then the
per-record work of :meth:`BatchProducer.send <pipeline.batchio.BatchProducer.send>`
(Kafka's partition of every keyed record, aiokafka's record-batch builders). Not
included: the network, acks, commits, stage 2. Comment analytics are off unless
``--text`` (then in the child process, as in the worker). A fresh stage per run (the
dedupe sees new ids), after a warm-up run on other records; the best of ``--repeats``
runs is printed. ``--profile`` prints cProfile's top functions of one run instead.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from aiokafka.producer.message_accumulator import BatchBuilder

from pipeline.batchio import MAX_BATCH_BYTES, BatchProducer, partition_of
from pipeline.scoring import ScoringStage
from pipeline.scoring_service import ScoringConsumer, _Part
from pipeline.settings import Settings, load_settings
from pipeline.validate import RawRecord
from tests.bench.bench_text import stage_records


def run(settings: Settings, records: list[RawRecord], batch: int = 1000) -> float:
    """Seconds of stage-1 CPU for ``records`` (see the module docstring)."""
    stage = ScoringStage(settings)
    producer = BatchProducer("unused:9092", max_request_size=1 << 20, client_id="bench")
    progress_topic = f"{settings.app_id}-scoring-progress"
    topics = (settings.topic_deltas, progress_topic, settings.topic_scored)
    producer._partitions = dict.fromkeys(
        (*topics, settings.topic_deadletter, settings.topic_followups), settings.topic_partitions
    )
    service = ScoringConsumer.__new__(ScoringConsumer)  # its methods, no consumer
    service.settings, service.stage, service.producer = settings, stage, producer
    service.progress_topic = progress_topic
    if stage.text is not None:
        stage.text.start()  # one child per process, shared by the runs
    began = time.perf_counter()
    for i in range(0, len(records), batch):
        chunk = records[i : i + batch]
        parts = []
        for partition in sorted({r.partition for r in chunk}):
            polled = [r for r in chunk if r.partition == partition]
            out = stage.process(polled)
            parts.append(_Part(partition, polled[0].offset, polled[-1].offset + 1, out))
        for outputs in (service._progress(parts), service._records(parts)):
            builders: dict[tuple[str, int], BatchBuilder] = {}
            for topic, partition, key, value in outputs:
                if partition is None:
                    assert key is not None
                    partition = partition_of(key, producer._partitions[topic])
                builder = builders.get((topic, partition))
                if builder is None:
                    builder = builders[(topic, partition)] = BatchBuilder(MAX_BATCH_BYTES, 0)
                builder.append(key=key, value=value, timestamp=None)
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="records (20,000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (3)")
    parser.add_argument("--comment-share", type=float, default=0.4, help="(0.4)")
    parser.add_argument("--text", action="store_true", help="comment analytics on")
    parser.add_argument("--profile", action="store_true", help="cProfile one run")
    args = parser.parse_args(argv)
    settings = load_settings(text_analytics=args.text)
    records = stage_records(args.events, args.comment_share, seed=7)
    run(settings, stage_records(5000, args.comment_share, seed=8))  # warm-up
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(run, settings, records)
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
        return
    best = min(run(settings, records) for _ in range(args.repeats))
    print(
        f"stage 1, {args.events:,} records, text analytics {'on' if args.text else 'off'}: "
        f"{args.events / best:,.0f} events/s, {best / args.events * 1e6:.1f} µs/event "
        f"(best of {args.repeats})"
    )


if __name__ == "__main__":
    main()
