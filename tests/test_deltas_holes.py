"""The windows apply every deltas record once, even those Faust's consumer never hands over.

Around a rebalance Faust's streams drop records fetched while the flow was paused, and its
commit steps over holes in the offsets it read: a worker frozen past its session timeout
made the other worker's windows lose answers that way (``tests/bench/freeze_run.py``).
The windows stage keeps the offset of the last deltas record it applied with its marks in
the changelog and reads whatever lies between that and what it is handed, or what the
group committed, from the topic itself. Here the group's commits are set past records the
windows never applied, on a real worker and broker: partition 0 past all of them (nothing
is delivered, the quiet timer finds them), partition 1 past its first four (the first
record delivered shows the hole).
"""

from __future__ import annotations

import re
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.structs import OffsetAndMetadata

from pipeline.windows import Counts
from tests.deltas import deltas_record
from tests.soak.truth import api_counts

pytestmark = pytest.mark.integration

SCORES = [10, 9, 3, 8, 10, 0]  # per partition: 3 promoters, 2 detractors, 1 passive


class FaustNamedAssignor(RangePartitionAssignor):
    """The range assignor under the name of Faust's: the broker keeps a group's protocol
    name after its members left and takes no member of another."""

    name = "faust"


def commit_as_member(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit ``offsets`` of ``topic``'s partitions for ``group``, joined as its only member
    (the embedded broker takes no commits from outside a generation of the group)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        max_poll_interval_ms=3000,
        heartbeat_interval_ms=1000,  # the broker's JoinGroup waits for the rebalance timeout
        session_timeout_ms=6000,
        partition_assignment_strategy=[FaustNamedAssignor],
    )
    try:
        deadline = time.monotonic() + 30
        while len(consumer.assignment()) < 4 and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200, max_records=1)
        assert len(consumer.assignment()) == 4, consumer.assignment()
        consumer.commit(
            {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}
        )
    finally:
        consumer.close()


def test_the_windows_apply_deltas_records_the_group_committed_past(
    broker, worker_env, start_worker
) -> None:
    first = start_worker()  # makes the topics; its windows apply nothing
    first.stop()
    time.sleep(7)  # its member gone from the group (session timeout 6 s)
    deltas, group = worker_env["NPS_TOPIC_DELTAS"], worker_env["NPS_APP_ID"]
    now = time.time()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for partition in (0, 1):
        for i, score in enumerate(SCORES):
            ts = now - 120 + i
            value = deltas_record(
                f"department=d{partition}", {int(ts // 60) * 60: Counts.of_event("nps", score)}, ts
            )
            producer.send(deltas, value=value, partition=partition)
    producer.flush()
    producer.close()
    commit_as_member(broker.bootstrap, group, deltas, {0: 6, 1: 4})

    worker = start_worker()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        counts = api_counts(worker.url)
        if all(counts.get(f"department=d{p}", {}).get("responses") == 6 for p in (0, 1)):
            break
        time.sleep(0.5)
    for partition in (0, 1):
        row = counts.get(f"department=d{partition}", {})
        assert (row.get("responses"), row.get("promoters"), row.get("detractors")) == (6, 3, 2), (
            f"department=d{partition}: {row}\n{worker.log()}"
        )
    assert counts["overall"]["responses"] == 0  # only the two departments were sent
    log = worker.log_path.read_text()
    assert "deltas partition 0: offsets 0-5 not delivered by the consumer: 6 records read" in log
    assert "deltas partition 1: offsets 0-3 not delivered by the consumer: 4 records read" in log
    metric = re.search(
        r"^nps_pipeline_deltas_read_directly_total (\S+)$", worker.get("/metrics").decode(), re.M
    )
    assert metric is not None and float(metric.group(1)) == 10
