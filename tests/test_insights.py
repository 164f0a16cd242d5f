"""The scoring stage's comment insights: prepared per batch, equal to the inline analysis."""

from __future__ import annotations

import orjson

from pipeline.settings import load_settings
from pipeline.text.insights import NO_INSIGHT, TextAnalytics, theme_keys
from pipeline.validate import RawRecord
from schemas import FeedbackEvent, categorize
from schemas.feedback import example_event


def raw(offset: int, value: bytes) -> RawRecord:
    return RawRecord("feedback.raw", 0, offset, None, value)


def test_prepared_insights_equal_the_inline_analysis() -> None:
    text = TextAnalytics.from_settings(load_settings())
    assert text is not None
    comments = [
        ("  I was charged twice!! Refund me.  ", 1, {"language": "en"}),
        ("L'operatore è stato scortese e sbrigativo.", 3, {}),
        ("Great service, thanks", 10, {"language": "EN"}),
        ("ok", 8, {}),
    ]
    events = [
        example_event(event_id=f"e{i}", comment=c, score=s, attributes=a)
        for i, (c, s, a) in enumerate(comments)
    ]
    records = [raw(i, orjson.dumps(e)) for i, e in enumerate(events)]
    hostile = [b"not json", b'{"comment": 3}', b'{"comment": "x", "survey_type": "nope"}', b"[]"]
    records += [raw(100 + i, v) for i, v in enumerate(hostile)]
    text.prepare(records)  # invalid records are skipped, not raised
    assert set(text._prepared) == {id(r) for r in records[: len(events)]}
    fresh = TextAnalytics(text.analyzer)
    for record in records[: len(events)]:
        parsed = FeedbackEvent.model_validate_json(record.value)
        category = categorize(parsed.survey_type, parsed.score).value
        prepared = text.analyze(parsed, category, record)
        assert prepared is text._prepared[id(record)][2]  # reused, not analysed again
        assert prepared == fresh.analyze(parsed, category)  # nothing prepared there
    first = FeedbackEvent.model_validate_json(records[0].value)
    assert orjson.loads(text.analyze(first, "detractor", records[0]).json) == {
        "language": "en",
        "sentiment": "negative",
        "sentiment_score": orjson.loads(fresh.analyze(first, "detractor").json)["sentiment_score"],
        "themes": ["billing"],
        "disagrees": False,
    }
    # a different comment or category than prepared: analysed again, not reused
    other = first.model_copy(update={"comment": "Lovely people, great service"})
    assert orjson.loads(text.analyze(other, "detractor", records[0]).json)["disagrees"] is True
    promoter = text.analyze(first, "promoter", records[0])
    assert orjson.loads(promoter.json)["disagrees"] is True
    blank = first.model_copy(update={"comment": "   "})
    assert text.analyze(blank, "detractor", records[0]) is NO_INSIGHT
    assert theme_keys(["billing", "price"]) == ["theme=billing", "theme=price"]


def test_prepare_never_raises_and_themes_are_counted_once(monkeypatch) -> None:
    from pipeline import metrics

    text = TextAnalytics.from_settings(load_settings())
    assert text is not None
    event = example_event(event_id="t1", comment="Wrong invoice again", score=2)
    good = raw(0, orjson.dumps(event))
    tombstone = RawRecord("feedback.raw", 0, 1, b"k", None)  # type: ignore[arg-type]
    counter = metrics.COMMENT_THEMES.labels("billing", "detractor")
    before = counter._value.get()
    text.prepare([tombstone, good, good])  # analysing is not counting
    assert counter._value.get() == before
    parsed = FeedbackEvent.model_validate_json(good.value)
    text.analyze(parsed, "detractor", good)
    assert counter._value.get() == before + 1

    # an oversize record or an over-long comment is dead-lettered unread, never analysed
    huge = example_event(event_id="t2", comment="wrong invoice " * 1000, score=2)
    text.prepare([raw(2, orjson.dumps(huge)), raw(3, orjson.dumps(huge) + b" " * 300_000)])
    assert text._prepared == {}

    def broken(*_: object) -> None:
        raise RuntimeError("analyzer bug")

    monkeypatch.setattr(text.analyzer, "analyze", broken)
    text.prepare([good])  # the stage's own handling of the record dead-letters it
    assert text._prepared == {}


def test_off_gives_no_analytics() -> None:
    assert TextAnalytics.from_settings(load_settings(text_analytics=False)) is None


def test_without_sentiment_only_language_and_themes() -> None:
    settings = load_settings(text_sentiment=False)
    text = TextAnalytics.from_settings(settings)
    assert text is not None and text.sentiment is False
    event = FeedbackEvent.model_validate(
        example_event(comment="Addebitato due volte, vergognoso!", score=2, attributes={})
    )
    assert orjson.loads(text.analyze(event, "detractor").json) == {
        "language": "it",
        "sentiment": None,
        "sentiment_score": None,
        "themes": ["billing"],
        "disagrees": None,
    }
