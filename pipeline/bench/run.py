"""``nps-pipeline bench``: the end-to-end benchmark on a real broker, in one run.

Phases (each on topics of its own, so that runs never mix):

1. **dataset**: :func:`pipeline.bench.dataset.generate` records produced to a raw topic.
2. **ceiling**: one aiokafka consumer reads the whole topic and decodes every value with
   orjson; nothing else.
3. **naive**: :mod:`pipeline.bench.naive` (Faust agent + Faust hopping tables) in a process
   of its own reads the same topic for ``naive_seconds``; its rate after the first
   second of progress.
4. **pipeline**: ``nps-pipeline worker`` processes (``workers`` of them, default 1) with
   the default configuration (validation, scoring, redaction, every default segment and
   window, alert evaluation with the default rules, every output produced) read a copy
   of the topic, produced once every worker holds its partitions. Throughput = answers
   counted in the windows per second, from the moment every record was produced to the
   moment the windows' overall all-time counts equal the ground truth, polled every 50
   ms (:func:`pipeline_rate`; the workers already consume while the bench produces,
   sharing the cores with its producer). Then every segment's all-time counts are
   compared with the ground truth: any difference fails the run. With ``rounds`` > 1 the
   pipeline runs are repeated, interleaved (1, 2, 1, 2, ... workers): each worker count
   is reported as the median of its runs, and the scaling as the median of each round's
   ratio. The machine's speed drifts between runs a minute apart (shared host), and a
   ratio of two neighbouring runs is less exposed to that than a ratio of two single
   runs. Before and after each run a fixed plain-Python loop is timed
   (:func:`speed_check`): runs are comparable only at similar values.
5. **latency**: live events (event time = now) at half the measured throughput for
   ``latency_seconds``: produced -> visible on the scored topic, per event; and, for an
   incident injected in one department (detractor share 0.8 from 10 s in, which is made
   a minute boundary by waiting up to a minute before the phase), each alert's
   ``fired_at`` (the event time of the round that decided it, which is the wall time at
   which the deciding events were produced) -> visible on the alerts topic. Meanwhile
   each worker's ``/metrics`` is scraped every 15 s, as the shipped Prometheus
   configuration does.

Memory: the workers' resident set (with their comment analysis processes) when they
report ready (before any record), at the end of the throughput phase, and their peak
(``VmHWM``) up to then; then the peak again after the ground-truth checks, which list
every segment through the HTTP API; per 10,000 active segments = (end - ready) /
segments x 10,000.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from pipeline.batchio import BatchProducer
from pipeline.bench import naive
from pipeline.bench.dataset import DEPARTMENTS, TRUTH_FIELDS, Dataset, generate
from pipeline.bench.diagnose import explain_run
from pipeline.broker import EmbeddedBroker, free_port
from pipeline.settings import DEFAULT_COMPRESSION, Compression, Settings
from pipeline.topics import ensure_topics

POLL_SECONDS = 0.05
#: The naive baseline is stopped if it grows past this (Faust's unbounded send buffer).
NAIVE_MAX_RSS_KIB = 4 * 1024 * 1024


#: The longest event-time span the bench runs as a live spike: each pipeline run's
#: records end when it produces them, so the workers' clock stays within
#: NPS_CATCHUP_BEHIND_SECONDS' default (120 s) of the wall clock and every alert round
#: and snapshot runs as its minute boundary passes.
LIVE_SPAN_SECONDS = 60.0


@dataclass
class BenchConfig:
    events: int = 200_000
    segments: int = 10_000
    comment_share: float = 0.4
    late_share: float = 0.02
    invalid_share: float = 0.01
    partitions: int = 4
    workers: list[int] = field(default_factory=lambda: [1])
    #: repeats of the pipeline runs, interleaved over ``workers`` (see the module doc)
    rounds: int = 1
    naive_seconds: float = 30.0
    naive_max_hops: int = 12
    latency_seconds: float = 75.0
    seed: int = 1
    #: event-time span of the dataset, ending a minute before the run: the default two
    #: hours are a backlog the workers catch up; up to :data:`LIVE_SPAN_SECONDS`, a live
    #: spike (each pipeline run's records then end at the moment it produces them)
    span_seconds: float = 2 * 3600.0
    broker: str | None = None
    json_path: Path | None = None
    timeout_seconds: float = 600.0
    #: NPS_TEXT_ANALYTICS of the workers (comment analytics: its cost end to end)
    text_analytics: bool = True
    #: NPS_COMPRESSION of the workers
    compression: Compression = DEFAULT_COMPRESSION
    #: further settings of the workers, as environment variables (``--setting``, for
    #: measuring a setting against its default: the workers get no other NPS_* value)
    settings: dict[str, str] = field(default_factory=dict)


@dataclass
class Figures:
    """Everything the run measured (written as JSON)."""

    started_at: str
    machine: dict[str, Any]
    config: dict[str, Any]
    dataset: dict[str, Any] = field(default_factory=dict)
    ceiling: dict[str, Any] = field(default_factory=dict)
    naive: dict[str, Any] = field(default_factory=dict)
    pipeline: list[dict[str, Any]] = field(default_factory=list)
    latency: dict[str, Any] = field(default_factory=dict)
    ratios: dict[str, Any] = field(default_factory=dict)
    verified: bool = False
    errors: list[str] = field(default_factory=list)


def say(text: str) -> None:
    print(text, flush=True)


# --------------------------------------------------------------------------- kafka helpers


async def produce(
    bootstrap: str, topic: str, values: list[bytes], chunk: int = 20_000
) -> tuple[float, float]:
    """Produce ``values`` keyed by their event id; ``time.perf_counter()`` when the first
    record was handed to the producer (connected) and when the last was acknowledged."""
    producer = BatchProducer(bootstrap, max_request_size=16 * 1024 * 1024, client_id="bench")
    await producer.start()
    started = time.perf_counter()
    try:
        for i in range(0, len(values), chunk):
            part = values[i : i + chunk]
            await producer.send((topic, None, _event_id(v), v) for v in part)
        finished = time.perf_counter()
    finally:
        await producer.stop()
    return started, finished


def _event_id(value: bytes) -> bytes:
    start = value.find(b'"event_id":"')
    if start < 0:
        return b""
    start += 12
    return value[start : value.find(b'"', start)]


async def ceiling(bootstrap: str, topic: str, partitions: int, expected: int) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = decoded = 0
        started = time.perf_counter()
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for messages in batches.values():
                for message in messages:
                    seen += 1
                    with contextlib.suppress(orjson.JSONDecodeError):
                        orjson.loads(message.value)
                        decoded += 1
            if time.perf_counter() - started > 300:
                raise TimeoutError(f"ceiling read {seen} of {expected} records")
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    return {"events": seen, "decoded": decoded, "seconds": elapsed, "events_per_s": seen / elapsed}


# --------------------------------------------------------------------------- processes


def rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    """``field_name`` of ``/proc/<pid>/status`` summed over the process and its
    descendants (a worker's comment analysis process, NPS_TEXT_PROCESS, is its memory
    too); 0 for a process that is gone."""
    total = 0
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    total = int(line.split()[1])
                    break
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            kids = [int(child) for child in children.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return total
    return total + sum(rss_kib(kid, field_name) for kid in kids)


def http_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (http:// only)
        return orjson.loads(resp.read())


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            return bool(http_json(f"{self.url}/readyz", timeout=2).get("ready"))
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def worker_env(base: dict[str, str], run: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NPS_")}
    env.update(base)
    env.update(NPS_WEB_PORT=str(port), NPS_STATUS_INTERVAL_SECONDS="0")
    return env


#: per-run settings that have a bench option of their own
_OPTION_SETTINGS = ("text_analytics", "compression")


def worker_settings(items: list[str]) -> dict[str, str]:
    """``--setting NAME=VALUE`` items as the workers' environment (``NPS_NAME``), each
    checked against :class:`Settings`; ValueError says what is wrong. The settings every
    run sets itself (:func:`topic_env`, :func:`worker_env`, the options) are refused."""
    owned = {k[4:].lower() for k in worker_env(topic_env("", "", 1), "", 0) if k[:4] == "NPS_"}
    owned.update(_OPTION_SETTINGS, ("config_file",))
    env: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        field = name.strip().lower().removeprefix("nps_")
        if not sep or not field:
            raise ValueError(f"{item!r}: expected NAME=VALUE, e.g. NPS_BATCH_SIZE=2000")
        if field not in Settings.model_fields:
            raise ValueError(f"{name!r} is not a setting (see README 'Configuration')")
        if field in owned:
            option = f" (use --{field.replace('_', '-')})" if field in _OPTION_SETTINGS else ""
            raise ValueError(f"{name!r} is set by the benchmark itself{option}")
        try:
            Settings(**{field: value})  # type: ignore[arg-type]
        except ValidationError as exc:  # only this field's errors (not this shell's NPS_*)
            mine = [e["msg"] for e in exc.errors() if e["loc"][:1] == (field,)]
            if mine:
                raise ValueError(f"{item!r}: {mine[0]}") from None
        env[f"NPS_{field.upper()}"] = value
    return env


def topic_env(bootstrap: str, run: str, partitions: int) -> dict[str, str]:
    return {
        "NPS_BROKER_URL": bootstrap,
        "NPS_APP_ID": f"bench-{run}",
        "NPS_TOPIC_RAW": f"bench-{run}-raw",
        "NPS_TOPIC_SCORED": f"bench-{run}-scored",
        "NPS_TOPIC_DEADLETTER": f"bench-{run}-dead",
        "NPS_TOPIC_DELTAS": f"bench-{run}-deltas",
        "NPS_TOPIC_WINDOWS": f"bench-{run}-windows",
        "NPS_TOPIC_ALERTS": f"bench-{run}-alerts",
        "NPS_TOPIC_PARTITIONS": str(partitions),
        "NPS_BROKER_SESSION_TIMEOUT_SECONDS": "6",
        # rebalances, resumes and replays in each worker's log (~10 KB a run): what a
        # run whose counts differ needs explained (`--setting NPS_LOG_LEVEL=...` to change)
        "NPS_LOG_LEVEL": "info",
    }


def start_workers(env: dict[str, str], count: int, run: str, logdir: Path) -> list[Worker]:
    workers = []
    for i in range(count):
        port = free_port()
        log = logdir / f"worker-{run}-{i}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "worker"],
            env=worker_env(env, run, port),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        workers.append(Worker(proc, port, log))
    return workers


def wait_ready(workers: list[Worker], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(workers)
    while pending:
        for worker in list(pending):
            if worker.proc.poll() is not None:
                raise RuntimeError(f"worker exited early; log: {worker.log}")
            if worker.ready():
                pending.remove(worker)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"workers not ready after {timeout} s; logs in {workers[0].log.parent}"
            )
        time.sleep(POLL_SECONDS)


def wait_assigned(
    workers: list[Worker], env: dict[str, str], partitions: int, timeout: float
) -> None:
    """Until each worker is ready and the raw and deltas partitions are all assigned,
    every worker holding some of each (when there are enough partitions)."""
    wait_ready(workers, timeout)
    deadline = time.monotonic() + timeout
    raw, deltas = env["NPS_TOPIC_RAW"], env["NPS_TOPIC_DELTAS"]
    while True:
        views = []
        for worker in workers:
            try:
                views.append(http_json(f"{worker.url}/readyz", timeout=2))
            except (OSError, ValueError):
                views.append({})
        raw_sets = [
            {p for p in v.get("scoring_partitions", []) if p.startswith(raw + ":")} for v in views
        ]
        deltas_sets = [
            {p for p in v.get("partitions", []) if p.startswith(deltas + ":")} for v in views
        ]
        spread = partitions >= len(workers)
        complete = all(
            len(set().union(*sets)) == partitions and (not spread or all(sets))
            for sets in (raw_sets, deltas_sets)
        )
        if complete and all(v.get("ready") for v in views):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"partitions not assigned after {timeout} s: {views}")
        time.sleep(0.2)


# --------------------------------------------------------------------------- naive


def run_naive(bootstrap: str, topic: str, cfg: BenchConfig, run: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NPS_")}
    env.update(
        NAIVE_BROKER=bootstrap,
        NAIVE_TOPIC=topic,
        NAIVE_APP_ID=f"bench-{run}-naive",
        NAIVE_WINDOWS=",".join(str(w) for w in Settings().windows_seconds),
        NAIVE_BUCKET=str(Settings().bucket_seconds),
        NAIVE_MAX_HOPS=str(cfg.naive_max_hops),
        NAIVE_PORT=str(free_port()),
        NAIVE_PARTITIONS=str(cfg.partitions),
    )
    workdir = Path(tempfile.mkdtemp(prefix="nps-bench-naive-"))
    progress = workdir / "progress"
    env.update(NAIVE_PROGRESS=str(progress), NAIVE_DATADIR=str(workdir / "data"))
    proc = subprocess.Popen(  # noqa: S603 (our own module)
        [sys.executable, "-m", naive.MODULE],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "naive.log").open("wb"),
    )
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + cfg.naive_seconds + 120
    note = None
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            if rss_kib(proc.pid) > NAIVE_MAX_RSS_KIB:
                note = f"stopped at {NAIVE_MAX_RSS_KIB // 1024} MiB resident"
                break
            lines = progress.read_text().split() if progress.exists() else []
            samples = [
                (float(lines[i + 1]), int(lines[i + 2]))
                for i in range(0, len(lines) - 2, 3)
                if lines[i] == "progress" and int(lines[i + 2]) > 0
            ]
            if samples and samples[-1][0] - samples[0][0] >= cfg.naive_seconds:
                break
            if samples and samples[-1][1] >= cfg.events:
                break
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if len(samples) < 2:
        return {"events": 0, "seconds": 0.0, "events_per_s": None, "error": "no progress"}
    (t0, n0), (t1, n1) = samples[0], samples[-1]
    return {
        "events": n1 - n0,
        "seconds": t1 - t0,
        "events_per_s": (n1 - n0) / (t1 - t0),
        "max_hops": cfg.naive_max_hops,
        "note": note,
    }


# --------------------------------------------------------------------------- pipeline


def overall_answers(url: str) -> int:
    try:
        view = http_json(f"{url}/api/v1/segments/overall")
    except (OSError, ValueError):
        return -1
    counts = view.get("all_time", {})
    return sum(counts.get(k, 0) for k in ("responses", "csat_responses", "ces_responses"))


def verify(url: str, data: Dataset) -> list[str]:
    """Differences between every segment's all-time counts and the ground truth."""
    expected_by_dim: dict[str, dict[str, Any]] = {}
    for key, counts in data.truth.items():
        dimension = (
            "overall"
            if key == "overall"
            else ",".join(part.split("=", 1)[0] for part in key.split("|"))
        )
        expected_by_dim.setdefault(dimension, {})[key] = counts
    problems: list[str] = []
    for dimension, expected in sorted(expected_by_dim.items()):
        if dimension == "overall":
            got = {"overall": http_json(f"{url}/api/v1/segments/overall")["all_time"]}
            total = 1
        else:
            listing = http_json(
                f"{url}/api/v1/segments?dimension={dimension}&window=all&limit=10000&sort=responses"
            )
            got = {row["segment"]: row["stats"] for row in listing["segments"]}
            total = listing["total"]
        if total != len(expected):
            problems.append(f"{dimension}: {total} segments, expected {len(expected)}")
        for key, stats in got.items():
            want = expected.get(key)
            if want is None:
                problems.append(f"{key}: unexpected segment")
                continue
            for name in TRUTH_FIELDS:
                if stats.get(name, 0) != want.get(name, 0):
                    problems.append(f"{key}.{name}: {stats.get(name)} != {want.get(name, 0)}")
    return problems


def pipeline_rate(
    answers: int, at_clock: int, sent: float, clock: float, done: float
) -> dict[str, Any]:
    """The pipeline's throughput: answers counted in the windows per second.

    ``sent``: the first record produced; ``clock``: every record produced, when
    ``at_clock`` of the ``answers`` were already counted; ``done``: all counted. The
    rate is taken over ``[clock, done]``: while the bench produces, its own producer
    takes CPU from the workers (one core for 1-2 s), which a pipeline fed by remote
    producers never pays. When more than half the answers were counted by then (a run
    too short for the production to be negligible), the whole run from ``sent`` counts.
    """
    if at_clock * 2 > answers:
        events, seconds, since = answers, done - sent, "first record produced"
    else:
        events, seconds, since = answers - at_clock, done - clock, "last record produced"
    return {
        "events": events,
        "seconds": seconds,
        "events_per_s": events / seconds,
        "measured_from": since,
        "answers_before_clock": at_clock,
        "produce_seconds": clock - sent,
    }


def run_values(data: Dataset, cfg: BenchConfig) -> list[bytes]:
    """The records a pipeline run produces: the dataset's, or for a live spike (a span of
    at most :data:`LIVE_SPAN_SECONDS`) the same records with event times ending now (the
    same seed: only the times differ, the ground truth is the same)."""
    if cfg.span_seconds > LIVE_SPAN_SECONDS:
        return data.values
    return dataset_of(cfg, end=time.time()).values


def dataset_of(cfg: BenchConfig, end: float) -> Dataset:
    """The configured dataset, its event times ending at ``end``."""
    return generate(
        cfg.events,
        cfg.segments,
        seed=cfg.seed,
        end=end,
        comment_share=cfg.comment_share,
        late_share=cfg.late_share,
        invalid_share=cfg.invalid_share,
        themes=cfg.text_analytics,
        span_seconds=cfg.span_seconds,
    )


def run_pipeline(
    bootstrap: str, data: Dataset, cfg: BenchConfig, workers_count: int, logdir: Path
) -> tuple[dict[str, Any], list[Worker], dict[str, str]]:
    run = uuid.uuid4().hex[:8]
    env = topic_env(bootstrap, run, cfg.partitions)
    env["NPS_TEXT_ANALYTICS"] = "true" if cfg.text_analytics else "false"
    env["NPS_COMPRESSION"] = cfg.compression.value
    env.update(cfg.settings)
    settings = Settings(**{k[4:].lower(): v for k, v in env.items()})  # type: ignore[arg-type]
    ensure_topics(settings)
    workers = start_workers(env, workers_count, run, logdir)
    try:
        # every worker ready and holding its share of both consumer groups before the
        # data comes: a rebalance inside the measurement would measure the rebalance
        wait_assigned(workers, env, cfg.partitions, 180)
        ready_rss = [rss_kib(w.proc.pid) for w in workers]
        values = run_values(data, cfg)
        say(f"  producing {len(values):,} records to {env['NPS_TOPIC_RAW']} ...")
        sent, _ = asyncio.run(produce(bootstrap, env["NPS_TOPIC_RAW"], values))
        # the clock starts once every record is produced: the workers consume while the
        # bench produces, sharing the cores with it (see pipeline_rate)
        clock = time.perf_counter()
        at_clock = max(overall_answers(workers[0].url), 0)
        expected = data.valid
        deadline = time.monotonic() + cfg.timeout_seconds
        last_report = time.monotonic()
        while True:
            answers = overall_answers(workers[0].url)
            if answers >= expected:
                done = time.perf_counter()
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"pipeline counted {answers:,} of {expected:,} answers")
            if time.monotonic() - last_report > 5:
                last_report = time.monotonic()
                say(f"  ... {max(answers, 0):,} of {expected:,} answers in the windows")
            time.sleep(POLL_SECONDS)
        end_rss = [rss_kib(w.proc.pid) for w in workers]
        peak = [rss_kib(w.proc.pid, "VmHWM") for w in workers]  # processing, not the checks
        problems = verify_until(workers[0].url, data, 30.0)
        diagnosis = []
        if problems:  # read back while the workers still run: where did the answers go
            (logdir / f"mismatches-{run}.txt").write_text("\n".join(problems) + "\n")
            diagnosis = explain_run(bootstrap, env["NPS_TOPIC_DELTAS"], data, problems)
            for line in diagnosis:
                say(f"  {line}")
        checked = [rss_kib(w.proc.pid, "VmHWM") for w in workers]
        rate = pipeline_rate(expected, at_clock, sent, clock, done)
        result = {
            "workers": workers_count,
            "records": len(data.values),
            **rate,
            "ready_rss_mib": [r / 1024 for r in ready_rss],
            "end_rss_mib": [r / 1024 for r in end_rss],
            "peak_rss_mib": [r / 1024 for r in peak],
            "peak_rss_with_checks_mib": [r / 1024 for r in checked],
            "segments": data.segments,
            "rss_per_10k_segments_mib": (sum(end_rss) - sum(ready_rss))
            / 1024
            / data.segments
            * 10_000,
            "mismatches": problems[:20],
            "mismatch_diagnosis": diagnosis,
            "mismatch_count": len(problems),
            "text_analytics": "on" if cfg.text_analytics else "off",
            "compression": cfg.compression.value,
            "settings": cfg.settings,
        }
        return result, workers, env
    except BaseException:
        for worker in workers:
            worker.stop()
        raise


def verify_until(url: str, data: Dataset, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        problems = verify(url, data)
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(1.0)


# --------------------------------------------------------------------------- latency


def live_event(i: int, run: str, now: float, incident: bool, rng_value: int) -> bytes:
    department = DEPARTMENTS[i % len(DEPARTMENTS)]
    detractor_share = 0.8 if incident and department == "billing" else 0.2
    if rng_value < detractor_share * 1000:
        score = rng_value % 7  # 0-6
    else:
        score = (7, 8, 9, 9, 10, 10)[rng_value % 6]
    return orjson.dumps(
        {
            "event_id": f"live-{run}-{i:09d}",
            "event_time": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
            "survey_type": "nps",
            "score": score,
            "customer_id": f"cust-{i % 50_000}",
            "department": department,
            "agent": f"agent-{i % 10_000:06d}",
            "product": "web-app",
            "channel": ("chat", "email", "phone")[i % 3],
            "region": "emea",
            "source": "bench-live",
        }
    )


#: seconds between two scrapes of each worker's /metrics in the latency phase, as the
#: shipped Prometheus configuration scrapes (deploy/prometheus/prometheus.yml)
SCRAPE_INTERVAL_SECONDS = 15.0


async def scrape_metrics(urls: list[str], durations: list[float], stop: asyncio.Event) -> None:
    """GET every ``urls`` (the workers' /metrics) now and then every
    :data:`SCRAPE_INTERVAL_SECONDS` until ``stop``, as Prometheus would; each GET's
    seconds into ``durations``."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        while not stop.is_set():
            for url in urls:
                began = time.perf_counter()
                async with session.get(url) as resp:
                    resp.raise_for_status()
                    await resp.read()
                durations.append(time.perf_counter() - began)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SCRAPE_INTERVAL_SECONDS)


#: seconds into the latency phase at which the incident starts
INCIDENT_AT_SECONDS = 10.0


def incident_alignment_wait(now: float, seconds: float) -> float:
    """Seconds to wait before a latency phase of ``seconds`` starting at ``now`` so that its
    incident starts on a minute boundary of the wall clock (= of the live events' event
    time). Alert rounds run at event-time minute boundaries, so which alerts fire within
    the phase depended on where those fell (4 to 10 in a 75 s phase): aligned, every run
    sees the same rounds. 0 for a phase too short to see a round after the incident's
    first minute."""
    if seconds < INCIDENT_AT_SECONDS + 65:
        return 0.0
    return (60.0 - (now + INCIDENT_AT_SECONDS) % 60.0) % 60.0


async def latency(
    bootstrap: str, env: dict[str, str], rate: float, seconds: float, metrics_urls: list[str]
) -> dict[str, Any]:
    """Latencies at ``rate`` events/s of live events for ``seconds``, the workers'
    ``metrics_urls`` scraped meanwhile as Prometheus would (a scrape takes the worker's
    event loop for a moment, and production workers are scraped)."""
    run = uuid.uuid4().hex[:6]
    raw, scored, alerts = env["NPS_TOPIC_RAW"], env["NPS_TOPIC_SCORED"], env["NPS_TOPIC_ALERTS"]
    partitions = int(env["NPS_TOPIC_PARTITIONS"])
    producer = BatchProducer(bootstrap, max_request_size=1024 * 1024, client_id="bench-live")
    await producer.start()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    await consumer.start()
    tps = [TopicPartition(t, p) for t in (scored, alerts) for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    sent: dict[bytes, float] = {}
    scored_latency: list[float] = []
    alert_latency: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def read() -> None:
        while not done.is_set() or len(scored_latency) < len(sent) * 0.999:
            batches = await consumer.getmany(timeout_ms=20, max_records=20_000)
            arrived = time.time()
            for tp, messages in batches.items():
                for message in messages:
                    if tp.topic == scored:
                        started = sent.get(message.key)
                        if started is not None:
                            scored_latency.append(arrived - started)
                    else:
                        alert = orjson.loads(message.value)
                        if alert.get("status") == "firing":
                            fired = datetime.fromisoformat(alert["fired_at"]).timestamp()
                            alert_latency.append(
                                {
                                    "segment": alert["segment"],
                                    "rule": alert["rule"],
                                    "seconds": arrived - fired,
                                }
                            )
            if done.is_set() and time.time() - done_at[0] > 10:
                break

    if wait := incident_alignment_wait(time.time(), seconds):
        say(f"  waiting {wait:.0f} s: the incident starts on a minute boundary ...")
        await asyncio.sleep(wait)
    done_at = [0.0]
    reader = asyncio.create_task(read())
    scrapes: list[float] = []
    scraper = asyncio.create_task(scrape_metrics(metrics_urls, scrapes, done))
    started = time.time()
    tick = 0.01
    i = 0
    while (now := time.time()) - started < seconds:
        due = int((now - started) * rate)
        incident = now - started >= INCIDENT_AT_SECONDS
        batch = []
        while i < due:
            value = live_event(i, run, now, incident, (i * 7919) % 1000)
            key = f"live-{run}-{i:09d}".encode()
            sent[key] = now
            batch.append((raw, None, key, value))
            i += 1
        if batch:
            await producer.send(batch)
        await asyncio.sleep(tick)
    done_at[0] = time.time()
    done.set()
    await reader
    await scraper
    await producer.stop()
    await consumer.stop()
    scored_latency.sort()
    return {
        "offered_events_per_s": rate,
        "seconds": seconds,
        "events": len(sent),
        "scored_seen": len(scored_latency),
        "scored_ms": percentiles(scored_latency),
        "alerts": alert_latency,
        "alert_ms": percentiles(sorted(a["seconds"] for a in alert_latency)),
        "metrics_scrapes": len(scrapes),
        "metrics_scrape_ms_max": max(scrapes, default=0.0) * 1000,
    }


def percentiles(values: list[float]) -> dict[str, float | None]:
    def at(q: float) -> float | None:
        if not values:
            return None
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    return {"p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": at(1.0)}


# --------------------------------------------------------------------------- main


@contextlib.contextmanager
def broker_for(cfg: BenchConfig) -> Iterator[str]:
    if cfg.broker:
        yield cfg.broker
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap


#: Iterations of the speed check: a plain Python loop, 0.08-0.10 s on this project's
#: machine when it is quiet.
SPEED_CHECK_LOOPS = 3_000_000


def speed_check() -> float:
    """Seconds this process takes for a fixed plain-Python loop, now: how fast the
    machine runs Python at the moment (a shared host's speed drifts by tens of percent
    within minutes; compare runs only at similar values)."""
    started = time.perf_counter()
    total = 0
    for i in range(SPEED_CHECK_LOOPS):
        total += i
    return time.perf_counter() - started


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), ""
        )
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "git": revision,
    }


def run(cfg: BenchConfig) -> Figures:
    figures = Figures(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=machine(),
        config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
    )
    logdir = Path(tempfile.mkdtemp(prefix="nps-bench-"))
    say(f"nps-pipeline bench: {cfg.events:,} records, {cfg.segments:,} agents, logs in {logdir}")
    with broker_for(cfg) as bootstrap:
        say("dataset ...")
        data = dataset_of(cfg, end=time.time() - 60)
        figures.dataset = {
            "records": len(data.values),
            "valid": data.valid,
            "invalid": data.invalid,
            "segments": data.segments,
            "bytes": sum(len(v) for v in data.values),
            "span_seconds": cfg.span_seconds,
        }
        base = uuid.uuid4().hex[:8]
        topic = f"bench-{base}-source"
        settings = Settings(broker_url=bootstrap, topic_raw=topic, topic_partitions=cfg.partitions)
        ensure_topics(settings)
        sent, acked = asyncio.run(produce(bootstrap, topic, data.values))
        rate = len(data.values) / (acked - sent)
        figures.dataset["produce_events_per_s"] = rate
        say(f"  {len(data.values):,} records produced at {rate:,.0f}/s")

        say("ceiling: raw consumption + orjson decoding ...")
        figures.ceiling = asyncio.run(ceiling(bootstrap, topic, cfg.partitions, len(data.values)))
        say(f"  {figures.ceiling['events_per_s']:,.0f} events/s")

        if cfg.naive_seconds > 0:
            say(f"naive Faust baseline ({cfg.naive_seconds:.0f} s) ...")
            figures.naive = run_naive(bootstrap, topic, cfg, base)
            say(f"  {figures.naive.get('events_per_s') or 0:,.0f} events/s")

        for round_ in range(1, cfg.rounds + 1):
            for count in cfg.workers:
                first_run = round_ == 1 and count == cfg.workers[0]
                label = f" (round {round_} of {cfg.rounds})" if cfg.rounds > 1 else ""
                say(f"pipeline, {count} worker(s){label} ...")
                before = speed_check()
                result, workers, env = run_pipeline(bootstrap, data, cfg, count, logdir)
                result["round"] = round_
                figures.pipeline.append(result)
                say(
                    f"  {result['events_per_s']:,.0f} events/s ({result['events']:,} answers in "
                    f"{result['seconds']:.1f} s since the {result['measured_from']}; "
                    f"{result['answers_before_clock']:,} counted during the "
                    f"{result['produce_seconds']:.1f} s of producing); "
                    f"{result['mismatch_count']} count mismatches"
                )
                if result["mismatch_count"]:
                    figures.errors.append(
                        f"{count} worker(s){label}: window counts differ from ground truth"
                    )
                try:
                    if first_run and cfg.latency_seconds > 0:
                        offered = result["events_per_s"] / 2
                        say(
                            f"latency at {offered:,.0f} events/s "
                            f"for {cfg.latency_seconds:.0f} s ..."
                        )
                        figures.latency = asyncio.run(
                            latency(
                                bootstrap,
                                env,
                                offered,
                                cfg.latency_seconds,
                                [f"{w.url}/metrics" for w in workers],
                            )
                        )
                        figures.latency["peak_rss_mib"] = [
                            rss_kib(w.proc.pid, "VmHWM") / 1024 for w in workers
                        ]
                finally:
                    for worker in workers:
                        worker.stop()
                result["speed_check_s"] = [before, speed_check()]
    figures.verified = not figures.errors
    figures.ratios = pipeline_ratios(figures.pipeline, figures.naive, figures.ceiling)
    return figures


def medians(runs: list[dict[str, Any]]) -> dict[int, float]:
    """Median events/s per worker count, in the order the counts were first run."""
    rates: dict[int, list[float]] = {}
    for result in runs:
        rates.setdefault(result["workers"], []).append(result["events_per_s"])
    return {count: statistics.median(values) for count, values in rates.items()}


def round_scaling(runs: list[dict[str, Any]]) -> list[dict[int, float]]:
    """Per round, each worker count's events/s over the round's first count's."""
    rounds: dict[int, list[dict[str, Any]]] = {}
    for result in runs:
        rounds.setdefault(result.get("round", 1), []).append(result)
    return [
        {r["workers"]: r["events_per_s"] / results[0]["events_per_s"] for r in results}
        for _, results in sorted(rounds.items())
    ]


def pipeline_ratios(
    runs: list[dict[str, Any]], naive_figures: dict[str, Any], ceiling_figures: dict[str, Any]
) -> dict[str, Any]:
    """pipeline/naive and pipeline/ceiling for the first worker count (its median), and
    with several counts the scaling: the median over rounds of each round's ratio."""
    if not runs:
        return {"pipeline_over_naive": None, "pipeline_over_ceiling": None}
    one = next(iter(medians(runs).values()))
    naive_rate = naive_figures.get("events_per_s")
    result: dict[str, Any] = {
        "pipeline_over_naive": one / naive_rate if naive_rate else None,
        "pipeline_over_ceiling": one / ceiling_figures["events_per_s"],
    }
    per_round = round_scaling(runs)
    if len(per_round[0]) > 1:
        result["scaling"] = {
            str(count): statistics.median(r[count] for r in per_round if count in r)
            for count in per_round[0]
        }
        result["scaling_rounds"] = [{str(k): v for k, v in r.items()} for r in per_round]
    return result


def span_text(dataset: dict[str, Any]) -> str:
    """How the dataset's event-time span reads in the report."""
    span = dataset.get("span_seconds", 7200.0)
    kind = "a live spike" if span <= LIVE_SPAN_SECONDS else "a backlog caught up"
    length = f"{span / 3600:g} h" if span >= 3600 else f"{span:g} s"
    return f"{length} of event time ({kind})"


def report(figures: Figures) -> str:
    lines = [
        "",
        f"machine   {figures.machine['cpu']} ({figures.machine['cores']} cores), "
        f"Python {figures.machine['python']}, git {figures.machine['git']}",
        f"dataset   {figures.dataset['records']:,} records "
        f"({figures.dataset['invalid']:,} invalid), "
        f"{figures.dataset['segments']:,} segments, {span_text(figures.dataset)}",
        f"ceiling   {figures.ceiling['events_per_s']:>10,.0f} events/s  "
        "(aiokafka + orjson, no processing)",
    ]
    if figures.naive.get("events_per_s"):
        lines.append(
            f"naive     {figures.naive['events_per_s']:>10,.0f} events/s  "
            f"(Faust agent + hopping tables, <= {figures.naive['max_hops']} hops per window)"
        )
    rounds = max((r.get("round", 1) for r in figures.pipeline), default=1)
    for result in figures.pipeline:
        label = f"round {result.get('round', 1)}, " if rounds > 1 else ""
        lines.append(
            f"pipeline  {result['events_per_s']:>10,.0f} events/s  ({label}"
            f"{result['workers']} worker(s), "
            f"full workload, text analytics {result.get('text_analytics', 'on')}, "
            f"{result.get('compression', 'none')} batches; "
            + "".join(f"{k}={v}; " for k, v in result.get("settings", {}).items())
            + f"RSS ready {sum(result['ready_rss_mib']):.0f} MiB, end "
            f"{sum(result['end_rss_mib']):.0f} MiB, peak {sum(result['peak_rss_mib']):.0f} MiB "
            f"({sum(result.get('peak_rss_with_checks_mib', result['peak_rss_mib'])):.0f} with "
            f"the API checks); {result['rss_per_10k_segments_mib']:.0f} MiB per 10k segments"
            + speed_note(result)
            + ")"
        )
    if rounds > 1:
        for count, rate in medians(figures.pipeline).items():
            lines.append(f"median    {rate:>10,.0f} events/s  ({count} worker(s), {rounds} rounds)")
    ratios = figures.ratios
    if ratios.get("pipeline_over_naive"):
        lines.append(f"ratio     pipeline/naive {ratios['pipeline_over_naive']:.1f}x")
    if ratios.get("pipeline_over_ceiling"):
        lines.append(f"ratio     pipeline/ceiling {ratios['pipeline_over_ceiling']:.2f}")
    if ratios.get("scaling"):
        scaling = ", ".join(f"{k} workers {v:.2f}x" for k, v in ratios["scaling"].items())
        if rounds > 1:
            each = ", ".join(
                f"{k} workers " + " / ".join(f"{r[k]:.2f}x" for r in ratios["scaling_rounds"])
                for k in list(ratios["scaling"])[1:]
            )
            scaling += f" (median over {rounds} rounds; each round: {each})"
        lines.append(f"scaling   {scaling}")
    if figures.latency:
        lat = figures.latency
        s, a = lat["scored_ms"], lat["alert_ms"]
        lines.append(
            f"latency   at {lat['offered_events_per_s']:,.0f} events/s: event -> scored "
            f"p50 {fmt(s['p50'])} p95 {fmt(s['p95'])} p99 {fmt(s['p99'])} max {fmt(s['max'])} ms "
            f"({lat['scored_seen']:,}/{lat['events']:,} seen; "
            f"{lat.get('metrics_scrapes', 0)} /metrics scrape(s) meanwhile, the longest "
            f"{lat.get('metrics_scrape_ms_max', 0.0):,.0f} ms)"
        )
        lines.append(
            f"          decision -> alert visible: {len(lat['alerts'])} alerts, "
            f"p50 {fmt(a['p50'])} max {fmt(a['max'])} ms"
        )
    lines.append(
        "verified  "
        + (
            "window counts equal the ground truth"
            if figures.verified
            else "FAILED: " + "; ".join(figures.errors)
        )
    )
    return "\n".join(lines)


def speed_note(result: dict[str, Any]) -> str:
    """``; speed check 0.21 / 0.22 s`` (before / after the run), when it was taken."""
    checks = result.get("speed_check_s")
    if not checks:
        return ""
    return "; speed check " + " / ".join(f"{seconds:.2f}" for seconds in checks) + " s"


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def main(cfg: BenchConfig) -> int:
    figures = run(cfg)
    say(report(figures))
    if cfg.json_path is not None:
        cfg.json_path.write_text(json.dumps(asdict(figures), indent=2) + "\n")
        say(f"figures written to {cfg.json_path}")
    return 0 if figures.verified else 1
