"""Prometheus metrics of the pipeline (exposed on ``/metrics`` of every worker).

Names follow the Prometheus conventions: prefix ``nps_pipeline_``, base units
(seconds, bytes), ``_total`` for counters, ``_ratio`` for shares in 0..1.

Three kinds:

* pipeline health (module-level counters and histograms below);
* business counters per segment of the low-cardinality dimensions
  (:class:`SegmentCounters`): counters, so that Prometheus computes any window with
  ``increase()`` and sums correctly across workers;
* the pipeline's own rolling-window KPIs as gauges, read from the window state at
  scrape time (:class:`WindowGauges`), and consumer lag (:class:`ConsumerLag`).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.segments import OVERALL, segment_labels
from pipeline.windows import Counts, SegmentWindows
from schemas.windowstats import WindowStats

if TYPE_CHECKING:
    from pipeline.aggregate import WindowState

log = logging.getLogger(__name__)

# ``*_created`` series double the exposition for no use on dashboards.
disable_created_metrics()

PREFIX = "nps_pipeline"

EVENTS_CONSUMED = Counter(
    f"{PREFIX}_events_consumed_total", "Raw records read from the input topic.", ["topic"]
)
EVENTS_SCORED = Counter(
    f"{PREFIX}_events_scored_total",
    "Feedback events validated, scored and published.",
    ["survey_type", "category"],
)
DEADLETTERS = Counter(
    f"{PREFIX}_deadletters_total", "Records sent to the dead-letter topic.", ["reason"]
)
DUPLICATES = Counter(
    f"{PREFIX}_duplicates_dropped_total",
    "Exact duplicates (same event id and content) dropped within the dedupe horizon.",
)
REVISIONS = Counter(
    f"{PREFIX}_revisions_total",
    "Updates of an answer already received (same event id, different content) within the "
    "dedupe horizon, published as a new revision: change=scoring when the score, event "
    "time, account value or a segment field changed (the windows recount the answer), "
    "change=content when only other fields did (a comment sent later).",
    ["change"],
)
SCORING_COMMITS_REFUSED = Counter(
    f"{PREFIX}_scoring_commits_refused_total",
    "Scoring batches whose offset commit the group refused because it had rebalanced "
    "without this worker (it did not answer for longer than the session timeout); the "
    "batch is read again by the partitions' owner.",
)
DELTAS_GROUPS_FENCED = Counter(
    f"{PREFIX}_deltas_groups_fenced_total",
    "Deltas groups the windows stage skipped: published by a scoring stage after another "
    "worker had taken their raw partition over (a worker frozen mid-batch).",
)
DELTAS_READ_DIRECTLY = Counter(
    f"{PREFIX}_deltas_read_directly_total",
    "Deltas records the windows stage read from the topic itself because Faust's consumer "
    "left them out around a rebalance (each is applied once, in offset order, either way).",
)
DEDUPE_IDS = Gauge(f"{PREFIX}_dedupe_ids", "Event ids currently remembered by the dedupe.")
DEDUPE_EVICTED = Counter(
    f"{PREFIX}_dedupe_evicted_total",
    "Event ids forgotten before the horizon because of NPS_DEDUPE_MAX_IDS.",
)
PROCESSING_LATENCY = Histogram(
    f"{PREFIX}_processing_latency_seconds",
    "Time from a batch's arrival in the worker to its results being handed to the producer.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
EVENT_TIME_LAG = Histogram(
    f"{PREFIX}_event_time_lag_seconds",
    "Processing time minus event time of scored events.",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400),
)
BATCH_SIZE = Histogram(
    f"{PREFIX}_batch_size_records",
    "Records per processed batch.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000),
)


PII_REDACTED = Counter(
    f"{PREFIX}_pii_redacted_total",
    "Personal data replaced by a placeholder in comments, by kind (email, phone, card, ...).",
    ["kind"],
)
TEXT_PROCESS_FAILURES = Counter(
    f"{PREFIX}_text_process_failures_total",
    "Times the comment analysis process (NPS_TEXT_PROCESS) died or did not answer; the "
    "worker analysed comments itself until a new one started.",
)
COMMENT_THEMES = Counter(
    f"{PREFIX}_comment_themes_total",
    "Scored answers whose comment mentions a theme of the taxonomy, by theme and category "
    "(NPS_TEXT_ANALYTICS).",
    ["theme", "category"],
)
ALERTS_FIRING = Gauge(
    f"{PREFIX}_alerts_firing",
    "The pipeline's own statistical alerts currently firing (segments owned by this worker).",
    ["rule", "severity"],
)

# --------------------------------------------------------------------------- business

_SEGMENT_LABELS = ("dimension", "segment")
#: (metric, help, Counts attribute)
_BUSINESS: tuple[tuple[str, str, str], ...] = (
    ("nps_responses_total", "NPS answers.", "responses"),
    ("nps_promoters_total", "NPS answers 9-10.", "promoters"),
    ("nps_passives_total", "NPS answers 7-8.", "passives"),
    ("nps_detractors_total", "NPS answers 0-6.", "detractors"),
    ("csat_responses_total", "CSAT answers.", "csat_n"),
    ("csat_satisfied_total", "CSAT answers 4-5 (of 1-5).", "csat_satisfied"),
    ("csat_score_total", "Sum of CSAT scores (1-5); divide by responses for the mean.", "csat_sum"),
    ("ces_responses_total", "CES answers.", "ces_n"),
    ("ces_score_total", "Sum of CES scores (1-7, higher = easier).", "ces_sum"),
)
BUSINESS_COUNTERS: tuple[tuple[Counter, str], ...] = tuple(
    (
        Counter(
            f"{PREFIX}_{name}",
            f"{text} Per segment of the metrics dimensions (NPS_METRICS_DIMENSIONS); "
            'dimension="overall", segment="all" counts every answer.',
            _SEGMENT_LABELS,
        ),
        attribute,
    )
    for name, text, attribute in _BUSINESS
)


def counter_labels(key: str, dimensions: Iterable[str]) -> tuple[str, str] | None:
    """:func:`~pipeline.segments.segment_labels` of ``overall`` and of the segments of
    one of ``dimensions``; None for other dimensions and combinations."""
    dimension, segment = segment_labels(key)
    return (dimension, segment) if dimension == OVERALL or dimension in dimensions else None


class SegmentCounters:
    """Business counters per segment, updated once per scoring batch from its deltas.

    A new series is exposed at 0 before its first increment: its increments wait
    (in :attr:`pending`) until a scrape has seen it (:meth:`after_scrape`). So
    ``increase()`` in Prometheus counts the first answers of a segment too, instead
    of taking the first scraped value as the starting point.
    """

    def __init__(self, dimensions: Sequence[str]) -> None:
        self.dimensions = frozenset(dimensions)
        self._labels: dict[str, tuple[str, str] | None] = {}
        self._children: dict[tuple[str, str], list[tuple[Any, str]]] = {}
        self.pending: dict[tuple[str, str], Counts] = {}  # summed until the first scrape

    def add(self, key: str, parts: Iterable[Counts]) -> None:
        """Count a segment's answers of one batch, given as its bucket deltas (``key`` as
        in :mod:`pipeline.segments`); summed only for the segments that have counters."""
        if "|" not in key and key != OVERALL and key.partition("=")[0] not in self.dimensions:
            return  # a dimension without counters: not cached (100,000 agents, ~10 MiB)
        labels = self._labels.get(key, ())
        if labels == ():
            labels = self._labels[key] = counter_labels(key, self.dimensions)
        if labels is None:
            return
        counts = Counts()
        for part in parts:
            counts.add(part)
        children = self._children.get(labels)
        if children is None:
            self._children[labels] = [(c.labels(*labels), a) for c, a in BUSINESS_COUNTERS]
            self.pending[labels] = counts
            return
        waiting = self.pending.get(labels)
        if waiting is not None:
            waiting.add(counts)
            return
        _increment(children, counts)

    def after_scrape(self) -> None:
        """Apply the increments of the series a scrape has now exposed at 0."""
        pending, self.pending = self.pending, {}
        for labels, counts in pending.items():
            _increment(self._children[labels], counts)


def _increment(children: list[tuple[Any, str]], counts: Counts) -> None:
    for child, attribute in children:
        value = getattr(counts, attribute)
        if value:
            child.inc(value)


# --------------------------------------------------------------------------- collectors


#: (WindowStats field, metric name suffix, help)
_WINDOW_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("nps", "nps", "NPS over the rolling window, in points (-100..100)."),
    ("nps_low", "nps_lower", "Lower bound of the 95% adjusted-Wald interval of the NPS, points."),
    ("nps_high", "nps_upper", "Upper bound of the 95% adjusted-Wald interval of the NPS, points."),
    ("responses", "responses", "NPS answers in the rolling window."),
    ("detractor_share", "detractor_ratio", "Share of detractors among the NPS answers (0..1)."),
)


class WindowGauges(Collector):
    """Rolling-window KPIs per segment and window, computed from the state at scrape time.

    At most ``max_segments`` segments per worker are exported: ``overall`` first, then
    the metrics dimensions, then the others; within each, the segments with the most
    answers in the longest window. The rest is counted in
    ``nps_pipeline_window_segments_dropped``.

    Ranking every segment takes ~3-6 µs each (their windows moved to the worker clock
    first): 0.3-0.6 s at 100,000 segments. ``/metrics`` therefore calls :meth:`refresh`
    first, which ranks in steps of ``STEP`` segments with the event loop free in
    between, and the scrape's :meth:`collect` uses that choice; a collect without a
    refresh before it (a plain ``generate_latest()``) ranks in one go.
    """

    #: segments ranked between two yields of the event loop in :meth:`refresh` (~10 ms)
    STEP = 2_000
    #: exported segments whose window statistics are computed between two yields
    STATS_STEP = 100

    def __init__(self) -> None:
        self.state: WindowState | None = None
        self.max_segments = 0
        self.dimensions: tuple[str, ...] = ()
        #: from refresh, for the next collect: (labels, stats) rows, segments left out
        self._prepared: tuple[list[_Row], int] | None = None

    def attach(self, state: WindowState, max_segments: int, dimensions: Sequence[str]) -> None:
        self.state = state
        self.max_segments = max_segments
        self.dimensions = tuple(dimensions)
        self._prepared = None

    async def refresh(self) -> None:
        """Compute the next :meth:`collect`'s gauges, in steps with the loop free between."""
        state = self.state
        if state is None:
            return
        segments = state.keys()
        ranked: list[_Ranked] = []
        for i in range(0, len(segments), self.STEP):
            ranked += self._rank(state, segments[i : i + self.STEP])
            await asyncio.sleep(0)
        chosen, left_out = self._top(ranked)
        rows: list[_Row] = []
        for i in range(0, len(chosen), self.STATS_STEP):
            rows += self._rows(state, chosen[i : i + self.STATS_STEP])
            await asyncio.sleep(0)
        self._prepared = (rows, left_out)

    def describe(self) -> Iterable[Metric]:
        return []  # the families are created at collect time; no registration-time check

    def collect(self) -> Iterator[Metric]:
        families = {
            stat: GaugeMetricFamily(
                f"{PREFIX}_window_{suffix}", text, labels=["dimension", "segment", "window"]
            )
            for stat, suffix, text in _WINDOW_GAUGES
        }
        dropped = GaugeMetricFamily(
            f"{PREFIX}_window_segments_dropped",
            "Segments of this worker without window gauges (NPS_METRICS_MAX_SEGMENTS).",
        )
        state = self.state
        if state is None:
            dropped.add_metric([], 0)
            yield from (*families.values(), dropped)
            return
        if self._prepared is None:
            chosen, left_out = self._top(self._rank(state, state.keys()))
            rows = self._rows(state, chosen)
        else:
            (rows, left_out), self._prepared = self._prepared, None
        for labels, stats in rows:
            families["responses"].add_metric(labels, stats.responses)
            for name in ("nps", "nps_low", "nps_high", "detractor_share"):
                value = getattr(stats, name)
                if value is not None:
                    families[name].add_metric(labels, value)
        dropped.add_metric([], left_out)
        yield from (*families.values(), dropped)

    @staticmethod
    def _rows(state: WindowState, chosen: list[_Chosen]) -> list[_Row]:
        return [
            ([dimension, segment, (stats := windows.stats(length)).window], stats)
            for dimension, segment, windows in chosen
            for length in state.windows
        ]

    def _rank(self, state: WindowState, segments: list[tuple[int, str]]) -> list[_Ranked]:
        """Rank rows of the ``(partition, segment)`` pairs still held, their windows moved
        to the worker clock (a partition revoked or a segment gone since: left out)."""
        longest = max(state.windows)
        clock = state.clock
        order = {d: i for i, d in enumerate(self.dimensions)}
        ranked: list[_Ranked] = []
        for partition, key in segments:
            windows = state.advanced(partition, key, clock)
            if windows is None:
                continue
            dimension, segment = segment_labels(key)
            rank = -1 if dimension == OVERALL else order.get(dimension, len(order))
            ranked.append((rank, -windows.peek(longest).responses, dimension, segment, windows))
        return ranked

    def _top(self, ranked: list[_Ranked]) -> tuple[list[_Chosen], int]:
        kept = heapq.nsmallest(self.max_segments, ranked, key=_RANK_ORDER)
        return [(d, s, w) for _, _, d, s, w in kept], len(ranked) - len(kept)


#: (rank of the dimension, -answers in the longest window, dimension, segment, windows)
_Ranked = tuple[int, int, str, str, SegmentWindows]
#: (dimension, segment, windows) of an exported segment
_Chosen = tuple[str, str, SegmentWindows]
#: ([dimension, segment, window label], its statistics) of one exported window
_Row = tuple[list[str], WindowStats]
_RANK_ORDER = itemgetter(0, 1, 2, 3)


class ConsumerLag(Collector):
    """Records not yet read per assigned input partition: highwater minus read position."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[tuple[str, int, int]]] | None = None

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            f"{PREFIX}_consumer_lag_records",
            "Records in the partition not yet read by this worker (highwater - position).",
            labels=["topic", "partition"],
        )
        if self.source is not None:
            try:
                for topic, partition, lag in self.source():
                    family.add_metric([topic, str(partition)], lag)
            except Exception:  # a scrape must not fail because the consumer is rebalancing
                log.debug("consumer lag unavailable", exc_info=True)
        yield family


WINDOW_GAUGES = WindowGauges()
CONSUMER_LAG = ConsumerLag()
REGISTRY.register(WINDOW_GAUGES)
REGISTRY.register(CONSUMER_LAG)


def render(after_scrape: Callable[[], None] | None = None) -> tuple[bytes, str]:
    """The text exposition of every metric and its content type, in one go.

    ``after_scrape`` runs right after the metrics are collected (see
    :meth:`SegmentCounters.after_scrape`). The worker's ``/metrics`` uses
    :func:`scrape`, which does the same without holding the event loop for long.
    """
    return generate_latest(_collect(after_scrape)), CONTENT_TYPE_LATEST  # type: ignore[arg-type]


async def scrape(after_scrape: Callable[[], None] | None = None) -> tuple[bytes, str]:
    """:func:`render` for the event loop: the window gauges ranked in steps
    (:meth:`WindowGauges.refresh`), every metric collected on the loop (reading the
    pipeline's state there), and only the text written in a thread (~50-130 ms of
    formatting at the default 500 segments with gauges, which held the loop). One
    scrape at a time: a second waits for the first.
    """
    async with _SCRAPING:
        await WINDOW_GAUGES.refresh()
        collected = _collect(after_scrape)
        body = await asyncio.to_thread(generate_latest, collected)  # type: ignore[arg-type]
    return body, CONTENT_TYPE_LATEST


class _Collected:
    """Metric families already collected, for ``generate_latest`` to write."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _collect(after_scrape: Callable[[], None] | None) -> _Collected:
    collected = _Collected(list(REGISTRY.collect()))
    if after_scrape is not None:
        after_scrape()
    return collected


_SCRAPING = asyncio.Lock()


def observe_all(histogram: Histogram, amounts: Sequence[float]) -> None:
    """``histogram.observe(amount)`` for every amount, in one go.

    Why: the scoring stage observes one value per event (``EVENT_TIME_LAG``), and
    ``observe`` takes two locks per value (~1.5 µs); here each bucket hit takes one lock
    per batch. Same counts and the same sum (up to float rounding order) as observing
    one by one; an unlabeled histogram only (a labeled one is observed the public way,
    which raises as ``observe`` does).
    """
    if not amounts:
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if getattr(histogram, "_labelnames", ()) or bounds is None or buckets is None or total is None:
        for amount in amounts:
            histogram.observe(amount)
        return
    last = len(bounds) - 1  # +Inf: where observe puts anything above the other bounds
    if bounds[last] == math.inf:  # always so (prometheus_client adds it): nothing lands
        # past it, and one C-level pass saves ~0.25 µs per amount over a generator
        indexes = Tally(map(bisect_left, repeat(bounds), amounts))
    else:
        indexes = Tally(min(bisect_left(bounds, a), last) for a in amounts)
    for index, hits in indexes.items():
        buckets[index].inc(hits)
    total.inc(sum(amounts))
