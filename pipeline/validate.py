"""Raw bytes -> :class:`FeedbackEvent`, or the precise reason why not.

The hot path is a single ``model_validate_json`` call on the raw bytes. Only when it
fails is the record examined again, step by step, to name the reason: oversize, bad
UTF-8, not JSON, score out of range, or a schema violation with the field path.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import orjson
from pydantic import ValidationError

from schemas import DeadLetter, FeedbackEvent, Reason


class RawRecord(NamedTuple):
    """One record as read from Kafka.

    A NamedTuple, not a frozen dataclass: as immutable, and built per record read in
    ~0.24 instead of ~0.59 µs (a frozen dataclass sets each field through
    ``object.__setattr__``; timeit, 2026-11-26)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(slots=True, frozen=True)
class Rejection:
    """Why a record cannot be used."""

    reason: Reason
    message: str
    field: str | None = None
    event_id: str | None = None


def parse_feedback(value: bytes | None, max_bytes: int) -> FeedbackEvent | Rejection:
    """Validate one raw record value."""
    if value is None:
        return Rejection(Reason.SCHEMA_VIOLATION, "empty record (null value / tombstone)")
    if len(value) > max_bytes:
        return Rejection(
            Reason.OVERSIZE,
            f"record is {len(value):,} bytes, over the limit of {max_bytes:,} "
            "(setting NPS_MAX_EVENT_BYTES)",
        )
    try:  # model_validate_json without its Python wrapper (keyword arguments): ~0.2 µs
        return FeedbackEvent.__pydantic_validator__.validate_json(value)
    except ValidationError as exc:
        return _diagnose(value, exc)


def _diagnose(value: bytes, exc: ValidationError) -> Rejection:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as err:
        return Rejection(
            Reason.BAD_ENCODING,
            f"not valid UTF-8: byte 0x{value[err.start]:02x} at position {err.start}",
        )
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as err:
        return Rejection(Reason.NOT_JSON, f"not JSON: {err}")
    event_id = document.get("event_id") if isinstance(document, dict) else None
    event_id = event_id if isinstance(event_id, str) else None
    if not isinstance(document, dict):
        return Rejection(
            Reason.SCHEMA_VIOLATION,
            f"expected a JSON object, got {type(document).__name__}",
        )
    errors = exc.errors(include_url=False)
    for err in errors:
        if err["type"] == "score_out_of_range":
            return Rejection(Reason.SCORE_OUT_OF_RANGE, err["msg"], "score", event_id)
    first = errors[0]
    path = ".".join(str(p) for p in first["loc"]) or None
    message = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(event)'}: {e['msg']}" for e in errors[:10]
    )
    if len(errors) > 10:
        message += f"; and {len(errors) - 10} more"
    return Rejection(Reason.SCHEMA_VIOLATION, message, path, event_id)


def dead_letter(
    record: RawRecord, rejection: Rejection, max_original_bytes: int, now: datetime | None = None
) -> DeadLetter:
    """The dead letter of ``record``: its reason and its original bytes (base64)."""
    value = record.value or b""
    kept = value[:max_original_bytes]
    return DeadLetter(
        reason=rejection.reason,
        message=rejection.message,
        field=rejection.field,
        event_id=rejection.event_id,
        original_base64=base64.b64encode(kept).decode("ascii"),
        original_size=len(value),
        original_truncated=len(kept) < len(value),
        key_base64=base64.b64encode(record.key).decode("ascii") if record.key else None,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        dead_lettered_at=now or datetime.now(UTC),
    )
