"""Emerging topics: phrases, the log-odds statistic against a brute-force reference, the
tracker's bookkeeping (foreground window, background dedupe and decay) and its memory."""

from __future__ import annotations

import math
import random
import tracemalloc
from collections import Counter

import pytest

from pipeline.text.emerging import EmergingTopics, log_odds_z, phrases, select


def test_phrases_are_content_unigrams_and_adjacent_bigrams() -> None:
    assert phrases("I was DOUBLE charged for the same order, [EMAIL]!") == (
        "double", "charged", "double charged", "order",
    )  # fmt: skip
    # accents stripped, Italian stopwords dropped, no bigram across a stopword
    assert phrases("Addebito doppio sulla carta: è già la seconda volta") == (
        "addebito", "doppio", "addebito doppio", "carta", "seconda", "volta", "seconda volta",
    )  # fmt: skip
    assert phrases("charged charged 10 10") == ("charged", "charged charged")
    # no bigram across the end of a sentence ("weeks billing" is no phrase anybody wrote)
    for text in ("Refund took weeks. Billing team slow", "Refund took weeks!\nbilling team slow"):
        assert phrases(text) == (
            "refund", "took", "refund took", "weeks", "took weeks",
            "billing", "team", "billing team", "slow", "team slow",
        )  # fmt: skip
    assert "weeks billing" in phrases("Refund took weeks billing team")


def brute_force(
    fg_texts: list[str], ref_texts: list[str], prior_size: float
) -> dict[str, tuple[float, float]]:
    """Monroe et al. (2008) eqs. 16, 18-20 spelled out: counts from scratch, prior from
    the pooled corpus (foreground + reference), one phrase at a time."""
    fg = Counter(p for t in fg_texts for p in set(phrases(t)))
    ref = Counter(p for t in ref_texts for p in set(phrases(t)))
    pooled = fg + ref
    n_i, n_j, total = sum(fg.values()), sum(ref.values()), sum(pooled.values())
    out = {}
    for w in fg:
        a = prior_size * pooled[w] / total
        odds_i = (fg[w] + a) / (n_i + prior_size - fg[w] - a)
        odds_j = (ref[w] + a) / (n_j + prior_size - ref[w] - a)
        d = math.log(odds_i) - math.log(odds_j)
        out[w] = (d, d / math.sqrt(1 / (fg[w] + a) + 1 / (ref[w] + a)))
    return out


NORMAL = [
    "Waited 40 minutes on hold before anyone answered.",
    "The agent was rude and dismissive.",
    "My invoice is wrong again and nobody fixes it.",
    "I was charged twice this month, 19.99 EUR for nothing.",
    "Too expensive for what you get.",
    "Nobody called me back as promised.",
]
INCIDENT = ["I was double charged for the same order.", "Double charged again, refund me!"]


def test_tracker_equals_the_brute_force_log_odds() -> None:
    rng = random.Random(1)
    background = [rng.choice(NORMAL) for _ in range(400)]
    window = [rng.choice(NORMAL) for _ in range(20)] + [rng.choice(INCIDENT) for _ in range(15)]
    topics = EmergingTopics(half_life_seconds=None, prior_size=300)
    items = [[1000.0 + i, f"b{i}", 3, t] for i, t in enumerate(background)]
    items += [[5000.0 + i, f"w{i}", 2, t] for i, t in enumerate(window)]
    topics.note(0, "agent=a1", items[:200])
    topics.note(1, "department=billing", items[200:])  # the background spans segments
    topics.note(0, "agent=a1", items[200:])  # seen again: the background counts it once
    fg = topics.foreground(0, "agent=a1", 5000.0, 6000.0)
    assert fg == Counter(p for t in window for p in phrases(t))
    reference = Counter(p for t in background for p in phrases(t))
    prior = fg + reference
    got = log_odds_z(fg, {p: prior[p] - fg[p] for p in prior}, prior, 300)
    want = brute_force(window, background, 300)
    assert got.keys() == want.keys()
    for phrase, (d, z) in want.items():
        assert got[phrase] == pytest.approx((d, z), rel=1e-9, abs=1e-12)
    top = topics.top(0, "agent=a1", 5000.0, 6000.0)
    assert top[0].phrase == "double charged" and top[0].count == 15
    assert top == select(want, fg, min_count=3, min_z=1.96, top=5)
    assert all(t.z >= 1.96 and t.count >= 3 for t in top)
    # "double" and "charged" alone are said by the bigram: not repeated
    assert {t.phrase for t in top}.isdisjoint({"double", "charged"})
    # the normal complaints of the window are not emerging
    assert "rude" not in {t.phrase for t in top}
    # outside the window: nothing
    assert topics.top(0, "agent=a1", 0.0, 4000.0) == []


def test_no_incident_no_emerging_topics() -> None:
    rng = random.Random(2)
    topics = EmergingTopics(half_life_seconds=None)
    items = [[float(i), f"e{i}", 3, rng.choice(NORMAL)] for i in range(3000)]
    topics.note(0, "overall", items)
    for start in range(0, 3000, 300):
        assert topics.top(0, "overall", float(start), start + 300.0) == [], start


def test_background_decays_with_event_time() -> None:
    topics = EmergingTopics(half_life_seconds=3600.0)
    topics.note(0, "s", [[0.0, "a", 1, "refund"], [7200.0, "b", 1, "refund"]])
    # weights relative to the first comment: 1 and 2**2
    assert topics.background["refund"] == pytest.approx(5.0)
    # as of t = 7200 the old comment weighs 1/4, the new one 1
    topics.note(0, "s", [[7200.0 + 30 * 3600.0, "c", 1, "refund"]])  # forces a rescale
    assert topics.background["refund"] == pytest.approx(1.0 + 5.0 * 2.0**-32)


def test_memory_is_bounded() -> None:
    topics = EmergingTopics(ring=50, max_vocabulary=1000, max_ids=2000, max_cached=500)
    tracemalloc.start()
    for i in range(20_000):
        text = f"problem {i % 3000} with order {i} and refund {i * 7 % 5000}"
        topics.note(i % 4, f"agent=a{i % 100}", [[float(i), f"id{i}", 1, text]])
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(topics.background) <= 1000 and len(topics._ids) <= 2000
    assert sum(len(r) for r in topics.recent.values()) <= 400 * 50
    print(f"\n400 segments x 50 comments: {size / 1e6:.1f} MB")
    assert size < 20e6
    topics.keep({0})
    assert {p for p, _ in topics.recent} == {0}
