"""NPS_COMPRESSION: the record batches the workers produce are compressed on the broker,
and a plain downstream consumer reads them as it would uncompressed ones (real broker)."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, TopicPartition
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords
from kafka import KafkaProducer

from pipeline.batchio import BatchProducer
from pipeline.bench.dataset import generate
from pipeline.settings import Compression, ConfigError, load_settings
from pipeline.topics import ensure_topics
from tests.conftest import consume

pytestmark = pytest.mark.integration

#: the codec field of a Kafka record batch's attributes
CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


async def _codecs(bootstrap: str, topic: str) -> list[int]:
    """The codec of every record batch the broker holds for ``topic`` (all partitions),
    read with a raw Fetch request: consumers decompress, so only the batches show it."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        partitions: set[int] | None = None
        for _ in range(50):
            await client.force_metadata_update()
            partitions = client.cluster.partitions_for_topic(topic)
            if partitions:
                break
            await asyncio.sleep(0.1)
        assert partitions, f"{topic} has no partitions"
        codecs = []
        for partition in sorted(partitions):
            node = client.cluster.leader_for_partition(TopicPartition(topic, partition))
            offset = 0
            while True:
                request = FetchRequest(10, 1, 1 << 24, 0, [(topic, [(partition, offset, 1 << 24)])])
                response = await client.send(node, request)
                data = response.topics[0][1][0][-1]
                records = MemoryRecords(data) if data else None
                fetched = 0
                while records is not None and (batch := records.next_batch()) is not None:
                    codecs.append(batch.compression_type)
                    offset = batch.next_offset
                    fetched += 1
                if not fetched:
                    break
        return codecs
    finally:
        await client.close()


def _answers(body: bytes) -> int:
    counts = orjson.loads(body)["all_time"]
    return int(counts["responses"] + counts["csat_responses"] + counts["ces_responses"])


def codecs(bootstrap: str, topic: str) -> list[int]:
    return asyncio.run(_codecs(bootstrap, topic))


@pytest.mark.parametrize("codec", [None, "zstd"], ids=["default", "zstd"])
def test_a_worker_compresses_what_it_produces_and_downstream_reads_it(
    broker, start_worker, worker_env, codec
) -> None:
    worker = start_worker() if codec is None else start_worker(NPS_COMPRESSION=codec)
    expected = codec or "snappy"  # the default (DEFAULT_COMPRESSION), checked below
    data = generate(300, 40, end=time.time() - 60, late_share=0.0, invalid_share=0.0)
    ids = sorted(orjson.loads(value)["event_id"] for value in data.values)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for value in data.values:
        producer.send(worker_env["NPS_TOPIC_RAW"], value=value)
    producer.flush()
    producer.close()

    # a plain kafka-python consumer, as a downstream service has it (its snappy and zstd
    # support: the extras of the kafka-python dependency)
    scored = consume(broker.bootstrap, worker_env["NPS_TOPIC_SCORED"], len(ids))
    assert sorted(orjson.loads(r.value)["feedback"]["event_id"] for r in scored) == ids
    assert sorted(r.key.decode() for r in scored) == ids
    # and the windows stage read its compressed deltas: every answer counted
    deadline = time.monotonic() + 30
    while (counted := _answers(worker.get("/api/v1/segments/overall"))) < len(ids):
        assert time.monotonic() < deadline, f"{counted} of {len(ids)} answers counted"
        time.sleep(0.2)
    assert counted == len(ids)

    app_id = worker_env["NPS_APP_ID"]
    for topic in (
        worker_env["NPS_TOPIC_SCORED"],
        worker_env["NPS_TOPIC_DELTAS"],
        f"{app_id}-scoring-progress",
        f"{app_id}-windows-state-changelog",
    ):
        found = codecs(broker.bootstrap, topic)
        assert found, f"nothing on {topic}"
        assert set(found) == {CODECS[expected]}, topic


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_the_batch_producer_compresses_with_the_chosen_codec(broker, unique, compression) -> None:
    settings = load_settings(
        broker_url=broker.bootstrap,
        topic_raw=f"compress-{compression}-{unique}",
        topic_partitions=2,
    )
    ensure_topics(settings)
    topic = settings.topic_raw
    sent = [(f"k{i}".encode(), b'{"comment": "the agent was helpful %d"}' % i) for i in range(500)]

    async def send_and_read() -> list[tuple[bytes, bytes]]:
        producer = BatchProducer(
            broker.bootstrap,
            max_request_size=1 << 20,
            client_id="t",
            compression=Compression(compression),
        )
        await producer.start()
        try:
            await producer.send([(topic, None, key, value) for key, value in sent])
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        got: list[tuple[bytes, bytes]] = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < len(sent) and time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend((r.key, r.value) for r in batch)
        finally:
            await consumer.stop()
        return got

    assert sorted(asyncio.run(send_and_read())) == sorted(sent)
    assert set(codecs(broker.bootstrap, topic)) == {CODECS[compression]}


def test_an_unknown_codec_stops_the_start_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="NPS_COMPRESSION"):
        load_settings(compression="brotli")
    assert load_settings().compression == "snappy"
