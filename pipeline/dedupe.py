"""Drop exact duplicates by event id within a time horizon.

Survey tools and producers retry, so the same answer can arrive twice. The filter
remembers, per event id, a digest of the event's content and when it was first seen
(processing time). Within the horizon a repeat with the same content is a duplicate
(dropped and counted); a repeat with *different* content is a conflict (dead-lettered,
never silently dropped). Memory is bounded by ``max_ids``: the oldest ids are forgotten
first and counted as evictions.

Producers should key ``feedback.raw`` by event id so that all copies of one answer land
on the same partition and worker. The memory survives crashes and rebalances: every id
newly remembered is also written to the journal (:meth:`DuplicateFilter.take_journal`),
which the scoring stage persists with each batch's progress record
(:mod:`pipeline.progress`); a worker taking over a partition restores them
(:meth:`DuplicateFilter.restore`).
Times are wall-clock seconds, so that they mean the same in the next process.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from enum import Enum

#: (event id, content digest, first seen at): a journal entry
Entry = tuple[str, int, float]


def digest(content: bytes) -> int:
    """A content digest that is the same in every process (``hash()`` is salted)."""
    return int.from_bytes(hashlib.blake2b(content, digest_size=8).digest(), "little", signed=True)


class Seen(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


class DuplicateFilter:
    def __init__(self, horizon_seconds: float, max_ids: int) -> None:
        self.horizon = horizon_seconds
        self.max_ids = max_ids
        self._seen: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self.evicted_early = 0  # forgotten before the horizon because of max_ids
        self._journal: list[Entry] = []

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, event_id: str, digest: int, now: float) -> Seen:
        """Classify ``event_id`` and remember it if new."""
        self._expire(now)
        known = self._seen.get(event_id)
        if known is not None:
            return Seen.DUPLICATE if known[0] == digest else Seen.CONFLICT
        if self.max_ids == 0 or self.horizon == 0:
            return Seen.NEW
        self._seen[event_id] = (digest, now)
        self._journal.append((event_id, digest, now))
        if len(self._seen) > self.max_ids:
            self._seen.popitem(last=False)
            self.evicted_early += 1
        return Seen.NEW

    def take_journal(self) -> list[Entry]:
        """Ids remembered since the last call, oldest first (to persist them)."""
        journal, self._journal = self._journal, []
        return journal

    def restore(self, entries: Iterable[Entry]) -> int:
        """Remember journal entries of an earlier process (oldest first); return how many."""
        if self.max_ids == 0 or self.horizon == 0:
            return 0
        seen = self._seen
        restored = 0
        for event_id, content_digest, first_seen in entries:
            seen[event_id] = (content_digest, first_seen)
            seen.move_to_end(event_id)
            restored += 1
        while len(seen) > self.max_ids:
            seen.popitem(last=False)
            self.evicted_early += 1
        return restored

    def _expire(self, now: float) -> None:
        cutoff = now - self.horizon
        seen = self._seen
        while seen:
            first = next(iter(seen.values()))
            if first[1] >= cutoff:
                return
            seen.popitem(last=False)
