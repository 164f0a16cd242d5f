"""Pipeline health for the live page: events/s, dead letters, consumer lag.

The same numbers as the status line of ``nps-pipeline run`` (the scoring stage's
running totals) and ``/metrics`` (dead letters by reason, consumer lag), as JSON, so the
page does not parse the Prometheus text format. Each worker reports its own; the
endpoint sums them (:func:`combine`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from pipeline import metrics
from pipeline.scoring import Totals

#: the events/s rate is measured over about this many seconds
RATE_SPAN_SECONDS = 10.0


class WorkerHealth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    worker: str = Field(description="The worker's base URL.")
    consumed: int = Field(description="Raw records read since the worker started.")
    scored: int
    deadlettered: int
    duplicates: int
    events_per_second: float = Field(description=f"Over the last ~{RATE_SPAN_SECONDS:.0f} s.")
    deadletters_by_reason: dict[str, int]
    lag_records: dict[str, int] = Field(
        description="Records not yet read, by topic (changelogs of standby tables included)."
    )
    input_lag_records: int = Field(description="Of those, in the raw and deltas topics.")
    clock: AwareDatetime | None = Field(description="Event-time clock of its windows.")


class PipelineHealth(BaseModel):
    """Answer of ``GET /api/v1/health``: the sum over the workers, and each worker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    consumed: int
    scored: int
    deadlettered: int
    duplicates: int
    events_per_second: float
    deadletters_by_reason: dict[str, int]
    lag_records: dict[str, int]
    input_lag_records: int
    clock: AwareDatetime | None = Field(description="Newest event-time clock of any worker.")
    workers: list[WorkerHealth]
    unanswered_workers: int = 0


class RateMeter:
    """Records per second from samples of a running count (one :meth:`sample` a second)."""

    def __init__(
        self, span: float = RATE_SPAN_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.span = span
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, count: int) -> None:
        now = self._clock()
        self._samples.append((now, count))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.span:
            self._samples.popleft()

    def rate(self) -> float:
        """Count increase per second between the oldest and newest sample (0 with fewer
        than two)."""
        if len(self._samples) < 2:
            return 0.0
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


def deadletters_by_reason() -> dict[str, int]:
    """This process's ``nps_pipeline_deadletters_total`` by reason."""
    out: dict[str, int] = {}
    for family in metrics.DEADLETTERS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.value:
                out[sample.labels["reason"]] = int(sample.value)
    return out


def lag_by_topic(lags: Iterable[tuple[str, int, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for topic, _, lag in lags:
        out[topic] = out.get(topic, 0) + lag
    return out


def worker_health(
    worker: str,
    totals: Totals,
    rate: float,
    lags: Iterable[tuple[str, int, int]],
    clock: float | None,
    input_topics: Iterable[str],
) -> WorkerHealth:
    by_topic = lag_by_topic(lags)
    inputs = set(input_topics)
    return WorkerHealth(
        worker=worker,
        consumed=totals.consumed,
        scored=totals.scored,
        deadlettered=totals.deadlettered,
        duplicates=totals.duplicates,
        events_per_second=rate,
        deadletters_by_reason=deadletters_by_reason(),
        lag_records=by_topic,
        input_lag_records=sum(n for topic, n in by_topic.items() if topic in inputs),
        clock=None if clock is None else datetime.fromtimestamp(clock, UTC),
    )


def combine(workers: list[WorkerHealth], unanswered: int = 0) -> PipelineHealth:
    """Counts, rates and lags summed over the workers; the newest clock."""
    reasons: dict[str, int] = {}
    lags: dict[str, int] = {}
    for w in workers:
        for reason, n in w.deadletters_by_reason.items():
            reasons[reason] = reasons.get(reason, 0) + n
        for topic, n in w.lag_records.items():
            lags[topic] = lags.get(topic, 0) + n
    clocks = [w.clock for w in workers if w.clock is not None]
    return PipelineHealth(
        consumed=sum(w.consumed for w in workers),
        scored=sum(w.scored for w in workers),
        deadlettered=sum(w.deadlettered for w in workers),
        duplicates=sum(w.duplicates for w in workers),
        events_per_second=sum(w.events_per_second for w in workers),
        deadletters_by_reason=dict(sorted(reasons.items())),
        lag_records=dict(sorted(lags.items())),
        input_lag_records=sum(w.input_lag_records for w in workers),
        clock=max(clocks) if clocks else None,
        workers=sorted(workers, key=lambda w: w.worker),
        unanswered_workers=unanswered,
    )
