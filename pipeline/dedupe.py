"""Remember each answer by event id within a time horizon: repeats and updates count once.

Survey tools retry (the same answer arrives twice) and update (Delighted sends the
comment, or a changed score, later under the same response id). The filter remembers,
per event id, an :data:`Entry`: a stable digest of the last version's content, its
revision number, when it was last seen (processing time) and what it contributed to the
windows. Within the horizon:

* a repeat with the same content is a **duplicate** (dropped and counted);
* a repeat with *different* content is an **update**: the scoring stage publishes it
  with the next revision, removes the stored contribution from the windows, adds the new
  one and :meth:`DuplicateFilter.remember` replaces the entry.

Memory is bounded by ``max_ids`` (and its 1/64 of slack, see :class:`DuplicateFilter`):
the least recently seen ids are forgotten first and counted as evictions. A forgotten id
(horizon passed, or evicted early) is new again: its next version is counted as another
answer.

Producers should key ``feedback.raw`` by event id so that all copies of one answer land
on the same partition and worker. The memory survives crashes and rebalances: every
entry remembered is also written to the journal (:meth:`DuplicateFilter.take_journal`),
which the scoring stage persists with each batch's progress record
(:mod:`pipeline.progress`); a worker taking over a partition restores it
(:meth:`DuplicateFilter.restore`). Entries are plain tuples of JSON types
(:func:`entry_from_json` reads one back), their times are wall-clock seconds (they mean
the same in the next process) and the digest is :func:`content_digest`, not Python's
per-process ``hash()``.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterable, Sequence
from enum import Enum
from itertools import islice
from typing import Any

import orjson


class Seen(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    UPDATE = "update"


def content_digest(content: bytes) -> int:
    """A 64-bit digest of an event's canonical JSON, the same in every process.

    BLAKE2b with an 8-byte digest, read big-endian. A copy of a fresh hasher and a
    ``struct`` read give the same value as ``int.from_bytes(blake2b(content,
    digest_size=8).digest(), "big")`` in ~0.6 instead of ~0.8 µs (keyword arguments take
    Python 3.11's slow call path).
    """
    hasher = _BLAKE2B_8.copy()
    hasher.update(content)
    return _DIGEST_BYTES.unpack(hasher.digest())[0]  # type: ignore[no-any-return]


_BLAKE2B_8 = hashlib.blake2b(digest_size=8)
_DIGEST_BYTES = struct.Struct(">Q")


#: What one answer adds to the windows: ``(bucket start, survey type, score, account
#: value, *values of schemas.feedback.SEGMENT_FIELDS, themes)`` (None for a missing
#: field; themes: the comment's theme names joined by ``|`` when theme segments are
#: kept, else None), from which ``Counts.of_event``, ``segment_keys`` and ``theme_keys``
#: rebuild its counts and segments.
Contribution = tuple[Any, ...]

#: The remembered last version of one event id: ``(digest, seen_at, revision,
#: *contribution)``. ``seen_at`` is the processing time (wall-clock seconds) the id was last
#: seen, the horizon counts from it; ``revision`` is 0 for the first version, +1 per
#: update; no contribution (the version was late or future: the windows hold nothing of
#: it) leaves the entry at its first three items. One flat tuple of plain values: JSON
#: as it is, and untracked by Python's cyclic GC once it has survived a collection (a
#: NamedTuple or a nested tuple stays tracked: in the windowing benchmark that doubled
#: the GC time of the scoring stage). The filter holds it packed in one bytes object
#: (:class:`_Packer`, else :func:`pack_entry`) and hands out tuples.
Entry = tuple[Any, ...]

DIGEST, SEEN_AT, REVISION = 0, 1, 2

#: (event id, entry): one remembered version, as journaled
Journaled = tuple[str, Entry]


def make_entry(
    digest: int, seen_at: float, revision: int, contribution: Contribution | None
) -> Entry:
    return (digest, seen_at, revision) if contribution is None else (
        digest, seen_at, revision, *contribution
    )  # fmt: skip


def contribution_of(entry: Entry) -> Contribution | None:
    """What the windows hold of the entry's answer (None: nothing)."""
    return entry[3:] if len(entry) > 3 else None


def entry_from_json(value: Sequence[Any]) -> Entry:
    """Inverse of a JSON round trip of an entry (``json.dumps(entry)``)."""
    return tuple(value)


#: A remembered entry in memory: digest and ``seen_at`` packed, then the rest as JSON.
_HEAD = struct.Struct("<Qd")
_SEEN = struct.Struct("<d")

#: How an entry is held in memory: packed bytes (:func:`pack_entry`), or the tuple itself
#: when it does not pack.
Stored = bytes | Entry


def pack_entry(entry: Entry) -> Stored:
    """``entry`` as one bytes object: ``<Qd`` (digest, seen_at) then JSON of the rest.

    Memory: a worker remembers hundreds of thousands of ids, and an entry as a tuple
    costs ~240 bytes with its int and float objects (tuple 144, digest 36, bucket start
    32, seen_at 24, account value 24); packed it is ~135 bytes, one object the cyclic
    GC never tracks. An entry that would not come back identical (a digest that is not a
    64-bit unsigned int, a ``seen_at`` that is not a float, a value JSON cannot hold
    exactly) is kept as the tuple.
    """
    digest, seen_at, *rest = entry
    if type(digest) is not int or type(seen_at) is not float:
        return entry
    try:
        head = _HEAD.pack(digest, seen_at)  # struct.error: not a 64-bit unsigned digest
        tail = orjson.dumps(rest)
    except (struct.error, TypeError):
        return entry
    if tail.count(b"null") != rest.count(None):
        return entry  # a NaN or an infinity (orjson writes null), or "null" in a string
    return head + tail  # a copy at its size (see pipeline.owned)


def unpack_entry(stored: Stored) -> Entry:
    """Inverse of :func:`pack_entry`."""
    if type(stored) is not bytes:
        return stored  # type: ignore[return-value]
    digest, seen_at = _HEAD.unpack_from(stored)
    return (digest, seen_at, *orjson.loads(memoryview(stored)[_HEAD.size :]))


class _Packer:
    """Entries of the usual shape as ~60 bytes of binary, their strings as indices into
    a table of the filter's distinct strings; the others as :func:`pack_entry` makes them.

    The usual shape is what the scoring stage remembers: ``(digest, seen_at, revision,
    bucket start, survey type, score, account value or None, *strings or None)``, with a
    revision below 65,536, a bucket start from 1970 to 2106 and a score that fits a
    byte. Packed: ``<Qd`` as :func:`pack_entry`, a marker byte 0 or 1 (a JSON tail
    starts with ``[``), then ``<HIIbd`` and one ``I`` per string (None: :data:`_NONE_ID`; no account
    value: NaN, which a validated account value never is). Against the JSON tail (~100
    bytes: the segment values written out) that is 96 instead of 144 bytes per entry in
    memory, ~24 MB at the default cap, for the table's ~80 bytes per distinct string
    (7.7 MiB for 99,767 strings, tracemalloc: the agents, departments, ... of the
    remembered answers; the strings themselves are the scoring stage's interned values).

    The table only grows: when it has doubled since it was last built, the filter
    starts a new one and moves the entries to it a few at a time
    (:meth:`DuplicateFilter._repack_some`); meanwhile both are in use, told apart by the
    byte after ``<Qd`` (``marker``: 0 or 1).
    """

    _NONE_ID = 0xFFFFFFFF

    def __init__(self, marker: int = 0) -> None:
        self.marker = marker
        self.names: list[str] = []
        self.index: dict[str | None, int] = {None: self._NONE_ID}
        self._get = self.index.__getitem__
        self._structs: dict[int, struct.Struct] = {}

    def pack(self, entry: Entry) -> Stored:
        n = len(entry)
        if n < 8:
            return pack_entry(entry)
        digest, seen_at, revision, bucket, survey, score, account = entry[:7]
        if (
            type(digest) is not int
            or type(seen_at) is not float
            or type(revision) is not int
            or type(bucket) is not int
            or type(score) is not int
        ):
            return pack_entry(entry)
        if account is None:
            account = _NAN
        elif type(account) is not float or account != account:
            return pack_entry(entry)
        layout = self._structs.get(n)
        if layout is None:
            layout = self._structs[n] = struct.Struct(f"<QdBHIIbd{n - 7}I")
        get = self._get
        try:
            try:
                return layout.pack(
                    digest, seen_at, self.marker, revision, bucket, get(survey), score, account,
                    *map(get, entry[7:]),
                )  # fmt: skip
            except (KeyError, TypeError):  # new strings (TypeError: not hashable)
                strings = entry[7:]
                if type(survey) is not str or not all(
                    text is None or type(text) is str for text in strings
                ):
                    return pack_entry(entry)
                index = self.index
                ids = [index.get(text) or self._add(text) for text in strings]
                survey_id = index.get(survey) or self._add(survey)
                return layout.pack(
                    digest, seen_at, self.marker, revision, bucket, survey_id, score, account, *ids
                )
        except struct.error:  # out of the packed ranges
            return pack_entry(entry)

    def _add(self, text: str) -> int:
        """Table index of a new string (never 0: ``index.get(text) or ...``)."""
        names = self.names
        if not names:
            names.append("")  # index 0 stays unused
        self.index[text] = len(names)
        names.append(text)
        return len(names) - 1

    def unpack(self, stored: bytes) -> Entry:
        """An entry this packer packed (see :meth:`DuplicateFilter._unpack`)."""
        n = (len(stored) - 36) // 4 + 7
        layout = self._structs[n]
        digest, seen_at, _, revision, bucket, survey, score, account, *ids = layout.unpack(stored)
        names = self.names
        none = self._NONE_ID
        return (
            digest, seen_at, revision, bucket, names[survey], score,
            None if account != account else account,
            *[None if i == none else names[i] for i in ids],
        )  # fmt: skip


_NAN = math.nan
_NEW = (Seen.NEW, None)


def _seen_at(stored: Stored) -> float:
    """The ``seen_at`` of a stored entry, without unpacking the rest."""
    return _SEEN.unpack_from(stored, 8)[0] if type(stored) is bytes else stored[SEEN_AT]  # type: ignore[no-any-return]


class DuplicateFilter:
    """The remembered versions, least recently seen first.

    Held in a plain dict (insertion order: an id seen again is inserted again), not an
    ``OrderedDict``: ~46 bytes less per id (tracemalloc, 300,000 ids: 25.6 against 71.6
    bytes per entry besides the key and value), ~23 MB at the default cap. A dict
    forgets its oldest entries cheaply only in bulk (each removal from the front leaves a
    hole that every later ``next(iter(...))`` walks past: one at a time at 100,000 ids it
    took 41 µs per id against 0.46 for ``OrderedDict.popitem``), so:

    * the horizon is applied where it matters, exactly: an entry older than the horizon
      is never found (:meth:`lookup` treats it as new), and at most once a second of
      ``now`` the expired entries at the front are dropped in one pass;
    * the cap lets the memory run up to ``max_ids // 64`` ids over ``max_ids``, then
      forgets the least recently seen ids down to ``max_ids`` in one pass (exact, one
      at a time, below 64 ids).
    """

    #: ``now`` seconds between two passes dropping the expired entries
    EXPIRE_EVERY = 1.0
    #: distinct strings in the packing table before it is first rebuilt (see _Packer)
    TABLE_MIN = 65_536
    #: entries moved to a rebuilt table per entry remembered: a one-pass rebuild held
    #: the event loop 1.3 s at 500,000 entries; 8 per answer spreads it over ~60 batches
    #: of 1,000 answers at ~2.6 µs per entry moved
    REPACK_STEP = 8

    def __init__(self, horizon_seconds: float, max_ids: int) -> None:
        self.horizon = horizon_seconds
        self.max_ids = max_ids
        self._slack = max_ids // 64  # ids over the cap before it forgets in bulk
        self.evicted_early = 0  # forgotten before the horizon because of max_ids
        self.clear()

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
        if now >= self._expire_at:
            self._expire_at = now + self.EXPIRE_EVERY
            self._expire(now - self.horizon)
        stored = self._seen.get(event_id)
        if stored is None:
            return _NEW
        known = self._unpack(stored)
        if known[SEEN_AT] < now - self.horizon:
            return _NEW  # the horizon passed: forgotten (dropped with the next pass)
        return (Seen.DUPLICATE if known[DIGEST] == digest else Seen.UPDATE), known

    def remember(self, event_id: str, entry: Entry) -> None:
        """Store (or replace) the last version of ``event_id``; it becomes the most
        recently seen. Does nothing when the filter is disabled."""
        if self.max_ids <= 0 or self.horizon <= 0:  # not self.enabled (a property call)
            return
        self._journal.append((event_id, entry))
        seen = self._seen
        packer = self._packer
        stored = packer.pack(entry)
        if seen.pop(event_id, None) is not None:  # seen again: to the end
            seen[event_id] = stored
        else:
            seen[event_id] = stored
            if len(seen) > self.max_ids + self._slack:
                self._expire(entry[SEEN_AT] - self.horizon)  # not counted as evicted early
                excess = len(seen) - self.max_ids
                if excess > 0:
                    for oldest in list(islice(seen, excess)):
                        del seen[oldest]
                    self.evicted_early += excess
        if self._previous is not None:
            self._repack_some(self.REPACK_STEP)
        elif len(packer.names) > self._table_limit:
            self._previous = packer
            self._packer = _Packer(1 - packer.marker)
            self._to_move = list(seen)

    def _expire(self, cutoff: float) -> None:
        """Drop the entries at the front last seen before ``cutoff``, in one pass."""
        seen = self._seen
        expired = []
        for event_id, stored in seen.items():
            if _seen_at(stored) >= cutoff:
                break
            expired.append(event_id)
        for event_id in expired:
            del seen[event_id]

    def _unpack(self, stored: Stored) -> Entry:
        if type(stored) is bytes:
            marker = stored[16]  # a JSON tail starts with "["
            if marker == self._packer.marker:
                return self._packer.unpack(stored)
            previous = self._previous
            if previous is not None and marker == previous.marker:
                return previous.unpack(stored)
        return unpack_entry(stored)

    def _repack_some(self, count: int) -> None:
        """Move up to ``count`` more entries from the table being left to the new one,
        which then holds only strings in use (the one before kept every string it was
        ever given); the last move drops the old table."""
        previous = self._previous
        assert previous is not None
        seen, packer, to_move = self._seen, self._packer, self._to_move
        old = previous.marker
        for event_id in to_move[-count:]:  # from the end: each step's slice is freed
            stored = seen.get(event_id)
            if type(stored) is bytes and stored[16] == old:  # else gone or packed anew
                seen[event_id] = packer.pack(previous.unpack(stored))  # keeps its place
        del to_move[-count:]
        if not to_move:
            self._previous = None
            self._table_limit = max(self.TABLE_MIN, 2 * len(packer.names))

    def clear(self) -> None:
        """Forget every id (also when the scoring stage's partitions were all revoked:
        whatever it is given next is restored from the progress of their committed
        batches)."""
        #: event id -> entry (packed, see :class:`_Packer`), least recently seen first
        self._seen: dict[str, Stored] = {}
        self._expire_at = -math.inf  # the ``now`` of the next pass over expired entries
        self._journal: list[Journaled] = []
        self._packer = _Packer()
        self._table_limit = self.TABLE_MIN
        #: during a table rebuild: the table being left, and the ids to move from it
        self._previous: _Packer | None = None
        self._to_move: list[str] = []

    def take_journal(self) -> list[Journaled]:
        """Entries remembered since the last call, oldest first (to persist them)."""
        journal, self._journal = self._journal, []
        return journal

    def restore(self, journaled: Iterable[Journaled]) -> int:
        """Remember the journal of an earlier process (oldest first); return how many
        entries it had. Nothing is journaled again."""
        pending = len(self._journal)
        restored = 0
        for event_id, entry in journaled:
            self.remember(event_id, entry)
            restored += 1
        del self._journal[pending:]
        return restored

    def get(self, event_id: str) -> Entry | None:
        """The remembered entry of ``event_id`` (without expiring anything)."""
        stored = self._seen.get(event_id)
        return None if stored is None else self._unpack(stored)
