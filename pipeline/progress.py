"""Scoring progress records: what each scoring batch of a raw partition covered.

Why: stage 1 is at-least-once (publish, then commit). A worker killed between the two
replays the batch, and the windows stage must then recognise every delta it already
applied. It does so by the *end offset* of the raw-partition batch the delta came
from (``pipeline.aggregate``: a mark per raw partition). That only works if a replayed
batch never straddles a batch end the first run published; so, before publishing a
batch, the scoring stage writes — and waits for the broker to acknowledge — one
progress record per raw partition in the batch (topic ``<app id>-scoring-progress``,
keyed by the raw partition):

``{"p": raw partition, "s": first offset, "e": end offset (last + 1),
"w": the partition's newest event time after the batch, "d": [[event id, entry],
...]}`` — ``d`` are the dedupe entries remembered in the batch (new answers and
updates, :mod:`pipeline.dedupe`).

A worker that is assigned a raw partition reads that partition's progress records
(:func:`resume`) and knows, against the group's committed offset:

* ``cuts``: the ends of batches published but never committed; its first batches are
  cut at exactly those offsets, so every replayed delta group ends where the first
  run's did (or before) and the windows stage can skip it;
* ``watermark``: the partition's event-time watermark when the committed offset was
  reached, so late events are judged as the first run judged them;
* ``entries``: the dedupe memory of the committed batches, so a duplicate that arrives
  after a crash is still recognised.

Fences: taking a raw partition over, a worker first reads its progress and the fence
tokens so far, then fences the partition with its token (:mod:`pipeline.fencing`: the
scoring group's generation; :func:`fence`:
``{"p": raw partition, "k": token}`` under key ``<raw partition>-fence``, here and in
every deltas partition; the windows stage skips the deltas groups of lower tokens, see
:meth:`pipeline.aggregate.WindowState.apply_packed`), then reads the progress written
meanwhile too. A worker frozen while it held the partition may still publish a batch it
had read: its groups written after the fence are skipped, and any written before it are
matched up by the cuts, since its progress record came before them.

On a real Kafka cluster give the topic ``retention.ms`` of the dedupe horizon (older
progress is never needed); the embedded broker keeps it until it restarts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from pipeline.dedupe import Journaled, entry_from_json


def progress_topic(app_id: str) -> str:
    """The progress topic of an app (named like Faust's own internal topics)."""
    return f"{app_id}-scoring-progress"


def encode(
    partition: int, start: int, end: int, watermark: float | None, entries: list[Journaled]
) -> bytes:
    return orjson.dumps({"p": partition, "s": start, "e": end, "w": watermark, "d": entries})


def fence(partition: int, token: int) -> tuple[bytes, bytes]:
    """(key, value) of a progress fence record (see the module docstring)."""
    return f"{partition}-fence".encode(), orjson.dumps({"p": partition, "k": token})


def fence_of(key: bytes, value: bytes) -> tuple[int, int] | None:
    """(raw partition, token) of a progress fence record; None for a batch's record."""
    if not key.endswith(b"-fence"):
        return None
    document = orjson.loads(value)
    return int(document["p"]), int(document["k"])


@dataclass
class Resume:
    """Where a raw partition's scoring resumes (see the module docstring)."""

    cuts: list[int] = field(default_factory=list)
    watermark: float | None = None
    entries: list[Journaled] = field(default_factory=list)


def resume(values: Iterable[bytes], committed: int) -> Resume:
    """The :class:`Resume` of one raw partition from its progress records (in log order)
    and the consumer group's committed offset (0 when nothing was committed)."""
    result = Resume()
    cuts: set[int] = set()
    newest_end = -1
    for value in values:
        document = orjson.loads(value)
        start, end = int(document["s"]), int(document["e"])
        if end <= committed:
            result.entries.extend((str(i), entry_from_json(e)) for i, e in document["d"])
            if end >= newest_end:
                newest_end = end
                watermark = document.get("w")
                result.watermark = None if watermark is None else float(watermark)
        elif start >= committed:
            cuts.add(end)
        # start < committed < end cannot happen: offsets are committed at batch ends
    result.cuts = sorted(cuts)
    return result


def cut(offsets_end: int, first: int, cuts: list[int]) -> int | None:
    """The offset a batch starting at ``first`` must stop before, if any, given the
    pending ``cuts`` (ascending; those at or before ``first`` are dropped in place).
    ``offsets_end`` is the batch's end as fetched: None is returned when it is within
    the first cut."""
    while cuts and cuts[0] <= first:
        cuts.pop(0)
    if cuts and offsets_end > cuts[0]:
        return cuts[0]
    return None
