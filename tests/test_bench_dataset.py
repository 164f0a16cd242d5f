"""The benchmark dataset's ground truth: written out by hand, checked here against the
pipeline's own analysis where the two must agree (the themes of the comments)."""

from __future__ import annotations

import itertools
import random
import re
import time
from collections import Counter

import orjson

from pipeline.bench.dataset import SCALES, SENTENCES, comment_themes, compose, generate
from pipeline.text.stage_analytics import shared_analyzer


def test_the_comments_themes_are_those_of_the_default_taxonomy() -> None:
    """Each sentence alone, and every comment of two and three sentences (12,696 texts:
    all that :func:`compose` can make), as the analyzer finds them."""
    analyzer = shared_analyzer()
    for sentence, themes in SENTENCES.items():
        assert tuple(analyzer.analyze(sentence).themes) == themes, sentence
    for k in (2, 3):
        for sentences in itertools.permutations(SENTENCES, k):
            comment = " ".join(sentences)
            expected = set().union(*(SENTENCES[s] for s in sentences))
            assert set(analyzer.analyze(comment).themes) == expected, comment
            assert comment_themes(comment) == tuple(sorted(expected)), comment


def test_comments_are_one_to_three_sentences_of_many_texts() -> None:
    rng = random.Random(3)
    comments = [compose(rng) for _ in range(20_000)]
    sizes = Counter(sum(c.count(s) for s in SENTENCES if s != "ok") for c in comments)
    assert 0.4 < (sizes[1] + sizes[0]) / len(comments) < 0.6  # "ok" alone counts as 0
    assert 0.1 < sizes[3] / len(comments) < 0.2
    # the three-sentence ones are mostly new: the per-text caches miss on those
    assert len(set(comments)) > 3_000


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
        for theme in comment_themes(event.get("comment", "")):
            expected[f"theme={theme}"] += 1
    got = {
        key: sum(counts[k] for k in ("responses", "csat_responses", "ces_responses"))
        for key, counts in data.truth.items()
        if key.startswith("theme=")
    }
    assert got == dict(expected) and set(got) == {
        f"theme={theme}" for themes in SENTENCES.values() for theme in themes
    }
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
