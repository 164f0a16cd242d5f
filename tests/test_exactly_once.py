"""Exactly-once window counts without broker transactions: the pure parts (issue 8).

* the windows stage skips packed-delta groups it applied before (marks), and recovery
  keeps a changelog only up to each partition's last marks record: a property test
  crashes a simulated worker at random points (torn changelog writes, uncommitted
  input) and compares the totals with counting every scoring batch once;
* the scoring stage's progress records (pipeline.progress): where a replay resumes;
* the dedupe memory's journal and restore (updates included).
"""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.aggregate import WindowState, complete_publishes, fence_key, fence_tokens
from pipeline.changelog import LogRecord
from pipeline.dedupe import REVISION, DuplicateFilter, Seen, content_digest, make_entry
from pipeline.fencing import next_fence
from pipeline.progress import cut, encode, resume
from pipeline.scoring import deltas_document
from pipeline.scoring_service import pack_deltas
from pipeline.settings import Settings
from pipeline.windows import Counts

SETTINGS = Settings(windows_seconds=[300, 3600], bucket_seconds=60)
SEGMENTS = ("overall", "department=billing", "agent=a1")
T0 = 1_764_000_000.0

#: (raw partition, segment index, score, second offset) of one answer
answer = st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 10), st.integers(0, 1200))


def packed_records(batches: list[list[tuple[int, int, int, int]]]) -> list[bytes]:
    """One packed deltas record per scoring batch (its answers' raw partition groups)."""
    ends = {0: 0, 1: 0, 2: 0}
    records = []
    for batch in batches:
        groups = []
        for raw in sorted({a[0] for a in batch}):
            mine = [a for a in batch if a[0] == raw]
            ends[raw] += len(mine)
            per_segment: dict[str, dict[int, Counts]] = {}
            for _, seg, score, second in mine:
                bucket = int((T0 + second) // 60) * 60
                row = per_segment.setdefault(SEGMENTS[seg], {}).setdefault(bucket, Counts())
                row.add(Counts.of_event("nps", score))
            items = [
                (segment, deltas_document(buckets, T0)) for segment, buckets in per_segment.items()
            ]
            groups.append((raw, ends[raw], items))
        records.append(pack_deltas(groups, T0 + max(a[3] for a in batch)))
    return records


def totals(state: WindowState) -> dict[str, list[int | float]]:
    segments = state.partitions.get(0)
    if segments is None:
        return {}
    return {name: w.total().to_list() for name, w in segments.segments.items()}


class Worker:
    """The windows stage of app.py without Kafka: rebuild behind a fence, apply, then
    write changes + marks under the fence's token. ``current`` is the group's current
    generation, as the broker would confirm it (``generation`` below it: a worker
    taking over in a generation that is already over)."""

    def __init__(self, log: list[LogRecord], generation: int = 0, current: int = 0) -> None:
        self.log = log
        self.state = WindowState(SETTINGS)
        fence = next_fence(fence_tokens(log), generation)
        if not fence.needs_confirmation or generation >= current:
            self.state.fence = fence.token
            log.append((0, fence_key(0), b"", self.state.fence))
        else:
            self.state.fence = fence.stale
        found = complete_publishes(log)
        self.state.rebuild([(k, v) for k, v in found.latest.items() if v is not None], {0})
        self.state.pending.update({key: found.latest.get(key) for key in found.torn})
        self.changes: dict[bytes, bytes | None] = {}

    def apply(self, record: bytes) -> None:
        self.changes.update(self.state.apply_packed([(0, record)]))

    def publish(self, torn_at: int | None = None) -> None:
        changes, self.changes = [*self.changes.items(), *self.state.take_pending()], {}
        records = self.state.changelog_write(changes)
        for i, (_, key, value) in enumerate(records):
            if torn_at is not None and i >= torn_at:
                return
            self.log.append((0, key, value, self.state.fence))


@settings(max_examples=200, deadline=None)
@given(
    batches=st.lists(st.lists(answer, min_size=1, max_size=12), min_size=1, max_size=12),
    data=st.data(),
)
def test_crashes_and_zombies_anywhere_count_every_batch_once(batches, data) -> None:
    """Workers crash at random points (torn writes, uncommitted input), or lose their
    partition while frozen and, unaware, go on applying and writing (a zombie, whose
    commits the group refuses) between the new owner's writes, or were frozen before
    their takeover and do it after the new owner's (a zombie that reads the new owner's
    fence): the totals are those of counting every scoring batch once."""
    records = packed_records(batches)
    reference = Worker([])
    for record in records:
        reference.apply(record)
    expected = totals(reference.state)

    log: list[LogRecord] = []
    generation = 1
    worker = Worker(log, generation, generation)
    zombie: Worker | None = None
    zombie_at = 0  # the zombie's next input offset
    committed = position = 0  # the input offsets: committed, next to read
    crashes = 0
    while position < len(records):
        worker.apply(records[position])
        position += 1
        if zombie is not None and zombie_at < len(records) and data.draw(st.booleans()):
            zombie.apply(records[zombie_at])
            zombie_at += 1
            zombie.publish(data.draw(st.none() | st.integers(0, 20), label="zombie torn at"))
        if data.draw(st.booleans(), label="publish now"):
            crash = crashes < 4 and data.draw(st.booleans(), label="crash")
            size = len(worker.changes) + len(worker.state.pending) + 1
            torn = data.draw(st.integers(0, size), label="torn at") if crash else None
            frozen = crash and data.draw(st.booleans(), label="frozen, not crashed")
            if frozen:
                zombie, zombie_at = worker, position  # it goes on later, unpublished
            else:
                worker.publish(torn)
            if not crash:
                committed = data.draw(st.integers(committed, position), label="commit")
                continue
            crashes += 1
            generation += 1
            # restart: state from the changelog, input from the commit
            worker = Worker(log, generation, generation)
            position = committed
            if not frozen and data.draw(st.booleans(), label="a stale takeover after it"):
                # a member of the generation before, frozen before its takeover
                zombie, zombie_at = Worker(log, generation - 1, generation), committed
    worker.publish()
    assert totals(worker.state) == expected
    assert totals(Worker(log, generation + 1).state) == expected  # and from the changelog


def test_a_replayed_group_is_skipped_and_counted() -> None:
    record = packed_records([[(0, 0, 10, 5), (1, 0, 3, 6)]])[0]
    state = WindowState(SETTINGS)
    state.apply_packed([(0, record)])
    state.apply_packed([(0, record)])
    assert state.replayed_groups == 2
    assert state.partitions[0].segments["overall"].total().responses == 2
    assert state.marks == {0: {0: 1, 1: 1}}


def test_recovery_drops_a_torn_write_and_names_its_keys() -> None:
    log = [
        (0, b"B|0|60|overall", b"[1]"),
        (0, b"M|0", b"{}"),
        (1, b"T|1|x", b"[2]"),
        (1, b"M|1", b"{}"),
        (0, b"B|0|60|overall", b"[9]"),  # torn: no marks after it
        (0, b"T|0|overall", b"[9]"),
    ]
    found = complete_publishes([(p, k, v, None) for p, k, v in log])
    latest, torn = found.latest, found.torn
    assert latest == {b"B|0|60|overall": b"[1]", b"M|0": b"{}", b"T|1|x": b"[2]", b"M|1": b"{}"}
    assert torn == {b"B|0|60|overall", b"T|0|overall"}


def test_progress_resume_against_the_committed_offset() -> None:
    a, b, c = (make_entry(i, T0 + i, 0, None) for i in range(3))
    values = [
        encode(3, 0, 100, T0, [("a", a)]),
        encode(3, 100, 250, T0 + 5, [("b", b)]),
        encode(3, 250, 400, T0 + 9, [("c", c)]),  # published, never committed
        encode(3, 250, 320, T0 + 7, [("c", c)]),  # the replay of it, crashed too
    ]
    found = resume(values, committed=250)
    assert found.cuts == [320, 400]
    assert found.watermark == T0 + 5
    assert found.entries == [("a", a), ("b", b)]
    assert resume(values, committed=400).cuts == []
    assert resume(values, committed=400).watermark == T0 + 9
    assert resume([], committed=0).cuts == []


def test_cut_keeps_replayed_batches_inside_the_first_runs_ends() -> None:
    cuts = [320, 400]
    assert cut(500, 250, cuts) == 320  # fetched 250..499: stop before 320
    assert cut(400, 320, cuts) is None and cuts == [400]  # 320..399 ends at the cut
    assert cut(450, 400, cuts) is None and cuts == []
    assert cut(300, 250, [320]) is None  # a shorter fetch stays inside


def test_dedupe_journal_restores_into_a_new_process() -> None:
    first = DuplicateFilter(horizon_seconds=3600, max_ids=10)
    content = orjson.dumps({"event_id": "e1", "score": 9})
    digest = content_digest(content)
    assert first.lookup("e1", digest, now=T0) == (Seen.NEW, None)
    first.remember("e1", make_entry(digest, T0, 0, (60, "nps", 9, None)))
    assert first.lookup("e1", digest, now=T0 + 1)[0] is Seen.DUPLICATE
    first.remember("e1", make_entry(digest + 1, T0 + 2, 1, (60, "nps", 3, None)))  # update
    journal = first.take_journal()
    assert [event_id for event_id, _ in journal] == ["e1", "e1"] and first.take_journal() == []

    second = DuplicateFilter(horizon_seconds=3600, max_ids=10)
    through_json = orjson.loads(progress_record := encode(0, 0, 2, None, journal))
    assert progress_record and len(through_json["d"]) == 2
    assert second.restore(resume([progress_record], committed=2).entries) == 2
    assert second.take_journal() == []  # restoring is not remembering anew
    seen, entry = second.lookup("e1", digest + 1, now=T0 + 3)
    assert seen is Seen.DUPLICATE and entry is not None and entry[REVISION] == 1
    assert second.lookup("e1", digest, now=T0 + 4)[0] is Seen.UPDATE
    assert second.lookup("e1", digest + 1, now=T0 + 3603)[0] is Seen.NEW  # horizon


def test_digest_is_the_same_in_every_process() -> None:
    """The journal outlives the process: its digests must not be salted like hash()."""
    code = "from pipeline.dedupe import content_digest; print(content_digest(b'feedback'))"
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert runs == {str(content_digest(b"feedback"))}
