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


def _batch(end: int, answers: int, token: int | None) -> tuple:
    """A deltas group of raw partition 0: ``answers`` promoters, batch end ``end``."""
    counts = Counts()
    for _ in range(answers):
        counts.add(Counts.of_event("nps", 10))
    items = [("overall", deltas_document({int(T0 // 60) * 60: counts}, T0))]
    return (0, end, items, token)


def test_a_frozen_scoring_stage_late_batch_is_fenced_off() -> None:
    """Worker 1 committed raw offsets [0, 10), read [10, 20) and froze before publishing
    it; worker 2 took raw partition 0 over at offset 10 (fence token 2) and read the
    progress before worker 1's record of that batch existed; worker 1, thawed, published
    its batch after the fence and before worker 2 published [10, 25). Without tokens the
    windows count [10, 20) twice (the two batches end apart: the marks cannot match
    them up)."""
    from pipeline.scoring_service import pack_fence

    def run(tokens: bool) -> WindowState:
        state = WindowState(SETTINGS)
        state.rebuild([], {0})
        one, two = (1, 2) if tokens else (None, None)
        records = [
            pack_deltas([_batch(10, 10, one)], T0),
            pack_fence({0: 2}),
            pack_deltas([_batch(20, 10, one)], T0),  # worker 1, thawed: [10, 20)
            pack_deltas([_batch(25, 15, two)], T0 + 1),  # worker 2: [10, 25)
        ]
        for offset, record in enumerate(records):
            state.apply_packed([(0, record)])
            state.applied_offset(0, offset)
        return state

    assert run(tokens=False).partitions[0].segments["overall"].total().responses == 35
    fenced = run(tokens=True)
    assert fenced.partitions[0].segments["overall"].total().responses == 25
    assert fenced.fenced_groups == 1
    # the fence travels with the marks: a rebuilt state still skips such a group
    written = dict((key, value) for _, key, value in fenced.changelog_write([]))
    rebuilt = WindowState(SETTINGS)
    rebuilt.rebuild(list(written.items()), {0})
    rebuilt.apply_packed([(0, pack_deltas([_batch(30, 3, 1)], T0 + 2))])
    assert rebuilt.fenced_groups == 1


def test_a_late_batch_published_before_the_fence_is_matched_by_the_cuts() -> None:
    """Worker 1's batch [10, 20) reached the deltas before worker 2's fence: its
    progress record came before, so worker 2 replays with a cut at 20 and its group
    ending there is skipped as applied; every answer counts once."""
    from pipeline.scoring_service import pack_fence

    state = WindowState(SETTINGS)
    state.rebuild([], {0})
    for record in (
        pack_deltas([_batch(10, 10, 1)], T0),
        pack_deltas([_batch(20, 10, 1)], T0),  # worker 1, before the fence
        pack_fence({0: 2}),
        pack_deltas([_batch(20, 10, 2)], T0),  # worker 2's replay, cut at 20
        pack_deltas([_batch(25, 5, 2)], T0 + 1),
    ):
        state.apply_packed([(0, record)])
    assert state.partitions[0].segments["overall"].total().responses == 25
    assert (state.replayed_groups, state.fenced_groups) == (1, 0)


def test_progress_fence_records_are_told_apart_from_batch_records() -> None:
    from pipeline.progress import fence, fence_of

    key, value = fence(3, 7)
    assert fence_of(key, value) == (3, 7)
    assert fence_of(b"3", encode(3, 0, 10, None, [])) is None
