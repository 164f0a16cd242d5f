"""Shared fixtures: one embedded Tansu broker per test session."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families

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


def without_nps_settings(**settings: str) -> dict[str, str]:
    """This process's environment without its ``NPS_*`` variables, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NPS_")}
    env.update(settings)
    return env


def run_python(code: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter with only ``settings`` of the NPS_* variables
    (for what is process-wide: collector thresholds, logging, the C heap); must succeed."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=without_nps_settings(**settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done


def worker_environment(bootstrap: str, unique: str, prefix: str = "") -> dict[str, str]:
    """Environment of a worker on ``bootstrap`` with topics and group of its own."""
    env = without_nps_settings()
    env.update(
        NPS_BROKER_URL=bootstrap,
        NPS_APP_ID=f"nps-{prefix or 'test-'}{unique}",
        NPS_TOPIC_RAW=f"{prefix}raw-{unique}",
        NPS_TOPIC_SCORED=f"{prefix}scored-{unique}",
        NPS_TOPIC_DEADLETTER=f"{prefix}dead-{unique}",
        NPS_TOPIC_DELTAS=f"{prefix}deltas-{unique}",
        NPS_TOPIC_WINDOWS=f"{prefix}windows-{unique}",
        NPS_TOPIC_PARTITIONS="4",
        NPS_WEB_PORT=str(free_port()),
        NPS_BROKER_SESSION_TIMEOUT_SECONDS="6",
        NPS_BATCH_WITHIN_SECONDS="0.1",
        NPS_LOG_LEVEL=os.environ.get("NPS_LOG_LEVEL", "warn"),
    )
    return env


@pytest.fixture
def worker_env(broker: EmbeddedBroker, unique: str) -> dict[str, str]:
    """Environment of a worker on the test broker with topics and group of its own."""
    return worker_environment(broker.bootstrap, unique)


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


AM_BINARY = os.environ.get("NPS_ALERTMANAGER_BINARY", "/usr/bin/prometheus-alertmanager")
AM_CONFIG = """\
route:
  receiver: blackhole
receivers:
  - name: blackhole
"""


class Alertmanager:
    """A real Alertmanager process on 127.0.0.1:``port`` with its data under ``workdir``."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> Alertmanager:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "alertmanager.yml"
        config.write_text(AM_CONFIG)
        self._log = (self.workdir / "alertmanager.log").open("ab")
        self.proc = subprocess.Popen(
            [
                AM_BINARY,
                f"--config.file={config}",
                f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"alertmanager exited early:\n{self.log()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp,
            ):
                if resp.status == 200:
                    return self
            time.sleep(0.05)
        raise AssertionError(f"alertmanager not ready after {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._log.close()

    def log(self) -> str:
        return (self.workdir / "alertmanager.log").read_text(errors="replace")[-3000:]

    def alerts(self, **params: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` with query parameters (``active="false"``, ``filter=...``)."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts?{query}", timeout=5) as resp:
            return json.load(resp)

    def alerts_with(self, test_id: str, **params: str) -> list[dict[str, Any]]:
        return self.alerts(filter=f'test="{test_id}"', **params)

    def metric(self, name: str, **labels: str) -> float:
        """A sample of Alertmanager's own ``/metrics`` (0 when absent)."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        return 0.0


@pytest.fixture
def start_alertmanager(tmp_path: Path) -> Iterator[Callable[..., Alertmanager]]:
    """Starts Alertmanagers (on a free port, or the one given) and stops them after the test."""
    if not os.access(AM_BINARY, os.X_OK):
        pytest.fail(
            f"{AM_BINARY} not found: the Alertmanager tests need the real binary; run "
            "`make tools` (Debian package prometheus-alertmanager)"
        )
    started: list[Alertmanager] = []

    def start(port: int | None = None) -> Alertmanager:
        am = Alertmanager(tmp_path / f"am{len(started)}", port or free_port())
        started.append(am)
        return am.start()

    yield start
    for am in started:
        am.stop()
