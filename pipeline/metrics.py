"""Prometheus metrics of the pipeline (exposed on ``/metrics`` of every worker).

Names follow the Prometheus conventions: prefix ``nps_pipeline_``, base units
(seconds, bytes), ``_total`` for counters.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

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


def render() -> tuple[bytes, str]:
    """The text exposition of every metric and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
