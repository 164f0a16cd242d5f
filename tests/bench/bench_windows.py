"""In-process benchmark of the windowing path (no Kafka): throughput, latency, memory.

Run from the repository root::

    python -m tests.bench.bench_windows            # default run (< ~3 min on 2 cores)
    python -m tests.bench.bench_windows --quick    # 20,000 events, smaller memory test
    python -m tests.bench.bench_windows --profile  # + cProfile top functions per stage

What is measured, per target number of segments (``--segments``, default 1,000 and
100,000):

* Synthetic feedback events (``--events``, default 200,000), pre-encoded as JSON bytes
  with orjson. Only the ``agent`` dimension is windowed (settings ``dimensions=["agent"]``,
  ``combinations=[]``), so the segments are ``overall`` plus one per agent; agents are
  dealt round-robin then shuffled, so every target segment receives events. Event times
  advance evenly over ``--span-hours`` (default 2 h) of event time ending one minute
  before the wall clock (the future tolerance is checked against the wall clock), with
  +-20 s jitter and 2 % of events delayed by up to 5 min -- inside the allowed lateness,
  so no event is dropped as late.
* (a) stage 1, ``ScoringStage.process`` on batches of ``--batch-size`` raw records
  (validation, dedupe, scoring, encoding of scored events and deltas, Prometheus
  counters included);
* (b) stage 2, ``WindowState.apply_packed`` on the deltas records stage 1 produced
  (per scoring batch one packed record per deltas partition, the segments partitioned
  by a hash of their key, as the scoring service packs them), 16 records per call (as
  the ``windows`` agent takes them from the deltas topic). The window state starts
  empty; its table changes are built but not stored anywhere;
* (c) both combined: source events per second of stage-1 plus stage-2 time.

Per stage: per-batch latency p50/p99/max and the cyclic-GC time spent inside the
timed calls (``gc.callbacks``).

Memory (``--memory-segments``, default 10,000 and 100,000): a ``WindowState`` whose
segments each hold ``--memory-buckets`` (default 30) non-empty one-minute buckets
spread over the last 24 h, built through ``apply_packed`` in a fresh interpreter (so
that memory freed by the throughput runs is not reused): growth of the resident set
over the build, and, up to ``--tracemalloc-max`` segments (tracemalloc triples the
build time), the bytes still held by Python objects once transients are freed.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import platform
import pstats
import random
import shlex
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import orjson

from pipeline.aggregate import WindowState
from pipeline.app import DELTAS_PER_BATCH
from pipeline.bench.dataset import (
    CHANNELS,
    DEPARTMENTS,
    PRODUCTS,
    REGIONS,
    SURVEY_WEIGHTS,
    SURVEYS,
    agent_name,
)
from pipeline.scoring import ScoringStage
from pipeline.scoring_service import encode_groups, pack_deltas
from pipeline.settings import Settings, load_settings
from pipeline.validate import RawRecord
from pipeline.windows import Counts
from schemas.feedback import SCALES, example_event

MODULE = "tests.bench.bench_windows"
ROOT = Path(__file__).resolve().parents[2]
RAW_TOPIC = "feedback.raw"
DAY = 86_400

COMMENTS = (
    "Quick and friendly support.",
    "Took three calls to get an answer, and the second agent had no notes from the first.",
    "ok",
    "The new dashboard is confusing; I could not find the export button.",
    "Great product, pricing is a bit high for small teams.",
)

#: (deltas partition, packed deltas record)
DeltaRecord = tuple[int, bytes]


# --------------------------------------------------------------------------- events


def generate_events(
    count: int, segments: int, span_seconds: float, end: float, rng: random.Random
) -> list[bytes]:
    """``count`` valid events as JSON bytes, in arrival order (event time a little out of order)."""
    agents = [i % segments for i in range(count)]
    rng.shuffle(agents)
    start = end - span_seconds
    step = span_seconds / count
    out: list[bytes] = []
    for i, agent in enumerate(agents):
        ts = start + i * step + rng.uniform(-20.0, 20.0)
        if rng.random() < 0.02:
            ts -= rng.uniform(0.0, 300.0)
        ts = min(ts, end)
        survey = rng.choices(SURVEYS, SURVEY_WEIGHTS)[0]
        low, high = SCALES[survey]
        event = example_event(
            event_id=f"bench-{i:08d}",
            event_time=datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds"),
            survey_type=survey,
            score=rng.randint(low, high),
            comment=rng.choice(COMMENTS) if rng.random() < 0.4 else None,
            customer_id=f"cust-{rng.randrange(50_000)}",
            department=rng.choice(DEPARTMENTS),
            agent=agent_name(agent),
            product=rng.choice(PRODUCTS),
            channel=rng.choice(CHANNELS),
            region=rng.choice(REGIONS),
        )
        if survey == "nps" and rng.random() < 0.3:
            event["account_value"] = round(rng.uniform(1_000, 250_000), 2)
        out.append(orjson.dumps(event))
    return out


#: (partition, offset, key, value) of a raw record; plain tuples, which the GC stops tracking
RawTuple = tuple[int, int, bytes, bytes]


def raw_batches(values: list[bytes], batch_size: int, partitions: int) -> list[list[RawTuple]]:
    """Raw records keyed by event id (partition = hash of the key), in batches."""
    offsets = [0] * partitions
    records: list[RawTuple] = []
    for i, value in enumerate(values):
        key = f"bench-{i:08d}".encode()
        partition = zlib.crc32(key) % partitions
        records.append((partition, offsets[partition], key, value))
        offsets[partition] += 1
    return [records[i : i + batch_size] for i in range(0, len(records), batch_size)]


# --------------------------------------------------------------------------- stages


class GcTimer:
    """Seconds spent in the cyclic garbage collector (all generations, and gen 2 only)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full_seconds = 0.0
        self.full_runs = 0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._started = now
            return
        elapsed = now - self._started
        self.seconds += elapsed
        if info.get("generation") == 2:
            self.full_seconds += elapsed
            self.full_runs += 1

    def snapshot(self) -> tuple[float, float, int]:
        return self.seconds, self.full_seconds, self.full_runs


GC = GcTimer()


@dataclass
class StageRun:
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    gc_seconds: float = 0.0
    gc_full_seconds: float = 0.0
    gc_full_runs: int = 0
    _gc: tuple[float, float, int] = (0.0, 0.0, 0)

    def start_gc(self) -> None:
        self._gc = GC.snapshot()

    def stop_gc(self) -> None:
        now = GC.snapshot()
        self.gc_seconds += now[0] - self._gc[0]
        self.gc_full_seconds += now[1] - self._gc[1]
        self.gc_full_runs += now[2] - self._gc[2]


@dataclass
class ThroughputResult:
    segments: int
    events: int
    event_bytes: float
    stage1: StageRun
    stage2: StageRun
    scored: int
    deadletters: Counter[str]
    delta_records: int
    segments_seen: int
    changes: int


def _crc32_partition(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


def run_stage1(
    settings: Settings, batches: list[list[RawTuple]]
) -> tuple[StageRun, list[DeltaRecord], int, Counter[str]]:
    stage = ScoringStage(settings)
    partitions = settings.topic_partitions
    run = StageRun()
    deltas: list[DeltaRecord] = []
    scored = 0
    reasons: Counter[str] = Counter()
    clock = time.perf_counter
    for end, raw in enumerate(batches, 1):  # end: the batch's end offset, increasing
        batch = [RawRecord(RAW_TOPIC, *fields) for fields in raw]  # as the Faust agent does
        run.start_gc()
        t0 = clock()
        out = stage.process(batch)
        elapsed = clock() - t0
        run.stop_gc()
        run.seconds += elapsed
        run.latencies_ms.append(elapsed * 1000)
        scored += len(out.scored)
        for _key, letter in out.deadletters:
            reasons[orjson.loads(letter)["reason"]] += 1
        if out.clock is None:
            continue
        per_partition = encode_groups(out.deltas, partitions, _crc32_partition)
        for partition, items in enumerate(per_partition):
            deltas.append((partition, pack_deltas([(0, end, items)], out.clock)))
    return run, deltas, scored, reasons


def run_stage2(settings: Settings, deltas: list[DeltaRecord]) -> tuple[StageRun, WindowState, int]:
    state = WindowState(settings)
    size = DELTAS_PER_BATCH
    run = StageRun()
    changes = 0
    clock = time.perf_counter
    for i in range(0, len(deltas), size):
        batch = deltas[i : i + size]
        run.start_gc()
        t0 = clock()
        result = state.apply_packed(batch)
        elapsed = clock() - t0
        run.stop_gc()
        run.seconds += elapsed
        run.latencies_ms.append(elapsed * 1000)
        changes += len(result)
    return run, state, changes


def bench_throughput(
    args: argparse.Namespace, segments: int, rng: random.Random
) -> ThroughputResult:
    settings = bench_settings(args)
    end = time.time() - 60
    values = generate_events(args.events, segments, args.span_hours * 3600, end, rng)
    batches = raw_batches(values, settings.batch_size, settings.topic_partitions)
    event_bytes = sum(map(len, values)) / len(values)
    del values
    gc.collect()
    stage1, deltas, scored, reasons = run_stage1(settings, batches)
    del batches
    gc.collect()
    stage2, state, changes = run_stage2(settings, deltas)
    return ThroughputResult(
        segments=segments,
        events=args.events,
        event_bytes=event_bytes,
        stage1=stage1,
        stage2=stage2,
        scored=scored,
        deadletters=reasons,
        delta_records=len(deltas),
        segments_seen=sum(len(p.segments) for p in state.partitions.values()),
        changes=changes,
    )


# --------------------------------------------------------------------------- memory


def memory_deltas(
    segments: int, buckets: int, now: float, bucket_seconds: int, partitions: int, seed: int
) -> list[DeltaRecord]:
    """One delta record per segment with ``buckets`` non-empty buckets over the last 24 h.

    Bucket contents come from a pool of 512 realistic bucket counts (1-4 answers each,
    30 % of NPS answers with an account value), packed as the scoring service packs
    deltas (:func:`pipeline.scoring_service.pack_deltas`), one group per record.
    """
    rng = random.Random(seed)
    pool: list[list[int | float]] = []
    for _ in range(512):
        counts = Counts()
        for _ in range(rng.randint(1, 4)):
            survey = rng.choices(SURVEYS, SURVEY_WEIGHTS)[0]
            low, high = SCALES[survey]
            value = round(rng.uniform(1_000, 250_000), 2) if rng.random() < 0.3 else None
            counts.add_event(survey, rng.randint(low, high), value)
        pool.append(counts.to_list())
    newest = int(now // bucket_seconds) * bucket_seconds
    slots = range(DAY // bucket_seconds)
    records: list[DeltaRecord] = []
    for index in range(segments):
        key = f"agent={agent_name(index)}"
        chosen = rng.sample(slots, min(buckets, len(slots)))
        document = {
            "b": [[newest - s * bucket_seconds, rng.choice(pool)] for s in chosen],
            "t": now,
        }
        value = pack_deltas([(0, index + 1, [(key, document)])], now)
        records.append((zlib.crc32(key.encode()) % partitions, value))
    return records


def rss_bytes() -> int:
    """Resident set size of this process (Linux), 0 where unknown."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def build_state(settings: Settings, records: list[DeltaRecord]) -> WindowState:
    state = WindowState(settings)
    size = settings.batch_size
    for i in range(0, len(records), size):
        state.apply_packed(records[i : i + size])
    state.take_dirty()  # drained by the snapshot timer in the real worker
    return state


def memory_worker(args: argparse.Namespace) -> dict[str, float | int | None]:
    """Runs in a fresh process: RSS delta of a build, then optionally tracemalloc of another."""
    settings = bench_settings(args)
    segments = args.memory_worker
    records = memory_deltas(
        segments,
        args.memory_buckets,
        time.time(),
        settings.bucket_seconds,
        settings.topic_partitions,
        args.seed,
    )
    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    state = build_state(settings, records)
    build_seconds = time.perf_counter() - t0
    gc.collect()
    rss_delta = rss_bytes() - before
    stored = sum(len(w) for p in state.partitions.values() for w in p.segments.values())
    del state
    gc.collect()
    traced: int | None = None
    if args.memory_trace:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        state = build_state(settings, records)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        del state
    return {
        "segments": segments,
        "stored_buckets": stored,
        "rss_delta": rss_delta,
        "traced": traced,
        "build_seconds": build_seconds,
    }


@dataclass
class MemoryResult:
    segments: int
    stored_buckets: int
    rss_delta: int
    traced: int | None
    build_seconds: float


def bench_memory(args: argparse.Namespace, segments: int) -> MemoryResult:
    """Measure in a fresh interpreter so that memory freed by earlier runs cannot be reused."""
    command = [
        sys.executable,
        "-m",
        MODULE,
        "--memory-worker",
        str(segments),
        "--memory-buckets",
        str(args.memory_buckets),
        "--batch-size",
        str(args.batch_size),
        "--partitions",
        str(args.partitions),
        "--seed",
        str(args.seed),
    ]
    if segments <= args.tracemalloc_max:
        command.append("--memory-trace")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"memory worker failed ({done.returncode}):\n{done.stderr}")
    return MemoryResult(**orjson.loads(done.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- profile


def profile_top(func: Callable[[], object], limit: int = 10) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    func()
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.strip_dirs().sort_stats(pstats.SortKey.CUMULATIVE).print_stats(limit + 5)
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    rows = [line for line in lines[start + 1 :] if "bench_windows.py" not in line]
    return "\n".join([lines[start], *rows[:limit]])


def bench_profile(args: argparse.Namespace, rng: random.Random) -> None:
    settings = bench_settings(args)
    segments = args.profile_segments
    events = args.profile_events
    values = generate_events(events, segments, args.span_hours * 3600, time.time() - 60, rng)
    batches = raw_batches(values, settings.batch_size, settings.topic_partitions)
    holder: dict[str, list[DeltaRecord]] = {}

    def stage1() -> None:
        holder["deltas"] = run_stage1(settings, batches)[1]

    def stage2() -> None:
        run_stage2(settings, holder["deltas"])

    print()
    print(f"cProfile, {events:,} events over {segments:,} agents (top 10 by cumulative time)")
    print("\nStage 1 (ScoringStage.process):")
    print(profile_top(stage1))
    print("\nStage 2 (WindowState.apply_packed):")
    print(profile_top(stage2))


# --------------------------------------------------------------------------- report


def bench_settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        dimensions=["agent"],
        combinations=[],
        metrics_dimensions=[],
        batch_size=args.batch_size,
        topic_partitions=args.partitions,
    )


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
            cwd=ROOT,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def git_revision() -> str:
    """Short commit, plus the measured code's files that differ from it."""
    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = [  # "XY path" (the output is stripped: the first line may lose its X)
        line.split(maxsplit=1)[-1]
        for line in git("status", "--porcelain", "--", "pipeline", "schemas").splitlines()
        if line.strip()
    ]
    if changed:
        rev += f" + uncommitted changes in {', '.join(changed)}"
    return rev


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_machine(argv: Sequence[str]) -> None:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("pydantic", "orjson", "prometheus-client")
    )
    print("nps-pipeline windowing benchmark (in-process, no Kafka)")
    print(f"command : python -m {MODULE}{' ' if argv else ''}{shlex.join(argv)}")
    print(f"machine : {usable} usable CPUs (nproc), {os.cpu_count()} online, {cpu_model()}")
    print(f"python  : {platform.python_implementation()} {platform.python_version()}, {versions}")
    print(f"os      : {platform.platform()}, load average {os.getloadavg()[0]:.2f} at start")
    print(f"git     : {git_revision()}")
    print(f"started : {datetime.now(UTC).isoformat(timespec='seconds')}")


def stage_row(name: str, segments: int, events: int, run: StageRun, extra: str) -> list[str]:
    lat = run.latencies_ms
    return [
        name,
        f"{segments:,}",
        f"{events / run.seconds:,.0f}",
        extra,
        f"{len(lat):,}",
        f"{percentile(lat, 50):.1f}",
        f"{percentile(lat, 99):.1f}",
        f"{max(lat):.1f}",
        f"{run.seconds:.2f}",
        f"{run.gc_seconds:.2f} ({run.gc_full_runs})",
    ]


def print_throughput(args: argparse.Namespace, results: list[ThroughputResult]) -> None:
    print()
    print(
        f"Throughput: {args.events:,} events per run, batches of {args.batch_size:,} records, "
        f"{args.span_hours:g} h of event time, dimensions=[agent] + overall,\n"
        f"windows 5m/1h/24h, 1-min buckets, {args.partitions} partitions"
    )
    rows: list[list[str]] = []
    for r in results:
        s1, s2 = r.stage1, r.stage2
        both = s1.seconds + s2.seconds
        rows.append(stage_row("1 score", r.segments, r.events, s1, ""))
        rows.append(
            stage_row("2 windows", r.segments, r.events, s2, f"{r.delta_records / s2.seconds:,.0f}")
        )
        gc_both = f"{s1.gc_seconds + s2.gc_seconds:.2f} ({s1.gc_full_runs + s2.gc_full_runs})"
        rows.append(
            [
                "1+2 combined",
                f"{r.segments:,}",
                f"{r.events / both:,.0f}",
                *[""] * 5,
                f"{both:.2f}",
                gc_both,
            ]
        )
    headers = [
        "stage",
        "target segs",
        "events/s",
        "delta rec/s",
        "batches",
        "p50 ms",
        "p99 ms",
        "max ms",
        "total s",
        "gc s (gen2 runs)",
    ]
    print(table(headers, rows))
    print(
        "events/s: source events per second of the stage's own time (stage 2: source events "
        "whose deltas it applied);\nbatches: stage 1 = raw-record batches, stage 2 = 16 "
        "packed deltas records; combined = events / (stage 1 s + stage 2 s);\n"
        "gc s: cyclic-GC time inside the timed calls (included in total s)."
    )
    print()
    details = [
        [
            f"{r.segments:,}",
            f"{r.event_bytes:,.0f}",
            f"{r.scored:,}",
            f"{sum(r.deadletters.values()):,}"
            + (f" ({dict(r.deadletters)})" if r.deadletters else ""),
            f"{r.delta_records:,}",
            f"{r.delta_records / r.events:.4f}",
            f"{r.segments_seen:,}",
            f"{r.changes:,}",
        ]
        for r in results
    ]
    headers = [
        "target segs",
        "bytes/event",
        "scored",
        "dead letters",
        "deltas records",
        "records/event",
        "segments in state",
        "table changes",
    ]
    print(table(headers, details))


def print_memory(args: argparse.Namespace, results: list[MemoryResult]) -> None:
    print()
    print(
        f"Memory of the window state: {args.memory_buckets} non-empty 1-min buckets per "
        "segment over the last 24 h, windows 5m/1h/24h, built with apply_packed in a fresh "
        "process"
    )
    rows = []
    for m in results:
        traced = m.traced
        rows.append(
            [
                f"{m.segments:,}",
                f"{m.stored_buckets:,}",
                f"{m.rss_delta / 2**20:,.1f}",
                f"{m.rss_delta / m.segments:,.0f}",
                f"{m.rss_delta / m.segments * 10_000 / 2**20:,.1f}",
                "-" if traced is None else f"{traced / 2**20:,.1f}",
                "-" if traced is None else f"{traced / m.segments:,.0f}",
                "-" if traced is None else f"{traced / m.stored_buckets:,.0f}",
                "-" if traced is None else f"{traced / m.segments * 10_000 / 2**20:,.1f}",
                f"{m.build_seconds:.1f}",
                f"{m.stored_buckets / m.build_seconds:,.0f}",
            ]
        )
    headers = [
        "segments",
        "buckets",
        "RSS MiB",
        "RSS B/seg",
        "RSS MiB/10k seg",
        "traced MiB",
        "traced B/seg",
        "traced B/bucket",
        "traced MiB/10k seg",
        "build s",
        "buckets/s",
    ]
    print(table(headers, rows))
    print(
        "RSS: growth of the resident set over the build (includes allocator overhead); "
        "traced: bytes held by Python\nobjects (tracemalloc, run for <= "
        f"{args.tracemalloc_max:,} segments: it is slow); build s / buckets/s: apply_packed "
        "time without tracemalloc."
    )


# --------------------------------------------------------------------------- main


def int_list(text: str) -> list[int]:
    try:
        values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description="Benchmark the scoring and windowing stages in-process (no Kafka).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short run: 20,000 events, memory test with 10,000 segments only "
        "(explicit options still win)",
    )
    parser.add_argument("--events", type=int, help="events per run (default 200,000)")
    parser.add_argument(
        "--segments",
        type=int_list,
        help="comma-separated target numbers of agent segments (default 1000,100000)",
    )
    parser.add_argument(
        "--memory-segments",
        type=int_list,
        help="comma-separated segment counts of the memory test (default 10000,100000)",
    )
    parser.add_argument(
        "--memory-buckets",
        type=int,
        default=30,
        help="non-empty buckets per segment in the memory test (default 30)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=1000, help="records per batch (default 1000)"
    )
    parser.add_argument("--partitions", type=int, default=4, help="topic partitions (default 4)")
    parser.add_argument(
        "--span-hours", type=float, default=2.0, help="event time covered by the events (default 2)"
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--skip-memory", action="store_true", help="do not run the memory test")
    parser.add_argument(
        "--tracemalloc-max",
        type=int,
        default=10_000,
        help="also measure with tracemalloc up to this many segments (default 10,000)",
    )
    parser.add_argument("--memory-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--memory-trace", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print the top 10 functions by cumulative time of each stage (cProfile)",
    )
    parser.add_argument(
        "--profile-events",
        type=int,
        default=20_000,
        help="events of the profiled run (default 20,000)",
    )
    parser.add_argument(
        "--profile-segments",
        type=int,
        default=1_000,
        help="agents of the profiled run (default 1,000)",
    )
    args = parser.parse_args(argv)
    if args.events is None:
        args.events = 20_000 if args.quick else 200_000
    if args.segments is None:
        args.segments = [1_000, 100_000]
    if args.memory_segments is None:
        args.memory_segments = [10_000] if args.quick else [10_000, 100_000]
    for name in ("events", "memory_buckets", "batch_size", "partitions"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if not 0 < args.span_hours <= 24:
        parser.error("--span-hours must be in (0, 24]")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.memory_worker:
        print(orjson.dumps(memory_worker(args)).decode())
        return 0
    started = time.perf_counter()
    print_machine(argv)
    rng = random.Random(args.seed)
    results = []
    for segments in args.segments:
        results.append(bench_throughput(args, segments, rng))
        gc.collect()
    print_throughput(args, results)
    if not args.skip_memory:
        memory = []
        for segments in args.memory_segments:
            memory.append(bench_memory(args, segments))
            gc.collect()
        print_memory(args, memory)
    if args.profile:
        bench_profile(args, rng)
    print(f"\nwall time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
