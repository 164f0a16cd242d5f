"""The faster comment analysis gives exactly what the code before it gave.

The analysis child's CPU per comment was cut (issue 11: every µs it spends is taken from
the workers on a 2-core machine) by rewriting the hot paths of :mod:`pipeline.text`:
one split of the comment shared by language detection, the English phrases and themes;
function words by set intersection; VADER's rules skipped for a sentiment word without
a rule word near it; C-level lookups for lexicon words and keyword starts; no Enum
lookups for the category. The results must not change at all, so this module keeps the
code as it was before (at 2e7cbc2, copied below, working on the same analyzer's
lexicons and taxonomy) and compares, for every simulator comment, the labelled
comments, the naughty strings and hypothesis-generated texts (unicode, ALL CAPS,
punctuation, emoji, negations, idioms, boosters, English and Italian mixed, blank):
language, the raw sentiment scores (float equality, before rounding), themes, and the
insight JSON bytes the scored event carries; and :func:`read_comment` against the old
one over the hostile corpus and generated records.
"""

from __future__ import annotations

import json
import math
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vaderSentiment.vaderSentiment import (
    BOOSTER_DICT,
    C_INCR,
    N_SCALAR,
    NEGATE,
    SPECIAL_CASES,
    allcap_differential,
    normalize,
    scalar_inc_dec,
)

from pipeline.bench.dataset import SENTENCES as BENCH_SENTENCES
from pipeline.simulator import FeedbackSimulator, SimulatorConfig
from pipeline.text import themes as themes_module
from pipeline.text import vader_fast
from pipeline.text.analyze import CommentAnalyzer
from pipeline.text.insight import MAX_COMMENT, Insight, category_of, insight_of, read_comment
from pipeline.text.language import _FUNCTION_WORDS, _TOKEN, LanguageDetector
from pipeline.text.normalize import _WORD, Forms, word_forms, words
from pipeline.text.sentiment import (
    _CLAUSE,
    _EXCLAMATION,
    _LOOKBACK,
    _NEGATION_SCALAR,
    NEUTRAL,
    ItalianLexiconScorer,
    Sentiment,
    SentimentScorer,
    _PhraseIndex,
    disagrees,
    label_of,
    normalise_score,
)
from pipeline.text.themes import ThemeMatcher
from pipeline.text.vader_fast import _IDIOM_WORDS, FastVader, _negation_check
from pipeline.text.vader_fast import _special_idioms_check as special_idioms_check
from schemas.scored import categorize
from tests.data.hostile.corpus import build as hostile_corpus
from tests.data.hostile.corpus import naughty_strings
from tests.test_text import LABELLED
from tests.test_vader_fast import _built as built_for_vader

# --- the code before (2e7cbc2), on the new objects' lexicons and taxonomy ----------------


def old_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def old_forms(text: str, language: str | None) -> list[Forms]:
    return [word_forms(word, language) for word in old_words(text)]


def old_phrase_matches(phrase: tuple[Forms, ...], text_forms: list[Forms], start: int) -> bool:
    if start + len(phrase) > len(text_forms):
        return False
    return all(not want.isdisjoint(text_forms[start + k]) for k, want in enumerate(phrase))


def old_by_function_words(detector: LanguageDetector, text: str) -> str | None:
    counts = dict.fromkeys(detector.languages, 0)
    for token in _TOKEN.findall(text.lower()):
        for code in detector.languages:
            if token in _FUNCTION_WORDS[code]:
                counts[code] += 1
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    (best, most), (_, second) = ranked[0], ranked[1]
    return best if most >= 1 and second == 0 else None


def old_detect(detector: LanguageDetector, text: str) -> str | None:
    if sum(char.isalpha() for char in text) < detector.min_letters:
        return None
    if detector._only is not None:
        return detector._only
    if detector._shortcut:
        found_by_words = old_by_function_words(detector, text)
        if found_by_words is not None:
            return found_by_words
    found = detector._detector.detect_language_of(text)
    return None if found is None else found.iso_code_639_1.name.lower()


def old_compound(vader: FastVader, text: str) -> float:
    text = vader._without_emoji(text)
    words = [
        stripped if len(stripped := token.strip(vader_fast._PUNCTUATION)) > 2 else token
        for token in text.split()
    ]
    lower = [word.lower() for word in words]
    lexicon = vader.lexicon
    if not any(word in lexicon for word in lower):
        return 0.0
    is_cap_diff = allcap_differential(words)
    idioms = not _IDIOM_WORDS.isdisjoint(lower)
    n = len(words)
    sentiments: list[float] = []
    for i, item in enumerate(words):
        low = lower[i]
        if low in BOOSTER_DICT or (low == "kind" and i < n - 1 and lower[i + 1] == "of"):
            sentiments.append(0)
            continue
        valence: float = 0
        if low in lexicon:
            valence = lexicon[low]
            if low == "no" and i != n - 1 and lower[i + 1] in lexicon:
                valence = 0.0
            if (
                (i > 0 and lower[i - 1] == "no")
                or (i > 1 and lower[i - 2] == "no")
                or (i > 2 and lower[i - 3] == "no" and lower[i - 1] in ("or", "nor"))
            ):
                valence = lexicon[low] * N_SCALAR
            if is_cap_diff and item.isupper():
                valence = valence + C_INCR if valence > 0 else valence - C_INCR
            for start_i in range(3):
                before = i - (start_i + 1)
                if i > start_i and lower[before] not in lexicon:
                    if lower[before] in BOOSTER_DICT:
                        s = scalar_inc_dec(words[before], valence, is_cap_diff)
                        if start_i == 1 and s != 0:
                            s = s * 0.95
                        if start_i == 2 and s != 0:
                            s = s * 0.9
                        valence = valence + s
                    valence = _negation_check(valence, lower, start_i, i)
                    if (
                        start_i == 2
                        and idioms
                        and not _IDIOM_WORDS.isdisjoint(lower[i - 3 : i + 3])
                    ):
                        valence = special_idioms_check(valence, lower, i)
            if i > 1 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
                if lower[i - 2] != "at" and lower[i - 2] != "very":
                    valence = valence * N_SCALAR
            elif i > 0 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
                valence = valence * N_SCALAR
        sentiments.append(valence)
    if "but" in lower:
        sentiments = vader._but_check(words, sentiments)
    total = float(sum(sentiments))
    if total:
        emphasis = vader._punctuation_emphasis(text)
        total = total + emphasis if total > 0 else total - emphasis
    return round(normalize(total), 4)


def old_english(scorer: SentimentScorer, text: str) -> float:
    compound = old_compound(scorer._vader, text)
    if scorer._en_pattern is None:
        return compound
    extra = sum(scorer._en_phrases[m.group()] for m in scorer._en_pattern.finditer(text.lower()))
    if not extra:
        return compound
    compound = max(-0.9999, min(0.9999, compound))
    total = compound * math.sqrt(15.0 / (1 - compound * compound))
    return normalise_score(total + extra)


def old_longest_at(
    index: _PhraseIndex, text_forms: list[Forms], start: int
) -> tuple[int, float] | None:
    best: tuple[int, float] | None = None
    for form in text_forms[start]:
        for key, value in index._by_first.get(form, ()):
            if best is not None and len(key) <= best[0]:
                break
            if old_phrase_matches(key, text_forms, start):
                best = (len(key), value)
                break
    return best


def old_italian_total(scorer: ItalianLexiconScorer, text: str) -> float:
    def items_of(text_forms: list[Forms]) -> list[tuple[int, int, float]]:
        found_items: list[tuple[int, int, float]] = []
        i, n = 0, len(text_forms)
        while i < n:
            found = old_longest_at(scorer._lexicon, text_forms, i)
            if found is None:
                i += 1
            else:
                length, value = found
                found_items.append((i, i + length, value))
                i += length
        return found_items

    def booster_before(text_forms: list[Forms], start: int, first: int) -> float:
        for length in (2, 1):
            if start - length >= first:
                found = old_longest_at(scorer._boosters, text_forms[:start], start - length)
                if found is not None and found[0] == length:
                    return found[1]
        return 0.0

    toks: list[Forms] = []
    items: list[tuple[int, int, float]] = []
    clause_of: list[int] = []
    for clause in _CLAUSE.split(text):
        start = len(toks)
        clause_toks = old_forms(clause, "it")
        toks.extend(clause_toks)
        clause_of.extend([start] * len(clause_toks))
        items.extend((a + start, b + start, v) for a, b, v in items_of(clause_toks))
    if not items:
        return 0.0
    covered = {k for a, b, _ in items for k in range(a, b)}
    contrast = max(
        (k for k, t in enumerate(toks) if not t.isdisjoint(scorer._contrast)), default=-1
    )
    total = 0.0
    for item_start, _, valence in items:
        value = valence
        first = max(clause_of[item_start], item_start - _LOOKBACK)
        boost = booster_before(toks, item_start, first)
        value += boost if value > 0 else -boost
        if toks[item_start].isdisjoint(scorer._negators) and any(
            not toks[k].isdisjoint(scorer._negators) and k not in covered
            for k in range(first, item_start)
        ):
            value *= _NEGATION_SCALAR
        if contrast >= 0:
            value *= 1.5 if item_start > contrast else 0.5
        total += value
    bangs = min(text.count("!"), 4)
    if bangs and total:
        total += math.copysign(bangs * _EXCLAMATION, total)
    return total


def old_score(scorer: SentimentScorer, text: str, language: str | None) -> Sentiment:
    if language == "it":
        value = normalise_score(old_italian_total(scorer._italian, text))
    else:
        value = old_english(scorer, text)
    value = round(value, 4)
    return Sentiment(label_of(value, scorer.threshold), value)


def old_theme_info(matcher: ThemeMatcher, word: str, language: str) -> tuple[Any, ...]:
    word_forms_ = word_forms(word, language)
    single, multi = matcher._single[language], matcher._multi[language]
    positions = [single[f] for f in word_forms_ if f in single]
    phrases = {entry for f in word_forms_ for entry in multi.get(f, ())}
    ordered = tuple(sorted(phrases, key=lambda entry: (-len(entry[0]), entry[1])))
    return (word_forms_, min(positions, default=-1), ordered)


def old_themes(matcher: ThemeMatcher, text: str, language: str | None) -> list[str]:
    """The code at 2e7cbc2, each sentence on its own (since then, no phrase reaches across
    the end of a sentence: ``.!?;`` before white space, or a line break)."""
    sentences = re.split(r"[.!?;]+\s+|\s*\n\s*", text.strip())

    def match_one(language: str, found: set[int]) -> None:
        for sentence in sentences:
            match_sentence(sentence, language, found)

    def match_sentence(text: str, language: str, found: set[int]) -> None:
        infos = [old_theme_info(matcher, word, language) for word in old_words(text)]
        text_forms = [info[0] for info in infos]
        i, n = 0, len(infos)
        while i < n:
            _, single, phrases = infos[i]
            if phrases:
                for key, position in phrases:
                    if old_phrase_matches(key, text_forms, i):
                        found.add(position)
                        i += len(key)
                        break
                else:
                    if single >= 0:
                        found.add(single)
                    i += 1
                continue
            if single >= 0:
                found.add(single)
            i += 1

    found: set[int] = set()
    if language in matcher._words:
        match_one(language, found)
    else:
        for known in matcher._words:
            match_one(known, found)
    return [matcher.themes[position] for position in sorted(found)]


def old_language_of(analyzer: CommentAnalyzer, comment: str, hint: str | None) -> str | None:
    if hint is not None and hint.lower() in analyzer.detector.languages:
        return hint.lower()
    return old_detect(analyzer.detector, comment)


def old_insight(
    analyzer: CommentAnalyzer, sentiment: bool, comment: str, category: str, hint: object
) -> Insight:
    language_hint = hint if isinstance(hint, str) else None
    language = old_language_of(analyzer, comment, language_hint)
    themes = old_themes(analyzer.themes, comment, language)
    if sentiment:
        if not comment or not comment.strip():
            language, found, themes = None, Sentiment(NEUTRAL, 0.0), []
        else:
            found = old_score(analyzer.sentiment, comment, language)
        document = {
            "language": language,
            "sentiment": found.label,
            "sentiment_score": found.score,
            "themes": themes,
            "disagrees": disagrees(category, found, analyzer.disagreement_clear),
        }
    else:
        document = {
            "language": language,
            "sentiment": None,
            "sentiment_score": None,
            "themes": themes,
            "disagrees": None,
        }
    return Insight(orjson.dumps(document), themes)


def old_read_comment(value: object, max_event_bytes: int) -> tuple[str, str, object] | None:
    if not isinstance(value, bytes) or len(value) > max_event_bytes or b'"comment"' not in value:
        return None
    try:
        document = orjson.loads(value)
        comment = document["comment"].strip()
        if not comment or len(comment) > MAX_COMMENT:
            return None
        category = categorize(document["survey_type"], document["score"]).value
        attributes = document.get("attributes")
        hint = attributes.get("language") if isinstance(attributes, dict) else None
    except Exception:
        return None
    return comment, category, hint


# --- the comparisons -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def analyzer() -> CommentAnalyzer:
    return CommentAnalyzer()


_ANALYZER = CommentAnalyzer()  # for the hypothesis tests (no function-scoped fixtures)
_HINTS = (None, "en", "it", "EN", "fr", 7)
_CATEGORIES = ("promoter", "passive", "detractor", "satisfied", "neutral", "unsatisfied")


def assert_same(analyzer: CommentAnalyzer, text: str, category: str = "promoter") -> None:
    """Every part and the insight of ``text``, new against old, with and without hints."""
    detector, scorer = analyzer.detector, analyzer.sentiment
    assert words(text) == old_words(text), text
    assert detector.detect(text) == old_detect(detector, text), text
    new_en, old_en = scorer._english(text), old_english(scorer, text)
    assert new_en == old_en and math.copysign(1, new_en) == math.copysign(1, old_en), text
    new_it, old_it = scorer._italian.total(text), old_italian_total(scorer._italian, text)
    assert new_it == old_it and math.copysign(1, new_it) == math.copysign(1, old_it), text
    for language in (None, "en", "it"):
        assert analyzer.themes.match(text, language) == old_themes(
            analyzer.themes, text, language
        ), (text, language)
    if not text.strip():
        return  # read_comment gives no blank comment to analyse
    for hint in _HINTS:
        for sentiment in (True, False):
            new = insight_of(analyzer, sentiment, text, category, hint)
            old = old_insight(analyzer, sentiment, text, category, hint)
            assert new == old, (text, hint, sentiment)


def simulator_comments(count: int) -> list[str]:
    sim = FeedbackSimulator(SimulatorConfig(seed=11, comment_probability=1.0))
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    return [sim.next_event(start + timedelta(seconds=i))["comment"] for i in range(count)]


def test_simulator_bench_labelled_and_naughty_comments_give_identical_results(
    analyzer: CommentAnalyzer,
) -> None:
    labelled = [c["text"] for c in yaml.safe_load(LABELLED.read_text("utf-8"))["comments"]]
    texts = [
        *simulator_comments(2000),
        *BENCH_SENTENCES,
        *labelled,
        *naughty_strings(),
        *built_for_vader(2000, 17),
        *pool_texts(2500, 19),
    ]
    rng = random.Random(5)
    for i, text in enumerate(texts):
        assert_same(analyzer, text, _CATEGORIES[i % len(_CATEGORIES)])
        assert_same(analyzer, text.upper(), rng.choice(_CATEGORIES))


_LEXICON = sorted(_ANALYZER.sentiment._vader.lexicon)
#: words that exercise the rules, in pools, so that rule words often come near sentiment
#: words: VADER's boosters, negations, idioms, "least", "kind of", "but", "never so"...
_RULE_POOL = sorted(
    {
        *random.Random(3).sample(sorted(BOOSTER_DICT), 25),
        *random.Random(3).sample(sorted(NEGATE), 15),
        *(w for key in SPECIAL_CASES for w in key.split()),
        *("no", "least", "kind", "of", "but", "so", "this", "never", "without", "doubt"),
        *("at", "very", "or", "nor", "isn't", "don't", "wasn't", "N'T", "can't", "sort"),
        *("just", "enough", "non", "mai", "niente", "molto", "davvero", "un", "po'", "ma"),
        *("però", "nessuno", "senza", "poco", "troppo"),
    }
)
#: sentiment words of both lexicons and the supplement (its phrases' words too)
_SENTIMENT_POOL = sorted(
    {
        *random.Random(4).sample(_LEXICON, 60),
        *(w for phrase in _ANALYZER.sentiment._en_phrases for w in phrase.split()),
        *("unresolved", "overcharged", "quick", "polite", "rip-off", "great", "terrible"),
        *("pessimo", "ottimo", "gentile", "lento", "scortese", "perfetto", "inutile"),
    }
)
#: function words of both languages, theme keywords, and odd tokens
_OTHER_POOL = sorted(
    {
        *(w for words in _FUNCTION_WORDS.values() for w in words),
        *(
            w
            for per_language in _ANALYZER.themes.keywords.values()
            for keywords in per_language.values()
            for keyword in keywords
            for w in keyword.split()
        ),
        *("fattura", "perché", "più", "qualità", "l'operatore", "10/10", "42", "2x", "x2"),
        *("café", "naïve", "İstanbul", "ΣΟΦΟΣ", "straße", "ǅ", "agent-023", "_under_"),
    }
)
_POOLS = (_RULE_POOL, _SENTIMENT_POOL, _OTHER_POOL)
_DECOR: tuple[str, ...] = (
    "",
    "",
    "",
    "",
    "",
    "!",
    "?",
    ".",
    ",",
    "...",
    "!!!",
    "??",
    ":)",
    "😀",
    "💔",
    "(",
    "'",
)


def pool_texts(count: int, seed: int) -> list[str]:
    """``count`` texts like :func:`comments` makes, from a seeded generator (uniform
    choices: hypothesis favours short texts and the first words of a pool)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 16)):
            word = rng.choice(_POOLS[rng.randrange(3)])
            case = rng.randrange(6)
            word = word.upper() if case == 0 else word.capitalize() if case == 1 else word
            parts.append(rng.choice(_DECOR) + word + rng.choice(_DECOR))
        texts.append(rng.choice([" ", " ", " ", ", ", "\n"]).join(parts))
    return texts


@st.composite
def comments(draw: st.DrawFn) -> str:
    """Texts of rule, sentiment and other words, case-mangled, sometimes glued to
    punctuation and emoji, with random unicode mixed in."""
    parts = []
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(st.integers(0, 12))
        if kind == 0:
            parts.append(draw(st.text(max_size=6)))
            continue
        word = draw(st.sampled_from(_POOLS[kind % 3]))
        case = draw(st.integers(0, 5))
        word = word.upper() if case == 0 else word.capitalize() if case == 1 else word
        parts.append(draw(st.sampled_from(_DECOR)) + word + draw(st.sampled_from(_DECOR)))
    separator = draw(st.sampled_from([" ", " ", " ", "  ", ", ", "\n", "\t", " - "]))
    return separator.join(parts)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=comments(), category=st.sampled_from(_CATEGORIES))
def test_generated_comments_give_identical_results(text: str, category: str) -> None:
    assert_same(_ANALYZER, text, category)


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=80))
def test_arbitrary_unicode_gives_identical_results(text: str) -> None:
    assert_same(_ANALYZER, text)


def test_identical_when_the_word_caches_start_over_mid_comment(monkeypatch) -> None:
    """The theme and token caches are cleared when full, possibly inside a comment."""
    monkeypatch.setattr(themes_module, "WORD_CACHE", 3)
    monkeypatch.setattr(vader_fast, "TOKEN_CACHE", 3)
    analyzer = CommentAnalyzer()
    for text in simulator_comments(300):
        assert_same(analyzer, text)


_SCORES = st.one_of(
    st.integers(-2, 12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
)
_SURVEYS = st.one_of(
    st.sampled_from(["nps", "csat", "ces", "NPS", "Nps", " nps", "other", ""]),
    st.none(),
    st.integers(),
    st.lists(st.text(max_size=2), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
_COMMENTS = st.one_of(
    comments(),
    st.sampled_from(["", "   ", "\u00a0", "x" * (MAX_COMMENT + 1), " ok "]),
    st.none(),
    st.integers(),
    st.lists(st.text(max_size=3), max_size=2),
)
_ATTRIBUTES = st.one_of(
    st.none(),
    st.just([]),
    st.dictionaries(
        st.sampled_from(["language", "tier"]),
        st.one_of(st.sampled_from(["en", "it", "EN", "fr"]), st.none(), st.integers()),
        max_size=2,
    ),
)


@settings(max_examples=1500, deadline=None)
@given(
    survey=_SURVEYS,
    score=_SCORES,
    comment=_COMMENTS,
    attributes=_ATTRIBUTES,
    drop=st.sets(st.sampled_from(["survey_type", "score", "attributes"])),
)
def test_read_comment_gives_what_it_gave(
    survey: object, score: object, comment: object, attributes: object, drop: set[str]
) -> None:
    document = {"survey_type": survey, "score": score, "comment": comment}
    if attributes is not None:
        document["attributes"] = attributes
    for key in drop:
        document.pop(key, None)
    value = json.dumps(document).encode()  # big integers and NaN too (orjson rejects them)
    for limit in (256 * 1024, 10):
        assert read_comment(value, limit) == old_read_comment(value, limit)


def test_read_comment_on_the_hostile_corpus_gives_what_it_gave(analyzer: CommentAnalyzer) -> None:
    for item in hostile_corpus():
        value = item.value
        assert read_comment(value, 256 * 1024) == old_read_comment(value, 256 * 1024), item.name
        read = read_comment(value, 256 * 1024)
        if read is not None:
            assert insight_of(analyzer, True, *read) == old_insight(analyzer, True, *read)


def test_category_of_answers_like_categorize() -> None:
    """Every survey type and score JSON can bring: the same category, or both raise."""
    surveys: list[Any] = ["nps", "csat", "ces", "NPS", "other", "", None, 1, ["nps"], {"a": 1}]
    scores: list[Any] = [*range(-2, 13), 6.5, 8.99, 9.0, 3.0, 4.5, -0.0, math.nan, math.inf]
    scores += [True, False, None, "9", [9], {"a": 9}]
    for survey in surveys:
        for score in scores:
            try:
                expected: str | None = categorize(survey, score).value
            except (ValueError, TypeError):
                expected = None
            try:
                got: str | None = category_of(survey, score)
            except (KeyError, TypeError):
                got = None
            assert got == expected, (survey, score)
