"""Event contracts of nps-pipeline: pydantic models, exported as JSON Schema to ``json/``."""

from schemas.deadletter import DeadLetter, Reason
from schemas.feedback import SCALES, SEGMENT_FIELDS, FeedbackEvent, SurveyType
from schemas.followup import (
    FollowupStatus,
    FollowupSummary,
    FollowupTask,
    FollowupTaskView,
    FollowupUpdate,
    Outcome,
    Priority,
)
from schemas.scored import Category, CommentInsights, ScoredEvent, SourcePosition, categorize

__all__ = [
    "SCALES",
    "SEGMENT_FIELDS",
    "Category",
    "CommentInsights",
    "DeadLetter",
    "FeedbackEvent",
    "FollowupStatus",
    "FollowupSummary",
    "FollowupTask",
    "FollowupTaskView",
    "FollowupUpdate",
    "Outcome",
    "Priority",
    "Reason",
    "ScoredEvent",
    "SourcePosition",
    "SurveyType",
    "categorize",
]
