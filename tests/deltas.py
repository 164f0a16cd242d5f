"""Deltas records for tests, packed the way stage 1 packs them.

The windows read only packed records (:func:`pipeline.scoring_service.pack_deltas`:
segments grouped by raw partition and scoring-batch end, the group skipped when its end
is at or below the partition's mark). Each record built here is one group of a new
scoring batch of raw partition 0 (its end taken from a process-wide counter, so it is
always above the marks of any state), so tests apply exactly what they give.
:func:`every_segment` reads every segment back as the worker's reads do.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson

from pipeline.aggregate import WindowState
from pipeline.scoring import Output, deltas_document
from pipeline.scoring_service import SegmentDeltas, pack_deltas
from pipeline.windows import Counts, SegmentWindows

#: batch end offsets: increasing over the whole test process
_ENDS = itertools.count(1)


def packed(segments: list[SegmentDeltas] | orjson.Fragment, clock: float) -> bytes:
    """One packed record of ``(segment, deltas_document)`` pairs (or their list encoded
    by :func:`~pipeline.scoring_service.encode_groups`), clock ``clock``."""
    return pack_deltas([(0, next(_ENDS), segments)], clock)


def records_of(out: Output) -> list[tuple[int, bytes]]:
    """A scoring batch's deltas as one packed record of deltas partition 0 (none when
    the batch moved no clock)."""
    return [] if out.clock is None else [(0, packed(out.deltas, out.clock))]


def deltas_record(
    segment: str,
    buckets: dict[int, Counts],
    ts: float,
    comments: list[list[object]] | None = None,
) -> bytes:
    """A packed record of one segment's ``buckets`` (start -> counts) moving the clock
    to ``ts`` (no buckets: only the clock)."""
    return packed([(segment, deltas_document(buckets, ts, comments))], ts)


class Read(NamedTuple):
    """A segment's deltas as the windows read them."""

    buckets: dict[int, list[int | float]]  # start -> counts list (Counts.to_list order)
    max_ts: float
    comments: list[list[object]]


def read_deltas(document: dict[str, Any]) -> Read:
    """A :func:`~pipeline.scoring.deltas_document` after its trip through JSON."""
    read = orjson.loads(orjson.dumps(document))
    return Read(
        {int(start): counts for start, counts in read["b"]},
        float(read["t"]),
        read.get("c", []),
    )


def every_segment(state: WindowState) -> Iterator[tuple[str, SegmentWindows]]:
    """Every segment of ``state``, its windows first moved to the worker clock (a read:
    pruned buckets are deleted with the next write, as after any read)."""
    clock = state.clock
    for partition, held in state.partitions.items():
        for segment, windows in list(held.segments.items()):
            if clock is not None:
                state.advance(partition, segment, windows, clock)
            yield segment, windows
