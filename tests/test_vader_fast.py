"""FastVader.compound equals vaderSentiment's own compound score, text for text."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml
from vaderSentiment.vaderSentiment import BOOSTER_DICT, NEGATE, SPECIAL_CASES
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer as Vader

from pipeline.text.vader_fast import FastVader
from tests.bench.bench_text import simulator_comments

LABELLED = Path(__file__).parent / "data" / "comments_labelled.yaml"


def _labelled() -> list[str]:
    data = yaml.safe_load(LABELLED.read_text(encoding="utf-8"))
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("text", "comment") and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(data)
    return found


def _built(count: int, seed: int) -> list[str]:
    """Texts made to hit every rule: sentiment words, boosters, negations, "no", "least",
    "kind of", "but", idioms, ALL CAPS, punctuation, emoji, words glued to punctuation."""
    rng = random.Random(seed)
    plain = "the agent service it was a call my bill at very or nor so this never without doubt"
    vocab = [
        *plain.split(), *rng.sample(list(Vader().lexicon), 300), *BOOSTER_DICT, *NEGATE,
        "no", "least", "kind", "of", "but", "BUT", "GREAT", "TERRIBLE", "not", "isn't", "hadn't've",
        *(w for case in SPECIAL_CASES for w in case.split()), "😀", "💔", "!", "?", ":)",
        "great!", "(bad)", "ok...", "💯great",
    ]  # fmt: skip
    good = rng.sample(list(Vader().lexicon), 50)
    units = [
        *SPECIAL_CASES, *(f"{case} {w}" for case in SPECIAL_CASES for w in good[:3]),
        *(f"{lead} least {w}" for lead in ("at", "very", "the") for w in good),
        *(f"least {w}" for w in good), *(f"no {w}" for w in good),
        *(f"no or {w}" for w in good), *(f"never so {w}" for w in good),
        *(f"without doubt {w}" for w in good), *(f"kind of {w}" for w in good),
    ]  # fmt: skip
    texts = []
    for _ in range(count):
        words = [rng.choice(vocab) for _ in range(rng.randint(0, 14))]
        for unit in rng.sample(units, rng.randint(0, 2)):  # multi-word rules, kept whole
            words.insert(rng.randint(0, len(words)), unit)
        if rng.random() < 0.3:
            words = [w.upper() for w in words]
        text = " ".join(words) + rng.choice(["", "!", "!!!", "??", "???? ", " ...", "!!!!!!"])
        texts.append(text)
    return texts


@pytest.mark.parametrize("source", ["labelled", "simulator", "built"])
def test_compound_equals_vader(source: str) -> None:
    texts = {
        "labelled": _labelled,
        "simulator": lambda: simulator_comments(3000),
        "built": lambda: _built(5000, 11),
    }[source]()
    assert len(texts) > 100
    fast, vader = FastVader(), Vader()
    for text in texts:
        assert fast.compound(text) == vader.polarity_scores(text)["compound"], text


def test_an_extended_lexicon_is_used() -> None:
    fast, vader = FastVader(), Vader()
    for analyzer in (fast, vader):
        analyzer.lexicon["unresolved"] = -2.0
    text = "Still UNRESOLVED after a week, not great"
    assert fast.compound(text) == vader.polarity_scores(text)["compound"] < 0
