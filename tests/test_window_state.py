"""The windows stage's state (pipeline.aggregate.WindowState): segments are advanced to
the clock when read, not on every batch; the changelog it writes still rebuilds the same
windows, and buckets past the retention are deleted from it once a read prunes them."""

from __future__ import annotations

import random

from pipeline.aggregate import Change, WindowState, bucket_key
from pipeline.scoring import encode_deltas
from pipeline.settings import load_settings
from pipeline.windows import Counts

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
    value = encode_deltas({int(ts // 60) * 60: Counts.of_event("nps", int(ts) % 11)}, ts)
    apply(state, table, state.apply_batch([(0, segment.encode(), value)]))


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
