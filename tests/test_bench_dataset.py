"""The benchmark dataset's ground truth: written out by hand, checked here against the
pipeline's own analysis where the two must agree (the themes of the comments)."""

from __future__ import annotations

import re
import time
from collections import Counter

import orjson

from pipeline.bench.dataset import COMMENT_THEMES, COMMENTS, SCALES, generate
from pipeline.text.stage_analytics import shared_analyzer


def test_the_comments_themes_are_those_of_the_default_taxonomy() -> None:
    analyzer = shared_analyzer()
    assert set(COMMENT_THEMES) == set(COMMENTS)
    for comment, themes in COMMENT_THEMES.items():
        assert tuple(analyzer.analyze(comment).themes) == themes, comment


def test_theme_segments_count_every_valid_answer_with_that_comment() -> None:
    data = generate(3000, 40, end=time.time(), themes=True)
    plain = generate(3000, 40, end=time.time(), themes=False)
    events = []
    for value in data.values:
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        events.append(event)
    valid = [
        e
        for e in events
        if "survey_type" in e
        and SCALES[e["survey_type"]][0] <= e["score"] <= SCALES[e["survey_type"]][1]
    ]
    assert len(valid) == data.valid
    expected: Counter[str] = Counter()
    for event in valid:
        for theme in COMMENT_THEMES.get(event.get("comment", ""), ()):
            expected[f"theme={theme}"] += 1
    got = {
        key: sum(counts[k] for k in ("responses", "csat_responses", "ces_responses"))
        for key, counts in data.truth.items()
        if key.startswith("theme=")
    }
    assert got == dict(expected) and set(got) == {
        "theme=staff_attitude", "theme=ease_of_use", "theme=price", "theme=billing"
    }  # fmt: skip
    # without comment analytics the worker has no theme segments: neither has the truth
    assert set(plain.truth) == set(data.truth) - set(got)
    assert plain.truth["overall"] == data.truth["overall"]


def test_a_live_spike_run_produces_the_same_records_ending_now() -> None:
    from datetime import datetime

    from pipeline.bench.run import BenchConfig, dataset_of, run_values, span_text

    live = BenchConfig(events=2000, segments=50, span_seconds=30)
    data = dataset_of(live, end=time.time() - 3600)
    before = time.time()
    values = run_values(data, live)
    assert len(values) == len(data.values) and values != data.values

    def without_time(value: bytes) -> bytes:
        return re.sub(rb'"event_time":"[^"]*"', b"", value)

    assert [without_time(v) for v in values] == [without_time(v) for v in data.values]
    times = [
        datetime.fromisoformat(orjson.loads(v)["event_time"]).timestamp()
        for v in values
        if v.startswith(b"{") and v.endswith(b"}")
    ]
    # 30 s ending now, +-20 s of jitter, 2% delayed by up to 5 min
    times.sort()
    assert before - 30 < times[len(times) // 2] < before and times[-1] <= time.time()
    assert times[0] >= before - 30 - 20 - 300
    # a backlog (the default two hours) is produced as generated, a minute before the run
    backlog = BenchConfig(events=2000, segments=50)
    assert run_values(data, backlog) is data.values
    assert span_text({"span_seconds": 30.0}) == "30 s of event time (a live spike)"
    assert span_text({"span_seconds": 7200.0}) == "2 h of event time (a backlog caught up)"
