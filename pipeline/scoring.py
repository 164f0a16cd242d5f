"""The first stage: validate, drop duplicates, score; Kafka-agnostic and batch-oriented.

:meth:`ScoringStage.process` turns a batch of raw records into the records to publish
(scored events and dead letters, already encoded). The Faust agent in
:mod:`pipeline.app` only moves bytes in and out.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from operator import attrgetter

import orjson
from pydantic import AwareDatetime, TypeAdapter

from pipeline import metrics
from pipeline.dedupe import (
    REVISION,
    DuplicateFilter,
    Journaled,
    Seen,
    content_digest,
    contribution_of,
    make_entry,
)
from pipeline.eventtime import Watermarks
from pipeline.followups.tasks import TaskBuilder
from pipeline.redact import Redactor
from pipeline.segments import SegmentKeyCache, ThemeCombinationKeys
from pipeline.settings import Settings
from pipeline.sparseadd import Adder, adder_for
from pipeline.text.stage_analytics import NO_INSIGHT, THEME_DIMENSION, TextAnalytics, theme_keys
from pipeline.validate import RawRecord, Rejection, dead_letter, parse_feedback
from pipeline.windows import Counts
from schemas import Category, Reason, ScoredEvent, SourcePosition, categorize
from schemas.feedback import SCALES, SEGMENT_FIELDS, FeedbackEvent, SurveyType
from schemas.scored import SCORED_SCHEMA_VERSION

#: Detractor comments kept per segment for alert evidence.
RECENT_COMMENTS = 5

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Output:
    """What one batch produces, ready to send: (key, value) pairs per topic."""

    scored: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: per segment touched by the batch: (segment key, its :func:`deltas_document`), sent
    #: packed per deltas partition (:func:`pipeline.scoring_service.pack_deltas`)
    deltas: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    deadletters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    #: follow-up tasks (key = task id) when NPS_FOLLOWUPS_ENABLED (see pipeline.followups)
    followups: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    duplicates: int = 0
    #: event ids the dedupe newly remembered (persisted with the batch's progress)
    journal: list[Journaled] = field(default_factory=list)
    #: the windows' clock after this batch (None when the batch had nothing for them)
    clock: float | None = None


@dataclass(slots=True)
class Totals:
    """Running counts since the worker started (for the status line)."""

    consumed: int = 0
    scored: int = 0
    deadlettered: int = 0
    duplicates: int = 0


@dataclass(slots=True)
class _Batch:
    """Per-batch working state of :meth:`ScoringStage.process`."""

    now: datetime
    #: ``now`` as a timestamp (the dedupe's and the watermarks' clock)
    wall: float
    max_ts: float = 0.0
    deltas: dict[str, dict[int, Counts]] = field(default_factory=dict)
    #: per segment, the part of ``deltas`` that updates made (earlier versions taken out,
    #: new ones added): business counters count answers received, not revisions
    revised: dict[str, Counts] = field(default_factory=dict)
    #: recent detractor comments per segment key: [event time, event id, score, redacted]
    comments: dict[str, list[list[object]]] = field(default_factory=dict)
    #: scored events per (survey type, category), added to the metric once per batch
    scored: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: the batch's processing time as JSON (a quoted string), for the scored events
    now_json: bytes = b""
    #: raw topic name as JSON, per topic
    topics_json: dict[str, bytes] = field(default_factory=dict)
    #: processing time minus event time of the batch's scored events (EVENT_TIME_LAG)
    lags: list[float] = field(default_factory=list)


class ScoringStage:
    def __init__(self, settings: Settings, counters: metrics.SegmentCounters | None = None) -> None:
        self.counters = counters
        self.redactor = Redactor(settings.redact_patterns)
        self.keep_comments = settings.comment_output == "redacted"
        self.max_event_bytes = settings.max_event_bytes
        self.max_original_bytes = settings.deadletter_max_original_bytes
        self.dedupe = DuplicateFilter(settings.dedupe_horizon_seconds, settings.dedupe_max_ids)
        self.totals = Totals()
        self.watermarks = Watermarks(
            settings.allowed_lateness_seconds, settings.future_tolerance_seconds
        )
        self.dimensions = tuple(settings.dimensions)
        self.combinations = settings.combination_fields
        self.segment_keys = SegmentKeyCache(SEGMENT_FIELDS, self.dimensions, self.combinations)
        self.bucket_seconds = settings.bucket_seconds
        self.followups = TaskBuilder.from_settings(settings)  # None when disabled
        self.text = TextAnalytics.from_settings(settings)  # None when NPS_TEXT_ANALYTICS is off
        #: theme=<name> segments (the dimension) and combinations with theme
        self.theme_dimension = THEME_DIMENSION in settings.dimensions
        combinations = ThemeCombinationKeys(SEGMENT_FIELDS, self.combinations, THEME_DIMENSION)
        self.theme_combinations = combinations if combinations.combinations else None
        self.theme_segments = self.theme_dimension or self.theme_combinations is not None
        self._theme_keys: dict[str, list[str]] = {}  # "billing|price" -> its theme=<name> keys

    def process(self, records: list[RawRecord]) -> Output:
        out = Output()
        now = datetime.now(UTC)
        batch = _Batch(now=now, wall=now.timestamp(), now_json=_DATETIME.dump_json(now))
        evicted_before = self.dedupe.evicted_early
        consumed: Counter[str] = Counter(map(_TOPIC, records))
        for topic, count in consumed.items():
            metrics.EVENTS_CONSUMED.labels(topic).inc(count)
        if self.text is not None:  # the batch's comments back to back (see text.stage_analytics)
            self.text.prepare(records)
        # Validation of the whole batch first, in one tight loop: interleaved with the rest
        # of each record's handling the stage ran 0.6-3.4 µs per event slower (eight
        # alternating pairs of tests/bench/bench_stage1.py; presumably the validator's data
        # leaving the CPU caches in between)
        max_bytes = self.max_event_bytes
        parsed_all: list[FeedbackEvent | Rejection | None]
        try:
            parsed_all = [parse_feedback(record.value, max_bytes) for record in records]
        except Exception:  # a bug: each record is parsed again below, its error caught alone
            parsed_all = [None] * len(records)
        for record, parsed in zip(records, parsed_all, strict=True):
            try:
                self._handle(record, parsed, out, batch)
            except Exception as exc:  # a bug must not stop the worker nor lose the record
                log.exception(
                    "unexpected error on %s/%s@%s", record.topic, record.partition, record.offset
                )
                message = f"unexpected processing error {type(exc).__name__}: {exc}"
                self._reject(out, record, Rejection(Reason.PROCESSING_ERROR, message), batch.now)
        if self.text is not None:
            self.text.finish()
        # the clock of the windows: the low watermark of the inputs, not the batch's newest
        clock = min(batch.max_ts, self.watermarks.low(batch.wall) or batch.max_ts)
        if batch.deltas:
            out.clock = clock
        out.deltas = []
        for key, buckets in batch.deltas.items():
            comments = batch.comments.get(key)
            # only an update's removals can leave a bucket at zero: nothing moved there
            if key in batch.revised and any(c.is_empty() for c in buckets.values()):
                buckets = {start: c for start, c in buckets.items() if not c.is_empty()}
                if not buckets and not comments:
                    continue
            out.deltas.append((key, deltas_document(buckets, clock, comments)))
        for (survey, category), count in batch.scored.items():
            metrics.EVENTS_SCORED.labels(survey, category).inc(count)
        metrics.observe_all(metrics.EVENT_TIME_LAG, batch.lags)
        if self.counters is not None:
            for key, buckets in batch.deltas.items():
                revised = batch.revised.get(key)
                if revised is None:
                    self.counters.add(key, buckets.values())
                    continue
                received = Counts()  # the new answers only
                for part in buckets.values():
                    received.add(part)
                received.subtract(revised)
                self.counters.add(key, (received,))
        totals = self.totals
        totals.consumed += len(records)
        totals.scored += len(out.scored)
        totals.deadlettered += len(out.deadletters)
        totals.duplicates += out.duplicates
        out.journal = self.dedupe.take_journal()
        metrics.DEDUPE_IDS.set(len(self.dedupe))
        metrics.DEDUPE_EVICTED.inc(self.dedupe.evicted_early - evicted_before)
        return out

    def _handle(
        self,
        record: RawRecord,
        parsed: FeedbackEvent | Rejection | None,
        out: Output,
        batch: _Batch,
    ) -> None:
        """``parsed``: :func:`parse_feedback` of the record, None if not done yet."""
        now = batch.now
        if parsed is None:
            parsed = parse_feedback(record.value, self.max_event_bytes)
        if isinstance(parsed, Rejection):
            self._reject(out, record, parsed, now)
            return
        feedback_json = _to_json(parsed)  # canonical: the dedupe digest and the output
        digest = content_digest(feedback_json)
        seen, previous = self.dedupe.lookup(parsed.event_id, digest, batch.wall)
        if seen is Seen.DUPLICATE:
            out.duplicates += 1
            metrics.DUPLICATES.inc()
            return
        revision = 0 if previous is None else previous[REVISION] + 1
        category = _CATEGORIES[(parsed.survey_type, parsed.score)]  # the score is on its scale
        insight = (
            NO_INSIGHT
            if self.text is None
            else self.text.analyze(parsed, _VALUES[category], record)
        )
        text = parsed.comment
        if text is not None:  # no comment leaves the pipeline unredacted
            text = self._redact(text) if self.keep_comments else None
            if text != parsed.comment:  # a copy only when there was something to remove
                parsed = parsed.model_copy(update={"comment": text})
                feedback_json = _to_json(parsed)
        event_id = parsed.event_id
        out.scored.append(
            (
                event_id.encode(),
                scored_json(
                    batch, record, event_id, category, feedback_json, revision, insight.json
                ),
            )
        )
        survey = _VALUES[parsed.survey_type]
        batch.scored[(survey, _VALUES[category])] += 1
        if self.followups is not None:  # a task if a follow-up rule selects the answer
            scored = ScoredEvent(
                event_id=event_id,
                revision=revision,
                category=category,
                processed_at=now,
                source=SourcePosition(
                    topic=record.topic, partition=record.partition, offset=record.offset
                ),
                feedback=parsed,
            )
            self.followups.collect(scored, out.followups, count=previous is None)
        ts = parsed.event_time.timestamp()
        batch.lags.append(batch.wall - ts)
        width = self.bucket_seconds
        # interned values: the dedupe memory shares them
        values, keys = self.segment_keys.lookup(_SEGMENT_VALUES(parsed))
        # the answer's theme segments (theme=<name>) are part of what it contributes
        themes = "|".join(insight.themes) if insight.themes and self.theme_segments else None
        if themes:
            keys = self._with_themes(keys, themes, values)
        contribution = (  # see pipeline.dedupe.Contribution
            int(ts // width) * width,
            survey,
            parsed.score,
            parsed.account_value,
            *values,
            themes,
        )
        comment = None
        if category is Category.DETRACTOR and text and text.strip():
            comment = [ts, parsed.event_id, parsed.score, text]
        old = None if previous is None else contribution_of(previous)
        if previous is not None:
            recount = old != contribution
            metrics.REVISIONS.labels("scoring" if recount else "content").inc()
            if not recount:  # same bucket, score and segments: the windows do not change
                self.dedupe.remember(event_id, make_entry(digest, batch.wall, revision, old))
                if comment is not None:
                    for key in keys:
                        self._add_comment(batch, key, comment)
                return
        excluded = self.watermarks.check(record.partition, ts, batch.wall)
        if excluded is not None:
            if previous is not None:
                excluded = replace(excluded, message=(
                    f"{excluded.message}; revision {revision} of this answer is not counted, "
                    f"the windows keep the version they counted"
                ))  # fmt: skip
            self._reject(out, record, replace(excluded, event_id=parsed.event_id), now)
            self.dedupe.remember(event_id, make_entry(digest, batch.wall, revision, old))
            return
        # make_entry(digest, batch.wall, revision, contribution), inline: the hot path
        self.dedupe.remember(event_id, (digest, batch.wall, revision, *contribution))
        batch.max_ts = max(batch.max_ts, ts)
        bucket = contribution[0]
        counts = (  # never changed: only added and copied
            _EVENT_COUNTS[(survey, parsed.score)]
            if parsed.account_value is None
            else Counts.of_event(survey, parsed.score, parsed.account_value)
        )
        add = _EVENT_ADDERS[(survey, parsed.score, parsed.account_value is not None)]
        if old is not None:  # an update: take the earlier version out, where it was counted
            old_bucket, old_survey, old_score, old_value, *old_segments, old_themes = old
            removed = Counts()
            removed.subtract(Counts.of_event(old_survey, old_score, old_value))
            for key in self._keys(tuple(old_segments), old_themes):
                self._add_delta(batch, key, old_bucket, removed)
                _accumulate(batch.revised, key, removed)
        deltas = batch.deltas
        for key in keys:  # _add_delta, inline: the hot path
            per_bucket = deltas.get(key)
            if per_bucket is None:
                deltas[key] = {bucket: counts.copy()}
            elif (known := per_bucket.get(bucket)) is None:
                per_bucket[bucket] = counts.copy()
            else:
                add(known, counts)  # known.add(counts), only the fields an answer has
        if comment is not None:
            for key in keys:
                self._add_comment(batch, key, comment)
        if previous is not None:
            for key in keys:
                _accumulate(batch.revised, key, counts)

    def _keys(self, values: tuple[str | None, ...], themes: str | None) -> list[str]:
        """The segment keys of an answer: its fields' segments, then its theme segments.

        ``values``: the answer's values of ``SEGMENT_FIELDS`` (None when missing);
        ``themes``: the theme names joined by ``|``, as stored in the contribution. The
        list returned may be shared: not to be changed."""
        keys = self.segment_keys.lookup(values)[1]
        return self._with_themes(keys, themes, values) if themes else keys

    def _with_themes(
        self, keys: list[str], themes: str, values: tuple[str | None, ...]
    ) -> list[str]:
        """``keys`` and the segment keys of ``themes`` (theme names joined by ``|``):
        ``theme=<name>`` if it is a dimension, then the combinations with theme."""
        extra = self._theme_keys.get(themes)
        if extra is None:
            names = themes.split("|")
            extra = self._theme_keys[themes] = theme_keys(names) if self.theme_dimension else []
        if self.theme_combinations is not None:
            return keys + extra + self.theme_combinations.keys(values, themes)
        return keys + extra

    @staticmethod
    def _add_delta(batch: _Batch, key: str, bucket: int, counts: Counts) -> None:
        per_bucket = batch.deltas.setdefault(key, {})
        known = per_bucket.get(bucket)
        if known is None:
            per_bucket[bucket] = counts.copy()
        else:
            known.add(counts)

    @staticmethod
    def _add_comment(batch: _Batch, key: str, comment: list[object]) -> None:
        recent = batch.comments.setdefault(key, [])
        recent.append(comment)
        if len(recent) > RECENT_COMMENTS:
            del recent[0]

    def _redact(self, text: str) -> str:
        redacted, found = self.redactor.redact_with_counts(text)
        for kind, count in found.items():
            metrics.PII_REDACTED.labels(kind).inc(count)
        return redacted

    def _reject(self, out: Output, record: RawRecord, rejection: Rejection, now: datetime) -> None:
        letter = dead_letter(record, rejection, self.max_original_bytes, now)
        out.deadletters.append((record.key, letter.model_dump_json().encode()))
        metrics.DEADLETTERS.labels(rejection.reason.value).inc()


_DATETIME: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)


def _to_json(event: FeedbackEvent) -> bytes:
    """``event.model_dump_json()`` as bytes: the event's canonical JSON.

    orjson on the model's field values (in field order; ``Z`` for UTC as pydantic
    writes it) gives the same bytes at ~1 µs instead of pydantic's ~3.5 µs (property
    test ``tests/test_stage1_fast.py``); what orjson cannot encode (an integer over 64
    bits in ``attributes``) goes through pydantic's serializer.
    """
    try:
        return orjson.dumps(event.__dict__, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:
        return event.__pydantic_serializer__.to_json(event)


#: a raw record's topic
_TOPIC = attrgetter("topic")
#: an event's values of SEGMENT_FIELDS, as a tuple (None for a missing field)
_SEGMENT_VALUES = attrgetter(*SEGMENT_FIELDS)

# Per-event lookups instead of calls: an enum's ``.value`` is a Python property (~0.25
# µs), ``categorize`` and ``Counts.of_event`` ~0.5-1 µs each.
#: survey type or category -> its value
_VALUES: dict[str, str] = {member: member.value for member in (*SurveyType, *Category)}
#: (survey type, score on its scale) -> category
_CATEGORIES: dict[tuple[str, int], Category] = {
    (kind, score): categorize(kind, score)
    for kind in SurveyType
    for score in range(SCALES[kind][0], SCALES[kind][1] + 1)
}
#: (survey type value, score) -> the counts of one answer without an account value
_EVENT_COUNTS: dict[tuple[str, int], Counts] = {
    (kind.value, score): Counts.of_event(kind, score) for kind, score in _CATEGORIES
}
#: (survey type value, score, has an account value) -> what adds such an answer's counts
_EVENT_ADDERS: dict[tuple[str, int, bool], Adder] = {
    (kind.value, score, account): adder_for(Counts.of_event(kind, score, 1.0 if account else None))
    for kind, score in _CATEGORIES
    for account in (False, True)
}
_CATEGORY_JSON: dict[Category, bytes] = {category: category.value.encode() for category in Category}


def _accumulate(sums: dict[str, Counts], key: str, counts: Counts) -> None:
    known = sums.get(key)
    if known is None:
        sums[key] = counts.copy()
    else:
        known.add(counts)


def scored_json(
    batch: _Batch,
    record: RawRecord,
    event_id: str,
    category: Category,
    feedback_json: bytes,
    revision: int = 0,
    text_json: bytes = b"null",
) -> bytes:
    """The :class:`ScoredEvent` of one event as JSON, assembled from its parts.

    Equal, once parsed, to ``ScoredEvent(...).model_dump_json()`` (a property test
    checks it); built without the model because constructing and serializing it per
    event cost about a tenth of the scoring stage.
    """
    topic = batch.topics_json.get(record.topic)
    if topic is None:
        topic = batch.topics_json[record.topic] = orjson.dumps(record.topic)
    return _SCORED_JSON % (
        orjson.dumps(event_id),
        revision,
        _CATEGORY_JSON[category],
        batch.now_json,
        topic,
        record.partition,
        record.offset,
        feedback_json,
        text_json,
    )


#: the scored event's JSON, to fill in (one formatting: ~0.1 µs less than joining parts)
_SCORED_JSON = (
    b'{"schema_version":%d,"event_id":%%b,"revision":%%d,"category":"%%b",'
    b'"processed_at":%%b,"source":{"topic":%%b,"partition":%%d,"offset":%%d},'
    b'"feedback":%%b,"text":%%b}' % SCORED_SCHEMA_VERSION
)


#: the values of a Counts as a tuple: orjson writes the same array as of ``to_list()``
#: without the list (~0.25 µs per segment and batch)
_COUNTS_FIELDS = attrgetter(*Counts.FIELDS)


def deltas_document(
    buckets: dict[int, Counts], max_ts: float, comments: list[list[object]] | None = None
) -> dict[str, object]:
    """A segment's bucket deltas of one batch: ``{"b": [[start, counts], ...], "t": ts}``.

    ``t`` is the newest event time of the batch: it moves the windows' clock. ``c``
    (only when there are some) lists the batch's last detractor comments of the
    segment, already redacted: ``[[event time, event id, score, comment], ...]``.
    Kept as a document until its deltas partition's share is encoded in one go
    (:func:`pipeline.scoring_service.encode_groups`): a batch's values encoded one per
    segment, as orjson returns them, held ~4 KiB each until packed (see
    :mod:`pipeline.owned`).
    """
    if len(buckets) == 1:  # most segments of a batch: no list comprehension (~0.1 µs)
        [(start, counts)] = buckets.items()
        rows = [[start, _COUNTS_FIELDS(counts)]]
    else:
        rows = [[start, _COUNTS_FIELDS(c)] for start, c in buckets.items()]
    document: dict[str, object] = {"b": rows, "t": max_ts}
    if comments:
        document["c"] = comments
    return document
