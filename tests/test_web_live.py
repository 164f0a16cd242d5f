"""The live page's building blocks without a browser: the alerts ring and its merge,
where the alerts follower starts reading, sparkline points and CSAT/CES intervals from
real windows, the events/s meter and the health sum over workers."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import TopicPartition

from pipeline.scoring import Totals
from pipeline.settings import Settings
from pipeline.web.alert_feed import (
    AlertFeed,
    merge_firing,
    merge_recent,
    start_offsets,
)
from pipeline.web.health import RateMeter, combine, lag_by_topic, worker_health
from pipeline.web.page import STATIC_FILES, page_config, page_url, static_file
from pipeline.web.trends import ces_summary, csat_summary, segment_trend, sparkline, step_for
from pipeline.windows import Counts, SegmentWindows, window_stats
from schemas.alert import Alert

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def alert(n: int, status: str = "firing", fired_min: int = 0, resolved_min: int | None = None):
    stats = window_stats(Counts(responses=10, detractors=6, promoters=2, passives=2), 3600)
    return Alert.model_validate(
        {
            "alert_id": f"fp{n}-1",
            "fingerprint": f"fp{n}",
            "status": status,
            "rule": "detractor-cusum",
            "kind": "detractor_cusum",
            "severity": "page",
            "segment": f"agent=a{n}",
            "dimension": "agent",
            "fields": {"agent": f"a{n}"},
            "summary": f"alert {n}",
            "description": "d",
            "started_at": T0,
            "fired_at": T0 + timedelta(minutes=fired_min),
            "resolved_at": None if resolved_min is None else T0 + timedelta(minutes=resolved_min),
            "evidence": {
                "window": stats.model_dump(),
                "baseline": None,
                "metric": "detractor_share",
                "observed": 0.6,
                "expected": 0.3,
                "effect": 0.3,
                "statistic": "cusum",
                "statistic_value": 12.0,
                "threshold": 10.0,
                "p_value": None,
                "adjusted_p_value": None,
            },
        }
    )


# --------------------------------------------------------------------------- alerts


def test_feed_keeps_the_newest_changes_once_newest_first() -> None:
    feed = AlertFeed(capacity=3)
    feed.add(alert(1, fired_min=1))
    feed.add(alert(2, fired_min=2))
    feed.add(alert(1, fired_min=1))  # the same change again (a re-publish): kept once
    assert len(feed) == 2
    feed.add(alert(1, "resolved", fired_min=1, resolved_min=30))
    feed.add(alert(3, fired_min=5))  # the fourth change pushes the oldest out
    assert [(a.alert_id, a.status.value) for a in feed.recent()] == [
        ("fp1-1", "resolved"),  # 09:30
        ("fp3-1", "firing"),  # 09:05
        ("fp2-1", "firing"),  # 09:02
    ]


def test_feed_skips_records_that_are_not_alerts() -> None:
    feed = AlertFeed()
    assert feed.add_json(b'{"not": "an alert"}') is False
    assert feed.add_json(None) is False
    assert feed.add_json(alert(4).model_dump_json().encode()) is True
    assert [a.alert_id for a in feed.recent()] == ["fp4-1"]
    with pytest.raises(ValueError, match="capacity"):
        AlertFeed(capacity=0)


def test_merges_across_workers() -> None:
    one = [alert(1, fired_min=3), alert(2, fired_min=1)]
    two = [alert(2, fired_min=1), alert(3, fired_min=2), alert(2, "resolved", 1, 20)]
    recent = merge_recent([one, two], limit=3)
    assert [(a.alert_id, a.status.value) for a in recent] == [
        ("fp2-1", "resolved"),
        ("fp1-1", "firing"),
        ("fp3-1", "firing"),
    ]
    assert [a.alert_id for a in merge_firing([one, two])] == ["fp1-1", "fp3-1", "fp2-1"]


def test_follower_starts_at_most_capacity_records_before_the_end() -> None:
    tps = [TopicPartition("alerts", p) for p in range(3)]
    beginnings = {tps[0]: 0, tps[1]: 500, tps[2]: 0}
    ends = {tps[0]: 1000, tps[1]: 520, tps[2]: 0}
    assert start_offsets(tps, beginnings, ends, 200) == {tps[0]: 800, tps[1]: 500, tps[2]: 0}


# --------------------------------------------------------------------------- trends


def windows_with_answers() -> SegmentWindows:
    """Buckets of one minute; the clock at minute 9 (bucket start 540)."""
    sw = SegmentWindows(60, (300, 600))
    for minute in range(10):
        for _ in range(minute + 1):  # minute m has m+1 promoters...
            sw.add_event(minute * 60 + 1, "nps", 10)
        sw.add_event(minute * 60 + 2, "nps", 0)  # ...and one detractor
    sw.add_event(540, "csat", 5)
    sw.add_event(541, "csat", 4)
    sw.add_event(542, "csat", 2)
    for score in (7, 5, 3, 5):
        sw.add_event(543, "ces", score)
    sw.advance(540)
    return sw


def test_step_is_whole_buckets() -> None:
    assert step_for(3600, 60, 12) == 300
    assert step_for(1800, 60, 12) == 180  # 2.5 min rounds up to 3
    assert step_for(300, 60, 12) == 60  # never below one bucket
    with pytest.raises(ValueError):
        step_for(300, 60, 0)


def test_sparkline_points_cover_the_window_ending_at_the_clock() -> None:
    sw = windows_with_answers()
    points = sparkline(sw, 600, 4)  # 10 minutes in steps of 3: [0,60) [60,240) [240,420) [420,600)
    assert [(p.start, p.end) for p in points] == [(0, 60), (60, 240), (240, 420), (420, 600)]
    # minute m has m + 2 answers
    assert [p.responses for p in points] == [2, 3 + 4 + 5, 6 + 7 + 8, 9 + 10 + 11]
    # minutes 7-9: 8+9+10 promoters, 3 detractors out of 30 answers
    assert points[-1].nps == pytest.approx(100 * (27 - 3) / 30)
    assert sparkline(SegmentWindows(60, (300,)), 300, 5) == []  # no clock yet


def test_csat_and_ces_intervals() -> None:
    sw = windows_with_answers()
    trend = segment_trend("overall", sw, 300, 5)
    assert trend.csat.responses == 3 and trend.csat.satisfied_share == pytest.approx(2 / 3)
    # Wilson 95% for 2 of 3: (0.2077, 0.9385)
    assert trend.csat.satisfied_low == pytest.approx(0.2077, abs=1e-4)
    assert trend.csat.satisfied_high == pytest.approx(0.9385, abs=1e-4)
    assert trend.csat.mean == pytest.approx(11 / 3)
    # CES 7, 5, 3, 5: mean 5, sample variance 8/3, half-width 1.96 * sqrt(8/3/4)
    half = 1.959964 * math.sqrt(8 / 3 / 4)
    assert trend.ces.mean == 5.0
    assert trend.ces.mean_low == pytest.approx(5 - half) and trend.ces.mean_high == pytest.approx(
        5 + half
    )
    assert ces_summary(Counts(ces_n=1, ces_sum=6, ces_sq=36)).mean_low is None
    assert csat_summary(Counts()).satisfied_share is None
    # "all": intervals over the total, sparkline over the longest window
    everything = segment_trend("overall", sw, None, 5)
    assert len(everything.points) == 5 and everything.points[-1].end == 600


# --------------------------------------------------------------------------- health


def test_rate_meter_measures_over_its_span() -> None:
    now = [0.0]
    meter = RateMeter(span=10.0, clock=lambda: now[0])
    assert meter.rate() == 0.0
    for second in range(31):
        now[0] = float(second)
        meter.sample(100 * second if second < 20 else 2000)  # 100/s, then nothing
    assert meter.rate() == 0.0  # the last 10 s saw no event
    now[0] = 32.0
    meter.sample(2400)
    # from the newest sample at least 10 s old (t = 22, count 2000) to t = 32
    assert meter.rate() == pytest.approx(400 / 10)


def test_health_sums_workers() -> None:
    lags = [("raw", 0, 5), ("raw", 1, 7), ("deltas", 0, 1)]
    assert lag_by_topic(lags) == {"raw": 12, "deltas": 1}
    inputs = ["raw", "deltas"]
    one = worker_health(
        "http://a:1", Totals(100, 90, 8, 2), 12.5, [*lags, ("x-changelog", 0, 40)], 1.795e9, inputs
    )
    two = worker_health("http://b:2", Totals(50, 50, 0, 0), 7.5, [("raw", 2, 3)], None, inputs)
    assert one.input_lag_records == 13 and one.lag_records["x-changelog"] == 40
    total = combine([two, one], unanswered=1)
    assert (total.consumed, total.scored, total.deadlettered, total.duplicates) == (150, 140, 8, 2)
    assert total.events_per_second == 20.0
    assert total.lag_records == {"deltas": 1, "raw": 15, "x-changelog": 40}
    assert total.input_lag_records == 16
    assert total.clock == datetime.fromtimestamp(1.795e9, UTC)
    assert [w.worker for w in total.workers] == ["http://a:1", "http://b:2"]
    assert total.unanswered_workers == 1


# --------------------------------------------------------------------------- page


def test_page_files_and_config() -> None:
    settings = Settings(web_host="10.0.0.5", web_port=7000, windows_seconds=[300, 3600])
    assert page_url(settings) == "http://10.0.0.5:7000/live"
    config = page_config(settings)
    assert config["windows"] == ["5m", "1h", "all"] and config["default_window"] == "1h"
    assert config["dimensions"][0] == "overall" and "department,channel" in config["dimensions"]
    for name in STATIC_FILES:
        assert static_file(name)  # packaged and readable
    html = static_file("index.html").decode()
    assert 'aria-live="polite"' in html and "<caption" in html and 'scope="col"' in html
    with pytest.raises(KeyError):
        static_file("../app.py")
