"""The first stage: validate, drop duplicates, score; Kafka-agnostic and batch-oriented.

:meth:`ScoringStage.process` turns a batch of raw records into the records to publish
(scored events and dead letters, already encoded). The Faust agent in
:mod:`pipeline.app` only moves bytes in and out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline import metrics
from pipeline.dedupe import DuplicateFilter, Seen
from pipeline.settings import Settings
from pipeline.validate import RawRecord, Rejection, dead_letter, parse_feedback
from schemas import Category, Reason, ScoredEvent, SourcePosition, SurveyType, categorize


@dataclass(slots=True)
class Output:
    """What one batch produces, ready to send: (key, value) pairs per topic."""

    scored: list[tuple[bytes, bytes]] = field(default_factory=list)
    deadletters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    duplicates: int = 0


@dataclass(slots=True)
class Totals:
    """Running counts since the worker started (for the status line)."""

    consumed: int = 0
    scored: int = 0
    deadlettered: int = 0
    duplicates: int = 0
    nps_responses: int = 0
    promoters: int = 0
    detractors: int = 0

    def nps(self) -> float | None:
        if not self.nps_responses:
            return None
        return 100.0 * (self.promoters - self.detractors) / self.nps_responses


class ScoringStage:
    def __init__(self, settings: Settings) -> None:
        self.max_event_bytes = settings.max_event_bytes
        self.max_original_bytes = settings.deadletter_max_original_bytes
        self.dedupe = DuplicateFilter(settings.dedupe_horizon_seconds, settings.dedupe_max_ids)
        self.totals = Totals()

    def process(self, records: list[RawRecord]) -> Output:
        out = Output()
        now = datetime.now(UTC)
        mono = time.monotonic()
        evicted_before = self.dedupe.evicted_early
        for record in records:
            metrics.EVENTS_CONSUMED.labels(record.topic).inc()
            parsed = parse_feedback(record.value, self.max_event_bytes)
            if isinstance(parsed, Rejection):
                self._reject(out, record, parsed, now)
                continue
            seen = self.dedupe.check(parsed.event_id, hash(parsed.model_dump_json()), mono)
            if seen is Seen.DUPLICATE:
                out.duplicates += 1
                metrics.DUPLICATES.inc()
                continue
            if seen is Seen.CONFLICT:
                message = (
                    f"event id {parsed.event_id!r} was already received with different "
                    "content within the dedupe horizon; the first version was kept"
                )
                self._reject(
                    out,
                    record,
                    Rejection(Reason.CONFLICTING_DUPLICATE, message, "event_id", parsed.event_id),
                    now,
                )
                continue
            category = categorize(parsed.survey_type, parsed.score)
            if category is Category.PROMOTER:
                self.totals.promoters += 1
            elif category is Category.DETRACTOR:
                self.totals.detractors += 1
            if parsed.survey_type is SurveyType.NPS:
                self.totals.nps_responses += 1
            scored = ScoredEvent(
                event_id=parsed.event_id,
                category=category,
                processed_at=now,
                source=SourcePosition(
                    topic=record.topic, partition=record.partition, offset=record.offset
                ),
                feedback=parsed,
            )
            out.scored.append((parsed.event_id.encode(), scored.model_dump_json().encode()))
            metrics.EVENTS_SCORED.labels(parsed.survey_type.value, category.value).inc()
            metrics.EVENT_TIME_LAG.observe((now - parsed.event_time).total_seconds())
        totals = self.totals
        totals.consumed += len(records)
        totals.scored += len(out.scored)
        totals.deadlettered += len(out.deadletters)
        totals.duplicates += out.duplicates
        metrics.DEDUPE_IDS.set(len(self.dedupe))
        metrics.DEDUPE_EVICTED.inc(self.dedupe.evicted_early - evicted_before)
        return out

    def _reject(self, out: Output, record: RawRecord, rejection: Rejection, now: datetime) -> None:
        letter = dead_letter(record, rejection, self.max_original_bytes, now)
        out.deadletters.append((record.key, letter.model_dump_json().encode()))
        metrics.DEADLETTERS.labels(rejection.reason.value).inc()
