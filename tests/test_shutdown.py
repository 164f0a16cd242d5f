"""Graceful shutdown: SIGTERM while events stream in; bounded exit, nothing lost.

A simulator thread streams events to the raw topic; the worker gets SIGTERM in the
middle, must exit within :data:`MAX_EXIT_SECONDS`, and a new worker takes over. In the
end every event sent is on the scored topic (distinct ids = sent) and the windows'
all-time counts equal the ground truth computed here from the events themselves.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from kafka import KafkaProducer

from pipeline.simulator import FeedbackSimulator, SimulatorConfig
from schemas import ScoredEvent
from tests.conftest import WorkerProcess, consume
from tests.soak.truth import Truth, api_counts, mismatches

pytestmark = pytest.mark.integration

MAX_EXIT_SECONDS = 15.0
EVENTS = 6000
RATE = 1000.0  # events/s: the stream runs ~6 s, the SIGTERM lands in the middle


def stream(bootstrap: str, topic: str, events: list[dict], rate: float) -> None:
    """Send ``events`` keyed by id at ``rate`` per second (acks=all, then flush)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    started = time.monotonic()
    for n, event in enumerate(events):
        due = started + n / rate
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        producer.send(topic, key=event["event_id"].encode(), value=orjson.dumps(event))
    producer.flush()
    producer.close()


def simulated(n: int, seed: int) -> list[dict]:
    """``n`` simulated answers spread over the last 4 minutes (all inside the lateness)."""
    sim = FeedbackSimulator(SimulatorConfig(seed=seed, comment_probability=0.3))
    end = datetime.now(UTC) - timedelta(seconds=20)
    return [sim.next_event(end - timedelta(seconds=240 * (n - i) / n)) for i in range(n)]


def wait_for_counts(worker: WorkerProcess, truth: Truth, timeout: float = 90) -> list[str]:
    deadline = time.monotonic() + timeout
    diff = ["never asked"]
    while time.monotonic() < deadline:
        try:
            diff = mismatches(truth, api_counts(worker.url))
        except OSError as exc:
            diff = [f"API unavailable: {exc}"]
        if not diff:
            time.sleep(1.5)  # a late (wrong) update would land now
            return mismatches(truth, api_counts(worker.url))
        time.sleep(0.5)
    return diff


def test_sigterm_mid_stream_exits_fast_and_loses_nothing(
    broker, start_worker, worker_env: dict[str, str]
) -> None:
    events = simulated(EVENTS, seed=21)
    truth = Truth()
    for event in events:
        truth.add(event)
    first = start_worker()
    assert first.proc is not None
    sender = threading.Thread(
        target=stream, args=(broker.bootstrap, worker_env["NPS_TOPIC_RAW"], events, RATE)
    )
    sender.start()
    time.sleep(EVENTS / RATE / 2)

    started = time.monotonic()
    os.killpg(first.proc.pid, signal.SIGTERM)
    code = first.proc.wait(timeout=60)
    took = time.monotonic() - started
    first.stop()
    assert took < MAX_EXIT_SECONDS, f"SIGTERM took {took:.1f}s\n{first.log()}"
    assert code in (0, -signal.SIGTERM), (code, first.log())

    second = start_worker()
    sender.join(timeout=60)
    assert not sender.is_alive()

    records = consume(broker.bootstrap, worker_env["NPS_TOPIC_SCORED"], EVENTS, timeout=90)
    ids = [ScoredEvent.model_validate_json(r.value).event_id for r in records]
    assert len(set(ids)) == EVENTS, f"{EVENTS - len(set(ids))} events never scored"
    assert set(ids) == truth.ids
    assert wait_for_counts(second, truth) == []
    # under at-least-once a graceful stop commits what it published: no repeats either
    assert len(ids) == EVENTS, f"{len(ids) - EVENTS} scored events repeated after SIGTERM"
