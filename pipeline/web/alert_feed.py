"""The alerts feed of the live page: what fired and resolved, as published.

:class:`AlertFeed` is a bounded in-memory ring of the latest alert changes (fired and
resolved). :func:`follow_alerts` fills it by reading the alerts topic itself — every
partition, without a consumer group, starting ``capacity`` records before the end of
each partition — so each worker's feed holds what every worker published, including
changes from before it started, and nothing in the windows agent needs a hook. Alerts
*firing now* come from the alert engines instead (their state survives restarts and no
ring capacity can push an old but still firing alert out).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from schemas.alert import Alert, AlertStatus

log = logging.getLogger(__name__)

#: alert changes kept per worker (a day with a few incidents fits many times over)
DEFAULT_CAPACITY = 200
RETRY_SECONDS = 5.0


class AlertFeed:
    """The newest ``capacity`` alert changes, oldest dropped first; a change seen twice
    (the same alert id and status, e.g. re-published after a restart) is kept once."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._ring: deque[Alert] = deque(maxlen=capacity)

    def add(self, alert: Alert) -> None:
        key = (alert.alert_id, alert.status)
        if any((a.alert_id, a.status) == key for a in self._ring):
            return
        self._ring.append(alert)

    def add_json(self, value: bytes | None) -> bool:
        """Add one record of the alerts topic; False (and a warning) if it is no Alert."""
        try:
            self.add(Alert.model_validate_json(value or b""))
        except ValidationError as exc:
            log.warning("alerts topic: skipped a record that is not an Alert: %s", exc)
            return False
        return True

    def recent(self) -> list[Alert]:
        """The kept changes, newest change first (event time)."""
        return merge_recent([self._ring], self.capacity)

    def __len__(self) -> int:
        return len(self._ring)


def start_offsets(
    partitions: Sequence[TopicPartition],
    beginnings: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
    capacity: int,
) -> dict[TopicPartition, int]:
    """Where to start reading each partition: at most ``capacity`` records before its end."""
    return {tp: max(beginnings.get(tp, 0), ends.get(tp, 0) - capacity) for tp in partitions}


async def follow_alerts(
    bootstrap_servers: list[str], topic: str, feed: AlertFeed, client_id: str
) -> None:
    """Read ``topic`` (all partitions, no group) into ``feed`` until cancelled; reconnect
    after errors."""
    last_error = ""
    while True:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            await consumer.start()
            await consumer.topics()  # fetches the cluster metadata
            numbers = sorted(consumer.partitions_for_topic(topic) or ())
            if not numbers:
                raise LookupError(f"topic {topic} does not exist (yet)")
            partitions = [TopicPartition(topic, p) for p in numbers]
            consumer.assign(partitions)
            offsets = start_offsets(
                partitions,
                await consumer.beginning_offsets(partitions),
                await consumer.end_offsets(partitions),
                feed.capacity,
            )
            for tp, offset in offsets.items():
                consumer.seek(tp, offset)
            async for record in consumer:
                feed.add_json(record.value)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # broker away, topic missing: the page keeps what it has
            error = f"{type(exc).__name__}: {exc}"
            level = logging.DEBUG if error == last_error else logging.WARNING  # once, not every 5 s
            log.log(
                level, "following %s failed (%s); retrying in %.0f s", topic, error, RETRY_SECONDS
            )
            last_error = error
            await asyncio.sleep(RETRY_SECONDS)
        finally:
            await consumer.stop()


def changed_at(alert: Alert) -> float:
    """Event time of the change an alert record stands for (its resolve or its fire)."""
    at = alert.resolved_at if alert.status is AlertStatus.RESOLVED else alert.fired_at
    return (at or alert.fired_at).timestamp()


def merge_recent(feeds: Iterable[Iterable[Alert]], limit: int) -> list[Alert]:
    """One feed from several: each change once (by alert id and status), newest change
    first, at most ``limit``."""
    seen: dict[tuple[str, str], Alert] = {}
    for feed in feeds:
        for alert in feed:
            seen.setdefault((alert.alert_id, alert.status.value), alert)
    ordered = sorted(seen.values(), key=lambda a: (-changed_at(a), a.alert_id, a.status.value))
    return ordered[:limit]


def merge_firing(groups: Iterable[Iterable[Alert]]) -> list[Alert]:
    """Firing alerts of several workers, each once, most recently fired first."""
    seen: dict[str, Alert] = {}
    for group in groups:
        for alert in group:
            seen.setdefault(alert.alert_id, alert)
    return sorted(seen.values(), key=lambda a: (-a.fired_at.timestamp(), a.alert_id))
