"""Read a changelog topic's partitions to their end, to rebuild state after an assignment.

Faust's table recovery stops at the partition end offsets the broker reports
(ListOffsets). The embedded broker (Tansu) answers ListOffsets with the *base* offset
of the last record batch plus one, not the offset after its last record, so a
changelog written in multi-record batches (as :class:`pipeline.batchio.BatchProducer`
writes it) would be recovered only up to its last batch's first record. This reader
instead stops at the high watermark returned with the fetched data, which that broker
reports correctly, as does Kafka. The window state is rebuilt from what it reads.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition

#: How long to wait for the first fetch answer of a partition before giving up.
FETCH_TIMEOUT_SECONDS = 60.0

#: The record header that carries the writer's fence token (see pipeline.aggregate).
FENCE_HEADER = "fence"

#: (partition, key, value, fence token of the writer or None)
LogRecord = tuple[int, bytes, bytes | None, int | None]


class TopicRead(NamedTuple):
    """What :func:`read_to_end` read: the keyed records, in offset order per partition,
    and per partition the offset it read up to (the next :func:`read_to_end` can start
    there)."""

    records: list[LogRecord]
    ends: dict[int, int]


def fence_headers(token: int) -> list[tuple[str, bytes]]:
    """The headers of a record written under fence ``token``."""
    return [(FENCE_HEADER, str(token).encode())]


async def read_to_end(
    bootstrap_servers: str,
    topic: str,
    partitions: set[int],
    *,
    client_id: str,
    start: dict[int, int] | None = None,
) -> TopicRead:
    """Every keyed record of ``topic``'s ``partitions`` from ``start`` (per partition;
    the beginning when not given) up to each partition's high watermark at the time of
    reading, with the fence token of its writer when it carries one."""
    if not partitions:
        return TopicRead([], {})
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        for tp in tps:
            if start is not None and start.get(tp.partition):
                consumer.seek(tp, start[tp.partition])
        records: list[LogRecord] = []
        tokens: dict[bytes, int] = {}  # one int object per token (millions of records)
        waiting = set(tps)
        ends: dict[int, int] = {}
        deadline = time.monotonic() + FETCH_TIMEOUT_SECONDS
        while waiting:
            batches = await consumer.getmany(*waiting, timeout_ms=200, max_records=50_000)
            for messages in batches.values():
                for m in messages:
                    if m.key is None:
                        continue
                    token = None
                    for name, raw in m.headers:
                        if name == FENCE_HEADER and raw is not None:
                            token = tokens.get(raw)
                            if token is None:
                                token = tokens[raw] = int(raw)
                    records.append((m.partition, m.key, m.value, token))
            progressed = False
            for tp in list(waiting):
                highwater = consumer.highwater(tp)
                if highwater is None:
                    continue
                position = await consumer.position(tp)
                if position >= highwater:
                    waiting.discard(tp)
                    ends[tp.partition] = position
                    progressed = True
            if batches or progressed:
                deadline = time.monotonic() + FETCH_TIMEOUT_SECONDS
            elif time.monotonic() > deadline:
                names = ", ".join(f"{tp.topic}:{tp.partition}" for tp in sorted(waiting))
                raise TimeoutError(f"no fetch answer for {names} in {FETCH_TIMEOUT_SECONDS} s")
        return TopicRead(records, ends)
    finally:
        await consumer.stop()


async def read_range(
    bootstrap_servers: str, topic: str, partition: int, start: int, end: int
) -> list[tuple[int, bytes]]:
    """(offset, value) of the records of ``topic``'s ``partition`` in ``[start, end)``
    (from the partition's first record when ``start`` is before it)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, max(start, (await consumer.beginning_offsets([tp]))[tp]))
        found: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + FETCH_TIMEOUT_SECONDS
        while await consumer.position(tp) < end:
            messages = (await consumer.getmany(tp, timeout_ms=200)).get(tp, [])
            found.extend((m.offset, m.value) for m in messages if m.offset < end)
            if messages:
                deadline = time.monotonic() + FETCH_TIMEOUT_SECONDS
            elif time.monotonic() > deadline:
                raise TimeoutError(f"no records of {topic}:{partition} from {start}")
        return found
    finally:
        await consumer.stop()
