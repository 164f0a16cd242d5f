"""Sentiment of a comment: positive / neutral / negative with a score in -1..1.

* **English**: `VADER <https://pypi.org/project/vaderSentiment/>`_ (offline lexicon and
  rules, Hutto & Gilbert 2014), its ``compound`` score as the score. Its general-purpose
  lexicon misses customer-service complaints without an emotional word ("charged twice",
  "still unresolved", "on hold for an hour"), so a small supplement written for this
  project (``data/sentiment_en_cx.yaml``) is added to it; phrases there are matched on
  the lower-cased text and added to VADER's score before normalisation.
* **Italian**: no maintained offline Italian sentiment package works without run-time
  downloads, so :class:`ItalianLexiconScorer` scores with ``data/sentiment_it.yaml``, a
  lexicon of customer-experience words and phrases written for this project, with VADER's
  rules carried over: negation (``non``, ``mai``, ``niente``... within three words before
  flips and damps a valence by -0.74), intensifiers and dampeners (``molto``,
  ``davvero``, ``un po'``), contrast (``ma``, ``però``: what follows weighs 1.5, what
  precedes 0.5), exclamation marks, and VADER's normalisation ``s / sqrt(s² + 15)``.
* Any other language (or ``None``): VADER, the best general fallback here.

A score of at least ``threshold`` (default 0.05, VADER's own) is positive, at most
``-threshold`` negative, neutral in between.

:func:`disagrees` flags a score category contradicted by its comment: a promoter (or a
satisfied CSAT/CES answer) with a clearly negative comment, a detractor (or unsatisfied)
with a clearly positive one -- a known sign of a mis-scored answer (reversed scale).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from pipeline.text.normalize import tokens

DATA_DIR = Path(__file__).parent / "data"
ITALIAN_LEXICON = DATA_DIR / "sentiment_it.yaml"
ENGLISH_SUPPLEMENT = DATA_DIR / "sentiment_en_cx.yaml"

POSITIVE, NEUTRAL, NEGATIVE = "positive", "neutral", "negative"
DEFAULT_THRESHOLD = 0.05
#: How negative / positive a comment must be to contradict its score (see disagrees).
DEFAULT_CLEAR = 0.5

_NEGATION_SCALAR = -0.74  # VADER's N_SCALAR
_ALPHA = 15.0  # VADER's normalisation constant
_EXCLAMATION = 0.292  # VADER's boost per "!" (at most four)
_LOOKBACK = 3


class Sentiment(NamedTuple):
    """Label (positive / neutral / negative) and score in -1..1."""

    label: str
    score: float


def normalise_score(total: float) -> float:
    """VADER's squashing of a summed valence into -1..1."""
    return max(-1.0, min(1.0, total / math.sqrt(total * total + _ALPHA)))


def label_of(score: float, threshold: float = DEFAULT_THRESHOLD) -> str:
    """``positive`` from ``threshold`` up, ``negative`` from ``-threshold`` down, else neutral."""
    if score >= threshold:
        return POSITIVE
    return NEGATIVE if score <= -threshold else NEUTRAL


_POSITIVE_CATEGORIES = frozenset({"promoter", "satisfied"})
_NEGATIVE_CATEGORIES = frozenset({"detractor", "unsatisfied"})


def disagrees(category: str, sentiment: Sentiment, clear: float = DEFAULT_CLEAR) -> bool:
    """True for a promoter/satisfied answer with a comment scoring ``<= -clear``, or a
    detractor/unsatisfied one scoring ``>= clear``; passives and neutrals never disagree."""
    category = str(category)
    if category in _POSITIVE_CATEGORIES:
        return sentiment.score <= -clear
    if category in _NEGATIVE_CATEGORIES:
        return sentiment.score >= clear
    return False


def _load_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def _valences(raw: Any, path: Path, key: str) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: {key!r} must map words or phrases to numbers")
    out: dict[str, float] = {}
    for word, value in raw.items():
        if not isinstance(word, str) or isinstance(value, bool):
            raise ValueError(f"{path}: {key}.{word!r} must be a word with a number")
        if not isinstance(value, int | float) or not -4 <= value <= 4:
            raise ValueError(f"{path}: {key}.{word!r} must be a number in -4..4")
        out[word] = float(value)
    return out


@dataclass(frozen=True)
class _Item:
    start: int
    end: int
    valence: float


class ItalianLexiconScorer:
    """Rule-based Italian sentiment over a shipped lexicon (see the module docstring)."""

    def __init__(self, path: Path = ITALIAN_LEXICON) -> None:
        data = _load_yaml(path)
        self._lexicon: dict[tuple[str, ...], float] = {}
        for entry, value in _valences(data.get("lexicon"), path, "lexicon").items():
            key = tuple(tokens(entry, "it"))
            if key:
                self._lexicon[key] = value
        self._max_len = max((len(key) for key in self._lexicon), default=1)
        self._negators = {lemma for w in data.get("negators", []) for lemma in tokens(w, "it")}
        self._boosters: dict[tuple[str, ...], float] = {}
        for entry, value in _valences(data.get("boosters", {}), path, "boosters").items():
            key = tuple(tokens(entry, "it"))
            if key:
                self._boosters[key] = value
        self._contrast = {lemma for w in data.get("contrast", []) for lemma in tokens(w, "it")}

    def _items(self, toks: list[str]) -> list[_Item]:
        """Lexicon matches, longest first at each position, without overlap."""
        items: list[_Item] = []
        i, n = 0, len(toks)
        while i < n:
            for length in range(min(self._max_len, n - i), 0, -1):
                value = self._lexicon.get(tuple(toks[i : i + length]))
                if value is not None:
                    items.append(_Item(i, i + length, value))
                    i += length
                    break
            else:
                i += 1
        return items

    def _booster_before(self, toks: list[str], start: int) -> float:
        for length in (2, 1):
            if start - length >= 0:
                boost = self._boosters.get(tuple(toks[start - length : start]))
                if boost is not None:
                    return boost
        return 0.0

    def total(self, text: str) -> float:
        """Summed valence of ``text`` before normalisation."""
        toks = tokens(text, "it")
        items = self._items(toks)
        if not items:
            return 0.0
        covered = {k for item in items for k in range(item.start, item.end)}
        contrast = max((k for k, t in enumerate(toks) if t in self._contrast), default=-1)
        total = 0.0
        for item in items:
            value = item.valence
            boost = self._booster_before(toks, item.start)
            if boost:
                value += math.copysign(boost, value)
            window = range(max(0, item.start - _LOOKBACK), item.start)
            if any(toks[k] in self._negators and k not in covered for k in window):
                value *= _NEGATION_SCALAR
            if contrast >= 0:
                value *= 1.5 if item.start > contrast else 0.5
            total += value
        bangs = min(text.count("!"), 4)
        if bangs and total:
            total += math.copysign(bangs * _EXCLAMATION, total)
        return total

    def score(self, text: str) -> float:
        """Normalised score in -1..1."""
        return normalise_score(self.total(text))


_EN_SPLIT = re.compile(r"[^\w']+")


class SentimentScorer:
    """Per-language sentiment: VADER (+ CX supplement) for English, the lexicon for Italian."""

    def __init__(
        self,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        italian_lexicon: Path = ITALIAN_LEXICON,
        english_supplement: Path | None = ENGLISH_SUPPLEMENT,
    ) -> None:
        self.threshold = threshold
        self._vader = SentimentIntensityAnalyzer()
        self._en_phrases: dict[str, float] = {}
        if english_supplement is not None:
            data = _load_yaml(english_supplement)
            valences = _valences(data.get("lexicon"), english_supplement, "lexicon")
            for raw_entry, value in valences.items():
                entry = raw_entry.lower().strip()
                if " " in entry:
                    self._en_phrases[entry] = value
                else:
                    self._vader.lexicon[entry] = value  # VADER then applies its rules to it
        self._en_pattern = (
            re.compile(
                r"\b(?:"
                + "|".join(re.escape(p) for p in sorted(self._en_phrases, key=len, reverse=True))
                + r")\b"
            )
            if self._en_phrases
            else None
        )
        self._italian = ItalianLexiconScorer(italian_lexicon)

    def _english(self, text: str) -> float:
        compound = self._vader.polarity_scores(text)["compound"]
        if self._en_pattern is None:
            return compound
        extra = sum(self._en_phrases[m.group()] for m in self._en_pattern.finditer(text.lower()))
        if not extra:
            return compound
        # back to VADER's summed valence (inverse of its normalisation), add, normalise again
        compound = max(-0.9999, min(0.9999, compound))
        total = compound * math.sqrt(_ALPHA / (1 - compound * compound))
        return normalise_score(total + extra)

    def score(self, text: str, language: str | None) -> Sentiment:
        """Sentiment of ``text`` in ``language`` (``"it"``: lexicon; anything else: VADER)."""
        value = self._italian.score(text) if language == "it" else self._english(text)
        value = round(value, 4)
        return Sentiment(label_of(value, self.threshold), value)
