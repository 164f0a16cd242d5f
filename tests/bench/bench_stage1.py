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
(Kafka's partition of every keyed record, aiokafka's record-batch builders) and the
batches built with the worker's codec (``--compression``, ``NPS_COMPRESSION``'s
default: snappy), whose sizes are printed per topic. Not included: the network, acks,
commits, stage 2. Comment analytics are off unless ``--text`` (then in the child
process, as in the worker). A fresh stage per run (the dedupe sees new ids), after a
warm-up run on other records; the best of ``--repeats`` runs is printed. ``--profile``
prints cProfile's top functions of one run instead.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import time

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

from pipeline.batchio import MAX_BATCH_BYTES, BatchProducer, partition_of
from pipeline.scoring import ScoringStage
from pipeline.scoring_service import ScoringConsumer
from pipeline.settings import DEFAULT_COMPRESSION, Compression, Settings, load_settings
from pipeline.validate import RawRecord
from tests.bench.bench_text import stage_records

#: aiokafka's codec numbers
CODECS = {
    Compression.NONE: DefaultRecordBatch.CODEC_NONE,
    Compression.GZIP: DefaultRecordBatch.CODEC_GZIP,
    Compression.SNAPPY: DefaultRecordBatch.CODEC_SNAPPY,
    Compression.LZ4: DefaultRecordBatch.CODEC_LZ4,
    Compression.ZSTD: DefaultRecordBatch.CODEC_ZSTD,
}


def run(
    settings: Settings,
    records: list[RawRecord],
    batch: int = 1000,
    sizes: dict[str, list[int]] | None = None,
) -> float:
    """Seconds of stage-1 CPU for ``records`` (see the module docstring). ``sizes``
    receives per topic [records' key + value bytes, record batches' bytes as built]."""
    codec = CODECS[settings.compression]
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
    service.tokens = dict.fromkeys(range(settings.topic_partitions), 1 << 32)  # fenced
    if stage.text is not None:
        stage.text.start()  # one child per process, shared by the runs
    began = time.perf_counter()
    for i in range(0, len(records), batch):
        chunk = records[i : i + batch]
        parts = []
        for partition in sorted({r.partition for r in chunk}):
            polled = [r for r in chunk if r.partition == partition]
            out = stage.process(polled)
            parts.append(service._part(partition, polled[0].offset, polled[-1].offset + 1, out))
        for outputs in (service._progress(parts), service._records(parts)):
            builders: dict[tuple[str, int], BatchBuilder] = {}
            for topic, partition, key, value in outputs:
                if partition is None:
                    assert key is not None
                    partition = partition_of(key, producer._partitions[topic])
                builder = builders.get((topic, partition))
                if builder is None:
                    builder = builders[(topic, partition)] = BatchBuilder(MAX_BATCH_BYTES, codec)
                builder.append(key=key, value=value, timestamp=None)
                if sizes is not None:
                    sizes.setdefault(topic, [0, 0])[0] += len(key or b"") + len(value or b"")
            for (topic, _), builder in builders.items():
                built = builder._build()  # what BatchProducer.send hands to the broker
                if sizes is not None:
                    sizes[topic][1] += len(built)
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="records (20,000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (3)")
    parser.add_argument("--comment-share", type=float, default=0.4, help="(0.4)")
    parser.add_argument("--text", action="store_true", help="comment analytics on")
    parser.add_argument("--profile", action="store_true", help="cProfile one run")
    parser.add_argument(
        "--compression",
        choices=[c.value for c in Compression],
        default=DEFAULT_COMPRESSION.value,
        help=f"codec of the record batches (the worker's default: {DEFAULT_COMPRESSION.value})",
    )
    args = parser.parse_args(argv)
    settings = load_settings(text_analytics=args.text, compression=args.compression)
    # the worker's collector thresholds: with Python's default (700) a change that keeps
    # more containers alive measured ~3 µs per event slower here and the same in the worker
    gc.set_threshold(*settings.gc_thresholds)
    records = stage_records(args.events, args.comment_share, seed=7)
    run(settings, stage_records(5000, args.comment_share, seed=8))  # warm-up
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(run, settings, records)
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
        return
    sizes: dict[str, list[int]] = {}
    best = min(run(settings, records, sizes=sizes if not i else None) for i in range(args.repeats))
    print(
        f"stage 1, {args.events:,} records, text analytics {'on' if args.text else 'off'}, "
        f"{args.compression} batches: {args.events / best:,.0f} events/s, "
        f"{best / args.events * 1e6:.1f} µs/event (best of {args.repeats})"
    )
    for topic, (raw, built) in sorted(sizes.items()):
        print(
            f"  {topic}: {raw / args.events:,.0f} B of keys and values per event, "
            f"{built / args.events:,.0f} B in record batches ({raw / built:.1f}x)"
        )


if __name__ == "__main__":
    main()
