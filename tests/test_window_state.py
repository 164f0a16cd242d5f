"""The windows stage's state (pipeline.aggregate.WindowState): segments are advanced to
the clock when read, not on every batch; the changelog it writes still rebuilds the same
windows, and buckets past the retention are deleted from it once a read prunes them,
with the segment's pruned base (the total is that base plus the stored buckets)."""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.aggregate import Change, WindowState, bucket_key, pruned_key, total_key
from pipeline.settings import load_settings
from pipeline.windows import Counts
from tests.deltas import deltas_record, every_segment

SETTINGS = load_settings()
DAY = 86400
T0 = 1_800_000_000.0


def apply(state: WindowState, table: dict[bytes, bytes], records: list[Change]) -> None:
    for key, value in records:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


def feed(state: WindowState, table: dict[bytes, bytes], segment: str, ts: float) -> None:
    value = deltas_record(segment, {int(ts // 60) * 60: Counts.of_event("nps", int(ts) % 11)}, ts)
    apply(state, table, state.apply_packed([(0, value)]))


def test_the_changelog_rebuilds_the_windows_of_segments_never_read() -> None:
    rng = random.Random(7)
    state, table = WindowState(SETTINGS), {}
    ts = T0
    for _ in range(400):  # 4 agents over ~2 days of event time, some answers late
        ts += rng.uniform(0, 600)
        feed(state, table, f"agent=a{rng.randrange(4)}", ts - rng.choice([0, 0, 0, 240]))
    rebuilt = WindowState(SETTINGS)
    rebuilt.rebuild(list(table.items()), {0})
    for segment in (f"agent=a{i}" for i in range(4)):
        live, again = state.get(segment), rebuilt.get(segment)
        assert live is not None and again is not None
        for window in (*SETTINGS.windows_seconds, None):
            assert live.stats(window) == again.stats(window), (segment, window)
        assert list(live.buckets()) == list(again.buckets())


def test_buckets_past_the_retention_are_deleted_once_a_read_prunes_them() -> None:
    state, table = WindowState(SETTINGS), {}
    feed(state, table, "agent=old", T0)
    old_bucket = bucket_key(0, int(T0 // 60) * 60, "agent=old")
    assert old_bucket in table
    feed(state, table, "agent=busy", T0 + DAY + 120)  # the clock a day later
    assert old_bucket in table  # nothing read agent=old yet
    windows = state.get("agent=old")  # a read (query, alert round, snapshot)
    assert windows is not None and len(windows) == 0
    assert windows.total().responses == 1  # pruned buckets stay in the total
    feed(state, table, "agent=busy", T0 + DAY + 180)  # the next batch writes the delete
    assert old_bucket not in table


def test_the_changelog_holds_buckets_and_pruned_bases_not_totals() -> None:
    state, table = WindowState(SETTINGS), {}
    feed(state, table, "agent=a", T0)
    feed(state, table, "agent=a", T0 + 60)
    # a write: the touched buckets and the clock, no total
    assert sorted(k.split(b"|")[0] for k in table) == [b"B", b"B", b"C"]
    feed(state, table, "agent=b", T0 + DAY + 600)  # a day later
    assert state.get("agent=a") is not None  # the read prunes both buckets
    feed(state, table, "agent=b", T0 + DAY + 660)  # the write after it
    base = orjson.loads(table[pruned_key(0, "agent=a")])
    assert Counts.from_list(base).responses == 2
    assert not any(k.startswith(b"B|0|") and k.endswith(b"|agent=a") for k in table)


def _event(draw_value: float | None, score: int) -> Counts:
    return Counts.of_event("nps", score, draw_value)


@settings(max_examples=120, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 2),  # agent
            st.integers(0, 900),  # minutes after the previous answer
            st.sampled_from([0, 0, 0, 3, 30]),  # minutes late
            st.integers(0, 10),  # score
            st.one_of(st.none(), st.sampled_from([10.0, 99.5, 1234.25])),  # account value
            st.sampled_from(["none", "none", "read", "restart"]),
        ),
        min_size=1,
        max_size=80,
    )
)
def test_restarts_and_prunes_anywhere_keep_every_total(steps) -> None:
    """Answers over days (buckets pruned by reads), the worker rebuilt from its changelog
    at random points: every segment's all-time total equals the sum of its answers, and a
    rebuild from the final changelog gives the live worker's windows."""
    state, table = WindowState(SETTINGS), {}
    expected: dict[str, Counts] = {}
    ts = T0
    for agent, gap, late, score, value, then in steps:
        ts += 60 * gap
        segment = f"agent=a{agent}"
        at = ts - 60 * late
        counts = _event(value, score)
        expected.setdefault(segment, Counts()).add(counts)
        delta = deltas_record(segment, {int(at // 60) * 60: counts}, ts)
        apply(state, table, state.apply_packed([(0, delta)]))
        if then == "read":
            list(every_segment(state))  # a read of every segment (prunes them)
        elif then == "restart":
            state = WindowState(SETTINGS)
            state.rebuild(list(table.items()), {0})
            apply(state, table, state.take_pending())
    apply(state, table, state.take_pending())
    rebuilt = WindowState(SETTINGS)
    rebuilt.rebuild(list(table.items()), {0})
    for segment, want in expected.items():
        live, again = state.get(segment), rebuilt.get(segment)
        assert live is not None and again is not None
        for got in (live.total(), again.total()):
            assert got.to_list()[:11] == want.to_list()[:11], segment  # the integer counts
            assert got.rev_weight == pytest.approx(want.rev_weight)
        for window in SETTINGS.windows_seconds:
            assert again.stats(window).responses == live.stats(window).responses
        assert list(live.buckets()) == list(again.buckets())


def test_a_changelog_with_totals_is_read_and_rewritten_with_pruned_bases() -> None:
    """Changelogs written before the pruned base stored each segment's total (T|...):
    the total is restored from it, and the next write replaces it with a pruned base."""
    state, table = WindowState(SETTINGS), {}
    for minute in range(3):
        feed(state, table, "agent=a", T0 + 60 * minute)
    # as the older version wrote it: a total of 5 answers, 3 of them still in buckets
    old = Counts()
    for score in (9, 9, 3, 4, 10):
        old.add(Counts.of_event("nps", score))
    table[total_key(0, "agent=a")] = orjson.dumps(old.to_list())
    rebuilt = WindowState(SETTINGS)
    rebuilt.rebuild(list(table.items()), {0})
    windows = rebuilt.get("agent=a")
    assert windows is not None and windows.total().responses == 5
    apply(rebuilt, table, rebuilt.take_pending())
    assert total_key(0, "agent=a") not in table
    assert Counts.from_list(orjson.loads(table[pruned_key(0, "agent=a")])).responses == 2
    again = WindowState(SETTINGS)
    again.rebuild(list(table.items()), {0})
    assert again.get("agent=a").total() == windows.total()


def test_fence_tokens_follow_the_group_generation_not_the_log() -> None:
    """A takeover in a later generation fences above the earlier ones in the same epoch;
    one in an earlier generation (a worker frozen before its takeover, thawed after the
    new owner's) is below, unless the broker confirms its generation is current: then
    Kafka forgot the group (generations start again from 1) and the epoch grows."""
    from pipeline.aggregate import complete_publishes, fence_key, fence_tokens
    from pipeline.fencing import EPOCH_SHIFT, next_fence

    first = next_fence([], 57)
    assert first.token == 1 << EPOCH_SHIFT | 57 and not first.needs_confirmation
    log = [(0, fence_key(0), b"", first.token), (0, b"M|0", b"{}", first.token)]
    later = next_fence(fence_tokens(log), 58)
    assert later.token == 1 << EPOCH_SHIFT | 58 and not later.needs_confirmation
    assert next_fence(fence_tokens(log), 57).token == first.token  # the same owner again
    log += [(0, fence_key(0), b"", later.token)]
    # a member of generation 57 finishing a takeover it began before generation 58
    earlier = next_fence(fence_tokens(log), 57)
    assert earlier.needs_confirmation and earlier.stale < later.token < earlier.token
    log += [(0, b"C|0", b"1.0", earlier.stale), (0, b"M|0", b"{}", earlier.stale)]
    assert complete_publishes(log).fenced == 2  # what it writes is ignored
    # generation 1 confirmed: the group's generations started again
    reset = next_fence(fence_tokens(log), 1)
    assert reset.needs_confirmation and reset.token == 2 << EPOCH_SHIFT | 1
    log += [(0, fence_key(0), b"", reset.token)]
    after_reset = next_fence(fence_tokens(log), 2)
    assert after_reset.token == 2 << EPOCH_SHIFT | 2 and not after_reset.needs_confirmation
    # what an older token writes after the newer fence is ignored, not what it wrote before
    log += [(0, b"C|0", b"2.0", later.token), (0, b"M|0", b"{}", reset.token)]
    found = complete_publishes(log)
    assert found.latest == {b"M|0": b"{}"} and found.fenced == 3


def test_the_applied_deltas_offset_travels_with_the_marks() -> None:
    """The last deltas offset applied per partition is written with the partition's marks
    (the changelog write that holds its changes) and rebuilt from them: after a rebalance
    the windows go on from the record after it, whatever Faust's consumer hands over."""
    from pipeline.aggregate import APPLIED, WindowState
    from pipeline.settings import load_settings

    state = WindowState(load_settings())
    assert state.applied_through(2) is None
    state.applied_offset(2, 41)
    state.applied_offset(2, 42)
    written = dict((key, value) for _, key, value in state.changelog_write([]))
    marks = orjson.loads(written[b"M|2"])
    assert marks == {str(APPLIED): 42}
    rebuilt = WindowState(load_settings())
    rebuilt.rebuild(list(written.items()), {0, 1, 2, 3})
    assert rebuilt.applied_through(2) == 42 and rebuilt.applied_through(1) is None
    # a raw partition's mark and the offset side by side: groups are judged as before
    assert rebuilt.marks[2] == {APPLIED: 42}


def test_deltas_records_are_applied_from_the_one_after_the_last_applied() -> None:
    """Which deltas records a delivered one calls for (the windows agent applies those from
    the returned offset up to it, reading the ones in between from the topic)."""
    from pipeline.aggregate import WindowState
    from pipeline.settings import load_settings

    state = WindowState(load_settings())
    state.rebuild([], {0, 1})
    assert state.unapplied_from(0, 0) == 0  # nothing applied yet: from the start
    assert state.unapplied_from(0, 5) == 0  # the records before 5 first
    assert state.unapplied_from(3, 0) is None  # not held here: left alone
    state.applied_offset(0, 7)
    assert state.unapplied_from(0, 8) == 8  # the next one: itself only
    assert state.unapplied_from(0, 12) == 8  # 8-11 never handed over: read first
    assert state.unapplied_from(0, 7) is None and state.unapplied_from(0, 2) is None
    written = dict((key, value) for _, key, value in state.changelog_write([]))
    rebuilt = WindowState(load_settings())
    rebuilt.rebuild(list(written.items()), {0})
    assert rebuilt.unapplied_from(0, 8) == 8 and rebuilt.unapplied_from(0, 7) is None
