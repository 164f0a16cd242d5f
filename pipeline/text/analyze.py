"""One entry point for comment analytics: language, sentiment, themes, score disagreement.

:class:`CommentAnalyzer` is built once (detector, lexicons and taxonomy are loaded in its
constructor, which takes settings-like plain arguments) and then analyses one comment
per call, without I/O. A blank comment gives an empty analysis without running anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from pipeline.text.language import DEFAULT_LANGUAGES, LanguageDetector
from pipeline.text.normalize import words
from pipeline.text.sentiment import (
    DEFAULT_CLEAR,
    DEFAULT_THRESHOLD,
    ENGLISH_SUPPLEMENT,
    ITALIAN_LEXICON,
    NEUTRAL,
    Sentiment,
    SentimentScorer,
    disagrees,
)
from pipeline.text.themes import DEFAULT_TAXONOMY, ThemeMatcher, Themes


class CommentAnalysis(NamedTuple):
    """What a comment says: language (None if unknown), sentiment, themes, disagreement."""

    language: str | None
    sentiment: Sentiment
    themes: list[str]
    disagrees: bool


_EMPTY_SENTIMENT = Sentiment(NEUTRAL, 0.0)


class CommentAnalyzer:
    """Language, sentiment and themes of a comment, and whether it contradicts the score.

    The themes are the taxonomy file at ``taxonomy_path``'s, or ``themes`` when given:
    an already validated taxonomy's (the analysis child gets them from its worker)."""

    def __init__(
        self,
        *,
        languages: Iterable[str] = DEFAULT_LANGUAGES,
        min_letters: int = 3,
        low_accuracy: bool = True,
        taxonomy_path: Path | str = DEFAULT_TAXONOMY,
        themes: Themes | None = None,
        sentiment_threshold: float = DEFAULT_THRESHOLD,
        disagreement_clear: float = DEFAULT_CLEAR,
        italian_lexicon: Path | str = ITALIAN_LEXICON,
        english_supplement: Path | str | None = ENGLISH_SUPPLEMENT,
    ) -> None:
        self.detector = LanguageDetector(
            languages, min_letters=min_letters, low_accuracy=low_accuracy
        )
        self.sentiment = SentimentScorer(
            threshold=sentiment_threshold,
            italian_lexicon=Path(italian_lexicon),
            english_supplement=None if english_supplement is None else Path(english_supplement),
        )
        if themes is None:  # read and validate the file (pydantic: not in the analysis child)
            from pipeline.text.taxonomy import Taxonomy

            themes = Taxonomy.load(taxonomy_path).themes
        self.themes = ThemeMatcher(themes)
        self.disagreement_clear = disagreement_clear

    def language_of(
        self,
        comment: str,
        language_hint: str | None = None,
        comment_words: list[str] | None = None,
    ) -> str | None:
        """The hint when it is a configured language, else the detected language;
        ``comment_words``: :func:`~pipeline.text.normalize.words` of ``comment`` if known."""
        if language_hint is not None and language_hint.lower() in self.detector.languages:
            return language_hint.lower()
        return self.detector.detect(comment, comment_words)

    def analyze(
        self,
        comment: str | None,
        category: str | None = None,
        language_hint: str | None = None,
    ) -> CommentAnalysis:
        """Analysis of ``comment``; ``category`` (promoter, detractor...) for the disagreement.

        ``language_hint``: the respondent's language when the survey platform sends it
        (``attributes.language``); one of the configured languages is trusted and skips
        detection, the most expensive part (see tests/bench/bench_text.py).
        """
        if not comment or not comment.strip():
            return CommentAnalysis(None, _EMPTY_SENTIMENT, [], False)
        comment_words = words(comment)  # split once for detection, phrases and themes
        language = self.language_of(comment, language_hint, comment_words)
        sentiment = self.sentiment.score(comment, language, comment_words)
        themes = self.themes.match(comment, language, comment_words)
        flag = category is not None and disagrees(category, sentiment, self.disagreement_clear)
        return CommentAnalysis(language, sentiment, themes, flag)
