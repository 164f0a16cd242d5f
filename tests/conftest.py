"""Shared fixtures: one embedded Tansu broker per test session."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord

from pipeline.broker import EmbeddedBroker, free_port


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A real Kafka-protocol broker (Tansu, memory storage) on a free loopback port."""
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic names and group ids of one test."""
    return uuid.uuid4().hex[:8]


class WorkerProcess:
    """``nps-pipeline worker`` as a real subprocess, with its own web port and log."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.web_port = int(env["NPS_WEB_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, timeout: float = 90.0) -> WorkerProcess:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "worker"],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log()}")
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as resp,
            ):
                if json.load(resp).get("ready"):
                    return self
            time.sleep(0.25)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.log()}")

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as resp:
            return resp.read()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def worker_env(broker: EmbeddedBroker, unique: str) -> dict[str, str]:
    """Environment of a worker on the test broker with topics and group of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NPS_")}
    env.update(
        NPS_BROKER_URL=broker.bootstrap,
        NPS_APP_ID=f"nps-test-{unique}",
        NPS_TOPIC_RAW=f"raw-{unique}",
        NPS_TOPIC_SCORED=f"scored-{unique}",
        NPS_TOPIC_DEADLETTER=f"dead-{unique}",
        NPS_TOPIC_DELTAS=f"deltas-{unique}",
        NPS_TOPIC_WINDOWS=f"windows-{unique}",
        NPS_TOPIC_PARTITIONS="4",
        NPS_WEB_PORT=str(free_port()),
        NPS_BROKER_SESSION_TIMEOUT_SECONDS="6",
        NPS_BATCH_WITHIN_SECONDS="0.1",
    )
    return env


@pytest.fixture
def start_worker(
    worker_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers (extra env per call); all are stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(**overrides: str) -> WorkerProcess:
        env = {**worker_env, **overrides}
        if "NPS_WEB_PORT" not in overrides and started:
            env["NPS_WEB_PORT"] = str(free_port())
        worker = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


def consume(
    bootstrap: str, topic: str, expected: int, timeout: float = 60.0
) -> list[ConsumerRecord]:
    """Read ``topic`` from the start until ``expected`` records arrived (or the timeout),
    then keep reading one more second to catch any extra record."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=32 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
            if len(records) >= expected:
                deadline = min(deadline, time.monotonic() + 1.0)
    finally:
        consumer.close()
    return records
