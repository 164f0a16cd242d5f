"""Stage 1 on a batched Kafka path: read raw feedback by the thousand, score, publish.

Why not a Faust agent: Faust's per-message plumbing (dispatch, waits, task creation,
acks) costs ~90 µs of CPU per record before an agent sees it, which caps an agent
near 11,000 records/s (``../shared/notes/design.md``). This service is one aiokafka
consumer (Faust's own Kafka client) in its own consumer group, run inside the Faust
app and started and stopped with it. Per poll it takes up to ``batch_size`` records,
hands them to :class:`pipeline.scoring.ScoringStage`, publishes everything the batch
produced with :class:`pipeline.batchio.BatchProducer` (waiting for the broker's
acknowledgements), and only then commits the batch's offsets: at-least-once, and a
crash replays at most the uncommitted batch.

The deltas for the windows stage are packed: one record per deltas-topic partition
and batch (:func:`pack_deltas`), every segment in the partition Kafka's default
partitioner gives its key. The windows agent therefore pays Faust's per-message cost
once per packed record, not once per segment, and Faust's key routing of HTTP
requests still finds a segment's owner. Every deltas partition gets a record every
batch, so every windows partition's clock follows the inputs even when no segment of
it was touched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from mode import Service

from pipeline import metrics
from pipeline.batchio import BatchProducer, Record
from pipeline.scoring import Output, ScoringStage
from pipeline.settings import Settings
from pipeline.validate import RawRecord

log = logging.getLogger(__name__)

#: How long the broker may hold a fetch for more data: the latency floor when quiet.
FETCH_MAX_WAIT_MS = 50


def pack_deltas(items: list[tuple[bytes, bytes]], clock: float) -> bytes:
    """One deltas-topic record: ``{"t": clock, "s": [[segment, deltas], ...]}``.

    ``deltas`` are the per-segment documents of :func:`pipeline.scoring.encode_deltas`,
    spliced in without re-encoding.
    """
    parts = [b"[" + orjson.dumps(key.decode()) + b"," + value + b"]" for key, value in items]
    return b'{"t":' + orjson.dumps(clock) + b',"s":[' + b",".join(parts) + b"]}"


class ScoringConsumer(Service):
    """The scoring stage's consumer loop (see the module docstring)."""

    def __init__(
        self, settings: Settings, stage: ScoringStage, producer: BatchProducer, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.stage = stage
        self.producer = producer
        self.consumer: AIOKafkaConsumer | None = None
        #: held while a batch is between poll and commit (a rebalance waits for it)
        self.in_flight = asyncio.Lock()
        self.ready = asyncio.Event()
        #: next offset to read per partition (for the lag metric)
        self.positions: dict[TopicPartition, int] = {}

    async def on_start(self) -> None:
        settings = self.settings
        timeout_ms = int(settings.broker_session_timeout_seconds * 1000)
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            client_id=f"{settings.app_id}-score",
            group_id=f"{settings.app_id}-score",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.batch_size,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            session_timeout_ms=timeout_ms,
            heartbeat_interval_ms=max(500, timeout_ms // 10),
            rebalance_timeout_ms=timeout_ms,
            max_poll_interval_ms=max(60_000, 6 * timeout_ms),
        )
        self.consumer.subscribe([settings.topic_raw], listener=_Listener(self))
        await self.consumer.start()
        await self.producer.partitions(settings.topic_deltas)
        self.ready.set()

    async def on_stop(self) -> None:
        # mode calls on_stop before it cancels the loop task: let the batch in flight
        # be published and committed, so that a graceful stop repeats nothing
        async with self.in_flight:
            if self.consumer is not None:
                await self.consumer.stop()
        # The producer is shared with the windows agent, which may still be finishing
        # its batch: it is not stopped here. Every send waits for the broker's acks,
        # so nothing is left unsent when the process exits.

    @Service.task
    async def _run(self) -> None:
        await self.ready.wait()
        consumer = self.consumer
        assert consumer is not None
        while not self.should_stop:
            polled = await consumer.getmany(
                timeout_ms=int(self.settings.batch_within_seconds * 1000),
                max_records=self.settings.batch_size,
            )
            if not polled:
                continue
            async with self.in_flight:
                if self.should_stop:  # stopping: leave these to the next owner
                    return
                await self._handle(consumer, polled)

    async def _handle(
        self, consumer: AIOKafkaConsumer, polled: dict[TopicPartition, list[Any]]
    ) -> None:
        started = time.perf_counter()
        records = [
            RawRecord(m.topic, m.partition, m.offset, m.key, m.value)
            for messages in polled.values()
            for m in messages
        ]
        out = self.stage.process(records)
        await self.producer.send(self._records(out))
        offsets = {tp: messages[-1].offset + 1 for tp, messages in polled.items()}
        await consumer.commit(offsets)
        self.positions.update(offsets)
        metrics.BATCH_SIZE.observe(len(records))
        metrics.PROCESSING_LATENCY.observe(time.perf_counter() - started)

    def lag(self) -> list[tuple[str, int, int]]:
        """(topic, partition, records not yet read) of the raw partitions read here."""
        consumer = self.consumer
        if consumer is None or not self.ready.is_set():
            return []
        lags = []
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            position = self.positions.get(tp)
            if highwater is None or position is None:
                continue
            lags.append((tp.topic, tp.partition, max(0, highwater - position)))
        return lags

    def _records(self, out: Output) -> list[Record]:
        settings = self.settings
        producer = self.producer
        scored_topic = settings.topic_scored
        records: list[Record] = [(scored_topic, None, key, value) for key, value in out.scored]
        records.extend(
            (settings.topic_deadletter, None, key, value) for key, value in out.deadletters
        )
        # follow-up tasks, keyed by task id (none unless NPS_FOLLOWUPS_ENABLED)
        records.extend((settings.topic_followups, None, key, value) for key, value in out.followups)
        deltas_topic = settings.topic_deltas
        partitions = producer.known_partitions(deltas_topic) or 1
        per_partition: list[list[tuple[bytes, bytes]]] = [[] for _ in range(partitions)]
        for key, value in out.deltas:
            per_partition[producer.cached_partition(key, partitions)].append((key, value))
        if out.clock is not None:
            records.extend(
                (deltas_topic, partition, None, pack_deltas(items, out.clock))
                for partition, items in enumerate(per_partition)
            )
        return records


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: ScoringConsumer) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # let the batch in flight finish and commit before its partitions move
        async with self.service.in_flight:
            pass
        self.service.stage.watermarks.forget(tp.partition for tp in revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("scoring partitions assigned: %s", sorted(tp.partition for tp in assigned))
