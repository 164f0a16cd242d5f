"""Comment analytics: accuracy on a labelled English/Italian set, and the rules one by one."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from pipeline import simulator
from pipeline.text import (
    CommentAnalyzer,
    LanguageDetector,
    Sentiment,
    SentimentScorer,
    ThemeMatcher,
    disagrees,
)
from pipeline.text.normalize import strip_accents, tokens
from pipeline.text.sentiment import ITALIAN_LEXICON
from pipeline.text.taxonomy import Taxonomy, TaxonomyError

LABELLED = Path(__file__).parent / "data" / "comments_labelled.yaml"
THEMES = (
    "wait_time", "staff_attitude", "resolution", "billing", "product_quality", "delivery",
    "price", "ease_of_use", "communication",
)  # fmt: skip


@pytest.fixture(scope="module")
def analyzer() -> CommentAnalyzer:
    return CommentAnalyzer()


@pytest.fixture(scope="module")
def labelled() -> list[dict]:
    return yaml.safe_load(LABELLED.read_text(encoding="utf-8"))["comments"]


# --- the labelled set itself -------------------------------------------------------------


def test_labelled_set_is_large_and_balanced(labelled: list[dict]) -> None:
    assert len(labelled) >= 200
    by_language = Counter(c["language"] for c in labelled)
    assert set(by_language) == {"en", "it"}
    assert min(by_language.values()) >= 100
    for language in ("en", "it"):
        sentiments = Counter(c["sentiment"] for c in labelled if c["language"] == language)
        assert set(sentiments) == {"positive", "neutral", "negative"}
        assert min(sentiments.values()) >= 20, sentiments
        themes = Counter(t for c in labelled if c["language"] == language for t in c["themes"])
        assert set(themes) == set(THEMES), themes
        assert min(themes.values()) >= 10, themes


def _simulator_templates() -> list[str]:
    texts = [t for per_lang in simulator._NEGATIVE.values() for ts in per_lang.values() for t in ts]
    texts += [t for ts in simulator._POSITIVE.values() for t in ts]
    texts += [t for ts in simulator._NEUTRAL.values() for t in ts]
    return texts


def _shingles(text: str, n: int = 4) -> set[tuple[str, ...]]:
    words = re.findall(r"[^\W_]+", re.sub(r"\{\w+\}", " ", text.lower()))
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_labelled_set_does_not_reuse_the_simulator_templates(labelled: list[dict]) -> None:
    template_shingles = set().union(*(_shingles(t) for t in _simulator_templates()))
    assert len(template_shingles) > 100
    reused = [c["text"] for c in labelled if _shingles(c["text"]) & template_shingles]
    assert reused == []


# --- accuracy on the labelled set ---------------------------------------------------------


def test_accuracy_on_labelled_comments(analyzer: CommentAnalyzer, labelled: list[dict]) -> None:
    stats: dict[str, Counter[str]] = {}
    for comment in labelled:
        result = analyzer.analyze(comment["text"])
        s = stats.setdefault(comment["language"], Counter())
        predicted, gold = set(result.themes), set(comment["themes"])
        s["n"] += 1
        s["language"] += result.language == comment["language"]
        s["sentiment"] += result.sentiment.label == comment["sentiment"]
        s["tp"] += len(predicted & gold)
        s["fp"] += len(predicted - gold)
        s["fn"] += len(gold - predicted)
    stats["all"] = sum(stats.values(), Counter())
    print()
    for language, s in stats.items():
        lang_acc = s["language"] / s["n"]
        sentiment_acc = s["sentiment"] / s["n"]
        precision = s["tp"] / (s["tp"] + s["fp"])
        recall = s["tp"] / (s["tp"] + s["fn"])
        print(
            f"{language:>3}: {s['n']} comments  language {lang_acc:.1%}  "
            f"sentiment {sentiment_acc:.1%}  themes precision {precision:.1%} "
            f"recall {recall:.1%}"
        )
        assert lang_acc >= 0.95, language
        assert sentiment_acc >= 0.75, language
        assert precision >= 0.85, language
        assert recall >= 0.80, language


# --- language -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "ok", "10/10", "👍👍", "!!!"])
def test_too_short_text_has_no_language(text: str) -> None:
    assert LanguageDetector().detect(text) is None


def test_language_set_is_configurable() -> None:
    detector = LanguageDetector(["en", "it", "de"])
    assert detector.detect("Der Kundendienst war sehr freundlich und schnell") == "de"
    assert detector.detect("The support team was quick and friendly") == "en"
    assert LanguageDetector().detect("Il servizio clienti è stato rapido") == "it"
    assert LanguageDetector(["it"]).detect("anything at all") == "it"
    with pytest.raises(ValueError, match="xx"):
        LanguageDetector(["en", "xx"])


@pytest.mark.parametrize("low_accuracy", [True, False])
def test_both_accuracy_modes_on_labelled_comments(labelled: list[dict], low_accuracy: bool) -> None:
    detector = LanguageDetector(low_accuracy=low_accuracy)
    right = sum(detector.detect(c["text"]) == c["language"] for c in labelled)
    print(f"\nlingua low_accuracy={low_accuracy}: {right}/{len(labelled)} languages right")
    assert right / len(labelled) >= 0.95


# --- sentiment rules ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def scorer() -> SentimentScorer:
    return SentimentScorer()


def _it(scorer: SentimentScorer, text: str) -> Sentiment:
    return scorer.score(text, "it")


def test_italian_negation_flips(scorer: SentimentScorer) -> None:
    assert _it(scorer, "Il servizio è buono").label == "positive"
    assert _it(scorer, "Il servizio non è buono").label == "negative"
    assert _it(scorer, "Non è affatto male").label == "positive"
    assert _it(scorer, "Non mi hanno mai aiutato").label == "negative"


def test_italian_negation_stops_at_clause_boundaries(scorer: SentimentScorer) -> None:
    # "niente ... ottimo" in one clause flips "ottimo"; the comma ends the clause
    assert _it(scorer, "Niente attese, ottimo").label == "positive"
    assert _it(scorer, "Niente attese ottimo").label == "negative"


def test_italian_negative_concord_is_not_a_double_negation(scorer: SentimentScorer) -> None:
    assert _it(scorer, "Aspetto da ore senza che nessuno risponde").label == "negative"


def test_italian_intensifiers_and_dampeners(scorer: SentimentScorer) -> None:
    plain = _it(scorer, "operatore gentile").score
    assert _it(scorer, "operatore molto gentile").score > plain > 0
    assert 0 < _it(scorer, "operatore un po' gentile").score < plain
    assert _it(scorer, "servizio davvero pessimo").score < _it(scorer, "servizio pessimo").score
    assert _it(scorer, "Pessimo!!!").score < _it(scorer, "Pessimo").score < 0


def test_italian_contrast_weighs_what_follows(scorer: SentimentScorer) -> None:
    assert _it(scorer, "Il prodotto è buono ma l'assistenza è pessima").label == "negative"
    assert _it(scorer, "L'attesa è stata lunga però l'operatore è stato bravissimo").label == (
        "positive"
    )


def test_italian_lexicon_matches_inflections_and_accents(scorer: SentimentScorer) -> None:
    assert _it(scorer, "fattura sbagliata").label == "negative"
    assert _it(scorer, "fatture sbagliate").label == "negative"
    assert _it(scorer, "operatori scortesi").label == "negative"
    assert _it(scorer, "disponibilita totale").score == _it(scorer, "disponibilità totale").score


def test_english_uses_vader_with_the_cx_supplement(scorer: SentimentScorer) -> None:
    assert scorer.score("The agent was not helpful at all", "en").label == "negative"
    assert scorer.score("Very helpful agent", "en").label == "positive"
    # not in VADER's lexicon: supplement words and phrases
    assert scorer.score("I was overcharged", "en").label == "negative"
    assert scorer.score("I was charged twice", "en").label == "negative"
    plain = SentimentScorer(english_supplement=None)
    assert (
        plain.score("I was charged twice", "en").score
        > scorer.score("I was charged twice", "en").score
    )
    assert scorer.score("The shop is next to the station", "en") == Sentiment("neutral", 0.0)


def test_italian_lexicon_is_shipped_and_substantial() -> None:
    data = yaml.safe_load(ITALIAN_LEXICON.read_text(encoding="utf-8"))
    assert len(data["lexicon"]) >= 300
    assert all(-4 <= v <= 4 for v in data["lexicon"].values())
    assert "written by hand for this project" in ITALIAN_LEXICON.read_text(encoding="utf-8")


def test_bad_lexicon_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lexicon.yaml"
    path.write_text("lexicon: {ottimo: 9}\n", encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"lexicon.yaml: lexicon.'ottimo' must be a number in -4..4"
    ):
        SentimentScorer(italian_lexicon=path)


# --- disagreement -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "score", "expected"),
    [
        ("promoter", -0.8, True),
        ("promoter", -0.3, False),  # mildly negative is not clearly negative
        ("promoter", 0.9, False),
        ("satisfied", -0.6, True),
        ("detractor", 0.8, True),
        ("detractor", 0.2, False),
        ("detractor", -0.9, False),
        ("unsatisfied", 0.5, True),
        ("passive", -0.99, False),
        ("neutral", 0.99, False),
    ],
)
def test_disagrees(category: str, score: float, expected: bool) -> None:
    label = "positive" if score > 0 else "negative"
    assert disagrees(category, Sentiment(label, score)) is expected


def test_analyzer_flags_mis_scored_answers(analyzer: CommentAnalyzer) -> None:
    angry = "Terrible service, the agent was rude and nothing was fixed."
    happy = "Excellent support, thank you so much!"
    assert analyzer.analyze(angry, "promoter").disagrees
    assert not analyzer.analyze(angry, "detractor").disagrees
    assert analyzer.analyze(happy, "detractor").disagrees
    assert not analyzer.analyze(happy, "promoter").disagrees
    assert analyzer.analyze("Servizio pessimo, vergognoso", "promoter").disagrees
    assert analyzer.analyze("Servizio eccellente, grazie mille!", "unsatisfied").disagrees
    assert not analyzer.analyze(angry).disagrees  # no category, no flag


# --- themes -------------------------------------------------------------------------------


def test_normalisation_strips_case_and_accents_and_lemmatises() -> None:
    assert strip_accents("Più qualità, perché") == "Piu qualita, perche"
    assert tokens("Le FATTURE più alte", "it") == ["il", "fattura", "piu", "alto"]
    assert tokens("Invoices were charged", "en") == ["invoice", "be", "charge"]


def test_low_memory_lemmas_equal_the_default_dictionaries() -> None:
    """normalize uses simplemma's low_memory dictionaries (63 MiB less in the analysis
    child): the lemmas must be the default ones. Every 50th key of both dictionaries, some
    derived forms and the words of the simulator's comments (all keys and ~1 million
    derived words were compared once: no difference)."""
    import simplemma
    from simplemma.strategies.dictionaries.stream_dictionary_factory import StreamMap

    for lang in ("en", "it"):
        keys = [key.lower() for key in list(StreamMap(lang))[::50] if key.strip()]
        words = {*keys, *(key + "s" for key in keys[::5]), *(key[:-1] for key in keys[::5])}
        pools = [simulator._NEUTRAL, simulator._POSITIVE, *simulator._NEGATIVE.values()]
        for text in (text for pool in pools for text in pool[lang]):
            words.update(re.findall(r"\w+", text.lower()))
        for word in sorted(w for w in words if w.strip()):
            default = simplemma.lemmatize(word, lang=lang)
            assert simplemma.lemmatize(word, lang=lang, low_memory=True) == default, word


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("The INVOICES are wrong", "en", ["billing"]),
        ("I've been charged twice", "en", ["billing"]),
        ("Le FATTURE arrivano doppie", "it", ["billing"]),
        ("qualita pessima", "it", ["product_quality"]),  # no accent in the comment
        ("La qualità è pessima", "it", ["product_quality"]),
        ("Really user friendly app", "en", ["ease_of_use"]),  # phrase hides "friendly"
        ("Ottimo rapporto qualità prezzo", "it", ["price"]),  # phrase hides "qualità"
        ("Lunga attesa e operatore scortese", "it", ["wait_time", "staff_attitude"]),
        ("Nothing to say", "en", []),
        # a phrase stays inside its sentence ("first call" is resolution)
        ("Fixed on the first call", "en", ["resolution"]),
        ("Help came from the first. Call me about it", "en", []),
        ("Help came from the first!\nCall me about it", "en", []),
        ("A fee of 49.90 after the first call", "en", ["resolution", "billing"]),
        ("Billing: first; call me", "en", ["billing"]),
        ("The bill was wrong", None, ["billing"]),  # unknown language: every language
        ("La bolletta era sbagliata", None, ["billing"]),
    ],
)
def test_themes(text: str, language: str | None, expected: list[str]) -> None:
    assert ThemeMatcher(Taxonomy.load().themes).match(text, language) == expected


def test_default_taxonomy_has_the_cx_themes_in_both_languages() -> None:
    taxonomy = Taxonomy.load()
    assert tuple(taxonomy.themes) == THEMES
    assert all(set(per_lang) == {"en", "it"} for per_lang in taxonomy.themes.values())


def test_custom_taxonomy(tmp_path: Path) -> None:
    path = tmp_path / "themes.yaml"
    path.write_text(
        "themes:\n  parking:\n    en: [car park, parking]\n    it: [parcheggio]\n", encoding="utf-8"
    )
    analyzer = CommentAnalyzer(taxonomy_path=path)
    assert analyzer.analyze("No parking spaces at the car parks").themes == ["parking"]
    assert analyzer.analyze("Parcheggi introvabili").themes == ["parking"]
    assert analyzer.analyze("The invoice is wrong").themes == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("themes: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("version: 1\n", "themes: Field required"),
        ("themes: {}\n", "themes: Dictionary should have at least 1 item"),
        ("themes:\n  Wait Time:\n    en: [wait]\n", "themes.Wait Time"),
        ("themes:\n  wait:\n    english: [wait]\n", "themes.wait.english"),
        ("themes:\n  wait:\n    en: wait\n", "themes.wait.en: Input should be a valid list"),
        ("themes:\n  wait:\n    en: ['']\n", "themes.wait.en.0"),
        ("themes:\n  wait:\n    en: ['!!!']\n", "keyword '!!!' has no letters or digits"),
        ("themes:\n  wait:\n    en: []\n", "themes.wait: no keywords"),
        ("themes:\n  wait:\n    en: [wait]\nextra: 1\n", "extra: Extra inputs are not permitted"),
        ("version: 2\nthemes:\n  wait:\n    en: [wait]\n", "version"),
    ],
)
def test_bad_taxonomy_fails_clearly(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TaxonomyError, match=re.escape(message)) as info:
        CommentAnalyzer(taxonomy_path=path)
    assert str(path) in str(info.value)


def test_missing_taxonomy_file_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(TaxonomyError, match="cannot read"):
        Taxonomy.load(tmp_path / "nope.yaml")


# --- the analyzer -------------------------------------------------------------------------


def test_analyzer_returns_everything(analyzer: CommentAnalyzer) -> None:
    result = analyzer.analyze("Ho aspettato un'ora e l'operatore è stato scortese", "detractor")
    assert result.language == "it"
    assert result.sentiment.label == "negative"
    assert -1 <= result.sentiment.score < -0.05
    assert result.themes == ["wait_time", "staff_attitude"]
    assert result.disagrees is False


def test_language_hint_skips_detection(analyzer: CommentAnalyzer) -> None:
    text = "Servizio ottimo"
    assert analyzer.analyze(text).language == "it"
    assert analyzer.analyze(text, language_hint="EN").language == "en"  # trusted as given
    assert analyzer.analyze(text, language_hint="fr").language == "it"  # not configured


@pytest.mark.parametrize("comment", [None, "", "   "])
def test_analyzer_on_no_comment(analyzer: CommentAnalyzer, comment: str | None) -> None:
    result = analyzer.analyze(comment, "promoter")
    assert result == (None, Sentiment("neutral", 0.0), [], False)


def test_analyzer_handles_simulator_comments(analyzer: CommentAnalyzer) -> None:
    """Every simulated comment gets a language of the set, a score in range, known themes."""
    from datetime import UTC, datetime, timedelta

    sim = simulator.FeedbackSimulator(simulator.SimulatorConfig(comment_probability=1.0))
    start = datetime(2026, 1, 5, 10, tzinfo=UTC)
    languages: Counter[str | None] = Counter()
    for i in range(500):
        event = sim.next_event(start + timedelta(seconds=i))
        result = analyzer.analyze(event["comment"])
        languages[result.language] += 1
        assert result.language == event["attributes"]["language"], event["comment"]
        assert -1 <= result.sentiment.score <= 1
        assert set(result.themes) <= set(THEMES)
    assert languages["en"] > languages["it"] > 0


def test_function_word_shortcut_agrees_with_labels_and_lingua(labelled: list[dict]) -> None:
    """The shortcut decides most comments by themselves, and never differently from the
    label or from lingua (it only skips lingua where the function words are one-sided)."""
    from tests.bench.bench_text import simulator_comments

    fast, lingua = LanguageDetector(), LanguageDetector(shortcut=False)
    decided = [(c, fast._by_function_words(c["text"])) for c in labelled]
    decided = [(c, found) for c, found in decided if found is not None]
    assert len(decided) >= 0.9 * len(labelled)
    assert all(found == c["language"] for c, found in decided)
    comments = simulator_comments(2000)
    shortcut = [(c, fast._by_function_words(c)) for c in comments]
    shortcut = [(c, found) for c, found in shortcut if found is not None]
    assert len(shortcut) >= 0.8 * len(comments)
    assert all(found == lingua.detect(c) for c, found in shortcut)
    # a mix, or no function word at all, is left to lingua
    assert fast._by_function_words("The fattura was wrong, non va bene") is None
    assert fast._by_function_words("Excellent service") is None
    assert fast.detect("Servizio eccellente, grazie mille") == "it"
