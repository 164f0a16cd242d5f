"""Backpressure: a burst far above the sustainable rate; memory bounded, lag reported.

``BURST`` events are produced as fast as the client can (several times what the worker
scores per second on this machine), so a backlog builds up on the raw topic. The
worker reads it at its own pace: its RSS must stay within :data:`RSS_GROWTH_LIMIT_MB`
of the idle worker, ``nps_pipeline_consumer_lag_records`` on ``/metrics`` must show the
backlog and then drain to 0, and every event must be scored.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from pipeline.simulator import FeedbackSimulator, SimulatorConfig
from tests.conftest import WorkerProcess
from tests.test_hostile_input import rss_mb

pytestmark = pytest.mark.integration

BURST = 200_000
#: The worker's memory does not depend on the backlog: it holds one poll of at most
#: NPS_BATCH_SIZE records and the fetch buffers (fetch_max_bytes 32 MB per consumer),
#: plus bounded state (dedupe ids: 200k x ~150 B = 30 MB). 200k events are 70 MB on
#: the topic; a worker that buffered the backlog would exceed this bound.
RSS_GROWTH_LIMIT_MB = 160


def burst_records(n: int) -> list[tuple[bytes, bytes]]:
    sim = FeedbackSimulator(SimulatorConfig(seed=5, comment_probability=0.5))
    end = datetime.now(UTC) - timedelta(seconds=30)
    out = []
    for i in range(n):
        event = sim.next_event(end - timedelta(seconds=300 * (n - i) / n))
        out.append((event["event_id"].encode(), orjson.dumps(event)))
    return out


async def produce_fast(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """As fast as aiokafka can: whole record batches per partition, acks from the leader."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        pending = [await producer.send(topic, value=v, key=k) for k, v in records]
        for future in pending:
            await future
    finally:
        await producer.stop()


def raw_lag(worker: WorkerProcess, topic: str) -> float | None:
    """Sum of ``nps_pipeline_consumer_lag_records`` over the raw topic's partitions."""
    text = worker.get("/metrics").decode()
    total, found = 0.0, False
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "nps_pipeline_consumer_lag_records"
                and sample.labels.get("topic") == topic
            ):
                total += sample.value
                found = True
    return total if found else None


def scored_total(worker: WorkerProcess) -> float:
    text = worker.get("/metrics").decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "nps_pipeline_events_scored_total"
    )


def test_burst_lag_grows_and_drains_memory_bounded(broker, start_worker, worker_env) -> None:
    worker = start_worker(NPS_LOG_LEVEL="error")
    assert worker.proc is not None
    pid = worker.proc.pid
    topic = worker_env["NPS_TOPIC_RAW"]
    records = burst_records(BURST)
    rss_idle = rss_mb(pid)

    samples: list[tuple[float, float | None, float]] = []
    done = threading.Event()

    def watch() -> None:
        started = time.monotonic()
        while not done.is_set():
            with contextlib.suppress(OSError):
                samples.append((time.monotonic() - started, raw_lag(worker, topic), rss_mb(pid)))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        began = time.monotonic()
        asyncio.run(produce_fast(broker.bootstrap, topic, records))
        produced_in = time.monotonic() - began
        deadline = time.monotonic() + 150
        while scored_total(worker) < BURST and time.monotonic() < deadline:
            time.sleep(1.0)
        drained_in = time.monotonic() - began
        time.sleep(2.0)  # a lag sample after the last batch
    finally:
        done.set()
        watcher.join()

    assert scored_total(worker) == BURST, worker.log()
    lags = [lag for _, lag, _ in samples if lag is not None]
    peak_rss = max(rss for _, _, rss in samples)
    print(
        f"burst {BURST:,} produced in {produced_in:.1f}s ({BURST / produced_in:,.0f}/s), "
        f"scored in {drained_in:.1f}s ({BURST / drained_in:,.0f}/s); peak lag "
        f"{max(lags):,.0f}; RSS idle {rss_idle:.0f} MB, peak {peak_rss:.0f} MB"
    )
    # the backlog was reported while it existed ...
    assert max(lags) >= BURST / 10, lags
    # ... and drained to 0
    assert lags[-1] == 0, lags[-10:]
    assert peak_rss - rss_idle < RSS_GROWTH_LIMIT_MB, (rss_idle, peak_rss)
    assert worker.proc.poll() is None
