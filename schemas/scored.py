"""The scored event published on ``feedback.scored``, keyed by event id."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.feedback import FeedbackEvent, SurveyType

SCORED_SCHEMA_VERSION = 1


class Category(StrEnum):
    """NPS categories, and the three-way split used for CSAT and CES."""

    PROMOTER = "promoter"
    PASSIVE = "passive"
    DETRACTOR = "detractor"
    SATISFIED = "satisfied"
    NEUTRAL = "neutral"
    UNSATISFIED = "unsatisfied"


def categorize(survey_type: SurveyType | str, score: int) -> Category:
    """The category of a score already checked against its scale.

    NPS (0-10): promoter 9-10, passive 7-8, detractor 0-6.
    CSAT (1-5): satisfied 4-5, neutral 3, unsatisfied 1-2.
    CES (1-7, agreement with "it was easy"): satisfied 5-7, neutral 4, unsatisfied 1-3.
    """
    kind = SurveyType(survey_type)
    if kind is SurveyType.NPS:
        if score >= 9:
            return Category.PROMOTER
        return Category.PASSIVE if score >= 7 else Category.DETRACTOR
    satisfied_from, neutral = (4, 3) if kind is SurveyType.CSAT else (5, 4)
    if score >= satisfied_from:
        return Category.SATISFIED
    return Category.NEUTRAL if score == neutral else Category.UNSATISFIED


class SourcePosition(BaseModel):
    """Where the raw record was read: lets consumers trace and deduplicate."""

    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class CommentInsights(BaseModel):
    """What the comment says (pipeline.text), when comment analytics is on (NPS_TEXT_ANALYTICS).

    Computed on the original comment before redaction; only these derived values leave
    the stage, never the unredacted text.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    language: str | None = Field(
        description="ISO 639-1 code among the configured languages (the respondent's "
        "attributes.language when given, else detected); null when the comment is too short "
        "or undecidable."
    )
    sentiment: Literal["positive", "neutral", "negative"] | None = Field(
        description="Label of sentiment_score: positive from +0.05, negative from -0.05; "
        "null with NPS_TEXT_SENTIMENT=false."
    )
    sentiment_score: float | None = Field(
        ge=-1,
        le=1,
        description="VADER compound (English) or the Italian lexicon's score; null with "
        "NPS_TEXT_SENTIMENT=false.",
    )
    themes: list[str] = Field(
        description="Themes of the taxonomy (NPS_TEXT_TAXONOMY_FILE) the comment mentions, "
        "in taxonomy order; each also gives the answer a segment theme=<name>."
    )
    disagrees: bool | None = Field(
        description="The comment clearly contradicts the score: a promoter/satisfied answer "
        "with a clearly negative comment, or a detractor/unsatisfied one with a clearly "
        "positive comment (a sign of a reversed scale); null with NPS_TEXT_SENTIMENT=false."
    )


class ScoredEvent(BaseModel):
    """A validated feedback event with its category."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(default=SCORED_SCHEMA_VERSION, ge=1)
    event_id: str = Field(description="Same as feedback.event_id; the record key.")
    revision: int = Field(
        default=0,
        ge=0,
        description=(
            "0 for the first version of an answer; +1 for each update (same event id, "
            "different content, e.g. a comment sent later) within the dedupe horizon. "
            "Records are keyed by event id, so the latest revision replaces the earlier "
            "ones (a compacted topic keeps it); each answer counts once in the windows, "
            "as its latest revision."
        ),
    )
    category: Category
    processed_at: AwareDatetime = Field(description="When the pipeline scored the event (UTC).")
    source: SourcePosition
    feedback: FeedbackEvent
    text: CommentInsights | None = Field(
        default=None,
        description="Comment analytics; null without a comment or with NPS_TEXT_ANALYTICS off.",
    )
