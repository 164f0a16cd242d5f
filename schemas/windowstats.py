"""KPIs of one segment over one window: part of the HTTP API and ``nps.windows``."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class WindowStats(BaseModel):
    """KPIs of one segment over one window, with confidence intervals.

    Part of the public contract (HTTP API, ``nps.windows`` topic). Shares are in 0..1,
    NPS values in points (-100..100). A KPI without answers is ``null``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: str = Field(description='Window label: "5m", "1h", "24h", ... or "all".')
    window_seconds: int | None = Field(description="Window length; null for all-time.")
    start: AwareDatetime | None = Field(
        default=None, description="Event-time start of the window (inclusive); null for all."
    )
    end: AwareDatetime | None = Field(
        default=None, description="Event-time end of the window (exclusive); null for all."
    )
    confidence: float = Field(description="Two-sided confidence level of the intervals.")
    responses: int = Field(description="NPS answers.")
    promoters: int
    passives: int
    detractors: int
    nps: float | None = Field(description="100 * (promoters - detractors) / responses.")
    nps_low: float | None = Field(description="Adjusted-Wald interval, lower bound.")
    nps_high: float | None = Field(description="Adjusted-Wald interval, upper bound.")
    detractor_share: float | None = Field(description="detractors / responses.")
    detractor_share_low: float | None = Field(description="Wilson interval, lower bound.")
    detractor_share_high: float | None = Field(description="Wilson interval, upper bound.")
    csat_responses: int = Field(description="CSAT answers.")
    csat_satisfied_share: float | None = Field(description="Share of CSAT answers 4-5.")
    csat_mean: float | None = Field(description="Mean CSAT score (1-5).")
    ces_responses: int = Field(description="CES answers.")
    ces_mean: float | None = Field(description="Mean CES score (1-7).")
    revenue_responses: int = Field(description="NPS answers that carry an account value.")
    revenue_weighted_nps: float | None = Field(
        description="100 * (promoter - detractor account value) / total account value, "
        "over the NPS answers with an account value; null when none (or all zero)."
    )
