"""End to end on the embedded broker: a real worker process scores and dead-letters."""

from __future__ import annotations

import random
from collections import Counter

import orjson
import pytest
from kafka import KafkaProducer

from schemas import Category, DeadLetter, ScoredEvent, categorize
from schemas.feedback import example_event
from tests.conftest import consume

pytestmark = pytest.mark.integration


def valid_events(n: int) -> list[dict]:
    rng = random.Random(11)
    events = []
    for i in range(n):
        survey = rng.choice(["nps", "nps", "csat", "ces"])
        high = {"nps": 10, "csat": 5, "ces": 7}[survey]
        low = 0 if survey == "nps" else 1
        events.append(
            example_event(
                event_id=f"ok-{i}",
                survey_type=survey,
                score=rng.randint(low, high),
                comment=rng.choice([None, "Grazie, tutto perfetto", "Waited 40 minutes"]),
                department=rng.choice(["support", "billing", None]),
            )
        )
    return events


def invalid_records() -> list[tuple[bytes, str]]:
    """(value, expected reason): every invalid kind the issue names, and more."""
    too_big = orjson.dumps(example_event(event_id="big", comment="z" * 9000))
    return [
        (b"this is not json", "not_json"),
        (b'{"event_id": "trunc", ', "not_json"),
        (b"\xff\xfe\x00 invalid utf-8", "bad_encoding"),
        (b'{"event_id": "caf\xe9"}', "bad_encoding"),
        (b"[1, 2, 3]", "schema_violation"),
        (
            orjson.dumps({k: v for k, v in example_event().items() if k != "score"}),
            "schema_violation",
        ),
        (
            orjson.dumps(example_event(event_id="naive", event_time="2026-11-25T10:00:00")),
            "schema_violation",
        ),
        (orjson.dumps(example_event(event_id="s11", score=11)), "score_out_of_range"),
        (
            orjson.dumps(example_event(event_id="c0", survey_type="csat", score=0)),
            "score_out_of_range",
        ),
        (
            orjson.dumps(example_event(event_id="e8", survey_type="ces", score=8)),
            "score_out_of_range",
        ),
        (b"{" + b" " * (2 * 1024 * 1024) + b"}", "oversize"),
        (too_big + b" " * (300 * 1024), "oversize"),
    ]


def test_valid_scored_invalid_dead_lettered_exactly(broker, start_worker, worker_env) -> None:
    worker = start_worker()
    events = valid_events(300)
    invalid = invalid_records()
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", max_request_size=8 * 1024 * 1024
    )
    raw_topic = worker_env["NPS_TOPIC_RAW"]
    for event in events:
        producer.send(raw_topic, key=event["event_id"].encode(), value=orjson.dumps(event))
    # a retry of an event already sent: dropped as a duplicate, not scored twice
    producer.send(raw_topic, key=b"ok-5", value=orjson.dumps(events[5]))
    # same id, different content: an update, scored again as revision 1
    update = {**events[6], "score": (events[6]["score"] + 1) % 5 + 1}
    producer.send(raw_topic, key=b"ok-6", value=orjson.dumps(update))
    for value, _reason in invalid:
        producer.send(raw_topic, key=b"bad", value=value)
    producer.flush()
    producer.close()

    expected_dead = invalid
    scored = consume(broker.bootstrap, worker_env["NPS_TOPIC_SCORED"], len(events) + 1)
    dead = consume(broker.bootstrap, worker_env["NPS_TOPIC_DEADLETTER"], len(expected_dead))

    assert len(scored) == len(events) + 1
    by_id = {e["event_id"]: e for e in events}
    categories = Counter()
    for record in scored:
        event = ScoredEvent.model_validate_json(record.value)
        assert record.key == event.event_id.encode()
        if event.revision == 1:
            assert event.event_id == "ok-6" and event.feedback.score == update["score"]
            continue
        assert event.revision == 0
        sent = by_id.pop(event.event_id)
        assert event.feedback.score == sent["score"]
        assert event.category is categorize(sent["survey_type"], sent["score"])
        assert event.source.topic == raw_topic
        categories[event.category] += 1
    assert not by_id
    assert categories[Category.PROMOTER] > 0 and categories[Category.DETRACTOR] > 0

    assert len(dead) == len(expected_dead)
    expected = Counter((value, reason) for value, reason in expected_dead)
    got = Counter()
    for record in dead:
        letter = DeadLetter.model_validate_json(record.value)
        assert letter.source_topic == raw_topic
        assert letter.message
        assert not letter.original_truncated
        assert letter.original_size == len(letter.original())
        got[(letter.original(), letter.reason.value)] += 1
    assert got == expected

    metrics = worker.get("/metrics").decode()
    assert 'nps_pipeline_deadletters_total{reason="oversize"} 2.0' in metrics
    assert 'nps_pipeline_deadletters_total{reason="bad_encoding"} 2.0' in metrics
    assert "nps_pipeline_duplicates_dropped_total 1.0" in metrics
    assert 'nps_pipeline_revisions_total{change="scoring"} 1.0' in metrics
    consumed = len(events) + 2 + len(invalid)
    assert f'nps_pipeline_events_consumed_total{{topic="{raw_topic}"}} {consumed}.0' in metrics


def test_health_endpoints(start_worker) -> None:
    worker = start_worker()
    assert orjson.loads(worker.get("/healthz")) == {"status": "ok"}
    ready = orjson.loads(worker.get("/readyz"))
    assert ready["ready"] is True and ready["partitions"]
