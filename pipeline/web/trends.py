"""What the live page needs beyond the segment listing: recent per-bucket NPS for a
sparkline, and the 95% intervals of CSAT and CES (the listing has NPS intervals only).

Pure functions of a segment's :class:`~pipeline.windows.SegmentWindows`; the HTTP
endpoint that serves them is in :mod:`pipeline.web.live_api`.
"""

from __future__ import annotations

import math

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from pipeline.stats import mean_and_variance, nps, wilson_interval, z_for_confidence
from pipeline.windows import Counts, SegmentWindows

#: most sparkline points per segment (the request may ask for fewer)
MAX_POINTS = 60
DEFAULT_POINTS = 12


class Point(BaseModel):
    """NPS answers of one stretch of the window, oldest point first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: int = Field(description="Event-time start, Unix seconds (inclusive).")
    end: int = Field(description="Event-time end, Unix seconds (exclusive).")
    responses: int
    nps: float | None


class CsatSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    responses: int
    satisfied_share: float | None = Field(description="Share of answers 4-5.")
    satisfied_low: float | None = Field(description="Wilson 95% interval, lower bound.")
    satisfied_high: float | None
    mean: float | None = Field(description="Mean score, 1-5.")


class CesSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    responses: int
    mean: float | None = Field(description="Mean score, 1-7 (higher = easier).")
    mean_low: float | None = Field(description="Normal 95% interval of the mean (n >= 2).")
    mean_high: float | None


class SegmentTrend(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    segment: str
    points: list[Point]
    csat: CsatSummary
    ces: CesSummary


class TrendList(BaseModel):
    """Answer of ``GET /api/v1/series``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dimension: str
    window: str
    step_seconds: int = Field(description="Length of one sparkline point.")
    as_of: AwareDatetime | None
    series: dict[str, SegmentTrend] = Field(description="By segment key.")
    unanswered_workers: int = Field(default=0, description="Workers that did not answer.")


def step_for(window_seconds: int, bucket_seconds: int, points: int) -> int:
    """Length of one point: the window split into ``points`` whole buckets (rounded up)."""
    if points < 1:
        raise ValueError(f"points must be at least 1, got {points}")
    per_point = math.ceil(window_seconds / points / bucket_seconds)
    return max(1, per_point) * bucket_seconds


def sparkline(windows: SegmentWindows, window_seconds: int, points: int) -> list[Point]:
    """The window ending at the segment's clock, cut into consecutive points of
    :func:`step_for` seconds (the oldest may be shorter); empty before any clock."""
    clock = windows.clock
    if clock is None:
        return []
    width = windows.bucket_seconds
    step = step_for(window_seconds, width, points)
    end = clock + width
    start = end - window_seconds
    out: list[Point] = []
    edge = end
    while edge > start:
        low = max(start, edge - step)
        c = windows.range_counts(low, edge)
        out.append(
            Point(
                start=low,
                end=edge,
                responses=c.responses,
                nps=nps(c.promoters, c.detractors, c.responses),
            )
        )
        edge = low
    out.reverse()
    return out


def csat_summary(c: Counts, confidence: float = 0.95) -> CsatSummary:
    if not c.csat_n:
        return CsatSummary(
            responses=0, satisfied_share=None, satisfied_low=None, satisfied_high=None, mean=None
        )
    low, high = wilson_interval(c.csat_satisfied, c.csat_n, confidence)
    return CsatSummary(
        responses=c.csat_n,
        satisfied_share=c.csat_satisfied / c.csat_n,
        satisfied_low=low,
        satisfied_high=high,
        mean=c.csat_sum / c.csat_n,
    )


def ces_summary(c: Counts, confidence: float = 0.95) -> CesSummary:
    """Mean CES with the normal interval ``mean ± z * s / sqrt(n)`` (none below 2 answers)."""
    if not c.ces_n:
        return CesSummary(responses=0, mean=None, mean_low=None, mean_high=None)
    mean, variance = mean_and_variance(c.ces_sum, c.ces_sq, c.ces_n)
    if c.ces_n < 2:
        return CesSummary(responses=c.ces_n, mean=mean, mean_low=None, mean_high=None)
    half = z_for_confidence(confidence) * math.sqrt(variance / c.ces_n)
    return CesSummary(
        responses=c.ces_n,
        mean=mean,
        mean_low=max(1.0, mean - half),
        mean_high=min(7.0, mean + half),
    )


def segment_trend(
    segment: str, windows: SegmentWindows, window_seconds: int | None, points: int
) -> SegmentTrend:
    """Sparkline and CSAT/CES intervals of one segment; ``None`` = all time (the
    sparkline then covers the longest window, the intervals everything)."""
    counts = windows.total() if window_seconds is None else windows.window(window_seconds)
    span = max(windows.windows) if window_seconds is None else window_seconds
    return SegmentTrend(
        segment=segment,
        points=sparkline(windows, span, points),
        csat=csat_summary(counts),
        ces=ces_summary(counts),
    )
