"""Alerts published on ``nps.alerts`` (keyed by fingerprint) and sent to Alertmanager."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.windowstats import WindowStats

ALERT_SCHEMA_VERSION = 1


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class RuleKind(StrEnum):
    DETRACTOR_SPIKE = "detractor_spike"
    NPS_DROP = "nps_drop"
    NPS_FLOOR = "nps_floor"
    CSAT_DROP = "csat_drop"
    CES_EFFORT_RISE = "ces_effort_rise"
    SILENCE = "silence"
    DETRACTOR_CUSUM = "detractor_cusum"
    FOLLOWUP_OVERDUE = "followup_overdue"  # a follow-up task not contacted by its due time


class DetractorComment(BaseModel):
    """A recent detractor answer of the segment, its comment already redacted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    event_time: AwareDatetime
    score: int
    comment: str = Field(description="PII replaced by typed placeholders ([EMAIL], [PHONE], ...).")


class EmergingTopic(BaseModel):
    """A phrase over-represented in the short window's detractor comments of the segment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    phrase: str = Field(description="A word or two adjacent words, lower case, no accents.")
    count: int = Field(ge=1, description="Detractor comments of the short window with it.")
    z: float = Field(
        description="z score of its log-odds ratio against the worker's recent detractor "
        "comments, informative Dirichlet prior (Monroe et al. 2008)."
    )


class Evidence(BaseModel):
    """Why the alert fired: enough to act without opening anything else."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: WindowStats = Field(description="The short window being judged.")
    baseline: WindowStats | None = Field(
        description="The segment's own baseline: the longer window minus the short one "
        "(no overlap); null for rules against an absolute target."
    )
    metric: str = Field(
        description='What is compared: "detractor_share", "nps", "csat_satisfied_share", '
        '"ces_mean", "responses".'
    )
    observed: float | None = Field(description="The metric in the short window.")
    expected: float | None = Field(description="The baseline value or the target.")
    effect: float | None = Field(
        description="How much worse than expected, in the metric's unit (points, share, "
        "mean or answers): positive means worse (a drop for NPS/CSAT/CES, a rise for "
        "detractors)."
    )
    statistic: str = Field(description='"z", "cusum" or "poisson".')
    statistic_value: float = Field(description="z score, CUSUM sum S, or expected count.")
    threshold: float | None = Field(description="CUSUM decision limit h (null for z tests).")
    p_value: float | None = Field(description="One-sided p-value of the test (null for CUSUM).")
    adjusted_p_value: float | None = Field(
        description="Benjamini-Hochberg adjusted p-value across the evaluation round."
    )
    comments: list[DetractorComment] = Field(
        default_factory=list,
        description="Up to five of the segment's most recent detractor comments made in the "
        "window judged, newest first (older ones are left out: they would not explain it).",
    )
    emerging_topics: list[EmergingTopic] = Field(
        default_factory=list,
        description="Up to five key phrases of the short window's detractor comments, most "
        "over-represented first (z >= 1.96, in 3+ comments); empty without comment analytics "
        "(NPS_TEXT_ANALYTICS) or for rules on CSAT, CES or silence.",
    )


class Alert(BaseModel):
    """One state change of an alert: it fired, or it resolved."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(default=ALERT_SCHEMA_VERSION, ge=1)
    alert_id: str = Field(
        description="Deterministic id of this alert occurrence: fingerprint + start; "
        "a fire and its resolve share it, a later occurrence gets a new one."
    )
    fingerprint: str = Field(description="Stable id of rule + segment (hex).")
    status: AlertStatus
    rule: str = Field(description="Rule name from the rules file.")
    kind: RuleKind
    severity: str
    segment: str = Field(description='Segment key: "overall", "agent=a1", ...')
    dimension: str
    fields: dict[str, str]
    summary: str = Field(description="One line for a pager.")
    description: str = Field(description="The evidence in words.")
    started_at: AwareDatetime = Field(
        description="Event time the change started (CUSUM: last time the sum left 0; "
        "window tests: the first evaluation that met the condition)."
    )
    fired_at: AwareDatetime = Field(description="Event time of the evaluation that fired it.")
    resolved_at: AwareDatetime | None = Field(
        default=None, description="Event time of the evaluation that resolved it."
    )
    evidence: Evidence
