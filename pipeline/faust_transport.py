"""Faust's Kafka transport with a short fetch wait for the app's own consumer.

Faust (faust-streaming's aiokafka driver) creates the consumer of its agents and table
changelogs with ``fetch_max_wait_ms=1500``, fixed in its code. A broker may hold a fetch
that long before answering when it has less than ``fetch_min_bytes`` new, and the
embedded broker (Tansu) was measured to hold it even when records were there: with the
windows agent reading the deltas topic, the windows (and so the alert rounds) trailed
the scored events by 1.3-2 s in the benchmark's latency phase. The app's consumer here
waits at most :data:`FETCH_MAX_WAIT_MS`, as does the scoring stage's own consumer
(``pipeline.scoring_service``).

It also asks the broker whether a consumer group generation is still current
(:func:`confirm_generation`), for the changelog's fence (:mod:`pipeline.fencing`).
Everything else is Faust's driver as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers import aiokafka as driver
from faust.types import TransportT

from pipeline import fencing

#: Longest wait of one fetch, of the app's consumer (Faust's: 1,500 ms) and of the scoring
#: stage's (aiokafka's default: 500 ms): the latency floor when the input is quiet, and on
#: the embedded broker at any load (it holds a fetch that long even with records there).
FETCH_MAX_WAIT_MS = 50


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # read by AIOKafkaConsumer.start() when it builds its fetcher
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(driver.Transport):
    Consumer = _Consumer


class App(faust.App):
    """``faust.App`` whose Kafka transport is :class:`_Transport`."""

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)


async def confirm_generation(
    app: faust.App, partitions: Iterable[tuple[str, int]], generation: int
) -> bool:
    """:func:`pipeline.fencing.confirm_generation` of ``partitions`` (topic, partition)
    for the app's consumer, in the thread it runs in."""
    thread = app.consumer._thread  # faust keeps no public accessor
    tps = [TopicPartition(topic, partition) for topic, partition in partitions]
    confirmed = await thread.call_thread(
        fencing.confirm_generation, thread._ensure_consumer(), tps, generation
    )
    return bool(confirmed)
