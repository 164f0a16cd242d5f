"""pipeline.windows (buckets, rolling windows, stats) and pipeline.segments."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pipeline.windows as windows_module
from pipeline.segments import (
    COMBINATIONS,
    DIMENSIONS,
    OVERALL,
    parse_segment_key,
    segment_key,
    segment_keys,
)
from pipeline.stats import nps_interval, wilson_interval
from pipeline.windows import (
    Counts,
    SegmentWindows,
    WindowStats,
    bucket_of,
    parse_window_label,
    window_label,
    window_stats,
)
from schemas.feedback import FeedbackEvent, example_event

T0 = 1_764_000_000  # 2025-11-24T16:00:00Z, a multiple of 3600
DAY = 86_400


def one(survey: str = "nps", score: int = 10, value: float | None = None) -> Counts:
    return Counts.of_event(survey, score, value)


# --------------------------------------------------------------------------- Counts


def test_counts_add_event_categories():
    c = Counts()
    for score in (10, 9, 8, 7, 6, 0):
        c.add_event("nps", score, 100.0)
    c.add_event("nps", 9)  # no account value: not in the revenue sums
    for score in (5, 4, 3, 1):
        c.add_event("csat", score, 1e6)  # account value ignored outside NPS
    c.add_event("ces", 7)
    c.add_event("ces", 2)
    assert (c.responses, c.promoters, c.passives, c.detractors) == (7, 3, 2, 2)
    assert (c.csat_n, c.csat_sum, c.csat_satisfied) == (4, 13, 2)
    assert (c.ces_n, c.ces_sum, c.ces_sq) == (2, 9, 53)
    assert (c.rev_n, c.rev_weight, c.rev_promoters, c.rev_detractors) == (6, 600.0, 200.0, 200.0)


@pytest.mark.parametrize(("survey", "score"), [("nps", 11), ("nps", -1), ("csat", 0), ("ces", 8)])
def test_counts_rejects_off_scale(survey, score):
    with pytest.raises(ValueError):
        Counts().add_event(survey, score)
    with pytest.raises(ValueError):
        Counts().add_event("stars", 3)


def test_counts_add_subtract_roundtrip():
    a, b = one("nps", 9, 0.1), one("nps", 3, 0.2)
    a.add_event("csat", 5)
    total = a.copy()
    total.add(b)
    assert total.responses == 2 and total.rev_weight == pytest.approx(0.3)
    total.subtract(a)
    assert total.rev_weight == pytest.approx(0.2)  # 0.1 + 0.2 - 0.1 is not exactly 0.2
    total.rev_weight = 0.2
    assert total == b
    total.subtract(b)
    assert total.is_empty()
    assert total.rev_weight == 0.0  # reset exactly, no 0.1 + 0.2 - 0.1 - 0.2 residue
    assert not a.is_empty()


def test_counts_serialization():
    c = one("nps", 9, 123.25)
    c.add_event("ces", 5)
    values = c.to_list()
    assert len(values) == len(Counts.FIELDS) == 14
    assert values[-1] == 25  # ces_sq appended last: lists stored before it stay readable
    assert Counts.from_list(json.loads(json.dumps(values))) == c
    assert Counts.from_list(values[:4]) == Counts(responses=1, promoters=1)
    with pytest.raises(ValueError):
        Counts.from_list([*values, 0])
    with pytest.raises(ValueError):
        Counts.from_list([1.5])
    assert Counts() == Counts() and Counts() != one() and Counts() != "x"
    assert repr(Counts(responses=2)) == "Counts(responses=2)"


# --------------------------------------------------------------------------- labels, buckets


def test_window_labels():
    assert [window_label(s) for s in (300, 3600, 86400, 90, 45, None)] == [
        "5m",
        "1h",
        "24h",
        "90s",
        "45s",
        "all",
    ]
    for seconds in (300, 3600, 86400, 90, 45, 7 * DAY, 5400):
        assert parse_window_label(window_label(seconds)) == seconds
    assert parse_window_label("7d") == 7 * DAY
    assert parse_window_label("300") == 300
    assert parse_window_label("ALL") is None
    for bad in ("", "5x", "0m", "-5m", "m"):
        with pytest.raises(ValueError):
            parse_window_label(bad)
    with pytest.raises(ValueError):
        window_label(0)


def test_bucket_alignment():
    assert bucket_of(0) == 0
    assert bucket_of(59.999) == 0
    assert bucket_of(60) == 60
    assert bucket_of(-0.5) == -60
    assert bucket_of(T0 + 61.5) == T0 + 60
    assert bucket_of(T0 + 61, 10) == T0 + 60
    cet = timezone(timedelta(hours=1))
    assert bucket_of(datetime.fromtimestamp(T0 + 119, cet)) == T0 + 60
    with pytest.raises(ValueError):
        bucket_of(datetime(2025, 1, 1))  # naive


def test_config_validation():
    with pytest.raises(ValueError):
        SegmentWindows(bucket_seconds=0)
    with pytest.raises(ValueError):
        SegmentWindows(windows=())
    with pytest.raises(ValueError):
        SegmentWindows(bucket_seconds=60, windows=(90,))
    with pytest.raises(ValueError):
        SegmentWindows(windows=(300, 3600), retain_seconds=600)
    sw = SegmentWindows(windows=(3600, 300, 300))
    assert sw.windows == (300, 3600)
    assert sw.retain_seconds == 3600
    with pytest.raises(ValueError):
        sw.window(600)
    with pytest.raises(ValueError):
        sw.prune(60)


# --------------------------------------------------------------------------- windows


def test_window_edges():
    sw = SegmentWindows()  # 60 s buckets, 5m / 1h / 24h
    now = T0 + 1000  # current bucket T0 + 960; 5m covers buckets T0+720 .. T0+960
    sw.advance(now)
    assert sw.clock == T0 + 960
    assert sw.window_bounds("5m") == (T0 + 720, T0 + 1020)
    sw.add_event(T0 + 720, "nps", 10)  # exactly the first instant of the window: in
    sw.add_event(T0 + 719.999, "nps", 0)  # just before: out of 5m, in 1h
    sw.add_event(T0 + 1019.999, "nps", 8)  # end of the current bucket: in
    sw.add_event(T0 + 1020, "nps", 9)  # next bucket, ahead of the clock: not yet
    five = sw.window(300)
    assert (five.responses, five.promoters, five.passives, five.detractors) == (2, 1, 1, 0)
    assert sw.window("1h").responses == 3
    assert sw.total().responses == 4
    five = sw.window("5m", now=T0 + 1020)  # clock reaches the future bucket; T0+720 leaves
    assert (five.responses, five.promoters, five.passives) == (2, 1, 1)
    assert sw.window_bounds("5m") == (T0 + 780, T0 + 1080)


def test_expiry_and_prune():
    sw = SegmentWindows(windows=(300, 3600))
    sw.add_event(T0, "nps", 10, 50.0)
    assert sw.window(300).is_empty()  # clock not set yet: windows are empty
    assert sw.window_bounds(300) is None
    assert sw.window(300, now=T0 + 299.9).responses == 1
    assert sw.window(300, now=T0 + 300).responses == 0  # left the 5m window
    assert sw.window(3600).responses == 1
    assert sw.advance(T0 + 3599) == []
    assert sw.window(3600).responses == 1
    assert sw.advance(T0 + 3600) == [T0]  # leaves the longest window: dropped
    assert len(sw) == 0 and list(sw.buckets()) == []
    assert sw.window(3600).is_empty()
    assert sw.total().responses == 1 and sw.total().rev_weight == 50.0


def test_clock_never_goes_back():
    sw = SegmentWindows(windows=(300,))
    sw.advance(T0 + 600)
    sw.add_event(T0 + 500, "nps", 0)
    assert sw.advance(T0) == []
    assert sw.clock == T0 + 600
    assert sw.window(300, now=T0).detractors == 1


def test_late_event_updates_the_windows_covering_it():
    sw = SegmentWindows()
    sw.advance(T0 + 4000)  # clock bucket T0 + 3960
    sw.add_event(T0 + 3500, "nps", 2)  # 460 s late: in 1h and 24h, not in 5m
    assert sw.window(300).responses == 0
    assert sw.window(3600).responses == 1
    assert sw.window(DAY).responses == 1
    sw.add_event(T0 - 2 * DAY, "nps", 2)  # older than every window: total only
    assert sw.window(DAY).responses == 1 and sw.total().responses == 2
    # The re-created old bucket is pruned by the next advance, even one in the same bucket.
    assert sw.advance(T0 + 4001) == [T0 - 2 * DAY]
    assert sw.total().responses == 2
    # The late bucket (T0 + 3480) leaves 1h when the clock reaches T0 + 3480 + 3600.
    assert sw.window(3600, now=T0 + 7079).responses == 1
    assert sw.window(3600, now=T0 + 7080).responses == 0
    assert sw.window(DAY).responses == 1


def test_retention_longer_than_windows():
    sw = SegmentWindows(windows=(300,), retain_seconds=DAY)
    sw.add_event(T0, "csat", 4)
    sw.advance(T0 + 3600)
    assert sw.window(300).is_empty() and len(sw) == 1
    assert sw.prune(300) == [T0]
    assert sw.total().csat_n == 1


def test_cost_does_not_rescan_buckets(monkeypatch):
    calls = {"n": 0}
    orig_add, orig_sub = Counts.add_values, Counts.subtract_values

    def add(self, values):
        calls["n"] += 1
        orig_add(self, values)

    def subtract(self, values):
        calls["n"] += 1
        orig_sub(self, values)

    monkeypatch.setattr(Counts, "add_values", add)
    monkeypatch.setattr(Counts, "subtract_values", subtract)
    sw = SegmentWindows()  # three windows, 1440 buckets in the longest
    minutes = 3 * 1440
    for i in range(minutes):
        sw.advance(T0 + 60 * i)
        sw.add_event(T0 + 60 * i + 1, "nps", 9)
    # Per event: total + 3 windows (the bucket is stored in arrays, not a Counts); per
    # bucket and window: at most one subtraction; per bucket dropped by the retention:
    # one add to the pruned base. A rescan of the 24h window would be ~1440 adds per step.
    assert minutes * 4 <= calls["n"] <= minutes * (1 + 3 + 3 + 1)
    assert sw.window(DAY).responses == 1440
    assert len(sw) == 1440


def test_empty_windows_share_one_counts():
    sw = SegmentWindows()
    assert sw.peek(300) is sw.peek(DAY)  # nothing yet: no Counts per window
    sw.add_event(T0 + 1, "nps", 9, 100.0)
    sw.advance(T0)
    assert sw.peek(300).responses == sw.peek(DAY).responses == 1
    sw.add_event(T0 + 2, "csat", 5)
    sw.advance(T0 + 600)  # the 5 m window empties, the others keep the bucket
    assert sw.peek(300) is windows_module._NO_COUNTS and sw.window(300).is_empty()
    assert sw.peek(3600).responses == 1 and sw.peek(3600).csat_n == 1
    assert sw.peek(3600).rev_weight == 100.0
    sw.add_event(T0 + 601, "ces", 2)  # the shared object is never written to
    assert windows_module._NO_COUNTS.is_empty() and sw.peek(300).ces_n == 1
    sw.advance(T0 + 2 * DAY)
    assert all(sw.peek(length) is windows_module._NO_COUNTS for length in sw.windows)
    assert sw.total().responses == 1 and sw.total().ces_n == 1


def test_stats_of_a_window():
    sw = SegmentWindows()
    for score in [10] * 50 + [7] * 30 + [3] * 20:
        sw.add_event(T0 + 10, "nps", score, 10.0 if score >= 9 else 30.0)
    sw.add_event(T0 + 20, "csat", 5)
    sw.add_event(T0 + 20, "csat", 2)
    sw.add_event(T0 + 30, "ces", 6)
    stats = sw.stats("5m", now=T0 + 59)
    assert stats.window == "5m" and stats.window_seconds == 300
    assert stats.start == datetime.fromtimestamp(T0 - 240, UTC)
    assert stats.end == datetime.fromtimestamp(T0 + 60, UTC)
    assert (stats.responses, stats.promoters, stats.passives, stats.detractors) == (100, 50, 30, 20)
    assert stats.nps == 30.0
    assert (stats.nps_low, stats.nps_high) == nps_interval(50, 20, 100)
    assert stats.detractor_share == 0.2
    assert (stats.detractor_share_low, stats.detractor_share_high) == wilson_interval(20, 100)
    assert (stats.csat_responses, stats.csat_satisfied_share, stats.csat_mean) == (2, 0.5, 3.5)
    assert (stats.ces_responses, stats.ces_mean) == (1, 6.0)
    # revenue: promoters 500, detractors 600, weight 500 + 900 + 600 = 2000
    assert stats.revenue_responses == 100
    assert stats.revenue_weighted_nps == pytest.approx(100 * (500 - 600) / 2000)
    all_time = sw.stats("all")
    assert all_time.window == "all" and all_time.window_seconds is None
    assert all_time.start is None and all_time.responses == 100
    assert WindowStats.model_validate_json(stats.model_dump_json()) == stats


def test_stats_without_answers():
    stats = window_stats(Counts(), 3600)
    assert stats.window == "1h" and stats.responses == 0
    for name in (
        "nps",
        "nps_low",
        "nps_high",
        "detractor_share",
        "detractor_share_low",
        "detractor_share_high",
        "csat_satisfied_share",
        "csat_mean",
        "ces_mean",
        "revenue_weighted_nps",
    ):
        assert getattr(stats, name) is None, name
    assert window_stats(one("nps", 9, 0.0), 300).revenue_weighted_nps is None


# --------------------------------------------------------------------------- properties

# (bucket width, windows): the default shape, and a small one that hits edges often.
CONFIGS = [(60, (300, 3600, DAY)), (10, (10, 30, 120))]

event_st = st.tuples(
    st.sampled_from(["nps", "nps", "nps", "csat", "ces"]),
    st.integers(0, 10),
    st.one_of(st.none(), st.integers(0, 4_000_000).map(lambda q: q / 4)),  # exact in binary
)


@st.composite
def scenario(draw, value_st=None, ev_st=None):
    """A config and a list of operations: add events, advance the clock, query windows.

    ``ev_st`` replaces the events: (survey, score, value, times) adds ``times`` such
    answers at once (as a packed delta of a batch does)."""
    width, windows = draw(st.sampled_from(CONFIGS))
    spread = 3 * max(windows)  # ~3 days for the default config
    time_st = st.integers(0, spread * 1000).map(lambda ms: T0 + ms / 1000)
    ev = event_st
    if value_st is not None:
        ev = st.tuples(st.sampled_from(["nps", "csat", "ces"]), st.integers(0, 10), value_st)
    if ev_st is not None:
        ev = ev_st
    add_op = st.tuples(st.just("add"), time_st, ev)
    near = st.integers(-2 * max(windows), 2 * width).map(float)  # near the current clock
    ops = draw(
        st.lists(
            st.one_of(
                add_op,
                add_op,
                st.tuples(st.just("add_near"), near, ev),
                st.tuples(st.just("advance"), time_st, st.none()),
                st.tuples(st.just("step"), st.integers(0, 3 * width), st.none()),
                st.tuples(st.just("query"), time_st, st.none()),
            ),
            min_size=20,
            max_size=100,
        )
    )
    return width, windows, ops


def _clip(survey: str, score: int) -> int:
    low, high = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}[survey]
    return min(max(score, low), high)


def brute_force(events, width, clock, length):
    """Sum of the events whose bucket lies in window ``length`` at bucket ``clock``."""
    acc = Counts()
    if clock is None:
        return acc
    for ts, counts in events:
        b = math.floor(ts / width) * width
        if length is None or clock - length + width <= b <= clock:
            acc.add(counts)
    return acc


def run(width, windows, ops, check):
    """Apply ``ops`` to a SegmentWindows and to a plain event list; ``check`` compares."""
    sw = SegmentWindows(width, windows)
    events: list[tuple[float, Counts]] = []
    stored: dict[int, Counts] = {}  # the buckets a correct implementation keeps
    clock = None  # the model's clock bucket
    now = float(T0)
    for kind, t, ev in ops:
        if kind in ("add", "add_near"):
            ts = t if kind == "add" else now + t
            survey, score, value, *times = ev
            counts = Counts.of_event(survey, _clip(survey, score), value)
            if times:
                counts = Counts.from_list([v * times[0] for v in counts.to_list()])
            events.append((ts, counts))
            assert sw.add(ts, counts) == math.floor(ts / width) * width
            stored.setdefault(math.floor(ts / width) * width, Counts()).add(counts)
            continue
        if kind == "step":
            t = now + t
        now = max(now, t)
        b = math.floor(t / width) * width
        clock = b if clock is None else max(clock, b)
        oldest_kept = clock - sw.retain_seconds + width  # nothing is kept forever
        expired = sorted(b for b in stored if b < oldest_kept)
        if kind == "query":  # advances the clock (and prunes) too
            for length in windows:
                check(sw.window(length, now=t), brute_force(events, width, clock, length))
        else:
            assert sw.advance(t) == expired
        for b in expired:
            del stored[b]
        assert sw.clock == clock
    for length in windows:
        check(sw.window(length), brute_force(events, width, clock, length))
    check(sw.total(), brute_force(events, width, 0, None))
    check(sw.peek(None), brute_force(events, width, 0, None))  # the same, maybe not a copy
    assert [start for start, _ in sw.buckets()] == sorted(stored)
    for start, counts in sw.buckets():
        check(counts, stored[start])
    # empty windows share one Counts, which nothing may have changed
    assert windows_module._NO_COUNTS.is_empty()
    for length in windows:
        assert (sw.peek(length) is windows_module._NO_COUNTS) <= sw.peek(length).is_empty()
    return sw, events, clock


def exact(got: Counts, want: Counts) -> None:
    assert got == want


@settings(max_examples=200, deadline=None)
@given(scenario())
def test_windows_match_brute_force(case):
    width, windows, ops = case
    run(width, windows, ops, exact)


@settings(max_examples=100, deadline=None)
@given(scenario(), st.lists(st.tuples(st.integers(0, 10**6), event_st), max_size=10))
def test_rebuild_from_buckets_is_identical(case, more):
    width, windows, ops = case
    sw, _events, clock = run(width, windows, ops, exact)
    sw.prune()  # a late event may have re-created an expired bucket; from_buckets prunes it
    stored = json.loads(json.dumps([[s, c.to_list()] for s, c in sw.buckets()]))
    total = json.loads(json.dumps(sw.total().to_list()))
    rebuilt = SegmentWindows.from_buckets(
        stored, total, clock, bucket_seconds=width, windows=windows
    )
    assert rebuilt.clock == sw.clock
    assert list(rebuilt.buckets()) == list(sw.buckets())
    assert rebuilt.total() == sw.total()
    for length in windows:
        assert rebuilt.window(length) == sw.window(length)
    # Both keep behaving the same afterwards.
    for offset, (survey, score, value) in more:
        ts = T0 + offset
        counts = Counts.of_event(survey, _clip(survey, score), value)
        sw.add(ts, counts)
        rebuilt.add(ts, counts)
        sw.advance(ts)
        rebuilt.advance(ts)
    for length in windows:
        assert rebuilt.window(length) == sw.window(length)
    assert rebuilt.total() == sw.total()


# answers at once: past 16-bit counts (32,767: 700 CES answers' squares), past 32-bit
heavy_event_st = st.tuples(
    st.sampled_from(["nps", "csat", "ces"]),
    st.integers(0, 10),
    st.none(),
    st.sampled_from([1, 1, 700, 40_000, 50_000_000, 3_000_000_000]),
)


@settings(max_examples=150, deadline=None)
@given(scenario(ev_st=heavy_event_st))
def test_counts_past_16_and_32_bits_stay_exact(case):
    # Buckets start as 16-bit integers and widen when a value does not fit.
    width, windows, ops = case
    sw, _events, clock = run(width, windows, ops, exact)
    sw.prune()  # a late event may have re-created an expired bucket; from_buckets prunes it
    stored = [[s, c.to_list()] for s, c in sw.buckets()]
    rebuilt = SegmentWindows.from_buckets(
        stored, sw.total(), clock, bucket_seconds=width, windows=windows
    )
    assert list(rebuilt.buckets()) == list(sw.buckets())


def test_bucket_counts_take_the_width_they_need():
    sw = SegmentWindows()
    for i in range(5):  # an agent: a few answers per bucket
        sw.add_event(T0 + 60 * i, "ces", 7)
    assert sw._ints.itemsize == 2  # 22 bytes of counts per bucket, not 88
    assert len(sw._floats) == 0  # no revenue answer: no revenue sums stored
    for _ in range(700):  # 700 x 49 = 34,300: the CES squares outgrow 16 bits
        sw.add_event(T0, "ces", 7)
    assert sw._ints.itemsize == 4
    assert sw.bucket(sw.bucket_of(T0)).ces_sq == 701 * 49
    assert sw.total().ces_sq == 705 * 49
    sw.add(T0 + 240, Counts.from_list([v * 10**9 for v in Counts.of_event("ces", 7).to_list()]))
    assert sw._ints.itemsize == 8
    assert sw.bucket(sw.bucket_of(T0 + 240)).ces_sq == (10**9 + 1) * 49
    assert [c.ces_n for _, c in sw.buckets()] == [701, 1, 1, 1, 10**9 + 1]
    rebuilt = SegmentWindows.from_buckets(list(sw.buckets()), sw.total())
    assert rebuilt._ints.itemsize == 8
    small = SegmentWindows.from_buckets([(T0 // 60 * 60, Counts.of_event("nps", 9))])
    assert small._ints.itemsize == 2 and len(small._floats) == 0
    small.add_event(T0 - 120, "nps", 3, 1000.0)  # the first revenue, in an earlier bucket
    assert len(small._floats) == 3 * len(small) == 6
    assert [c.rev_weight for _, c in small.buckets()] == [1000.0, 0.0]


def _close(got: Counts, want: Counts) -> None:
    """Integers exact; revenue sums within float rounding of their magnitudes."""
    for name in Counts.FIELDS:
        g, w = getattr(got, name), getattr(want, name)
        if name.startswith("rev_") and name != "rev_n":
            assert math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-3), (name, g, w)
        else:
            assert g == w, (name, g, w)


@settings(max_examples=50, deadline=None)
@given(scenario(value_st=st.one_of(st.none(), st.floats(0, 1e9))))
def test_arbitrary_float_revenue_stays_close(case):
    # Up to 100 values < 1e9: the absolute rounding residue stays far below 1e-3.
    width, windows, ops = case
    run(width, windows, ops, _close)


def test_from_buckets_validation():
    with pytest.raises(ValueError):
        SegmentWindows.from_buckets([(T0 + 1, Counts())])
    with pytest.raises(ValueError):
        SegmentWindows.from_buckets([(T0, Counts()), (T0, Counts())])
    sw = SegmentWindows.from_buckets([(T0, [2, 1, 1]), (T0 + 60, one())])
    assert sw.total() == Counts(responses=3, promoters=2, passives=1)
    assert sw.window(300).is_empty() and sw.clock is None
    assert sw.window(300, now=T0 + 60).responses == 3


# --------------------------------------------------------------------------- segments


def test_segment_keys_of_an_event():
    event = FeedbackEvent.model_validate(example_event(region=None))
    assert segment_keys(event) == [
        OVERALL,
        "department=support",
        "agent=agent-007",
        "product=mobile-app",
        "channel=chat",
        "department=support|channel=chat",
    ]
    assert DIMENSIONS == ("department", "agent", "product", "channel", "region")
    assert COMBINATIONS == (("department", "channel"),)


def test_segment_keys_of_a_dict_and_config():
    fields = {"channel": "chat", "department": "sales", "region": None, "agent": "  ", "x": 1}
    assert segment_keys(fields) == [
        OVERALL,
        "department=sales",
        "channel=chat",
        "department=sales|channel=chat",
    ]
    assert segment_keys(
        fields,
        dimensions=("channel",),
        combinations=[("channel", "department"), ("region", "channel"), ("channel",)],
    ) == [OVERALL, "channel=chat", "channel=chat|department=sales"]
    assert segment_keys({}) == [OVERALL]


def test_segment_key_escaping_roundtrip():
    fields = {"department": "R&D | 100%", "agent": "a=b", "product": "%7C"}
    key = segment_key(fields)
    assert key == "department=R&D %7C 100%25|agent=a%3Db|product=%257C"
    assert parse_segment_key(key) == fields
    assert parse_segment_key("department=support|channel=chat") == {
        "department": "support",
        "channel": "chat",
    }
    assert parse_segment_key("agent=a%3db") == {"agent": "a=b"}
    assert parse_segment_key(OVERALL) == {}
    assert segment_key({}) == OVERALL
    for bad in ("", "department", "=x", "a=1|a=2", "a=1|"):
        with pytest.raises(ValueError):
            parse_segment_key(bad)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(DIMENSIONS), st.text(min_size=1).map(str.strip).filter(bool), max_size=5
    )
)
def test_segment_keys_parse_back(fields):
    keys = segment_keys(fields)
    assert keys[0] == OVERALL and len(keys) == len(set(keys))
    for key in keys[1:]:
        parsed = parse_segment_key(key)
        assert parsed == {name: fields[name] for name in parsed}


def test_from_buckets_accepts_text_keys():
    sw = SegmentWindows.from_buckets({str(T0): [1, 1]}.items(), now=T0)
    assert sw.window(300) == Counts(responses=1, promoters=1)
    with pytest.raises(ValueError):
        SegmentWindows.from_buckets([(T0 + 0.5, [1, 1])])
