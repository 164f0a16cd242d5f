"""The Faust application: agents, topics and the worker's HTTP pages.

Stage 1 (:class:`pipeline.scoring_service.ScoringConsumer`, a service of this app on a
batched aiokafka path) reads ``feedback.raw``, scores it with
:class:`pipeline.scoring.ScoringStage` and publishes the scored events (keyed by event
id), the dead letters and the packed deltas. Stage 2 (the ``windows`` agent) applies the
deltas to the windowed state, evaluates alerts and writes the table's changelog, the
alerts and the window snapshots, all through one :class:`pipeline.batchio.BatchProducer`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from functools import partial
from itertools import chain
from typing import Any

import faust
from faust.web import Request, Response, View

from pipeline import api, faults, metrics
from pipeline import web as live_page
from pipeline.aggregate import Change, WindowState, complete_publishes, fence_key, fence_tokens
from pipeline.alert_rules import load_rules
from pipeline.alertmanager import AlertmanagerSink
from pipeline.alerts import AlertEngine, alertmanager_payload
from pipeline.batchio import BatchProducer, Record
from pipeline.catchup import CatchUpThrottle
from pipeline.changelog import fence_headers, read_range, read_to_end
from pipeline.faust_transport import App as PipelineApp
from pipeline.faust_transport import confirm_generation
from pipeline.fencing import next_fence
from pipeline.followups.worker import register_followups
from pipeline.malloc_tuning import heap_trimmer
from pipeline.scoring import ScoringStage
from pipeline.scoring_service import ScoringConsumer
from pipeline.settings import Settings
from pipeline.snapshots import SnapshotClock, SnapshotWriter
from pipeline.status import StatusLine
from pipeline.text.emerging import EmergingTopics
from pipeline.topics import DEADLETTER_MAX_MESSAGE_BYTES
from schemas.alert import Alert, AlertStatus

log = logging.getLogger(__name__)

#: Records per poll of Faust's consumer, and buffered per partition in its streams.
FAUST_MAX_POLL_RECORDS = 64
FAUST_STREAM_BUFFER = 16
#: Packed deltas records per windows batch (each carries one scoring batch's segments
#: of one partition).
DELTAS_PER_BATCH = 16


def create_app(settings: Settings, *, status_line: bool = False) -> faust.App:
    """A Faust app wired to ``settings`` (broker, topics, batch sizes, web port)."""
    # Faust warns on every send while more than 100 records wait in its producer buffer,
    # which is every batch here: noise, not news.
    logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)
    gc.set_threshold(*settings.gc_thresholds)  # see Settings.gc_thresholds
    session_timeout = settings.broker_session_timeout_seconds
    app = PipelineApp(
        settings.app_id,
        broker=settings.faust_broker,
        key_serializer="raw",
        value_serializer="raw",
        store="memory://",
        # Faust makes "<id>-data/v1/tables" in the working directory by default; with the
        # memory store nothing is ever written there (the windows are rebuilt from their
        # changelog), so the empty directories go to the temporary directory instead
        datadir=_datadir(settings.app_id),
        # Recovery rebuilds the windows from the whole changelog (pipeline.changelog,
        # on_recover below): Faust's own offset bookkeeping is not relied on. Its
        # consistency check compares the offset it read to with the embedded broker's
        # ListOffsets answer (the last batch's base offset + 1, lower than the real
        # end) and stopped a worker that got a partition back in a rebalance with a
        # ConsistencyError; standby replicas would only re-read what is rebuilt anyway.
        table_standby_replicas=0,
        recovery_consistency_check=False,
        web_enabled=True,
        web_host=settings.web_host,
        web_bind=settings.web_bind,
        web_port=settings.web_port,
        web_in_thread=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_allow_declare=settings.create_topics,
        processing_guarantee=settings.processing_guarantee,
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=max(0.5, session_timeout / 10),
        broker_rebalance_timeout=session_timeout,
        producer_max_request_size=DEADLETTER_MAX_MESSAGE_BYTES,
        producer_acks=-1,
        producer_compression_type=settings.compression.kafka_codec,
        consumer_auto_offset_reset="earliest",
        # Faust's consumer now reads the packed deltas (hundreds of segments per record),
        # the follow-up topics and the changelogs: small polls and stream buffers keep a
        # backlog on the broker instead of in memory
        broker_max_poll_records=FAUST_MAX_POLL_RECORDS,
        stream_buffer_maxsize=FAUST_STREAM_BUFFER,
    )
    deltas_topic = app.topic(settings.topic_deltas, key_type=bytes, value_type=bytes)
    engine: AlertEngine | None = None
    if settings.alerts_enabled:
        rules = load_rules(settings.alert_rules_file)
        rules.check_windows(
            settings.windows_seconds, str(settings.alert_rules_file or "built-in alert rules")
        )
        engine = AlertEngine(rules, EmergingTopics() if settings.text_analytics else None)
    app.alert_engine = engine  # type: ignore[attr-defined]
    sink: AlertmanagerSink | None = None
    if engine is not None and settings.alertmanager_urls:
        sink = AlertmanagerSink(
            settings.alertmanager_urls, resend_interval=settings.alertmanager_resend_seconds
        )

        @app.task
        async def deliver_alerts() -> None:
            try:
                await sink.run()
            finally:  # worker stopping: one last try for undelivered fires and resolves
                await sink.flush(5.0)

    counters = metrics.SegmentCounters(settings.metrics_dimensions)
    stage = ScoringStage(settings, counters)
    app.scoring_stage = stage  # type: ignore[attr-defined]
    state = WindowState(settings)
    app.window_state = state  # type: ignore[attr-defined]
    table = app.Table(
        "windows-state",
        key_type=bytes,
        value_type=bytes,
        partitions=settings.topic_partitions,
    )
    # The window state is the only in-memory copy of the table: rebuilt from the changelog
    # by rebuild_windows below, and written to the changelog by publish. Faust's recovery
    # still reads the changelog (and calls rebuild_windows once it has), but keeping its
    # records in table.data as well doubled the memory of every segment.
    table.apply_changelog_batch = _ignore_changelog  # type: ignore[method-assign]
    snapshots = SnapshotClock(settings.snapshot_interval_seconds)
    changelog = table.changelog_topic.get_topic_name()

    # The windows agent, the timer that judges a quiet input and the rebuild after a
    # rebalance take turns: a rebuild while the agent had applied a batch not yet in the
    # changelog would replace the state without it, and the agent would then acknowledge
    # the batch.
    stage2 = asyncio.Lock()

    @table.on_recover
    async def rebuild_windows() -> None:
        # Faust runs this in a task whose exception nobody reads (its recovery waits on
        # the tables' callbacks with asyncio.wait) and then resumes the partitions: a
        # rebuild that failed would leave the windows counting on a state without the
        # changelog's. So a failure stops the worker, as one of the windows agent does.
        try:
            faults.reached("windows-rebuild")
            async with stage2:
                await _rebuild_windows()
        except Exception as exc:
            log.critical("rebuilding the windows failed: %r; stopping the worker", exc)
            await _crash(app, exc)
            raise

    async def _rebuild_windows() -> None:
        partitions = {
            tp.partition
            for tp in app.assignor.assigned_actives()
            if tp.topic == settings.topic_deltas
        }
        bootstrap = ",".join(settings.bootstrap_servers)
        client_id = f"{settings.app_id}-recovery"
        read = await read_to_end(bootstrap, changelog, partitions, client_id=client_id)
        # the fence first (see complete_publishes), then the rest of the log: what an
        # earlier owner wrote before the fence is in the rebuilt windows, and what it
        # wrote after is ignored, now and by every later rebuild
        generation = app.consumer_generation_id
        fence = next_fence(fence_tokens(read.records), generation)
        state.fence = fence.token
        confirmed = not fence.needs_confirmation or await confirm_generation(
            app, [(settings.topic_deltas, p) for p in partitions], generation
        )
        if not confirmed:
            # a stale takeover (this worker's generation is over): what it writes now is
            # below the current owner's fence, and the rejoin brings a rebuild again
            log.warning(
                "changelog: generation %d of the consumer group is over; the partitions' "
                "owners fenced them in a later one: not fencing, waiting for the rejoin",
                generation,
            )
            state.fence = fence.stale
        if partitions and confirmed:
            await producer.start()
            await producer.send(
                [(changelog, p, fence_key(p), str(state.fence).encode()) for p in partitions],
                fence_headers(state.fence),
            )
        rest = await read_to_end(
            bootstrap, changelog, partitions, client_id=client_id, start=read.ends
        )
        found = complete_publishes(chain(read.records, rest.records))
        del read, rest
        # only whole writes (see pipeline.aggregate); keys of a write cut short by a
        # crash get their recovered value again with the next write
        items = [(key, value) for key, value in found.latest.items() if value is not None]
        state.rebuild(items, partitions)
        state.pending.update({key: found.latest.get(key) for key in found.torn})
        gc.freeze()  # the rebuilt windows: long-lived, never scanned by the collector again
        if found.torn:
            log.warning("changelog: %d records of an interrupted write rewritten", len(found.torn))
        if found.fenced:
            log.warning(
                "changelog: %d records ignored, written by a worker after it had lost "
                "their partitions to another",
                found.fenced,
            )
        if engine is not None:
            engine.rebuild(items, partitions)
            if sink is not None:
                for alert in engine.firing():
                    sink.fire(alert.fingerprint, *alertmanager_payload(alert), alert.started_at)

    producer = BatchProducer(
        ",".join(settings.bootstrap_servers),
        max_request_size=DEADLETTER_MAX_MESSAGE_BYTES,
        client_id=f"{settings.app_id}-out",
        compression=settings.compression,
    )
    scoring: list[ScoringConsumer] = []

    @app.service
    class Scoring(ScoringConsumer):
        """Stage 1 (:mod:`pipeline.scoring_service`), started and stopped with the app."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(settings, stage, producer, **kwargs)
            self.fatal = partial(_crash, app)  # the whole worker stops, not only this service
            scoring.append(self)

    rounds_throttle = CatchUpThrottle(
        settings.catchup_interval_seconds, settings.catchup_behind_seconds
    )
    snapshots_throttle = CatchUpThrottle(
        settings.catchup_interval_seconds, settings.catchup_behind_seconds
    )

    async def alert_rounds(changes: list[Change]) -> None:
        """The alert rounds due after a batch moved the clocks, one partition at a time
        with the event loop free in between (a round over thousands of segments takes a
        while, and stage 1 shares the loop). The alerts of each round are sent as soon as
        it ends; its table changes go to ``changes``, written by :func:`publish`."""
        if engine is None:
            return
        while engine.is_due(state) and rounds_throttle.allow(state.clock):
            with rounds_throttle.running():
                steps = engine.evaluate_in_steps(state, max_partitions=1)
                while True:  # stage 1 runs between the steps of a round
                    try:
                        next(steps)
                    except StopIteration as done:
                        fired, changed = done.value
                        break
                    await asyncio.sleep(0)
            changes.extend(changed)
            if fired:
                await send_alerts(fired)
            await asyncio.sleep(0)

    async def send_alerts(alerts: list[Alert]) -> None:
        """Alerts to the alerts topic (acknowledged) and to Alertmanager's queue."""
        await _until(lambda: producer.started)
        await producer.send(
            [
                (
                    settings.topic_alerts,
                    None,
                    alert.fingerprint.encode(),
                    alert.model_dump_json().encode(),
                )
                for alert in alerts
            ]
        )
        for alert in alerts:
            if sink is None:
                break
            if alert.status is AlertStatus.FIRING:
                labels, annotations = alertmanager_payload(alert)
                sink.fire(alert.fingerprint, labels, annotations, alert.started_at)
            else:
                sink.resolve(alert.fingerprint, datetime.now(UTC))

    snapshot_writer = SnapshotWriter(
        state, settings.topic_windows, producer.send, snapshots_throttle
    )

    @app.task
    async def write_snapshots() -> None:
        """Window snapshots in the background, a slice at a time (pipeline.snapshots)."""
        await _until(lambda: producer.started)
        await snapshot_writer.run()

    async def publish(changes: list[Change]) -> None:
        """After the windows moved: the alert rounds due (their alerts sent as each ends),
        then the table changes, sent and acknowledged; a snapshot boundary crossed is
        handed to the snapshot writer."""
        await alert_rounds(changes)
        # each partition's part of the write ends with its marks (see pipeline.aggregate)
        records: list[Record] = [
            (changelog, partition, key, value)
            for partition, key, value in state.changelog_write(changes)
        ]
        if records and not producer.started:
            await _until(lambda: producer.started)
        if records and faults.enabled("changelog-torn"):
            await producer.send(records[: len(records) // 2], fence_headers(state.fence))
            faults.reached("changelog-torn")
        if records:
            await producer.send(records, fence_headers(state.fence))
        if snapshots_throttle.allow(state.clock):
            boundary = snapshots.crossed(state.clock)
            if boundary is not None:
                snapshot_writer.request(boundary)

    async def apply_record(
        partition: int, offset: int, value: bytes, changes: dict[bytes, bytes | None]
    ) -> None:
        """One deltas record into the windows, with the alert rounds it makes due (a batch
        of a replay can span many minutes of event time, each judged in turn); its table
        changes go to ``changes``."""
        fenced = state.fenced_groups
        applied = state.apply_packed(
            [(partition, value)], engine.note_comments if engine is not None else None
        )
        state.applied_offset(partition, offset)
        if state.fenced_groups > fenced:
            metrics.DELTAS_GROUPS_FENCED.inc(state.fenced_groups - fenced)
            log.warning(
                "deltas partition %d offset %d: %d groups skipped, published by a scoring "
                "stage after another had taken their raw partitions over",
                partition, offset, state.fenced_groups - fenced,
            )  # fmt: skip
        await alert_rounds(applied)
        changes.update(applied)
        # stage 1 runs between records: 16 in one go blocked the loop for 50-100 ms (22
        # times in a 70 s half-load latency phase)
        await asyncio.sleep(0)

    async def apply_deltas(
        partition: int, start: int, end: int, changes: dict[bytes, bytes | None]
    ) -> None:
        """Apply the deltas records ``[start, end)`` of ``partition``, read from the topic:
        records Faust's consumer did not hand over (see the windows agent)."""
        if start >= end:
            return
        bootstrap = ",".join(settings.bootstrap_servers)
        missed = await read_range(bootstrap, settings.topic_deltas, partition, start, end)
        log.warning(
            "deltas partition %d: offsets %s not delivered by the consumer: "
            "%d records read and applied directly",
            partition, start if end - start == 1 else f"{start}-{end - 1}", len(missed),
        )  # fmt: skip
        metrics.DELTAS_READ_DIRECTLY.inc(len(missed))
        for offset, value in missed:
            await apply_record(partition, offset, value, changes)

    @app.agent(deltas_topic, name="windows")
    async def windows(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        """Stage 2: packed deltas records, a few per scoring batch (see scoring_service).

        A batch's records count as processed (Faust may commit their offsets) only once
        its changelog write is acknowledged. ``take_events`` acks a batch when the agent
        asks for the next one, but also when the agent stops in the middle of it: a
        worker whose services crashed while the agent was writing committed records the
        changelog never got, and the next worker, rebuilding from the changelog and
        reading on from the commit, lost them (found by freezing a benchmark worker past
        its session timeout). So each record holds one more reference while its batch is
        handled, given back only once the batch is written: interrupted, the batch stays
        unacknowledged and is read again by whoever owns the partition next.

        The windows hold each deltas record exactly once, in offset order: the offset of
        the last one applied travels with the partition's marks in the changelog
        (:meth:`~pipeline.aggregate.WindowState.unapplied_from`). Records at or below it
        are skipped; a record beyond the next one means Faust's consumer left records out
        (around a rebalance its streams drop what was fetched while the flow was paused,
        its seek back may not bring them again, and its commit steps over such holes as
        over transaction markers: a worker frozen past its session timeout made the other
        lose answers that way), and those are read from the topic and applied first.
        Holes Faust committed past with nothing after them are found by
        :func:`judge_when_quiet`. Any failure
        here stops the worker: a restarted one rebuilds the windows and reads again what
        was not committed, where an agent left failed would stop counting unnoticed."""
        batches = stream.take_events(DELTAS_PER_BATCH, within=settings.batch_within_seconds)
        try:
            async for events in batches:
                for event in events:
                    event.message.incref()
                async with stage2:
                    changes: dict[bytes, bytes | None] = {}
                    for event in events:
                        message = event.message
                        start = state.unapplied_from(message.partition, message.offset)
                        if start is not None:
                            await apply_deltas(message.partition, start, message.offset, changes)
                            await apply_record(
                                message.partition, message.offset, message.value, changes
                            )
                    await publish(list(changes.items()))
                for event in events:  # written: take_events' ack may now be the last
                    event.message.decref()
                yield None
        except Exception as exc:
            log.critical("windows agent failed: %r; stopping the worker", exc)
            await _crash(app, exc)
            raise

    @app.timer(1.0)
    async def judge_when_quiet() -> None:
        """Rounds and snapshots left due (catching up, then the input went quiet), and
        deltas records Faust's consumer committed without handing them over (see the
        windows agent) when no later record came to show them."""
        if not producer.started or stage2.locked():
            return
        async with stage2:
            changes = dict(state.take_pending())
            if not app.rebalancing:
                for partition, committed in _committed(app, settings.topic_deltas).items():
                    start = state.unapplied_from(partition, committed)
                    if start is not None:
                        await apply_deltas(partition, start, committed, changes)
            await publish(list(changes.items()))

    trim_heap = heap_trimmer() if settings.malloc_trim_seconds > 0 else None
    if trim_heap is not None:

        @app.timer(settings.malloc_trim_seconds)
        async def give_back_free_memory() -> None:
            """The C heap's free pages back to the OS (see pipeline.malloc_tuning)."""
            trim_heap()

    api.register(app, settings, state, deltas_topic)
    register_followups(app, settings)  # pipeline.followups; nothing when disabled
    live_page.register(app, settings)  # /live, /api/v1/{alerts,health,series}
    metrics.WINDOW_GAUGES.attach(state, settings.metrics_max_segments, settings.metrics_dimensions)
    metrics.CONSUMER_LAG.source = lambda: (
        _consumer_lag(app) + [lag for service in scoring for lag in service.lag()]
    )
    _add_pages(app, counters, scoring)
    if status_line and settings.status_interval_seconds > 0:
        status = StatusLine(stage, state, out=sys.stdout)

        @app.timer(settings.status_interval_seconds)
        async def print_status() -> None:
            status.print()

    return app


#: How long a crashed worker may take to shut down before it is made to exit.
CRASH_EXIT_SECONDS = 20.0


async def _crash(app: faust.App, exc: BaseException) -> None:
    """Crash the app (the worker shuts down and exits non-zero); if the shutdown hangs
    (it waits on a broker that may be the problem), exit anyway after a deadline."""

    def exit_now() -> None:
        log.critical("shutdown still running after %.0f s: exiting now", CRASH_EXIT_SECONDS)
        os._exit(70)

    timer = threading.Timer(CRASH_EXIT_SECONDS, exit_now)
    timer.daemon = True
    timer.start()
    await app.crash(exc)


def _datadir(app_id: str) -> str:
    """Faust's data directory (see create_app), its parent made here: Faust makes only the
    last level."""
    parent = os.path.join(tempfile.gettempdir(), "nps-pipeline")
    os.makedirs(parent, exist_ok=True)
    return os.path.join(parent, f"{app_id}-data")


def _ignore_changelog(batch: Any) -> None:
    """Faust's recovery hands the table the changelog's records: not kept (see app())."""


async def _until(condition: Callable[[], bool], interval: float = 0.05) -> None:
    while not condition():
        await asyncio.sleep(interval)


def _committed(app: faust.App, topic: str) -> dict[int, int]:
    """Partition -> the offset the group committed (the next record to read) of the
    assigned partitions of ``topic``, as Faust's consumer last committed or read it."""
    if not app.started:
        return {}
    # faust keeps no public accessor for the committed offsets
    committed = app.consumer._committed_offset
    return {
        tp.partition: offset
        for tp in app.consumer.assignment()
        if tp.topic == topic and (offset := committed.get(tp)) is not None
    }


def _consumer_lag(app: faust.App) -> list[tuple[str, int, int]]:
    """(topic, partition, records not yet read) of the assigned partitions."""
    if not app.started:
        return []
    consumer = app.consumer
    # faust keeps no public accessor for the read position or the committed offset
    read, committed = consumer._read_offset, consumer._committed_offset
    lags = []
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        last_read = read.get(tp)
        position = last_read + 1 if last_read is not None else committed.get(tp)
        if highwater is None or position is None:
            continue
        lags.append((tp.topic, tp.partition, max(0, highwater - position)))
    return lags


def _add_pages(
    app: faust.App, counters: metrics.SegmentCounters, scoring: list[ScoringConsumer]
) -> None:
    assigned: set[Any] = set()
    state = {"assigned_once": False}

    @app.on_partitions_assigned.connect
    async def _on_assigned(app: faust.App, assigned_partitions: set[Any], **_: Any) -> None:
        assigned.clear()
        assigned.update(assigned_partitions)
        state["assigned_once"] = True

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            body, content_type = await metrics.scrape(counters.after_scrape)
            return self.bytes(body, content_type=content_type.split(";")[0])

    @app.page("/healthz")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    @app.page("/readyz")
    class ReadyView(View):
        async def get(self, request: Request) -> Response:
            ready = bool(app.started and not app.rebalancing and state["assigned_once"])
            body: dict[str, Any] = {
                "ready": ready,
                "rebalancing": bool(app.rebalancing),
                "partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in assigned),
                # the scoring stage's own consumer group (raw topic)
                "scoring_partitions": sorted(
                    f"{tp.topic}:{tp.partition}"
                    for service in scoring
                    if service.consumer is not None and service.ready.is_set()
                    for tp in service.consumer.assignment()
                ),
            }
            return self.json(body, status=200 if ready else 503)
