"""Reading a raw record's comment and turning its analysis into the scored event's ``text``.

Shared by the scoring stage (:mod:`pipeline.text.stage_analytics`) and the analysis child
(:mod:`pipeline.text.offload`), and kept apart from both so that the child imports no
more than it needs: no Prometheus client, settings or stage (~9 MiB less per child).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from pipeline.text.analyze import CommentAnalyzer
from pipeline.text.normalize import words

#: Longest comment the FeedbackEvent contract accepts (longer: dead-lettered, not analysed).
MAX_COMMENT = 10_000
_NULL = b"null"


class Insight(NamedTuple):
    """The analysis of one event: ``text`` of the scored event as JSON, and its themes."""

    json: bytes
    themes: list[str]


NO_INSIGHT = Insight(_NULL, [])


#: survey type -> (lowest satisfied score, neutral score) of CSAT and CES; NPS: None
_SCALES: dict[str, tuple[int, int] | None] = {"nps": None, "csat": (4, 3), "ces": (5, 4)}


def category_of(survey_type: object, score: Any) -> str:
    """``schemas.scored.categorize(survey_type, score).value`` without its Enum lookups
    (~1 µs): the same comparisons in the same order, so the same answer or an exception
    (KeyError or TypeError here, where categorize raises ValueError or TypeError) for
    every survey type and score a JSON document can hold."""
    scale = _SCALES[survey_type]  # type: ignore[index]  # unhashable: TypeError
    if scale is None:
        if score >= 9:
            return "promoter"
        return "passive" if score >= 7 else "detractor"
    satisfied_from, neutral = scale
    if score >= satisfied_from:
        return "satisfied"
    return "neutral" if score == neutral else "unsatisfied"


def read_comment(value: object, max_event_bytes: int) -> tuple[str, str, object] | None:
    """The comment, category and language hint of a raw record, read with ``orjson``;
    None when there is nothing to analyse ahead (no comment, a tombstone, an oversize
    record or comment, or whatever the stage's validation will dead-letter)."""
    if not isinstance(value, bytes) or len(value) > max_event_bytes or b'"comment"' not in value:
        return None
    try:
        document = orjson.loads(value)
        comment = document["comment"].strip()
        if not comment or len(comment) > MAX_COMMENT:
            return None
        category = category_of(document["survey_type"], document["score"])
        attributes = document.get("attributes")
        hint = attributes.get("language") if isinstance(attributes, dict) else None
    except Exception:  # the stage validates the record and dead-letters it
        return None
    return comment, category, hint


def insight_of(
    analyzer: CommentAnalyzer, sentiment: bool, comment: str, category: str, hint: object
) -> Insight:
    """The insight of a (non-blank) comment; ``sentiment=False``: language and themes only."""
    language_hint = hint if isinstance(hint, str) else None
    if sentiment:
        found = analyzer.analyze(comment, category, language_hint)
        language, themes = found.language, found.themes
        document = {
            "language": language,
            "sentiment": found.sentiment.label,
            "sentiment_score": found.sentiment.score,
            "themes": themes,
            "disagrees": found.disagrees,
        }
    else:
        comment_words = words(comment)
        language = analyzer.language_of(comment, language_hint, comment_words)
        themes = analyzer.themes.match(comment, language, comment_words)
        document = {
            "language": language,
            "sentiment": None,
            "sentiment_score": None,
            "themes": themes,
            "disagrees": None,
        }
    return Insight(orjson.dumps(document), themes)
