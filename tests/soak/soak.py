"""Soak run: the simulator at a steady rate, the worker SIGKILLed and restarted periodically.

    python -m tests.soak.soak --minutes 10 --kill-every 60 [--rate 300] [--broker HOST:PORT]

Not part of ``make test``. Starts an embedded broker (unless ``--broker``), one worker
(``nps-pipeline worker``, a real subprocess) with topics of its own, and a producer of
simulated answers (``pipeline.simulator``; ``--invalid-ratio`` of them bad records).
Every ``--kill-every`` seconds the worker's process group gets SIGKILL and a new worker
is started. At the end it waits for the backlog to drain and prints:

* events in (acknowledged by the broker), valid and invalid;
* scored records, distinct scored event ids, repeats, ids never scored;
* dead letters by reason;
* the windows' all-time counts per segment (overall and per department) against the
  ground truth computed here from the events sent (:mod:`tests.soak.truth`): every
  mismatch, with its sign (+ = counted twice);
* kills and the workers' maximum RSS.

Exit status 0 only if nothing was lost and no count differs (README, "Processing
guarantees": a replayed batch is published again downstream, so scored records may
repeat, but the windows count every answer once).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
from kafka import KafkaConsumer, KafkaProducer

from pipeline.broker import EmbeddedBroker
from pipeline.simulator import FeedbackSimulator, SimulatorConfig, bad_record
from schemas import DeadLetter
from tests.conftest import WorkerProcess, worker_environment
from tests.soak.truth import Truth, api_counts, mismatches


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Producer:
    """Simulated answers at ``rate``/s; the truth holds only acknowledged valid events."""

    def __init__(self, bootstrap: str, topic: str, rate: float, invalid_ratio: float) -> None:
        self.bootstrap, self.topic, self.rate = bootstrap, topic, rate
        self.invalid_ratio = invalid_ratio
        self.truth = Truth()
        self.acked_valid = self.acked_invalid = self.failed = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="soak-producer")

    def _run(self) -> None:
        sim = FeedbackSimulator(SimulatorConfig(seed=int(time.time()), comment_probability=0.4))
        rng = sim._bad_rng  # the simulator's own generator of bad records
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        due = time.monotonic()
        n = 0
        while not self.stop.is_set():
            if (wait := due - time.monotonic()) > 0:
                self.stop.wait(wait)
                continue
            due += 1.0 / self.rate
            n += 1
            if rng.random() < self.invalid_ratio:
                future = producer.send(self.topic, key=f"bad-{n}".encode(), value=bad_record(rng))
                future.add_callback(self._acked_invalid).add_errback(self._failed)
                continue
            event = sim.next_event(datetime.now(UTC))
            value = orjson.dumps(event)
            future = producer.send(self.topic, key=event["event_id"].encode(), value=value)
            future.add_callback(self._acked_valid, event).add_errback(self._failed)
        producer.flush()
        producer.close()

    def _acked_valid(self, event: dict, _metadata: object) -> None:
        with self._lock:
            self.acked_valid += 1
            self.truth.add(event)

    def _acked_invalid(self, _metadata: object) -> None:
        with self._lock:
            self.acked_invalid += 1

    def _failed(self, _exc: BaseException) -> None:
        with self._lock:
            self.failed += 1


def read_topic(bootstrap: str, topic: str, idle_seconds: float = 3.0) -> list:
    """Every record of ``topic`` (until nothing new came for ``idle_seconds``)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=32 * 1024 * 1024,
    )
    records: list = []
    last = time.monotonic()
    try:
        while time.monotonic() - last < idle_seconds:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
                last = time.monotonic()
    finally:
        consumer.close()
    return records


def wait_for_drain(worker: WorkerProcess, expected: int, timeout: float = 180) -> None:
    """Until the windows count ``expected`` answers or more (overall), and stay put."""
    deadline = time.monotonic() + timeout
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        try:
            counts = api_counts(worker.url)["overall"]
            seen = counts["responses"] + counts["csat_responses"] + counts["ces_responses"]
        except OSError:
            seen = -1
        if seen != last:
            last, stable_since = seen, time.monotonic()
        elif seen >= expected and time.monotonic() - stable_since > 5:
            return
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--kill-every", type=float, default=60.0, help="seconds; 0 = never")
    parser.add_argument("--rate", type=float, default=300.0, help="events per second")
    parser.add_argument("--invalid-ratio", type=float, default=0.01)
    parser.add_argument("--broker", help="bootstrap servers; default: an embedded broker")
    args = parser.parse_args(argv)

    broker = None if args.broker else EmbeddedBroker().start()
    bootstrap = args.broker or broker.bootstrap  # type: ignore[union-attr]
    env = worker_environment(bootstrap, uuid.uuid4().hex[:8], prefix="soak-")
    env["NPS_TOPIC_ALERTS"] = env["NPS_TOPIC_RAW"].replace("raw-", "alerts-")
    logs = Path(tempfile.mkdtemp(prefix="nps-soak-"))
    print(f"broker {bootstrap}  logs {logs}  app {env['NPS_APP_ID']}", flush=True)
    workers: list[WorkerProcess] = []
    max_rss = 0.0

    def start_worker() -> WorkerProcess:
        worker = WorkerProcess(env, logs / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker.start(timeout=120)

    producer = Producer(bootstrap, env["NPS_TOPIC_RAW"], args.rate, args.invalid_ratio)
    try:
        worker = start_worker()
        producer.thread.start()
        started = time.monotonic()
        end = started + args.minutes * 60
        next_kill = started + args.kill_every if args.kill_every > 0 else float("inf")
        kills = 0
        while time.monotonic() < end:
            assert worker.proc is not None
            max_rss = max(max_rss, rss_mb(worker.proc.pid))
            if time.monotonic() >= next_kill:
                os.killpg(worker.proc.pid, signal.SIGKILL)
                worker.stop()
                kills += 1
                print(f"{time.monotonic() - started:7.0f}s  SIGKILL #{kills}", flush=True)
                worker = start_worker()
                next_kill = time.monotonic() + args.kill_every
            time.sleep(1.0)
        producer.stop.set()
        producer.thread.join()
        valid = producer.acked_valid
        wait_for_drain(worker, len(producer.truth.ids))
        assert worker.proc is not None
        max_rss = max(max_rss, rss_mb(worker.proc.pid))
        diff = mismatches(producer.truth, api_counts(worker.url))
        scored = read_topic(bootstrap, env["NPS_TOPIC_SCORED"])
        dead = read_topic(bootstrap, env["NPS_TOPIC_DEADLETTER"])
    finally:
        producer.stop.set()
        for w in workers:
            w.stop()
        if broker is not None:
            broker.stop()

    ids = Counter(orjson.loads(r.value)["event_id"] for r in scored)
    never = producer.truth.ids - set(ids)
    reasons = Counter(DeadLetter.model_validate_json(r.value).reason.value for r in dead)
    print()
    invalid = producer.acked_invalid
    print(
        f"events in          {valid + invalid:,} ({valid:,} valid, {invalid:,} invalid; "
        f"{producer.failed:,} not acknowledged)"
    )
    print(
        f"scored records     {len(scored):,}  distinct ids {len(ids):,}  "
        f"repeated {len(scored) - len(ids):,}  never scored {len(never):,}"
    )
    print(f"dead letters       {len(dead):,}  " + ", ".join(f"{k} {v}" for k, v in reasons.items()))
    print(f"worker kills       {kills}  max RSS {max_rss:.0f} MB")
    print(f"count mismatches   {len(diff)} (windows all-time vs ground truth)")
    for line in diff[:40]:
        print(f"  {line}")
    if len(diff) > 40:
        print(f"  ... and {len(diff) - 40} more")
    return 0 if not diff and not never else 1


if __name__ == "__main__":
    sys.exit(main())
