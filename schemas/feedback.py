"""The input contract: one survey answer as it arrives on ``feedback.raw``."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

FEEDBACK_SCHEMA_VERSION = 1

#: Inclusive score scale per survey type.
SCALES: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}

#: The segment fields every event may carry; windows and metrics group by them.
SEGMENT_FIELDS: tuple[str, ...] = ("department", "agent", "product", "channel", "region")

Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
SegmentValue = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)
]


class SurveyType(StrEnum):
    NPS = "nps"
    CSAT = "csat"
    CES = "ces"


class FeedbackEvent(BaseModel):
    """One customer answer to an NPS, CSAT or CES question."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    schema_version: int = Field(default=FEEDBACK_SCHEMA_VERSION, ge=1, le=FEEDBACK_SCHEMA_VERSION)
    event_id: Identifier = Field(description="Unique id of the answer; duplicates are dropped.")
    event_time: AwareDatetime = Field(
        description="When the customer answered, ISO 8601 with a timezone offset."
    )
    survey_type: SurveyType
    score: int = Field(
        strict=True,
        description="NPS 0-10, CSAT 1-5, CES 1-7 (checked per survey type).",
    )
    comment: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    customer_id: Identifier
    department: SegmentValue | None = None
    agent: SegmentValue | None = None
    product: SegmentValue | None = None
    channel: SegmentValue | None = None
    region: SegmentValue | None = None
    # FiniteFloat: NaN/Infinity are not JSON; a lenient parser must not let them through
    attributes: dict[str, str | int | FiniteFloat | bool | None] = Field(
        default_factory=dict, description="Free key/value attributes kept with the event."
    )
    account_value: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="Revenue weight (e.g. ARR)."
    )
    source: Identifier = Field(default="api", description="System that produced the answer.")

    @model_validator(mode="after")
    def _score_on_scale(self) -> FeedbackEvent:
        # a StrEnum member is its value as a dict key (``.value`` is a Python property)
        low, high = SCALES[self.survey_type]
        if not low <= self.score <= high:
            raise PydanticCustomError(
                "score_out_of_range",
                "score {score} is outside the {survey} scale {low}-{high}",
                {
                    "score": self.score,
                    "survey": self.survey_type.value.upper(),
                    "low": low,
                    "high": high,
                },
            )
        return self

    def segments(self) -> dict[str, str]:
        """The segment fields this event carries (missing ones left out)."""
        return {f: v for f in SEGMENT_FIELDS if (v := getattr(self, f)) is not None}


def example_event(**overrides: Any) -> dict[str, Any]:
    """A valid feedback event as a JSON-ready dict (documentation and tests)."""
    event: dict[str, Any] = {
        "event_id": "resp-000001",
        "event_time": datetime(2026, 11, 25, 9, 30).astimezone().isoformat(),
        "survey_type": "nps",
        "score": 9,
        "comment": "Quick and friendly support.",
        "customer_id": "cust-42",
        "department": "support",
        "agent": "agent-007",
        "product": "mobile-app",
        "channel": "chat",
        "region": "emea",
        "source": "simulator",
    }
    event.update(overrides)
    return event
