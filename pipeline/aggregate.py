"""The windowed state of the second stage: segments of the partitions this worker owns.

Input: the deltas topic, one packed record per deltas partition and scoring batch
(:func:`pipeline.scoring_service.pack_deltas`), each segment's deltas a
:func:`pipeline.scoring.deltas_document` (:meth:`WindowState.apply_packed`). State: per
owned partition, a :class:`~pipeline.windows.SegmentWindows` per segment (buckets +
running sums) and the partition's clock (newest event time seen). Durability: every
touched bucket and clock is written to a Faust table (and so its changelog topic) once
per batch — not once per event — under keys that carry the partition, so that after a
restart or a rebalance :meth:`WindowState.rebuild` restores exactly the same windows. A
segment's all-time total is its *pruned base* (the buckets the retention dropped,
written with their deletions) plus its stored buckets: a batch writes only the buckets
it touched, not every touched segment's total as well (that was about half of all
changelog records; ``tests/bench/bench_stage2.py`` prints the records per event).

Table keys (bytes): ``B|<partition>|<bucket start>|<segment>`` -> counts list,
``P|<partition>|<segment>`` -> pruned base, ``C|<partition>`` -> clock,
``M|<partition>`` -> marks, ``F|<partition>`` -> the fence token of the worker that
rebuilt it last (see :func:`complete_publishes`). (Changelogs written before the pruned
base have ``T|<partition>|<segment>`` -> all-time total instead:
:meth:`WindowState.rebuild` reads them and rewrites them as pruned bases.)

Exactly once, without broker transactions: every packed deltas record groups its
segments by the raw partition and scoring-batch end offset they came from
(:func:`pipeline.scoring_service.pack_deltas`; replayed batches end where the first
run's did, see :mod:`pipeline.progress`). The *marks* of a partition are, per raw
partition, the highest batch end applied; a group at or below its mark was applied
before (a replay after a crash) and is skipped. Every write of the table's changelog
ends, for each partition it touches, with that partition's marks
(:meth:`WindowState.mark_changes`), and recovery (:func:`complete_publishes`) keeps a
partition's changelog only up to its last marks record: the windows are then exactly
those of the applied groups, whatever moment a worker was killed at. A worker that lost
a partition without knowing it yet cannot overwrite the new owner's writes: the
changelog is fenced (:func:`complete_publishes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.changelog import LogRecord
from pipeline.owned import owned
from pipeline.segments import OVERALL, segment_labels
from pipeline.settings import Settings
from pipeline.windows import Counts, SegmentWindows

FIELD_COUNT = len(Counts.FIELDS)

#: (table key, encoded value or None for a delete)
Change = tuple[bytes, bytes | None]


def bucket_key(partition: int, start: int, segment: str) -> bytes:
    return f"B|{partition}|{start}|{segment}".encode()


def pruned_key(partition: int, segment: str) -> bytes:
    return f"P|{partition}|{segment}".encode()


def total_key(partition: int, segment: str) -> bytes:
    """The key of a segment's all-time total in changelogs written before the pruned
    base (read, and deleted, by :meth:`WindowState.rebuild`)."""
    return f"T|{partition}|{segment}".encode()


def clock_key(partition: int) -> bytes:
    return f"C|{partition}".encode()


#: The key in a partition's marks of the last deltas offset applied (raw partitions are
#: >= 0): see :meth:`WindowState.applied_offset`.
APPLIED = -1


def scoring_fence_mark(raw: int) -> int:
    """The key in a partition's marks of raw partition ``raw``'s scoring fence: the
    lowest writer token whose deltas groups of that raw partition are applied (see
    :meth:`WindowState.apply_packed`; raw partitions are >= 0, :data:`APPLIED` is -1)."""
    return -2 - raw


def mark_key(partition: int) -> bytes:
    return f"M|{partition}".encode()


def key_partition(key: bytes) -> int:
    """The partition of a table key (``<kind>|<partition>|...``)."""
    return int(key.split(b"|", 2)[1])


def fence_key(partition: int) -> bytes:
    return f"F|{partition}".encode()


def fence_tokens(records: Iterable[LogRecord]) -> list[int]:
    """The tokens of the fence records among changelog ``records`` (see
    :mod:`pipeline.fencing`)."""
    return [token for _, key, _, token in records if token is not None and key.startswith(b"F|")]


@dataclass
class Recovered:
    """A changelog read back by :func:`complete_publishes`."""

    #: the latest value per key, of the complete writes
    latest: dict[bytes, bytes | None]
    #: the keys written after their partition's last marks (an interrupted write, to be
    #: overwritten with the recovered value)
    torn: set[bytes]
    #: records ignored as written by a worker fenced off the partition
    fenced: int


def complete_publishes(items: Iterable[LogRecord]) -> Recovered:
    """Changelog records (partition, key, value, writer's fence token, in log order),
    without the records of fenced writers (see :class:`Recovered`), up to each
    partition's last marks record.

    Fencing: a worker that rebuilds a partition first writes a fence record (key
    ``F|<partition>``) with a token above the earlier owners' (:mod:`pipeline.fencing`) and
    carries that token in a header of every record it writes. A worker that lost the
    partition without knowing it yet (frozen past its session timeout, say) may still
    write: its records come after the new owner's fence with a lower token, and are
    ignored here. Without that, such a late write would overwrite the new owner's buckets
    with older values, and the next rebuild would lose the answers in between
    (``test_crashes_and_zombies_anywhere_count_every_batch_once``; the freeze runs of
    ``tests/bench/freeze_run.py`` never produced such a write). Records without a token
    (written before fences existed) are never fenced."""
    per_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
    fences: dict[int, int] = {}
    fenced = 0
    for partition, key, value, token in items:
        if token is not None:
            fence = fences.get(partition, -1)
            if token < fence:
                fenced += 1
                continue
            if key.startswith(b"F|"):
                fences[partition] = max(fence, token)
                continue
        per_partition.setdefault(partition, []).append((key, value))
    latest: dict[bytes, bytes | None] = {}
    torn: set[bytes] = set()
    for records in per_partition.values():
        last = max((i for i, (key, _) in enumerate(records) if key.startswith(b"M|")), default=-1)
        latest.update(records[: last + 1])
        torn.update(key for key, _ in records[last + 1 :])
    return Recovered(latest, torn, fenced)


def dimension_of(segment: str) -> str:
    """``"agent"`` for ``agent=a1``, ``"department,channel"`` for a combination."""
    return segment_labels(segment)[0]


def dimension_test(dimension: str) -> Callable[[str], bool]:
    """A test equal to ``dimension_of(key) == dimension`` for every key made by
    :func:`pipeline.segments.segment_key`, ~8x faster (0.09 against 0.74 µs a key): a
    value's ``|`` and ``=`` are escaped there, so the key's parts and their field names
    can be read off directly."""
    if dimension == OVERALL:
        return OVERALL.__eq__
    prefixes = tuple(f"{name}=" for name in dimension.split(","))
    if len(prefixes) == 1:
        (prefix,) = prefixes
        return lambda key: key.startswith(prefix) and "|" not in key

    def test(key: str) -> bool:
        parts = key.split("|")
        return len(parts) == len(prefixes) and all(map(str.startswith, parts, prefixes))

    return test


#: what :meth:`WindowState._apply` reads: (partition, segment or None, its bucket deltas
#: ``[(start, counts list), ...]``, its detractor comments or None, clock or None)
_Item = tuple[int, str | None, Sequence[Sequence[Any]], list[list[object]] | None, float | None]


@dataclass
class PartitionState:
    segments: dict[str, SegmentWindows] = field(default_factory=dict)
    clock: float | None = None
    #: segments changed since the last window snapshot (:meth:`WindowState.take_dirty`):
    #: the keys themselves, not (partition, segment) tuples (56 bytes each: 5 MiB with
    #: 100,000 segments changed between two snapshots, in a worker catching up)
    dirty: set[str] = field(default_factory=set)


class WindowState:
    def __init__(self, settings: Settings) -> None:
        self.bucket_seconds = settings.bucket_seconds
        self.windows = tuple(sorted(settings.windows_seconds))
        self.retain_seconds = max(self.windows)
        self.partitions: dict[int, PartitionState] = {}
        self.pending: dict[bytes, bytes | None] = {}  # prunes found outside a batch
        #: per partition: raw partition -> highest scoring-batch end applied
        self.marks: dict[int, dict[int, int]] = {}
        self._marks_moved: set[int] = set()
        #: packed-deltas groups skipped as already applied (replays)
        self.replayed_groups = 0
        #: packed-deltas groups skipped as written by a scoring stage fenced off their raw
        #: partition (see apply_packed)
        self.fenced_groups = 0
        #: the fence token this worker writes under (set by each rebuild: see
        #: complete_publishes); 0 until the first, before which nothing is written
        self.fence = 0

    # -- updates -------------------------------------------------------------------------

    def applied_offset(self, partition: int, offset: int) -> None:
        """Note that the deltas record at ``offset`` of ``partition`` was applied: kept
        in the partition's marks (key :data:`APPLIED`, no raw partition's) and so written
        with them, at the end of the changelog write that holds the record's changes."""
        marks = self.marks.get(partition)
        if marks is None:
            marks = self.marks[partition] = {}
        marks[APPLIED] = offset
        self._marks_moved.add(partition)

    def applied_through(self, partition: int) -> int | None:
        """The offset of the last deltas record of ``partition`` whose changes the state
        (rebuilt from the changelog, or since) holds; None if none is known."""
        return self.marks.get(partition, {}).get(APPLIED)

    def unapplied_from(self, partition: int, offset: int) -> int | None:
        """Where applying deltas records up to ``offset`` of ``partition`` starts: None
        when the partition is not held here (not in the last rebuild) or that record was
        applied already; ``offset`` when it follows the last one applied; an earlier
        offset when the records in between never were (they are read and applied first:
        Faust's consumer skips records around a rebalance and may commit past them, see
        the windows agent). With no record applied yet, the partition's start (0)."""
        if partition not in self.partitions:
            return None
        through = self.applied_through(partition)
        if through is None:
            return 0
        return through + 1 if offset > through else None

    def new_segment(self) -> SegmentWindows:
        return SegmentWindows(self.bucket_seconds, self.windows, self.retain_seconds)

    def apply_packed(
        self,
        records: Iterable[tuple[int, bytes]],
        on_comments: Callable[[int, str, list[list[object]]], None] | None = None,
        on_clock: Callable[[], None] | None = None,
    ) -> list[Change]:
        """Apply packed deltas records (partition, value) of the deltas topic
        (:func:`pipeline.scoring_service.pack_deltas`); return the table changes.

        Every group not applied before (see the module docstring) is applied, then the
        record's clock moves its partition. Each touched bucket and clock appears once
        in the result, however many records touched it. ``on_comments(partition,
        segment, comments)`` receives the detractor comments the records carry (for
        alert evidence). ``on_clock()`` runs after each record that moved its
        partition's clock, once the record is applied (alert rounds are evaluated there,
        so a batch spanning many minutes of event time is judged minute by minute, not
        once at its end).

        Scoring fences: a scoring stage that takes a raw partition over writes a fence
        record (``{"f": [[raw partition, token], ...], "g": []}``, no clock) to every
        deltas partition before it reads that partition's progress, and its groups carry
        its token (a fourth element). A group of a lower token than its raw partition's
        fence comes from a worker that lost the raw partition without knowing it yet
        (frozen between reading a batch and publishing it): its batch may end elsewhere
        than the new owner's replay of the same records, which the marks could not match
        up, so it is skipped (the new owner publishes those records again). Groups
        without a token are never fenced.
        """
        all_marks = self.marks
        moved = self._marks_moved

        def items() -> Iterator[_Item]:
            for partition, value in records:
                document = orjson.loads(value)
                marks = all_marks.get(partition)
                if marks is None:
                    marks = all_marks[partition] = {}
                for raw, token in document.get("f", ()):
                    key = scoring_fence_mark(raw)
                    if token > marks.get(key, -1):
                        marks[key] = token
                        moved.add(partition)
                for group in document["g"]:
                    raw, end, segments = group[0], group[1], group[2]
                    token = group[3] if len(group) > 3 else None
                    if token is not None and token < marks.get(scoring_fence_mark(raw), -1):
                        self.fenced_groups += 1
                        continue
                    if end <= marks.get(raw, -1):
                        self.replayed_groups += 1
                        continue
                    marks[raw] = end
                    moved.add(partition)
                    # the documents of pipeline.scoring.deltas_document, read as they are
                    # (integer starts, every field): no object built per segment
                    for segment, deltas in segments:  # the clock moves once all are in
                        yield partition, segment, deltas["b"], deltas.get("c"), None
                clock = document.get("t")
                if clock is not None:
                    yield partition, None, (), None, float(clock)

        return self._apply(items(), on_comments, on_clock)

    def _apply(
        self,
        items: Iterable[_Item],
        on_comments: Callable[[int, str, list[list[object]]], None] | None,
        on_clock: Callable[[], None] | None,
    ) -> list[Change]:
        """(partition, segment, buckets, comments, clock) items: a segment of None only
        moves the clock, a clock of None leaves it where it is."""
        changes: dict[bytes, bytes | None] = self.pending
        self.pending = {}
        touched: set[tuple[int, str, int]] = set()
        clocks: set[int] = set()
        partitions = self.partitions
        for partition, segment, buckets, comments, ts in items:
            state = partitions.get(partition)
            if state is None:
                state = partitions[partition] = PartitionState()
            if segment is not None:
                if comments and on_comments is not None:
                    on_comments(partition, segment, comments)
                windows = state.segments.get(segment)
                if windows is None:
                    windows = state.segments[segment] = self.new_segment()
                for start, counts in buckets:
                    # our own records carry every field in order: no per-field checks
                    if len(counts) == FIELD_COUNT:
                        windows.add_values(start, counts)
                    else:
                        windows.add(start, Counts.from_list(counts))
                    touched.add((partition, segment, start))
                state.dirty.add(segment)
            if ts is not None and (state.clock is None or ts > state.clock):
                state.clock = ts
                clocks.add(partition)
                if on_clock is not None:
                    on_clock()
        for partition, segment, start in touched:
            bucket = self.partitions[partition].segments[segment].bucket_values(start)
            if bucket is not None:
                # owned: a batch holds thousands of these until they are sent, and each
                # value as orjson returns it occupies ~4 KiB (see pipeline.owned)
                changes[bucket_key(partition, start, segment)] = owned(orjson.dumps(bucket))
        # The touched segments are not advanced to the clock here: every read advances
        # first (queries, alert rounds, snapshots: SegmentWindows keeps its windows right
        # at whatever clock it is at), and a segment touched by many batches between two
        # reads is advanced once, not once per batch (~a third of this stage's time in
        # the benchmark). Buckets past the retention are deleted when a read prunes them
        # (state.pending, written with the next batch), with the segment's new pruned base.
        for partition in clocks:
            changes[clock_key(partition)] = orjson.dumps(self.partitions[partition].clock)
        return list(changes.items())

    def changelog_write(self, changes: Iterable[Change]) -> list[tuple[int, bytes, bytes | None]]:
        """(partition, key, value) records of one changelog write: ``changes``, then the
        marks that end each partition's part of it (:meth:`mark_changes`)."""
        records = [(key_partition(key), key, value) for key, value in changes]
        touched = {partition for partition, _, _ in records}
        records.extend(
            (key_partition(key), key, value) for key, value in self.mark_changes(touched)
        )
        return records

    def mark_changes(self, partitions: Iterable[int]) -> list[Change]:
        """The marks records that end a changelog write touching ``partitions`` (and
        every partition whose marks moved since the last call)."""
        written = set(partitions) | self._marks_moved
        self._marks_moved = set()
        return [
            (
                mark_key(partition),
                orjson.dumps(self.marks.get(partition, {}), option=orjson.OPT_NON_STR_KEYS),
            )
            for partition in sorted(written)
        ]

    # -- recovery ------------------------------------------------------------------------

    def rebuild(self, items: Iterable[tuple[bytes, bytes]], partitions: set[int]) -> None:
        """Rebuild the windows of ``partitions`` from table items (after recovery)."""
        buckets: dict[tuple[int, str], list[tuple[int, list[int | float]]]] = {}
        bases: dict[tuple[int, str], list[int | float]] = {}
        totals: dict[tuple[int, str], list[int | float]] = {}  # older changelogs
        clocks: dict[int, float] = {}
        marks: dict[int, dict[int, int]] = {}
        for raw_key, raw_value in items:
            if raw_value is None:
                continue
            kind, _, rest = raw_key.decode().partition("|")
            if kind in ("C", "M"):
                partition = int(rest)
                if partition in partitions and kind == "C":
                    clocks[partition] = float(orjson.loads(raw_value))
                elif partition in partitions:
                    marks[partition] = {int(k): v for k, v in orjson.loads(raw_value).items()}
                continue
            part, _, rest = rest.partition("|")
            partition = int(part)
            if partition not in partitions:
                continue
            if kind == "B":
                start, _, segment = rest.partition("|")
                buckets.setdefault((partition, segment), []).append(
                    (int(start), orjson.loads(raw_value))
                )
            elif kind == "P":
                bases[(partition, rest)] = orjson.loads(raw_value)
            elif kind == "T":
                totals[(partition, rest)] = orjson.loads(raw_value)
        self.partitions = {p: PartitionState(clock=clocks.get(p)) for p in partitions}
        # what was pending belongs to the state replaced here (maybe to partitions now
        # owned elsewhere): the rebuilt segments find their own prunes again below
        self.pending = {}
        self.marks = {p: marks.get(p, {}) for p in partitions}
        self._marks_moved = set()
        for partition, segment in buckets.keys() | bases.keys() | totals.keys():
            state = self.partitions[partition]
            total = totals.get((partition, segment))
            windows = state.segments[segment] = SegmentWindows.from_buckets(
                buckets.get((partition, segment), []),
                total,
                pruned=None if total is not None else bases.get((partition, segment)),
                bucket_seconds=self.bucket_seconds,
                windows=self.windows,
                retain_seconds=self.retain_seconds,
            )
            if total is not None:  # an older changelog: its total becomes a pruned base
                self.pending[total_key(partition, segment)] = None
                self._write_pruned(partition, segment, windows)
            if state.clock is not None:
                # buckets past the retention are deleted (and the base written) with the
                # next write: a base that counts a bucket still stored would count it twice
                self.advance(partition, segment, windows, state.clock)

    # -- queries -------------------------------------------------------------------------

    @property
    def clock(self) -> float | None:
        """The newest event time this worker has seen (its windows' "now")."""
        clocks = [s.clock for s in self.partitions.values() if s.clock is not None]
        return max(clocks) if clocks else None

    def get(self, segment: str) -> SegmentWindows | None:
        """One segment, its windows moved to the worker clock; None if not owned here."""
        clock = self.clock
        for partition, state in self.partitions.items():
            windows = state.segments.get(segment)
            if windows is not None:
                if clock is not None:
                    self.advance(partition, segment, windows, clock)
                return windows
        return None

    def keys(self, dimension: str | None = None) -> list[tuple[int, str]]:
        """(partition, segment) of every segment held now, or of ``dimension``'s only.

        A list, taken at once: a caller that lets the event loop run while it goes
        through them (the API, ``/metrics``) reads each with :meth:`advanced`, which
        skips what went away meanwhile. ``dimension`` is tested on the key's field names
        (:func:`dimension_test`), without parsing every key: listing a dimension of 5
        segments among 100,000 agents took ~0.24 s when every key was parsed and advanced.
        """
        if dimension is None:
            return [(p, key) for p, state in self.partitions.items() for key in state.segments]
        test = dimension_test(dimension)
        return [
            (partition, segment)
            for partition, state in self.partitions.items()
            for segment in filter(test, state.segments)
        ]

    def advanced(self, partition: int, segment: str, clock: float | None) -> SegmentWindows | None:
        """A segment's windows moved to ``clock`` (the worker :attr:`clock`, read once by
        the caller), or None when its partition or the segment is no longer held."""
        state = self.partitions.get(partition)
        windows = None if state is None else state.segments.get(segment)
        if windows is not None and clock is not None:
            self.advance(partition, segment, windows, clock)
        return windows

    def advance(self, partition: int, segment: str, windows: SegmentWindows, now: float) -> None:
        """Move a segment's windows to ``now``; pruned buckets are deleted with the next
        write, in which the segment's new pruned base is written too."""
        dropped = windows.advance(now)
        if dropped:
            for start in dropped:
                self.pending[bucket_key(partition, start, segment)] = None
            self._write_pruned(partition, segment, windows)

    def _write_pruned(self, partition: int, segment: str, windows: SegmentWindows) -> None:
        base = windows.pruned_values()
        if base is not None:  # owned: a rebuild may hold one per segment (pipeline.owned)
            self.pending[pruned_key(partition, segment)] = owned(orjson.dumps(base))

    def take_pending(self) -> list[Change]:
        """Bucket deletions found outside a batch (by queries), to write now."""
        pending, self.pending = self.pending, {}
        return list(pending.items())

    def take_dirty(self) -> list[tuple[int, str]]:
        """(partition, segment) of the segments changed since the last call, sorted (for
        window snapshots; the partitions this worker no longer holds are left out)."""
        dirty: list[tuple[int, str]] = []
        for partition, state in self.partitions.items():
            dirty.extend((partition, segment) for segment in state.dirty)
            state.dirty = set()
        dirty.sort()
        return dirty
