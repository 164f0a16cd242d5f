"""Stage 1 on a batched Kafka path: read raw feedback by the thousand, score, publish.

Why not a Faust agent: Faust's per-message plumbing (dispatch, waits, task creation,
acks) costs ~90 µs of CPU per record before an agent sees it, which caps an agent near
11,000 records/s (``../shared/notes/design.md``). This service is one aiokafka consumer
(Faust's own Kafka client) in its own consumer group, run inside the Faust app and
started and stopped with it. Per poll it takes up to ``batch_size`` records, hands them
to :class:`pipeline.scoring.ScoringStage`, publishes everything the batch produced with
:class:`pipeline.batchio.BatchProducer` (waiting for the broker's acknowledgements), and
only then commits the batch's offsets: at-least-once. The commit is sent, not waited
for: the next batch is read and scored meanwhile, and the commit is waited for before
the next one is sent, before a rebalance moves the partitions and at stop; a crash
replays the batches not committed (at most two). Before publishing, it writes the
batch's progress records (:mod:`pipeline.progress`: offsets, watermark, new dedupe ids)
and waits for them; a worker taking over a raw partition reads them back, so that
replayed batches end where the first run's did, late events are judged alike and
duplicates are still recognised. The windows stage skips the deltas it already applied
by those batch ends (:mod:`pipeline.aggregate`), which makes the window counts exact.

The deltas for the windows stage are packed: one record per deltas-topic partition
and batch (:func:`pack_deltas`), every segment in the partition Kafka's default
partitioner gives its key, grouped by the raw partition (and its batch end offset)
they came from. The windows agent therefore pays Faust's per-message cost
once per packed record, not once per segment, and Faust's key routing of HTTP
requests still finds a segment's owner. Every deltas partition gets a record every
batch, so every windows partition's clock follows the inputs even when no segment of
it was touched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError
from mode import Service

from pipeline import faults, metrics, progress
from pipeline.alertmanager import backoff_delay
from pipeline.batchio import BatchProducer, Record
from pipeline.changelog import LogRecord, read_to_end
from pipeline.faust_transport import FETCH_MAX_WAIT_MS
from pipeline.fencing import confirm_generation, next_fence
from pipeline.scoring import Output, ScoringStage
from pipeline.settings import Settings
from pipeline.validate import RawRecord

log = logging.getLogger(__name__)

#: Reading the progress of newly assigned raw partitions: attempts before the worker
#: stops, and the bounds of the waits in between (seconds; see backoff_delay).
RESUME_ATTEMPTS = 4
RESUME_MIN_BACKOFF = 0.5
RESUME_MAX_BACKOFF = 2.0


#: (segment key, :func:`pipeline.scoring.deltas_document`)
SegmentDeltas = tuple[str, dict[str, object]]


def pack_deltas(
    groups: list[tuple[int, int, list[SegmentDeltas] | orjson.Fragment, int | None]],
    clock: float,
) -> bytes:
    """One deltas-topic record: ``{"t": clock, "g": [[raw partition, batch end offset,
    [[segment, deltas], ...], writer's scoring fence token or null], ...]}``.

    ``deltas`` are the per-segment documents of :func:`pipeline.scoring.deltas_document`;
    a group's list may come encoded already (:func:`encode_groups`). Every raw partition
    of the batch has a group, even an empty one.
    """
    return orjson.dumps({"t": clock, "g": groups})


def pack_fence(tokens: dict[int, int]) -> bytes:
    """A deltas-topic fence record: raw partition -> scoring fence token (see
    :mod:`pipeline.progress`)."""
    return orjson.dumps({"f": sorted(tokens.items()), "g": []})


def encode_groups(
    deltas: list[SegmentDeltas], partitions: int, partition_of: Callable[[str, int], int]
) -> list[orjson.Fragment]:
    """A batch's segment deltas split per deltas partition (by ``partition_of(segment key,
    partitions)``), each partition's list encoded in one go, for :func:`pack_deltas`.

    Done as soon as a raw partition's share of a batch is scored, so that the documents,
    thousands of small containers, live only briefly: held until the batch's records
    were built, end to end measured ~2% slower than one ``orjson.dumps`` per segment
    (four alternating pairs; the cyclic GC traversing them, presumably). Encoded here,
    the same speed (two pairs), and no value per segment held at orjson's ~4 KiB (see
    :mod:`pipeline.owned`) until packed. Alone, encoding per partition instead of per
    segment took 0.30 instead of 0.87 µs per segment (timeit, 2,400 segments).
    """
    per_partition: list[list[SegmentDeltas]] = [[] for _ in range(partitions)]
    for segment in deltas:
        per_partition[partition_of(segment[0], partitions)].append(segment)
    return [orjson.Fragment(orjson.dumps(items)) for items in per_partition]


class _Part(NamedTuple):
    """One raw partition's share of a polled batch, scored."""

    partition: int
    start: int
    end: int
    out: Output
    #: the batch's deltas per deltas partition (:func:`encode_groups`; out.deltas emptied)
    deltas: list[orjson.Fragment]


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
        #: held while a batch is between poll and its commit sent (a rebalance waits for
        #: it, then for the commit: :meth:`settle`)
        self.in_flight = asyncio.Lock()
        #: the last batch's offset commit, sent but maybe not answered yet: awaited before
        #: the next commit is sent (commits stay in order), by a rebalance and at stop
        self.committing: asyncio.Future[None] | None = None
        self.ready = asyncio.Event()
        #: how an error that must stop the worker is raised (the app's crash, see app.py)
        self.fatal: Callable[[BaseException], Awaitable[None]] = self.crash
        #: next offset to read per partition (for the lag metric)
        self.positions: dict[TopicPartition, int] = {}
        #: per raw partition, the ends of batches published but not committed by an
        #: earlier owner: replayed batches stop there (see pipeline.progress)
        self.cuts: dict[int, list[int]] = {}
        #: raw partitions whose progress was read (aiokafka may fetch a newly assigned
        #: partition before the assignment callback that reads it has finished)
        self.resumed: set[int] = set()
        #: per raw partition read here, the scoring fence token its deltas groups carry
        self.tokens: dict[int, int] = {}
        self.progress_topic = progress.progress_topic(settings.app_id)

    async def on_start(self) -> None:
        settings = self.settings
        timeout_ms = int(settings.broker_session_timeout_seconds * 1000)
        if self.stage.text is not None:
            self.stage.text.start()  # the comment analysis process loads meanwhile
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
        await self.producer.partitions(self.progress_topic)
        self.ready.set()

    async def on_stop(self) -> None:
        # mode calls on_stop before it cancels the loop task: let the batch in flight
        # be published and committed, so that a graceful stop repeats nothing (_run
        # starts no other: should_stop is set). Not held while the consumer stops: that
        # waits for a rebalance under way, whose revoke callback takes the lock (held,
        # the worker hung until app._crash's forced exit after a broker restart)
        await self.settle()
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
            generation = consumer._coordinator.generation  # no public accessor
            polled = await consumer.getmany(
                timeout_ms=int(self.settings.batch_within_seconds * 1000),
                max_records=self.settings.batch_size,
            )
            # after every poll, not only an empty one: the first poll after the broker
            # came back empty may already return records (see _read_behind_commit)
            if lost := self._log_end_before_read(consumer):
                await self._stop_for_lost_data(lost)
                return
            if self.committing is not None and self.committing.done():
                await self._commit_sent()  # raises the commit's error, if it failed
            if not polled:
                continue
            while not self.should_stop and any(  # not before the partition's progress is read
                tp.partition not in self.resumed and tp in consumer.assignment() for tp in polled
            ):
                await asyncio.sleep(0.01)
            async with self.in_flight:
                if self.should_stop:  # stopping: leave these to the next owner
                    return
                ready = {}
                for tp, messages in polled.items():
                    if tp not in consumer.assignment():
                        continue  # revoked meanwhile: its next owner reads them
                    if tp.partition not in self.resumed:  # reassigned meanwhile: read again
                        consumer.seek(tp, messages[0].offset)
                        continue
                    ready[tp] = messages
                lost = await self._handle(consumer, ready, generation) if ready else None
            if lost:
                await self._stop_for_lost_data(lost)
                return

    async def _handle(
        self, consumer: AIOKafkaConsumer, polled: dict[TopicPartition, list[Any]], generation: int
    ) -> str | None:
        """Score a polled batch, publish what it produced and commit its offsets; or,
        what shows that the broker lost data (nothing published then)."""
        started = time.perf_counter()
        # Checked before anything is published: publishing would write the batch's
        # outputs and commit its offsets on a broker that lost data. The committed
        # offsets are asked for first and read after scoring (the scoring is only in
        # memory, and a worker that finds lost data stops): the round trip overlaps the
        # scoring instead of adding to every batch's latency.
        if lost := self._read_again(polled):
            return lost
        # the positions as they are now: the last commit may be answered meanwhile
        known = {tp: self.positions[tp] for tp in polled if tp in self.positions}
        asked = [asyncio.ensure_future(consumer.committed(tp)) for tp in known]
        await asyncio.sleep(0)  # the requests go out before the scoring holds the loop
        parts: list[_Part] = []
        rewind: dict[TopicPartition, int] = {}
        stage = self.stage
        count = 0
        for tp, messages in polled.items():
            cuts = self.cuts.get(tp.partition)
            if cuts:  # replaying an earlier owner's batch: end exactly where it ended
                limit = progress.cut(messages[-1].offset + 1, messages[0].offset, cuts)
                if limit is not None:
                    messages = [m for m in messages if m.offset < limit]
                    rewind[tp] = limit
            records = [RawRecord(m.topic, m.partition, m.offset, m.key, m.value) for m in messages]
            count += len(records)
            out = stage.process(records)
            parts.append(self._part(tp.partition, messages[0].offset, messages[-1].offset + 1, out))
        progress_records = self._progress(parts)
        records = self._records(parts)
        if lost := self._commit_lost(known, await asyncio.gather(*asked)):
            return lost
        faults.reached("scoring-scored")
        await self.producer.send(progress_records)  # before any output (see module doc)
        await self.producer.send(records)
        faults.reached("scoring-published")
        offsets = {TopicPartition(self.settings.topic_raw, p.partition): p.end for p in parts}
        # Sent, not waited for: the next batch is read and scored meanwhile (a round trip
        # less per batch). It is waited for before the next commit, a rebalance or a stop.
        await self._commit_sent()
        self.committing = asyncio.ensure_future(
            self._commit(consumer, offsets, started, count, generation)
        )
        for tp, offset in rewind.items():  # fetched past the cut: read those again
            consumer.seek(tp, offset)
        return None

    async def _commit(
        self,
        consumer: AIOKafkaConsumer,
        offsets: dict[TopicPartition, int],
        started: float,
        count: int,
        generation: int,
    ) -> None:
        # aiokafka sends a commit with the generation current when it is sent, and a
        # member may commit any partition: a worker frozen past its session timeout that
        # had rejoined meanwhile would move the group's offsets past a batch the windows
        # skip as fenced (pipeline.progress)
        if consumer._coordinator.generation != generation or not offsets.keys() <= (
            consumer.assignment()
        ):
            raise CommitFailedError("the group rebalanced since the batch was read")
        await consumer.commit(offsets)
        self.positions.update(offsets)
        metrics.BATCH_SIZE.observe(count)
        metrics.PROCESSING_LATENCY.observe(time.perf_counter() - started)

    async def _commit_sent(self) -> None:
        """Wait for the last batch's commit. One the group refused because it rebalanced
        without this worker (frozen, or starved of CPU, past the session timeout) is
        logged and counted, and the worker goes on: its consumer rejoins the group, and
        the batch is read again by whoever owns its partitions now, cut where this worker
        cut it (:mod:`pipeline.progress`). Any other failure is raised."""
        committing, self.committing = self.committing, None
        if committing is None:
            return
        try:
            await committing
        except CommitFailedError as exc:
            metrics.SCORING_COMMITS_REFUSED.inc()
            log.warning(
                "the offsets of the last scoring batch were refused (%s): the group "
                "rebalanced while this worker did not answer for longer than the session "
                "timeout; the batch is read again by its partitions' owner, and this "
                "worker rejoins the group",
                type(exc).__name__,
            )

    async def settle(self) -> None:
        """Wait until the batch in flight, if any, is published and committed (before a
        rebalance moves its partitions, and at stop). A failed commit is logged: the
        partitions' next owner reads that batch again, cut where this worker cut it
        (:mod:`pipeline.progress`)."""
        async with self.in_flight:
            try:
                await self._commit_sent()
            except Exception:
                log.exception(
                    "the offsets of the last scoring batch could not be committed: its "
                    "records are read again by the partitions' next owner"
                )

    def _progress(self, parts: list[_Part]) -> list[Record]:
        topic = self.progress_topic
        partitions = self.producer.known_partitions(topic) or 1
        watermarks = self.stage.watermarks.max_seen
        return [
            (
                topic,
                part.partition % partitions,
                str(part.partition).encode(),
                progress.encode(
                    part.partition,
                    part.start,
                    part.end,
                    watermarks.get(part.partition),
                    part.out.journal,
                ),
            )
            for part in parts
        ]

    async def resume(self, assigned: list[TopicPartition]) -> None:
        """Read the progress of newly assigned raw partitions (see pipeline.progress).
        Safe to call again after a failure: the generation, so the fence, is the same."""
        consumer = self.consumer
        if consumer is None or not assigned:
            return
        faults.reached("scoring-resume")
        generation = consumer._coordinator.generation  # aiokafka has no public accessor
        partitions = await self.producer.partitions(self.progress_topic)
        values: dict[int, list[bytes]] = {tp.partition: [] for tp in assigned}
        fenced: dict[int, list[int]] = {raw: [] for raw in values}  # fence tokens so far

        def keep(records: list[LogRecord]) -> None:
            for _, key, value, _ in records:
                if value is None:
                    continue
                fence = progress.fence_of(key, value)
                if fence is None and int(key) in values:
                    values[int(key)].append(value)
                elif fence is not None and fence[0] in fenced:
                    fenced[fence[0]].append(fence[1])

        bootstrap = ",".join(self.settings.bootstrap_servers)
        topic, client_id = self.progress_topic, f"{self.settings.app_id}-score-resume"
        wanted = {tp.partition % partitions for tp in assigned}
        read = await read_to_end(bootstrap, topic, wanted, client_id=client_id)
        keep(read.records)
        # fenced before the rest is read (see pipeline.progress), by the group generation
        # (pipeline.fencing)
        fences = {raw: next_fence(tokens, generation) for raw, tokens in fenced.items()}
        confirmed = not any(f.needs_confirmation for f in fences.values()) or (
            await confirm_generation(consumer, assigned, generation)
        )
        tokens = {raw: f.token if confirmed else f.stale for raw, f in fences.items()}
        if confirmed:
            deltas = await self.producer.partitions(self.settings.topic_deltas)
            await self.producer.send(
                [
                    *((topic, raw % partitions, *progress.fence(raw, token))
                      for raw, token in tokens.items()),
                    *((self.settings.topic_deltas, p, None, pack_fence(tokens))
                      for p in range(deltas)),
                ]
            )  # fmt: skip
        else:
            # a stale takeover: what it publishes is below the owners' fences, and the
            # rejoin brings a resume again
            log.warning(
                "scoring: generation %d of the consumer group is over; raw partitions %s "
                "were fenced in a later one: not fencing, waiting for the rejoin",
                generation,
                sorted(fenced),
            )
        rest = await read_to_end(bootstrap, topic, wanted, client_id=client_id, start=read.ends)
        keep(rest.records)
        del read, rest
        self.tokens.update(tokens)
        restored = 0
        for tp in assigned:
            committed = await consumer.committed(tp) or 0
            if committed < self.positions.get(tp, 0):  # the group's offsets went back
                await self._stop_for_lost_data(
                    f"the committed offset of {tp.topic}:{tp.partition} is {committed}, "
                    f"but this worker committed {self.positions[tp]}"
                )
                return
            found = progress.resume(values[tp.partition], committed)
            self.cuts[tp.partition] = found.cuts
            if found.watermark is not None:
                self.stage.watermarks.resume(tp.partition, found.watermark, time.time())
            restored += self.stage.dedupe.restore(found.entries)
            if found.cuts:
                log.warning(
                    "raw partition %d: replaying from offset %d, cut at the batch ends "
                    "an earlier owner published without committing: %s",
                    tp.partition,
                    committed,
                    found.cuts,
                )
        self.resumed.update(tp.partition for tp in assigned)
        faults.reached("scoring-resumed")
        log.info(
            "scoring resumed raw partitions %s (%d dedupe ids restored)",
            sorted(tp.partition for tp in assigned),
            restored,
        )

    def _log_end_before_read(self, consumer: AIOKafkaConsumer) -> str | None:
        """What shows that the broker lost records already read, if anything: a raw
        partition's log now ends before this worker's committed position.

        That happens only when the broker lost acknowledged data: the embedded broker
        restarted (memory storage), or an unclean leader election on Kafka. The
        consumer would otherwise wait at its old position and skip every new record
        below it, and the windows' marks would skip their deltas.
        """
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            position = self.positions.get(tp)
            if highwater is not None and position is not None and highwater < position:
                return (
                    f"{tp.topic}:{tp.partition} now ends at offset {highwater}, but offsets "
                    f"up to {position - 1} were already read and committed"
                )
        return None

    def _read_again(self, polled: dict[TopicPartition, list[Any]]) -> str | None:
        """What shows, before ``polled`` is handled, that the broker lost records this
        worker already read and committed, as far as the batch itself shows it (the
        group's offsets are checked by :meth:`_commit_lost`), if anything.

        When the broker comes back without its data (the embedded broker restarted), the
        fetcher may return records before the group coordinator finds this member
        unknown and the group rejoins (where :meth:`resume` would see the lost commits):
        from this worker's old positions, skipping the new records below them, or from
        the new log's start after an offset reset. Handled, such a batch is published
        and, once a heartbeat has reset the member (the broker then takes the commit as
        a plain one), committed over the evidence: the worker goes on silently, or a
        restarted one starts above the records it skipped. So: a batch must start at
        the position this worker committed, and the group must still hold that commit
        (one offset fetch per batch, concurrent over its partitions).
        """
        for tp, messages in polled.items():
            position = self.positions.get(tp)
            if position is not None and messages[0].offset < position:
                return (
                    f"{tp.topic}:{tp.partition} is read again from offset "
                    f"{messages[0].offset}, but this worker committed {position}"
                )
        return None

    def _commit_lost(
        self, known: dict[TopicPartition, int], committed: list[int | None]
    ) -> str | None:
        """What shows that the group no longer holds this worker's commits (``known``:
        the positions this worker had committed when it asked for the group's offsets,
        ``committed``, before the batch was scored), if anything: see :meth:`_read_again`."""
        for (tp, position), offset in zip(known.items(), committed, strict=True):
            if (offset or 0) < position:
                return (
                    f"the committed offset of {tp.topic}:{tp.partition} is {offset or 0}, "
                    f"but this worker committed {position}"
                )
        return None

    async def _stop_for_lost_data(self, evidence: str) -> None:
        """Stop the worker loudly: a restarted one rebuilds from what the broker has."""
        exc = BrokerDataLost(
            f"the broker lost data: {evidence}; stopping so that a restarted worker "
            "rebuilds its state from what the broker still has (restart it; a supervisor does)"
        )
        log.critical("%s", exc)
        await self.fatal(exc)

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

    def _part(self, partition: int, start: int, end: int, out: Output) -> _Part:
        partitions = self.producer.known_partitions(self.settings.topic_deltas) or 1
        deltas = encode_groups(out.deltas, partitions, self.producer.segment_partition)
        out.deltas = []
        return _Part(partition, start, end, out, deltas)

    def _records(self, parts: list[_Part]) -> list[Record]:
        settings = self.settings
        scored_topic = settings.topic_scored
        deltas_topic = settings.topic_deltas
        records: list[Record] = []
        # per deltas partition (as many as each part was split in), one group per raw
        # partition of the batch
        groups: list[list[tuple[int, int, list[SegmentDeltas] | orjson.Fragment, int | None]]] = [
            [] for _ in (parts[0].deltas if parts else ())
        ]
        clocks = []
        for part in parts:
            out = part.out
            records.extend((scored_topic, None, key, value) for key, value in out.scored)
            records.extend(
                (settings.topic_deadletter, None, key, value) for key, value in out.deadletters
            )
            # follow-up tasks, keyed by task id (none unless NPS_FOLLOWUPS_ENABLED)
            records.extend(
                (settings.topic_followups, None, key, value) for key, value in out.followups
            )
            for partition, items in enumerate(part.deltas):
                groups[partition].append(
                    (part.partition, part.end, items, self.tokens.get(part.partition))
                )
            if out.clock is not None:
                clocks.append(out.clock)
        if clocks:
            clock = max(clocks)
            records.extend(
                (deltas_topic, partition, None, pack_deltas(items, clock))
                for partition, items in enumerate(groups)
            )
        return records


class BrokerDataLost(RuntimeError):
    """The broker no longer has records this worker already read."""


class ResumeFailed(RuntimeError):
    """The progress of newly assigned raw partitions could not be read."""


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: ScoringConsumer) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # let the batch in flight finish and commit before its partitions move
        await self.service.settle()
        self.service.stage.watermarks.forget(tp.partition for tp in revoked)
        consumer = self.service.consumer
        if consumer is not None and not consumer.assignment() - set(revoked):
            # All of them (aiokafka's rebalances revoke every partition): the dedupe
            # memory is restored from the progress of committed batches on assignment.
            # Kept, it would hold the ids of batches this worker published after it had
            # lost their partitions (frozen mid-batch), which are fenced off in the
            # windows (see pipeline.progress): read again here later, they would be
            # taken for duplicates of answers never counted.
            self.service.stage.dedupe.clear()
        for tp in revoked:
            self.service.cuts.pop(tp.partition, None)
            self.service.resumed.discard(tp.partition)
            self.service.tokens.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        partitions = sorted(tp.partition for tp in assigned)
        log.info("scoring partitions assigned: %s", partitions)
        for attempt in range(1, RESUME_ATTEMPTS + 1):
            try:
                await self.service.resume(list(assigned))
                return
            except Exception as exc:
                failure = exc
                if attempt == RESUME_ATTEMPTS:
                    break
                delay = backoff_delay(attempt, RESUME_MIN_BACKOFF, RESUME_MAX_BACKOFF)
                log.warning(
                    "could not read the scoring progress of raw partitions %s (%r); "
                    "attempt %d of %d, again in %.1f s",
                    partitions,
                    exc,
                    attempt,
                    RESUME_ATTEMPTS,
                    delay,
                )
                await asyncio.sleep(delay)
        # Scoring on without the progress would break exactness: a batch an earlier owner
        # published without committing would be replayed in full and counted twice, and
        # without a fence a frozen earlier owner's late batch would count too. The
        # partitions stay unscored (not in ``resumed``) until the worker has stopped;
        # a restarted worker, or another member of the group, resumes them.
        exc = ResumeFailed(
            f"could not read the scoring progress of raw partitions {partitions} in "
            f"{RESUME_ATTEMPTS} attempts, the last failing with {failure!r}; stopping so "
            "that a restarted worker (or another one of the group) resumes them"
        )
        log.critical("%s", exc)
        await self.service.fatal(exc)
