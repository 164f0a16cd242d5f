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
  rules carried over: negation (``non``, ``mai``, ``niente``... within three words
  before, in the same clause, flips and damps a valence by -0.74), intensifiers and
  dampeners (``molto``, ``davvero``, ``un po'``), contrast (``ma``, ``però``: what
  follows weighs 1.5, what precedes 0.5), exclamation marks, and VADER's normalisation
  ``s / sqrt(s² + 15)``.
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
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from pipeline.text.normalize import Forms, forms, words
from pipeline.text.vader_fast import FastVader

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
#: Negation and intensifiers do not reach across these (clause boundaries).
_CLAUSE = re.compile(r"[,.;:!?()\n]+")


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


def _word_set(raw: Any, path: Path, key: str) -> frozenset[str]:
    if not isinstance(raw, list) or not all(isinstance(w, str) for w in raw):
        raise ValueError(f"{path}: {key!r} must be a list of words")
    return frozenset(form for word in raw for f in forms(word, "it") for form in f)


class _PhraseIndex:
    """Italian words/phrases with a value, found leftmost-longest on word forms."""

    def __init__(self, entries: dict[str, float]) -> None:
        self._by_first: dict[str, list[tuple[tuple[Forms, ...], float]]] = {}
        for entry, value in entries.items():
            key = tuple(forms(entry, "it"))
            if not key:
                raise ValueError(f"lexicon entry {entry!r} has no letters or digits")
            for first in key[0]:
                self._by_first.setdefault(first, []).append((key, value))
        for candidates in self._by_first.values():
            candidates.sort(key=lambda candidate: -len(candidate[0]))

    def longest_at(
        self, text_forms: list[Forms], start: int, end: int | None = None
    ) -> tuple[int, float] | None:
        """(length, value) of the longest entry at ``start`` (ending by ``end``), or None."""
        limit = len(text_forms) if end is None else end
        best: tuple[int, float] | None = None
        for form in text_forms[start]:
            for key, value in self._by_first.get(form, ()):
                size = len(key)
                if best is not None and size <= best[0]:
                    break
                if start + size > limit:
                    continue
                # the first word matches (``form`` is one of its forms): check the others
                for k in range(1, size):
                    if key[k].isdisjoint(text_forms[start + k]):
                        break
                else:
                    best = (size, value)
                    break
        return best


class _Item(NamedTuple):
    """A lexicon match: words ``start`` to ``end`` (excluded) of the comment, its valence."""

    start: int
    end: int
    valence: float


class ItalianLexiconScorer:
    """Rule-based Italian sentiment over a shipped lexicon (see the module docstring)."""

    def __init__(self, path: Path = ITALIAN_LEXICON) -> None:
        data = _load_yaml(path)
        self._lexicon = _PhraseIndex(_valences(data.get("lexicon"), path, "lexicon"))
        self._boosters = _PhraseIndex(_valences(data.get("boosters", {}), path, "boosters"))
        self._negators = _word_set(data.get("negators", []), path, "negators")
        self._contrast = _word_set(data.get("contrast", []), path, "contrast")

    def _items(self, text_forms: list[Forms], offset: int, items: list[_Item]) -> None:
        """Lexicon matches of a clause, leftmost-longest, without overlap, appended to
        ``items`` (positions shifted by ``offset``, where the clause starts)."""
        lexicon = self._lexicon
        i, n = 0, len(text_forms)
        while i < n:
            found = lexicon.longest_at(text_forms, i)
            if found is None:
                i += 1
            else:
                length, value = found
                items.append(_Item(offset + i, offset + i + length, value))
                i += length

    def _booster_before(self, text_forms: list[Forms], start: int, first: int) -> float:
        for length in (2, 1):
            if start - length >= first:
                found = self._boosters.longest_at(text_forms, start - length, start)
                if found is not None and found[0] == length:
                    return found[1]
        return 0.0

    def total(self, text: str) -> float:
        """Summed valence of ``text`` before normalisation."""
        toks: list[Forms] = []
        items: list[_Item] = []
        clause_of: list[int] = []  # where each word's clause starts
        for clause in _CLAUSE.split(text):
            start = len(toks)
            clause_toks = forms(clause, "it")
            toks.extend(clause_toks)
            clause_of.extend([start] * len(clause_toks))
            self._items(clause_toks, start, items)
        if not items:
            return 0.0
        covered = {k for item in items for k in range(item.start, item.end)}
        # the last word with a contrast form ("ma", "però"), -1 for none
        apart = list(map(self._contrast.isdisjoint, toks))
        contrast = len(apart) - 1 - apart[::-1].index(False) if False in apart else -1
        total = 0.0
        for item in items:
            value = item.valence
            first = max(clause_of[item.start], item.start - _LOOKBACK)
            boost = self._booster_before(toks, item.start, first)
            value += boost if value > 0 else -boost  # a negative boost damps
            # an entry that itself starts with a negator ("nessuno risponde") is not flipped
            # again by one before it: Italian negative concord ("senza che nessuno risponda")
            if toks[item.start].isdisjoint(self._negators) and any(
                not toks[k].isdisjoint(self._negators) and k not in covered
                for k in range(first, item.start)
            ):
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


_RUN = re.compile(r"[^\W_]+")  # a word of normalize.words: letters and digits


def _first_bigrams(phrases: Iterable[str]) -> frozenset[tuple[str, str]] | None:
    r"""The first two words of each phrase, or None when a phrase is not words of letters
    and digits joined by single spaces.

    Why: a phrase found by the ``\b(?:phrase|...)\b`` pattern in the lower-cased text
    starts at a word boundary and its words are separated by single spaces, so its first
    two words are two consecutive runs of :func:`~pipeline.text.normalize.words` (runs of
    letters and digits of the lower-cased text): a comment without any of these pairs
    has none of the phrases, and the regex (~1.3 µs) need not run.
    """
    pairs: set[tuple[str, str]] = set()
    for phrase in phrases:
        parts = phrase.split(" ")
        if len(parts) < 2 or not all(_RUN.fullmatch(part) for part in parts):
            return None
        pairs.add((parts[0], parts[1]))
    return frozenset(pairs)


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
        self._vader = FastVader()  # VADER's compound, a third of the cost (see vader_fast)
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
        self._en_bigrams = _first_bigrams(self._en_phrases)
        self._italian = ItalianLexiconScorer(italian_lexicon)

    def _phrases_valence(self, text: str, text_words: list[str] | None) -> float:
        """Summed valence of the supplement's phrases in ``text`` (0 if none)."""
        if self._en_pattern is None:
            return 0
        if self._en_bigrams is not None:
            if text_words is None:
                text_words = words(text)
            if self._en_bigrams.isdisjoint(pairwise(text_words)):
                return 0  # no phrase can match (see _first_bigrams): the regex is skipped
        return sum(map(self._en_phrases.__getitem__, self._en_pattern.findall(text.lower())))

    def _english(self, text: str, text_words: list[str] | None = None) -> float:
        compound = self._vader.compound(text)
        extra = self._phrases_valence(text, text_words)
        if not extra:
            return compound
        # back to VADER's summed valence (inverse of its normalisation), add, normalise again
        compound = max(-0.9999, min(0.9999, compound))
        total = compound * math.sqrt(_ALPHA / (1 - compound * compound))
        return normalise_score(total + extra)

    def score(
        self, text: str, language: str | None, text_words: list[str] | None = None
    ) -> Sentiment:
        """Sentiment of ``text`` in ``language`` (``"it"``: lexicon; anything else: VADER);
        ``text_words``: :func:`~pipeline.text.normalize.words` of ``text`` if already known."""
        value = self._italian.score(text) if language == "it" else self._english(text, text_words)
        value = round(value, 4)
        return Sentiment(label_of(value, self.threshold), value)
