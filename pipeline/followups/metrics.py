"""Prometheus metrics of the follow-ups (``/metrics`` of every worker).

Counters and histograms are updated as tasks are created and updates applied; the
per-segment gauges are computed from the tracker at scrape time
(:class:`FollowupGauges`), like the rolling-window gauges, for ``overall`` and the
segments of ``NPS_METRICS_DIMENSIONS`` (low cardinality), per follow-up window.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.metrics import PREFIX
from pipeline.segments import OVERALL, segment_labels

if TYPE_CHECKING:
    from pipeline.followups.tracker import FollowupTracker

_DURATION_BUCKETS = (
    300,
    900,
    1800,
    3600,
    2 * 3600,
    4 * 3600,
    8 * 3600,
    12 * 3600,
    24 * 3600,
    48 * 3600,
    72 * 3600,
    7 * 86400,
    14 * 86400,
)

TASKS_CREATED = Counter(
    f"{PREFIX}_followup_tasks_created_total",
    "Follow-up tasks published by the scoring stage, by priority.",
    ["priority"],
)
UPDATES = Counter(
    f"{PREFIX}_followup_updates_total",
    "Status updates read by the tracker: applied (changed the task), unchanged (a repeat "
    "or an older duplicate), invalid_task (a task record that does not validate).",
    ["result"],
)
TASKS_REVISED = Counter(
    f"{PREFIX}_followup_tasks_revised_total",
    "Tracked tasks changed by a revised answer: replaced (new content, status kept) or "
    "withdrawn (the revision is selected by no rule).",
    ["change"],
)
TASKS_EXPIRED = Counter(
    f"{PREFIX}_followup_tasks_expired_total",
    "Tasks dropped from the tracker because they left the longest follow-up window.",
)
TIME_TO_CONTACT = Histogram(
    f"{PREFIX}_followup_time_to_first_contact_seconds",
    "Event time from the answer to the first contact, observed once per task.",
    ["priority"],
    buckets=_DURATION_BUCKETS,
)
TIME_TO_RESOLUTION = Histogram(
    f"{PREFIX}_followup_time_to_resolution_seconds",
    "Event time from the answer to the resolution, observed once per task.",
    ["priority"],
    buckets=_DURATION_BUCKETS,
)

#: FollowupStats field -> (metric suffix, help)
_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("tasks", "tasks", "Follow-up tasks created in the window."),
    ("open", "open_tasks", "Follow-up tasks of the window not resolved."),
    ("overdue", "overdue_tasks", "Follow-up tasks of the window not contacted and past due."),
    (
        "contacted_within_due_share",
        "contacted_within_due_ratio",
        "Share of the window's tasks (contacted or past due) contacted by their due time.",
    ),
    (
        "median_seconds_to_first_contact",
        "first_contact_median_seconds",
        "Median time to first contact of the window's contacted tasks.",
    ),
    (
        "p90_seconds_to_first_contact",
        "first_contact_p90_seconds",
        "90th percentile of the time to first contact (linear interpolation).",
    ),
    (
        "median_seconds_to_resolution",
        "resolution_median_seconds",
        "Median time to resolution of the window's resolved tasks.",
    ),
    (
        "p90_seconds_to_resolution",
        "resolution_p90_seconds",
        "90th percentile of the time to resolution (linear interpolation).",
    ),
)


class FollowupGauges(Collector):
    """Per segment and follow-up window: tasks, open, overdue, share contacted in time,
    median/p90 durations and revenue at risk (by horizon, and of the open tasks)."""

    def __init__(self) -> None:
        self.tracker: FollowupTracker | None = None
        self.dimensions: tuple[str, ...] = ()

    def attach(self, tracker: FollowupTracker, dimensions: Sequence[str]) -> None:
        self.tracker = tracker
        self.dimensions = tuple(dimensions)

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        tracker = self.tracker
        if tracker is None:
            return
        from pipeline.followups.tracker import followup_window_label

        labels = ["dimension", "segment", "window"]
        families = {
            stat: GaugeMetricFamily(f"{PREFIX}_followup_{suffix}", text, labels=labels)
            for stat, suffix, text in _GAUGES
        }
        revenue = GaugeMetricFamily(
            f"{PREFIX}_followup_revenue_at_risk",
            "Revenue at risk of the window's tasks: horizon short_term (detractors, "
            "unsatisfied), long_term (passives), open (both, tasks not yet resolved).",
            labels=[*labels, "horizon"],
        )
        for length in tracker.windows:
            window = followup_window_label(length)
            for dimension in (OVERALL, *self.dimensions):
                for key, part in tracker.parts(dimension, length).items():
                    stats = part.stats()
                    values = [*segment_labels(key), window]
                    for name, family in families.items():
                        value = getattr(stats, name)
                        if value is not None:
                            family.add_metric(values, value)
                    revenue.add_metric([*values, "short_term"], stats.revenue_at_risk_short_term)
                    revenue.add_metric([*values, "long_term"], stats.revenue_at_risk_long_term)
                    revenue.add_metric([*values, "open"], stats.revenue_at_risk_open)
        yield from families.values()
        yield revenue


FOLLOWUP_GAUGES = FollowupGauges()
REGISTRY.register(FOLLOWUP_GAUGES)
