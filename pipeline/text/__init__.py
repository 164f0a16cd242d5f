"""Comment analytics (English and Italian): language, sentiment, themes, score disagreement.

Pure, offline and built once: :class:`~pipeline.text.analyze.CommentAnalyzer` puts the
parts together; each part is usable alone (:mod:`.language`, :mod:`.sentiment`,
:mod:`.themes`, :mod:`.normalize`). In the stream: :mod:`.stage_analytics` (the scoring stage's
insights and theme segments) and :mod:`.emerging` (emerging topics of alerts). The
taxonomy file is read by :mod:`.taxonomy`, not imported here: the analysis child imports
this package and must not load pydantic.
"""

from pipeline.text.analyze import CommentAnalysis, CommentAnalyzer
from pipeline.text.language import LanguageDetector
from pipeline.text.sentiment import Sentiment, SentimentScorer, disagrees
from pipeline.text.themes import ThemeMatcher

__all__ = [
    "CommentAnalysis",
    "CommentAnalyzer",
    "LanguageDetector",
    "Sentiment",
    "SentimentScorer",
    "ThemeMatcher",
    "disagrees",
]
