"""Closing the loop: follow-up tasks, their status updates, and what the API reports.

* :class:`FollowupTask` is published on ``feedback.followups`` (keyed by ``task_id``)
  for every answer a follow-up rule selects (by default: every NPS detractor).
* :class:`FollowupUpdate` is what a ticketing or CRM service writes to
  ``feedback.followup-events`` (keyed by ``task_id``) or POSTs to
  ``/api/v1/followups/{task_id}/events``: acknowledged, contacted, resolved.
* :class:`FollowupTaskView` and :class:`FollowupSummary` are the HTTP answers.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.feedback import SurveyType
from schemas.scored import Category

FOLLOWUP_SCHEMA_VERSION = 1


class Priority(StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class RevenueHorizon(StrEnum):
    """When the revenue at risk is expected to be lost if nothing is done."""

    SHORT_TERM = "short_term"  # detractors and unsatisfied answers: the next renewal
    LONG_TERM = "long_term"  # passives: drift away over the following renewals


class FollowupStatus(StrEnum):
    """A status update from the ticketing side."""

    ACKNOWLEDGED = "acknowledged"  # someone owns the task
    CONTACTED = "contacted"  # the customer was reached
    RESOLVED = "resolved"  # closed, with an outcome


class Outcome(StrEnum):
    """How a resolved task ended."""

    RECOVERED = "recovered"  # the problem was fixed / the customer is satisfied again
    NOT_RECOVERED = "not_recovered"  # contacted, but the customer stays unhappy
    UNREACHABLE = "unreachable"  # closed without reaching the customer (not a contact)
    OTHER = "other"


class Sentiment(BaseModel):
    """Sentiment of the comment (``pipeline.text``): label and score in -1..1."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str = Field(description='"positive", "neutral" or "negative".')
    score: float = Field(ge=-1, le=1)


class FollowupTask(BaseModel):
    """One follow-up to do: the answer's essentials, its owner, priority and due time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(default=FOLLOWUP_SCHEMA_VERSION, ge=1)
    task_id: str = Field(description='"fu-" + event_id: one task per answer, the record key.')
    event_id: str = Field(description="The answer that asks for a follow-up.")
    created_at: AwareDatetime = Field(
        description="The answer's event time: the clock of the task starts there."
    )
    due_at: AwareDatetime = Field(description="The customer should be contacted by then.")
    priority: Priority
    rule: str = Field(description="Name of the follow-up rule that selected the answer.")
    survey_type: SurveyType
    score: int
    category: Category
    customer_id: str
    comment: str | None = Field(
        description="Redacted comment (PII replaced by [EMAIL], [PHONE], ...); null when "
        "there was none or NPS_COMMENT_OUTPUT=none."
    )
    language: str | None = Field(default=None, description="Language of the comment, if known.")
    sentiment: Sentiment | None = Field(
        default=None, description="Sentiment of the comment; null without comment or analysis."
    )
    themes: list[str] = Field(default_factory=list, description="Themes of the comment.")
    owner: dict[str, str] = Field(
        description="The owning segment fields of the answer (agent, department, ...)."
    )
    account_value: float | None = Field(description="The account's value (e.g. ARR), if known.")
    revenue_at_risk: float | None = Field(
        description="account_value x the category's revenue factor; null without account value."
    )
    revenue_horizon: RevenueHorizon | None = Field(
        description="short_term (detractors, unsatisfied) or long_term (passives)."
    )
    source: str = Field(description="Survey tool that produced the answer.")


class FollowupUpdate(BaseModel):
    """A status update of one task, written by the ticketing side.

    The tracker keeps the *earliest* time of each status it has seen for a task, so
    repeating an update (at-least-once delivery, a retried POST) changes nothing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    schema_version: int = Field(default=FOLLOWUP_SCHEMA_VERSION, ge=1)
    task_id: str = Field(min_length=1, max_length=210, description="The task; the record key.")
    status: FollowupStatus
    event_time: AwareDatetime = Field(
        description="When it happened on the ticketing side (ISO 8601 with offset)."
    )
    outcome: Outcome | None = Field(default=None, description="For status resolved.")
    note: str | None = Field(default=None, max_length=2000, description="Free text, not analysed.")
    actor: str | None = Field(default=None, max_length=200, description="Who did it.")


class FollowupTaskView(BaseModel):
    """A task with what the tracker knows of it (``GET /api/v1/followups/{task_id}``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: FollowupTask
    state: str = Field(description='"open", "acknowledged", "contacted" or "resolved".')
    acknowledged_at: AwareDatetime | None
    contacted_at: AwareDatetime | None = Field(
        description="First contact: the earliest contacted update, or a resolution other "
        "than unreachable."
    )
    resolved_at: AwareDatetime | None
    outcome: Outcome | None
    overdue: bool = Field(description="Not contacted and the tracker's clock is past due_at.")
    contacted_within_due: bool | None = Field(
        description="Contacted at or before due_at; null while not contacted and not yet due."
    )
    seconds_to_first_contact: float | None
    seconds_to_resolution: float | None
    as_of: AwareDatetime | None = Field(
        description="The tracker's clock: the newest event time it has seen (tasks and updates)."
    )


class FollowupStats(BaseModel):
    """Follow-up figures of one segment over one window of task creation times."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tasks: int = Field(description="Tasks created in the window.")
    open: int = Field(description="Not resolved.")
    overdue: int = Field(description="Not contacted and past due.")
    contacted: int
    resolved: int
    contacted_within_due: int
    contacted_within_due_share: float | None = Field(
        description="contacted_within_due / (tasks contacted or past due); null when none."
    )
    median_seconds_to_first_contact: float | None
    p90_seconds_to_first_contact: float | None
    median_seconds_to_resolution: float | None
    p90_seconds_to_resolution: float | None
    revenue_at_risk_short_term: float = Field(description="Sum over the window's tasks.")
    revenue_at_risk_long_term: float = Field(description="Sum over the window's tasks.")
    revenue_at_risk_open: float = Field(description="Both horizons, tasks not yet resolved.")


class FollowupSegment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    segment: str = Field(description='Segment key: "overall", "agent=a1", ...')
    fields: dict[str, str]
    stats: FollowupStats


class FollowupSummary(BaseModel):
    """``GET /api/v1/followups/summary?dimension=...&window=...``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dimension: str
    window: str = Field(description='"24h", "7d"... (tasks created in the last ...).')
    as_of: AwareDatetime | None = Field(description="Newest tracker clock of the workers asked.")
    segments: list[FollowupSegment] = Field(description="Most overdue first, then most open.")
