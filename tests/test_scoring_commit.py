"""The scoring stage's offset commits (pipeline.scoring_service), on the real broker.

A batch's commit is sent, not waited for, so that the next batch is read and scored
meanwhile; a stop and a rebalance must still wait for it. The broker's commits are made
slow here (half a second) so that a stop which did not wait would visibly leave the
last batch uncommitted: the partitions' next owner would read it again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pipeline.batchio import BatchProducer
from pipeline.bench.dataset import generate
from pipeline.scoring import ScoringStage
from pipeline.scoring_service import ScoringConsumer
from pipeline.settings import Settings, load_settings
from pipeline.topics import ensure_topics
from tests.conftest import worker_environment

EVENTS = 600
COMMIT_DELAY = 0.5


def _settings(bootstrap: str, unique: str) -> Settings:
    """A worker's settings (topics and group of its own, as ``worker_environment``
    gives them), with small batches and no comment analytics."""
    env = worker_environment(bootstrap, unique, prefix="commit-")
    fields: dict[str, object] = {k[4:].lower(): v for k, v in env.items() if k.startswith("NPS_")}
    fields.update(
        topic_partitions=2, batch_size=100, batch_within_seconds=0.05, text_analytics=False
    )
    return load_settings(**fields)


def _committed(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offsets of ``topic``, summed over its partitions."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.committed(tp) or 0 for tp in tps)
    finally:
        consumer.close()


def test_a_stop_waits_for_the_last_commit(broker, unique) -> None:
    settings = _settings(broker.bootstrap, unique)
    ensure_topics(settings)
    data = generate(EVENTS, 50, end=time.time() - 60, invalid_share=0.0)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for i, value in enumerate(data.values):
        producer.send(settings.topic_raw, key=f"k{i}".encode(), value=value)
    producer.flush()
    producer.close()

    slow_commits: list[float] = []
    original_commit = AIOKafkaConsumer.commit

    async def slow_commit(self: AIOKafkaConsumer, offsets: Any = None) -> None:
        await asyncio.sleep(COMMIT_DELAY)
        await original_commit(self, offsets)
        slow_commits.append(time.monotonic())

    async def run() -> int:
        service = ScoringConsumer(
            settings,
            ScoringStage(settings),
            BatchProducer(settings.broker_url, max_request_size=1 << 20, client_id="t"),
        )
        AIOKafkaConsumer.commit = slow_commit  # type: ignore[method-assign]
        try:
            await service.start()
            deadline = time.monotonic() + 60
            while service.stage.totals.scored < EVENTS:
                assert time.monotonic() < deadline, "the records were not all scored"
                await asyncio.sleep(0.05)
            scored = service.stage.totals.scored
            await service.stop()  # the last batch's commit is still sleeping now
            await service.producer.stop()
        finally:
            AIOKafkaConsumer.commit = original_commit  # type: ignore[method-assign]
        return scored

    scored = asyncio.run(run())
    assert scored == EVENTS
    assert slow_commits, "no commit went through the slowed path"
    # every record read was committed: a restarted worker repeats nothing
    assert _committed(broker.bootstrap, f"{settings.app_id}-score", settings.topic_raw) == EVENTS
