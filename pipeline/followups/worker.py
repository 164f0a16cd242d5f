"""The follow-up stage of a worker: topics, table, the ``followups`` agent, API, gauges.

:func:`register_followups` wires it into a Faust app when ``NPS_FOLLOWUPS_ENABLED``
(else it returns None and nothing is declared). The agent reads the task topic and
the status-update topic together (both keyed by task id, same partition count, so
Faust gives one worker the same partition of both), in batches
(``take_events``), hands them to :class:`~pipeline.followups.tracker.FollowupTracker`
and writes back what it returns: the changed table entries (``table.data`` +
``send_changelog`` with the source partition, once per batch, as the windows agent
does), dead letters and overdue alerts. After a restart or a rebalance the tracker is
rebuilt from the table (``followups-state``, durable through its changelog topic).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import faust

from pipeline.followups import api
from pipeline.followups.metrics import FOLLOWUP_GAUGES
from pipeline.followups.rules import load_followup_rules
from pipeline.followups.tracker import FollowupTracker
from pipeline.owned import owned
from pipeline.settings import Settings
from pipeline.validate import RawRecord


@dataclass
class FollowupsWiring:
    """What the rest of the app needs: where tasks go, and the tracker (for tests)."""

    tasks_topic: faust.TopicT
    tracker: FollowupTracker


def register_followups(app: faust.App, settings: Settings) -> FollowupsWiring | None:
    """Declare the follow-up stage on ``app``; None when follow-ups are disabled."""
    if not settings.followups_enabled:
        return None
    rules = load_followup_rules(settings.followup_rules_file)
    tasks_topic = app.topic(settings.topic_followups, key_type=bytes, value_type=bytes)
    events_topic = app.topic(settings.topic_followup_events, key_type=bytes, value_type=bytes)
    both = app.topic(
        settings.topic_followups,
        settings.topic_followup_events,
        key_type=bytes,
        value_type=bytes,
    )
    deadletter_topic = app.topic(settings.topic_deadletter, key_type=bytes, value_type=bytes)
    alerts_topic = app.topic(settings.topic_alerts, key_type=bytes, value_type=bytes)
    tracker = FollowupTracker(
        rules,
        tasks_topic=settings.topic_followups,
        dimensions=settings.dimensions,
        combinations=settings.combination_fields,
        windows_seconds=settings.followup_windows_seconds,
        unknown_grace_seconds=settings.followup_unknown_grace_seconds,
        max_original_bytes=settings.deadletter_max_original_bytes,
    )
    table = app.Table(
        "followups-state", key_type=bytes, value_type=bytes, partitions=settings.topic_partitions
    )

    @table.on_recover
    async def rebuild_followups() -> None:
        partitions = {
            tp.partition
            for tp in app.assignor.assigned_actives()
            if tp.topic == settings.topic_followups
        }
        tracker.rebuild(list(table.data.items()), partitions)

    @app.agent(both, name="followups")
    async def followups(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        batches = stream.take_events(settings.batch_size, within=settings.batch_within_seconds)
        async for events in batches:
            records = [
                RawRecord(
                    e.message.topic,
                    e.message.partition,
                    e.message.offset,
                    e.message.key,
                    e.message.value,
                )
                for e in events
            ]
            result = tracker.apply_batch(records, datetime.now(UTC))
            for key, value in result.changes:
                partition = int(key.split(b"|", 2)[1])
                if value is None:
                    table.data.pop(key, None)
                else:
                    table.data[key] = owned(value)
                table.send_changelog(partition, key, value)
            for dkey, dvalue in result.deadletters:
                await deadletter_topic.send(key=dkey, value=dvalue)
            for alert in result.alerts:
                await alerts_topic.send(
                    key=alert.fingerprint.encode(), value=alert.model_dump_json().encode()
                )
            yield None

    api.register(app, settings, tracker, events_topic)
    FOLLOWUP_GAUGES.attach(tracker, settings.metrics_dimensions)
    return FollowupsWiring(tasks_topic, tracker)
