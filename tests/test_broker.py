"""The embedded broker starts, answers Kafka, and leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from kafka import KafkaAdminClient

from pipeline.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is as good as gone
        return stat.read().split()[2] != "Z"


def test_start_answer_stop() -> None:
    broker = EmbeddedBroker().start()
    assert broker.process is not None
    pid = broker.process.pid
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    assert isinstance(admin.list_topics(), list)
    admin.close()
    broker.stop()
    assert not alive(pid)


def test_no_orphan_when_owner_is_killed() -> None:
    code = (
        "from pipeline.broker import EmbeddedBroker; import time; "
        "b = EmbeddedBroker().start(); print(b.process.pid, flush=True); time.sleep(60)"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    pid = int(owner.stdout.readline())
    assert alive(pid)
    owner.send_signal(signal.SIGKILL)  # no cleanup code runs in the owner
    owner.wait()
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)


def test_ensure_topics_creates_every_topic_of_the_pipeline(broker, unique) -> None:  # type: ignore[no-untyped-def]
    from pipeline.settings import Settings
    from pipeline.topics import ensure_topics

    names = {
        field: f"{field}-{unique}"
        for field in (
            "topic_raw",
            "topic_scored",
            "topic_deadletter",
            "topic_deltas",
            "topic_windows",
            "topic_alerts",
            "ingest_topic_needs_fetch",
        )
    }
    app_id = f"nps-{unique}"
    settings = Settings(broker_url=broker.bootstrap, app_id=app_id, **names)  # type: ignore[arg-type]
    expected = [*names.values(), f"{app_id}-scoring-progress"]  # the scoring stage's
    assert sorted(ensure_topics(settings)) == sorted(expected)
    assert ensure_topics(settings) == []  # idempotent
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert set(names.values()) <= set(admin.list_topics())
    finally:
        admin.close()
