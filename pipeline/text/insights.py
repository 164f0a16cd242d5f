"""Comment analytics in the scoring stage: one :class:`CommentInsights` per commented answer.

:class:`TextAnalytics` wraps the shared :class:`~pipeline.text.analyze.CommentAnalyzer`
for the scoring stage: per event it gives the insights as JSON (spliced into the scored
record, see :func:`pipeline.scoring.scored_json`), the themes (each also a segment
``theme=<name>``, see :func:`theme_keys`) and counts them in
``nps_pipeline_comment_themes_total{theme,category}``. ``None`` from
:meth:`TextAnalytics.from_settings` when ``NPS_TEXT_ANALYTICS`` is off.

The analyzer is built once per process and configuration (:func:`shared_analyzer`,
~0.4 s: lingua's models, lexicons, the taxonomy), not per stage.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import orjson
from prometheus_client import Counter

from pipeline import metrics
from pipeline.settings import Settings
from pipeline.text.analyze import CommentAnalyzer
from pipeline.text.themes import DEFAULT_TAXONOMY
from schemas.feedback import FeedbackEvent

#: The derived segment dimension of comment themes: ``theme=billing``.
THEME_DIMENSION = "theme"
_NULL = b"null"


@lru_cache(maxsize=4)
def shared_analyzer(taxonomy_path: Path = DEFAULT_TAXONOMY) -> CommentAnalyzer:
    """One analyzer per process and taxonomy (building one loads models: ~0.4 s)."""
    return CommentAnalyzer(taxonomy_path=taxonomy_path)


class Insight(NamedTuple):
    """The analysis of one event: ``text`` of the scored event as JSON, and its themes."""

    json: bytes
    themes: list[str]


NO_INSIGHT = Insight(_NULL, [])


def theme_keys(themes: list[str]) -> list[str]:
    """The segment keys of ``themes`` (theme names are identifiers: nothing to escape)."""
    return [f"{THEME_DIMENSION}={theme}" for theme in themes]


class TextAnalytics:
    """Language, sentiment, themes and disagreement of each comment, for the scored event."""

    def __init__(self, analyzer: CommentAnalyzer) -> None:
        self.analyzer = analyzer
        self._theme_counters: dict[tuple[str, str], Counter] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> TextAnalytics | None:
        """The analytics configured by ``settings``; None when NPS_TEXT_ANALYTICS is off."""
        if not settings.text_analytics:
            return None
        return cls(shared_analyzer(settings.text_taxonomy_file or DEFAULT_TAXONOMY))

    def analyze(self, feedback: FeedbackEvent, category: str) -> Insight:
        """The insight of ``feedback`` (unredacted: nothing of the text itself is output)."""
        comment = feedback.comment
        if not comment or not comment.strip():
            return NO_INSIGHT
        hint = feedback.attributes.get("language")
        found = self.analyzer.analyze(comment, category, hint if isinstance(hint, str) else None)
        sentiment = found.sentiment
        document = {
            "language": found.language,
            "sentiment": sentiment.label,
            "sentiment_score": sentiment.score,
            "themes": found.themes,
            "disagrees": found.disagrees,
        }
        for theme in found.themes:
            counter = self._theme_counters.get((theme, category))
            if counter is None:
                counter = self._theme_counters[(theme, category)] = metrics.COMMENT_THEMES.labels(
                    theme, category
                )
            counter.inc()
        return Insight(orjson.dumps(document), found.themes)
