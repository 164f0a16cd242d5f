"""Read topics' partitions directly (not as a group member): :func:`scan`.

Used to rebuild state from a changelog after an assignment (:func:`read_to_end`), to read
deltas records Faust's consumer left out (:func:`read_range`, see the windows agent) and
by the benchmark's diagnosis.

Faust's table recovery stops at the partition end offsets the broker reports
(ListOffsets). The embedded broker (Tansu) answers ListOffsets with the *base* offset
of the last record batch plus one, not the offset after its last record, so a
changelog written in multi-record batches (as :class:`pipeline.batchio.BatchProducer`
writes it) would be recovered only up to its last batch's first record. This reader
instead stops at the high watermark returned with the fetched data, which that broker
reports correctly, as does Kafka.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

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


async def scan(
    bootstrap_servers: str,
    topic: str,
    partitions: set[int] | None,
    on_record: Callable[[ConsumerRecord[bytes, bytes]], None],
    *,
    client_id: str = "nps-pipeline-reader",
    start: dict[int, int] | None = None,
    end: dict[int, int] | None = None,
) -> dict[int, int]:
    """Hand every record of ``topic``'s ``partitions`` (None: all of them) to
    ``on_record``, in offset order per partition: from ``start`` (per partition; the
    partition's first record when not given or before it) up to ``end`` (per partition,
    exclusive; when not given, the high watermark at the time of reading). Returns per
    partition the offset read up to. Raises ``TimeoutError`` when the broker answers no
    fetch of a partition not read to its end for :data:`FETCH_TIMEOUT_SECONDS`."""
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
        if partitions is None:
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return {}
        consumer.assign(tps)
        firsts = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(firsts[tp], (start or {}).get(tp.partition, 0)))
        waiting = set(tps)
        ends: dict[int, int] = {}
        deadline = time.monotonic() + FETCH_TIMEOUT_SECONDS
        while waiting:
            batches = await consumer.getmany(*waiting, timeout_ms=200, max_records=50_000)
            for tp, messages in batches.items():
                stop = None if end is None else end[tp.partition]
                for m in messages:
                    if stop is None or m.offset < stop:
                        on_record(m)
            progressed = False
            for tp in list(waiting):
                # the high watermark of a fetch, not ListOffsets' answer (see above)
                target = consumer.highwater(tp) if end is None else end[tp.partition]
                if target is None:
                    continue
                position = await consumer.position(tp)
                if position >= target:
                    waiting.discard(tp)
                    ends[tp.partition] = position
                    progressed = True
            if batches or progressed:
                deadline = time.monotonic() + FETCH_TIMEOUT_SECONDS
            elif time.monotonic() > deadline:
                names = ", ".join(f"{tp.topic}:{tp.partition}" for tp in sorted(waiting))
                raise TimeoutError(f"no fetch answer for {names} in {FETCH_TIMEOUT_SECONDS} s")
        return ends
    finally:
        await consumer.stop()


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
    records: list[LogRecord] = []
    tokens: dict[bytes, int] = {}  # one int object per token (millions of records)

    def keep(m: ConsumerRecord[bytes, bytes]) -> None:
        if m.key is None:
            return
        token = None
        for name, raw in m.headers:
            if name == FENCE_HEADER and raw is not None:
                token = tokens.get(raw)
                if token is None:
                    token = tokens[raw] = int(raw)
        records.append((m.partition, m.key, m.value, token))

    if not partitions:
        return TopicRead([], {})
    ends = await scan(bootstrap_servers, topic, partitions, keep, client_id=client_id, start=start)
    return TopicRead(records, ends)


async def read_range(
    bootstrap_servers: str, topic: str, partition: int, start: int, end: int
) -> list[tuple[int, bytes]]:
    """(offset, value) of the records with a value of ``topic``'s ``partition`` in
    ``[start, end)`` (from the partition's first record when ``start`` is before it)."""
    found: list[tuple[int, bytes]] = []

    def keep(m: ConsumerRecord[bytes, bytes]) -> None:
        if m.value is not None:
            found.append((m.offset, m.value))

    await scan(
        bootstrap_servers, topic, {partition}, keep, start={partition: start}, end={partition: end}
    )
    return found
