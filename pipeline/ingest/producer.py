"""Writes accepted events to the raw topic and waits for the broker's acknowledgement.

One aiokafka producer per service, started lazily (so the service starts and answers
503 while the broker is down, and recovers by itself when it comes back). ``acks="all"``
and *no* idempotence: the embedded Tansu broker rejects idempotent aiokafka producers;
duplicates from client retries are harmless because records are keyed by event id and
the worker drops exact duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from pipeline.settings import DEFAULT_COMPRESSION, Compression
from schemas import FeedbackEvent


class BrokerUnavailable(RuntimeError):
    """The broker did not acknowledge every event within the timeout."""


class BrokerWriter:
    """Produce events keyed by event id to one topic; :meth:`write` returns only once the
    broker acknowledged all of them, or raises :class:`BrokerUnavailable`."""

    def __init__(
        self,
        bootstrap_servers: Sequence[str],
        topic: str,
        ack_timeout_seconds: float,
        max_request_bytes: int = 1024 * 1024,
        client_id: str = "nps-ingest",
        compression: Compression = DEFAULT_COMPRESSION,
    ) -> None:
        self.bootstrap_servers = list(bootstrap_servers)
        self.compression = compression
        self.topic = topic
        self.ack_timeout_seconds = ack_timeout_seconds
        self.max_request_bytes = max_request_bytes
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def write(self, events: Sequence[FeedbackEvent]) -> None:
        """Send ``events`` to the raw topic keyed by event id; wait for every acknowledgement
        (at most the ack timeout)."""
        await self.write_records(
            [(self.topic, e.event_id.encode(), e.model_dump_json().encode()) for e in events]
        )

    async def write_records(self, records: Sequence[tuple[str, bytes, bytes]]) -> None:
        """Send ``(topic, key, value)`` records and wait for every acknowledgement."""
        if not records:
            return
        try:
            await asyncio.wait_for(self._write(records), self.ack_timeout_seconds)
        except TimeoutError:
            raise BrokerUnavailable(
                f"the broker at {','.join(self.bootstrap_servers)} did not acknowledge "
                f"{len(records)} record(s) within {self.ack_timeout_seconds:g}s "
                "(NPS_INGEST_ACK_TIMEOUT_SECONDS)"
            ) from None
        except KafkaConnectionError as exc:
            raise BrokerUnavailable(
                f"cannot reach the broker at {','.join(self.bootstrap_servers)}: {exc}"
            ) from None
        except KafkaError as exc:
            raise BrokerUnavailable(f"the broker refused the write: {exc}") from None

    async def _write(self, records: Sequence[tuple[str, bytes, bytes]]) -> None:
        producer = await self._started()
        pending = [
            await producer.send(topic, value=value, key=key) for topic, key, value in records
        ]
        await asyncio.gather(*pending)

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is not None:
                return self._producer
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers,
                client_id=self.client_id,
                acks="all",
                enable_idempotence=False,
                request_timeout_ms=max(1000, int(self.ack_timeout_seconds * 1000)),
                max_request_size=self.max_request_bytes,
                compression_type=self.compression.kafka_codec,
            )
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
            return producer

    async def close(self) -> None:
        """Flush and stop the producer (waits for buffered records, at most the timeout)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), self.ack_timeout_seconds)
