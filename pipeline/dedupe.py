"""Remember each answer by event id within a time horizon: repeats and updates count once.

Survey tools retry (the same answer arrives twice) and update (Delighted sends the
comment, or a changed score, later under the same response id). The filter remembers,
per event id, an :class:`Entry`: a stable digest of the last version's content, its
revision number, when it was last seen (processing time) and what it contributed to the
windows. Within the horizon:

* a repeat with the same content is a **duplicate** (dropped and counted);
* a repeat with *different* content is an **update**: the scoring stage publishes it
  with the next revision, removes the stored contribution from the windows, adds the new
  one and :meth:`DuplicateFilter.remember` replaces the entry.

Memory is bounded by ``max_ids``: the least recently seen ids are forgotten first and
counted as evictions. A forgotten id (horizon passed, or evicted early) is new again:
its next version is counted as another answer.

The memory is per worker process: producers should key ``feedback.raw`` by event id so
that all copies of one answer land on the same partition and worker. Entries are plain
tuples of JSON types (``list(entry)`` encodes one; :meth:`Entry.from_json` reads it
back), so that the memory can be persisted; the digest is :func:`content_digest`, not
Python's per-process ``hash()``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from enum import Enum
from typing import NamedTuple


class Seen(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    UPDATE = "update"


def content_digest(content: bytes) -> int:
    """A 64-bit digest of an event's canonical JSON, the same in every process."""
    return int.from_bytes(hashlib.blake2b(content, digest_size=8).digest(), "big")


class Contribution(NamedTuple):
    """What one answer adds to the windows: its bucket and what gives its counts and
    segments (rebuilt with ``Counts.of_event`` and ``segment_keys``)."""

    bucket: int
    survey_type: str
    score: int
    account_value: float | None
    #: values of ``schemas.feedback.SEGMENT_FIELDS`` in that order (None: missing)
    segments: tuple[str | None, ...]


class Entry(NamedTuple):
    """The remembered last version of one event id (plain JSON-encodable data)."""

    digest: int
    #: processing time (monotonic seconds) the id was last seen; the horizon counts from it
    seen_at: float
    #: 0 for the first version, +1 per update
    revision: int
    #: what the windows hold for this answer; None when nothing (it was late or future)
    contribution: Contribution | None

    @classmethod
    def from_json(cls, value: Sequence[object]) -> Entry:
        """Inverse of ``list(entry)`` after a JSON round trip (lists back to tuples)."""
        digest, seen_at, revision, contribution = value
        part = None
        if contribution is not None:
            bucket, survey_type, score, account_value, segments = contribution  # type: ignore[misc]
            part = Contribution(bucket, survey_type, score, account_value, tuple(segments))
        return cls(digest, seen_at, revision, part)  # type: ignore[arg-type]


class DuplicateFilter:
    def __init__(self, horizon_seconds: float, max_ids: int) -> None:
        self.horizon = horizon_seconds
        self.max_ids = max_ids
        #: event id -> entry, least recently seen first
        self._seen: OrderedDict[str, Entry] = OrderedDict()
        self.evicted_early = 0  # forgotten before the horizon because of max_ids

    def __len__(self) -> int:
        return len(self._seen)

    @property
    def enabled(self) -> bool:
        return self.max_ids > 0 and self.horizon > 0

    def lookup(self, event_id: str, digest: int, now: float) -> tuple[Seen, Entry | None]:
        """Classify ``event_id`` against the remembered version (None when NEW).

        Nothing is stored: the caller :meth:`remember` s the new version once it knows
        what the version contributed to the windows.
        """
        self._expire(now)
        known = self._seen.get(event_id)
        if known is None:
            return Seen.NEW, None
        return (Seen.DUPLICATE if known.digest == digest else Seen.UPDATE), known

    def remember(self, event_id: str, entry: Entry) -> None:
        """Store (or replace) the last version of ``event_id``; it becomes the most
        recently seen. Does nothing when the filter is disabled."""
        if not self.enabled:
            return
        seen = self._seen
        if event_id in seen:
            seen[event_id] = entry
            seen.move_to_end(event_id)
            return
        seen[event_id] = entry
        if len(seen) > self.max_ids:
            seen.popitem(last=False)
            self.evicted_early += 1

    def get(self, event_id: str) -> Entry | None:
        """The remembered entry of ``event_id`` (without expiring anything)."""
        return self._seen.get(event_id)

    def _expire(self, now: float) -> None:
        cutoff = now - self.horizon
        seen = self._seen
        while seen:
            first = next(iter(seen.values()))
            if first.seen_at >= cutoff:
                return
            seen.popitem(last=False)
