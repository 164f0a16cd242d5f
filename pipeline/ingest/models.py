"""Response bodies of the ingest service (pydantic, so the OpenAPI document and the
answers come from the same definitions)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class AcceptedItem(BaseModel):
    """An event written to the raw topic and acknowledged by the broker."""

    index: int = Field(description="Position in the request (0 for a single event).")
    event_id: str


class ItemError(BaseModel):
    """Why one item of a request was not accepted (nothing of it was written)."""

    index: int = Field(description="Position in the request (0 for a single event).")
    event_id: str | None = Field(default=None, description="The item's event id, if readable.")
    reason: str = Field(
        description="oversize, not_json, score_out_of_range, schema_violation, "
        "unsupported (a webhook payload the adapter cannot map)."
    )
    field: str | None = Field(default=None, description="Dotted path of the offending field.")
    message: str


class IngestResult(BaseModel):
    """Answer of 202 (all items accepted) and 422 (some or all rejected)."""

    topic: str
    accepted_count: int
    rejected_count: int
    accepted: list[AcceptedItem]
    rejected: list[ItemError]


class ErrorBody(BaseModel):
    """Answer of 400, 401, 403, 404, 413 and 503."""

    error: str
    retry: bool = Field(
        default=False,
        description="True when sending the same request again later is expected to work "
        "(503); event ids make a repeated delivery harmless.",
    )


class IgnoredBody(BaseModel):
    """Answer 200 to a webhook that carries no answer (e.g. Delighted's unsubscribe)."""

    ignored: str


class NeedsFetch(BaseModel):
    """An envelope from a tool that sends ids only (SurveyMonkey, Qualtrics): the answer must be
    fetched from the tool's API. Written to ``NPS_INGEST_TOPIC_NEEDS_FETCH`` keyed by
    ``event_id`` — never a made-up score on the raw topic."""

    kind: str = "needs_fetch"
    tool: str
    event_id: str = Field(
        description="The id the fetched answer will carry, e.g. surveymonkey-<object_id>."
    )
    tool_event_id: str | None = None
    tool_event_type: str
    object_type: str
    object_id: str
    event_time: str | None = Field(default=None, description="As the tool sent it.")
    resources: dict[str, str | int | None] = Field(default_factory=dict)
    received_at: str
    message: str
