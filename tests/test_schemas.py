"""The event contracts: validation rules, scoring boundaries, JSON Schema export."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas import Category, FeedbackEvent, ScoredEvent, SourcePosition, categorize
from schemas.export import JSON_DIR, expected_files
from schemas.feedback import example_event


def test_json_schema_files_are_current() -> None:
    expected = expected_files()
    on_disk = {p.name: p.read_text() for p in JSON_DIR.glob("*.json")}
    stale = sorted(n for n, text in expected.items() if on_disk.get(n) != text)
    extra = sorted(set(on_disk) - set(expected))
    assert not stale and not extra, (
        f"schemas/json is stale (stale={stale}, unexpected={extra}): "
        "run `nps-pipeline schemas export`"
    )
    feedback = json.loads(expected["feedback_event.v1.json"])
    assert {"event_id", "event_time", "survey_type", "score", "customer_id"} <= set(
        feedback["required"]
    )


@pytest.mark.parametrize(
    ("score", "category"),
    [
        (0, Category.DETRACTOR),
        (6, Category.DETRACTOR),
        (7, Category.PASSIVE),
        (8, Category.PASSIVE),
        (9, Category.PROMOTER),
        (10, Category.PROMOTER),
    ],
)
def test_nps_boundaries(score: int, category: Category) -> None:
    assert categorize("nps", score) is category


@pytest.mark.parametrize(
    ("survey", "score", "category"),
    [
        ("csat", 1, Category.UNSATISFIED),
        ("csat", 2, Category.UNSATISFIED),
        ("csat", 3, Category.NEUTRAL),
        ("csat", 4, Category.SATISFIED),
        ("csat", 5, Category.SATISFIED),
        ("ces", 1, Category.UNSATISFIED),
        ("ces", 3, Category.UNSATISFIED),
        ("ces", 4, Category.NEUTRAL),
        ("ces", 5, Category.SATISFIED),
        ("ces", 7, Category.SATISFIED),
    ],
)
def test_csat_ces_boundaries(survey: str, score: int, category: Category) -> None:
    assert categorize(survey, score) is category


@pytest.mark.parametrize(("survey", "low", "high"), [("nps", 0, 10), ("csat", 1, 5), ("ces", 1, 7)])
def test_scale_checked_per_survey_type(survey: str, low: int, high: int) -> None:
    for score in (low, high):
        assert FeedbackEvent.model_validate(example_event(survey_type=survey, score=score))
    for score in (low - 1, high + 1):
        with pytest.raises(ValidationError) as info:
            FeedbackEvent.model_validate(example_event(survey_type=survey, score=score))
        assert info.value.errors()[0]["type"] == "score_out_of_range"


@pytest.mark.parametrize(
    ("change", "field", "error_type"),
    [
        ({"event_time": "2026-11-25T09:30:00"}, "event_time", "timezone_aware"),
        ({"event_time": "yesterday"}, "event_time", "datetime_from_date_parsing"),
        ({"survey_type": "ces2"}, "survey_type", "enum"),
        ({"score": "9"}, "score", "int_type"),
        ({"score": 9.5}, "score", "int_type"),
        ({"score": True}, "score", "int_type"),
        ({"event_id": ""}, "event_id", "string_too_short"),
        ({"event_id": "   "}, "event_id", "string_too_short"),
        ({"customer_id": None}, "customer_id", "string_type"),
        ({"department": ""}, "department", "string_too_short"),
        ({"comment": "x" * 10_001}, "comment", "string_too_long"),
        ({"account_value": -1}, "account_value", "greater_than_equal"),
        ({"account_value": "NaN"}, "account_value", "finite_number"),
        ({"attributes": {"tier": [1, 2]}}, "attributes.tier", None),
        ({"unknown_field": 1}, "unknown_field", "extra_forbidden"),
        ({"schema_version": 2}, "schema_version", "less_than_equal"),
    ],
)
def test_validation_rules(change: dict, field: str, error_type: str | None) -> None:
    with pytest.raises(ValidationError) as info:
        FeedbackEvent.model_validate_json(json.dumps(example_event(**change)))
    errors = info.value.errors()
    locs = [".".join(str(p) for p in e["loc"]) for e in errors]
    assert any(loc.startswith(field) for loc in locs), locs
    if error_type:
        assert error_type in {e["type"] for e in errors}


def test_required_fields() -> None:
    for name in ("event_id", "event_time", "survey_type", "score", "customer_id"):
        event = example_event()
        del event[name]
        with pytest.raises(ValidationError) as info:
            FeedbackEvent.model_validate(event)
        assert info.value.errors()[0]["loc"] == (name,)
        assert info.value.errors()[0]["type"] == "missing"


def test_optional_fields_and_segments() -> None:
    event = FeedbackEvent.model_validate(
        example_event(agent=None, region=None, comment=None, account_value=1200.5)
    )
    assert event.segments() == {
        "department": "support",
        "product": "mobile-app",
        "channel": "chat",
    }
    assert event.account_value == 1200.5
    assert event.event_time.utcoffset() is not None


def test_scored_event_round_trip() -> None:
    event = FeedbackEvent.model_validate(example_event(score=6))
    scored = ScoredEvent(
        event_id=event.event_id,
        category=categorize(event.survey_type, event.score),
        processed_at=datetime(2026, 11, 25, tzinfo=UTC),
        source=SourcePosition(topic="feedback.raw", partition=1, offset=42),
        feedback=event,
    )
    again = ScoredEvent.model_validate_json(scored.model_dump_json())
    assert again == scored
    assert again.category is Category.DETRACTOR
