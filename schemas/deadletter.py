"""The dead letter published on ``feedback.deadletter`` for every record not scored."""

from __future__ import annotations

import base64
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

DEADLETTER_SCHEMA_VERSION = 1


class Reason(StrEnum):
    """Why a record was dead-lettered (the ``reason`` label of the metric too)."""

    OVERSIZE = "oversize"
    BAD_ENCODING = "bad_encoding"
    NOT_JSON = "not_json"
    SCHEMA_VIOLATION = "schema_violation"
    SCORE_OUT_OF_RANGE = "score_out_of_range"
    #: no longer produced (a changed repeat is an update, see pipeline.dedupe): kept so that
    #: dead letters written before stay readable
    CONFLICTING_DUPLICATE = "conflicting_duplicate"
    LATE = "late"  # published scored, but left out of the windows
    FUTURE = "future"  # published scored, but left out of the windows
    PROCESSING_ERROR = "processing_error"  # a bug: the worker kept going, the record is here
    UNKNOWN_TASK = "unknown_task"  # a follow-up status update for a task the tracker never saw


class DeadLetter(BaseModel):
    """A record the pipeline could not use, with the reason and its original bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(default=DEADLETTER_SCHEMA_VERSION, ge=1)
    reason: Reason
    message: str = Field(description="What is wrong, for a person.")
    field: str | None = Field(
        default=None, description="Dotted path of the offending field, when one is known."
    )
    event_id: str | None = Field(default=None, description="The event id, when it could be read.")
    original_base64: str = Field(description="The record value exactly as received, base64.")
    original_size: int = Field(ge=0, description="Size of the original value in bytes.")
    original_truncated: bool = Field(
        default=False,
        description="True when only the first NPS_DEADLETTER_MAX_ORIGINAL_BYTES were kept.",
    )
    key_base64: str | None = Field(default=None, description="The record key, base64.")
    source_topic: str
    source_partition: int = Field(ge=0)
    source_offset: int = Field(ge=0)
    dead_lettered_at: AwareDatetime

    def original(self) -> bytes:
        return base64.b64decode(self.original_base64)
