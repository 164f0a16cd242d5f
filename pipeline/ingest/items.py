"""Request items -> accepted events and per-item errors, with the worker's own diagnosis.

Each item is validated exactly as the worker validates a raw record
(:func:`pipeline.validate.parse_feedback`), so an item accepted here is never
dead-lettered for its shape later, and a rejected one gets the same reason names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from pipeline.ingest.models import AcceptedItem, IngestResult, ItemError
from pipeline.validate import Rejection, parse_feedback
from schemas import FeedbackEvent


@dataclass(slots=True)
class Triage:
    """The valid events of a request (with their positions) and the errors of the rest."""

    events: list[FeedbackEvent] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)

    def result(self, topic: str) -> IngestResult:
        accepted = [
            AcceptedItem(index=i, event_id=e.event_id)
            for i, e in zip(self.indexes, self.events, strict=True)
        ]
        return IngestResult(
            topic=topic,
            accepted_count=len(accepted),
            rejected_count=len(self.errors),
            accepted=accepted,
            rejected=self.errors,
        )

    def add(self, index: int, item: object, max_event_bytes: int) -> None:
        """Validate one item: an accepted event, or an :class:`ItemError` with its index."""
        parsed = parse_feedback(orjson.dumps(item), max_event_bytes)
        if isinstance(parsed, FeedbackEvent):
            self.events.append(parsed)
            self.indexes.append(index)
        else:
            self.reject(index, parsed)

    def reject(self, index: int, rejection: Rejection) -> None:
        """Record why item ``index`` was not accepted."""
        self.errors.append(
            ItemError(
                index=index,
                event_id=rejection.event_id,
                reason=rejection.reason.value,
                field=rejection.field,
                message=rejection.message,
            )
        )


def triage(items: list[object], max_event_bytes: int) -> Triage:
    """Validate every item; invalid ones become :class:`ItemError` with their index."""
    out = Triage()
    for index, item in enumerate(items):
        out.add(index, item, max_event_bytes)
    return out
