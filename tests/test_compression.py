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
from typer.testing import CliRunner

from pipeline.batchio import BatchProducer
from pipeline.bench.dataset import generate
from pipeline.cli import app as cli
from pipeline.ingest.app import WRITER, create_app
from pipeline.settings import Compression, ConfigError, load_settings
from pipeline.topics import ensure_topics
from schemas import FeedbackEvent
from schemas.feedback import example_event
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


def _raw_topic(broker, name: str) -> str:
    settings = load_settings(broker_url=broker.bootstrap, topic_raw=name, topic_partitions=2)
    ensure_topics(settings)
    return name


def test_the_simulator_compresses_with_the_setting(broker, unique) -> None:
    """``nps-pipeline simulate`` with NPS_COMPRESSION=lz4: lz4 batches on the raw topic,
    read back by kafka-python (its lz4 package: a dependency of this project)."""
    topic = _raw_topic(broker, f"sim-lz4-{unique}")
    env = {"NPS_BROKER_URL": broker.bootstrap, "NPS_TOPIC_RAW": topic, "NPS_COMPRESSION": "lz4"}
    done = CliRunner().invoke(
        cli, ["simulate", "--count", "80", "--rate", "0", "--seed", "3"], env=env
    )
    assert done.exit_code == 0, done.output
    assert len(consume(broker.bootstrap, topic, 80)) == 80
    assert set(codecs(broker.bootstrap, topic)) == {CODECS["lz4"]}


def test_a_replay_compresses_with_the_default_codec(broker, unique, tmp_path) -> None:
    """``nps-pipeline replay`` without NPS_COMPRESSION: snappy batches (the default)."""
    topic = _raw_topic(broker, f"replay-default-{unique}")
    export = tmp_path / "export.jsonl"
    export.write_bytes(
        b"\n".join(orjson.dumps(example_event(event_id=f"r-{i}", score=i % 11)) for i in range(40))
    )
    env = {"NPS_BROKER_URL": broker.bootstrap, "NPS_TOPIC_RAW": topic, "NPS_COMPRESSION": None}
    done = CliRunner().invoke(cli, ["replay", str(export), "--progress-interval", "0"], env=env)
    assert done.exit_code == 0, done.output
    got = consume(broker.bootstrap, topic, 40)
    assert sorted(r.key.decode() for r in got) == sorted(f"r-{i}" for i in range(40))
    assert set(codecs(broker.bootstrap, topic)) == {CODECS["snappy"]}


def test_http_ingest_compresses_with_the_setting(broker, unique) -> None:
    """The ingest service's broker writer, as its app builds it from the settings."""
    topic = _raw_topic(broker, f"ingest-zstd-{unique}")
    settings = load_settings(
        broker_url=broker.bootstrap,
        topic_raw=topic,
        compression="zstd",
        ingest_insecure_no_auth=True,
    )
    writer = create_app(settings)[WRITER]
    events = [FeedbackEvent.model_validate(example_event(event_id=f"h-{i}")) for i in range(25)]

    async def write() -> None:
        try:
            await writer.write(events)
        finally:
            await writer.close()

    asyncio.run(write())
    assert len(consume(broker.bootstrap, topic, 25)) == 25
    assert set(codecs(broker.bootstrap, topic)) == {CODECS["zstd"]}


def test_an_unknown_codec_stops_the_start_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="NPS_COMPRESSION"):
        load_settings(compression="brotli")
    assert load_settings().compression == "snappy"
