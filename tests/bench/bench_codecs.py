"""What each NPS_COMPRESSION codec costs the producing worker per record, and its bytes.

Run from the repository root::

    python -m tests.bench.bench_codecs                  # batches of 10, 50 and 200
    python -m tests.bench.bench_codecs --batch 50 --records 40000

Builds Kafka record batches with aiokafka's ``DefaultRecordBatchBuilder`` (what the
workers' producers run on their event loop, compression included) from the benchmark
dataset's raw records (:func:`pipeline.bench.dataset.generate`, ~300 B of JSON each) and
prints, per codec and batch size, the µs per record (best of ``--repeats``) and the bytes
per record in the built batches. Small batches show each codec's fixed cost per batch:
the workers produce many (per partition, per scoring batch; changelog and snapshot
slices).
"""

from __future__ import annotations

import argparse
import time

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from pipeline.bench.dataset import generate
from tests.bench.bench_stage1 import CODECS


def build(values: list[bytes], codec: int, batch: int) -> tuple[float, int]:
    """Seconds to build ``values`` into batches of ``batch`` records, and their bytes."""
    began = time.perf_counter()
    size = 0
    for first in range(0, len(values), batch):
        builder = DefaultRecordBatchBuilder(
            magic=2,
            compression_type=codec,
            is_transactional=False,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            batch_size=1 << 24,
        )
        for offset, value in enumerate(values[first : first + batch]):
            builder.append(offset, timestamp=None, key=None, value=value, headers=[])
        size += len(builder.build())
    return time.perf_counter() - began, size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000, help="records (20,000)")
    parser.add_argument(
        "--batch", type=int, action="append", help="records per batch (10, 50 and 200)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure, best kept (3)")
    args = parser.parse_args(argv)
    values = generate(args.records, 1000, end=time.time()).values
    mean = sum(map(len, values)) / len(values)
    print(f"{len(values):,} records of the benchmark dataset, {mean:.0f} B each on average")
    print(f"{'batch':>6} {'codec':<7} {'µs/record':>10} {'B/record':>9}")
    for batch in args.batch or [10, 50, 200]:
        for name, codec in CODECS.items():
            runs = [build(values, codec, batch) for _ in range(args.repeats)]
            seconds = min(s for s, _ in runs)
            size = runs[0][1]
            print(
                f"{batch:>6} {name.value:<7} {seconds / len(values) * 1e6:>10.2f} "
                f"{size / len(values):>9.0f}"
            )


if __name__ == "__main__":
    main()
