"""The scoring stage on batches: outcomes, fan-out to segments, resilience to bugs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import scoring
from pipeline.aggregate import WindowState
from pipeline.batchio import partition_of
from pipeline.scoring import ScoringStage
from pipeline.scoring_service import encode_groups, pack_deltas
from pipeline.settings import load_settings
from pipeline.validate import RawRecord
from pipeline.windows import Counts
from schemas import DeadLetter, ScoredEvent
from schemas.feedback import example_event
from tests.deltas import read_deltas


def record(offset: int, event: dict | bytes, partition: int = 0) -> RawRecord:
    value = event if isinstance(event, bytes) else orjson.dumps(event)
    return RawRecord("feedback.raw", partition, offset, None, value)


def stage(**overrides: object) -> ScoringStage:
    return ScoringStage(load_settings(**overrides))


def test_fan_out_to_segments_and_buckets() -> None:
    now = datetime.now(UTC).replace(second=30, microsecond=0) - timedelta(minutes=5)
    events = [
        example_event(event_id="a", score=10, event_time=now.isoformat(), agent=None),
        example_event(
            event_id="b",
            score=3,
            event_time=(now + timedelta(seconds=10)).isoformat(),
            comment="Rude agent. Call me back on +39 347 123 4567",
        ),
        example_event(event_id="c", score=8, event_time=(now + timedelta(minutes=2)).isoformat()),
    ]
    out = stage().process([record(i, e) for i, e in enumerate(events)])
    assert len(out.scored) == 3 and not out.deadletters
    deltas = {key: read_deltas(doc) for key, doc in out.deltas}
    assert set(deltas) == {
        "overall",
        "department=support",
        "agent=agent-007",
        "product=mobile-app",
        "channel=chat",
        "region=emea",
        "department=support|channel=chat",
        # the comments' themes: "friendly" (a, c) and "rude" (b); "call me back" (b)
        "theme=staff_attitude",
        "theme=communication",
    }
    buckets, newest, comments = deltas["overall"]
    # the detractor's comment travels with every segment, redacted, for alert evidence
    b_time = (now + timedelta(seconds=10)).timestamp()
    assert comments == [[b_time, "b", 3, "Rude agent. Call me back on [PHONE]"]]
    assert deltas["agent=agent-007"].comments == comments
    minute = int(now.timestamp() // 60) * 60
    by_start = dict(buckets)
    assert sorted(by_start) == [minute, minute + 120]
    # counts list: responses, promoters, passives, detractors, ...
    assert by_start[minute][:4] == [2, 1, 0, 1]
    assert by_start[minute + 120][:4] == [1, 0, 1, 0]
    assert newest == pytest.approx((now + timedelta(minutes=2)).timestamp())
    agent_buckets = deltas["agent=agent-007"].buckets
    assert dict(agent_buckets)[minute][:4] == [1, 0, 0, 1]  # event "a" has no agent
    theme_buckets = dict(deltas["theme=communication"].buckets)
    assert list(theme_buckets) == [minute] and theme_buckets[minute][:4] == [1, 0, 0, 1]
    assert dict(deltas["theme=staff_attitude"].buckets)[minute][:4] == [2, 1, 0, 1]
    insights = [orjson.loads(value)["text"] for _, value in out.scored]
    assert insights[1] == {
        "language": "en",
        "sentiment": "negative",
        "sentiment_score": insights[1]["sentiment_score"],
        "themes": ["staff_attitude", "communication"],
        "disagrees": False,
    }
    assert insights[1]["sentiment_score"] < -0.05
    assert insights[0]["sentiment"] == "positive" and insights[0]["themes"] == ["staff_attitude"]


def test_packed_deltas_hold_every_segment_once_in_its_partition() -> None:
    """The deltas record of each deltas partition, its groups encoded per partition as the
    scoring service does (encode_groups), applied by the windows: every segment in the
    partition of its key, its total the sum of its documents' buckets, and the same bytes
    as packing the documents."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    events = [
        example_event(event_id=f"e{i}", score=i % 11, agent=f"agent-{i % 7}",
                      event_time=(now + timedelta(seconds=20 * i)).isoformat())
        for i in range(40)
    ]  # fmt: skip
    out = stage(text_analytics=False).process([record(i, e) for i, e in enumerate(events)])
    assert out.clock is not None and len(out.deltas) > 8
    encoded = encode_groups(out.deltas, 4, lambda key, n: partition_of(key.encode(), n))
    plain: list[list] = [[] for _ in range(4)]
    for segment in out.deltas:
        plain[partition_of(segment[0].encode(), 4)].append(segment)
    packed = WindowState(load_settings())
    for p in range(4):
        value = pack_deltas([(0, 40, encoded[p])], out.clock)
        assert value == pack_deltas([(0, 40, plain[p])], out.clock)
        packed.apply_packed([(p, value)])
    assert sorted(packed.keys()) == sorted(
        (partition_of(key.encode(), 4), key) for key, _ in out.deltas
    )
    for key, document in out.deltas:
        expected = Counts()
        for counts in read_deltas(document).buckets.values():
            expected.add(Counts.from_list(counts))
        assert packed.get(key).total() == expected, key


def test_text_analytics_off_gives_no_insights_nor_theme_segments() -> None:
    now = datetime.now(UTC) - timedelta(minutes=1)
    event = example_event(event_id="x", score=2, event_time=now.isoformat(), comment="So rude!")
    out = stage(text_analytics=False).process([record(0, event)])
    ((_, value),) = out.scored
    assert orjson.loads(value)["text"] is None
    assert not [key for key, _ in out.deltas if key.startswith("theme=")]
    on = stage().process([record(0, event)])
    assert orjson.loads(on.scored[0][1])["text"]["themes"] == ["staff_attitude"]
    assert "theme=staff_attitude" in {key for key, _ in on.deltas}


def _only_e4_is_lost(message: str) -> None:
    """Events e3, e4, e5 through a fresh stage: e4 dead-lettered as a processing error
    whose message has ``message``, the other two scored."""
    events = [example_event(event_id=f"e{i}", score=i) for i in (3, 4, 5)]
    out = stage().process([record(i, e) for i, e in enumerate(events)])
    assert [ScoredEvent.model_validate_json(v).event_id for _, v in out.scored] == ["e3", "e5"]
    [(_, letter)] = out.deadletters
    dead = DeadLetter.model_validate_json(letter)
    assert dead.reason.value == "processing_error"
    assert message in dead.message
    assert dead.original() == orjson.dumps(events[1])


def test_unexpected_error_is_dead_lettered_and_the_batch_goes_on(monkeypatch) -> None:
    real = scoring.scored_json

    def flaky(batch, record, event_id, *args):
        if event_id == "e4":
            raise RuntimeError("boom")
        return real(batch, record, event_id, *args)

    monkeypatch.setattr(scoring, "scored_json", flaky)
    _only_e4_is_lost("RuntimeError: boom")


def test_an_unexpected_validation_error_only_loses_its_own_record(monkeypatch) -> None:
    """The batch is validated in one pass first; a bug there (an exception other than a
    rejection) must still cost only the record it happened on."""
    real = scoring.parse_feedback

    def flaky(value, max_bytes):
        if value is not None and b'"e4"' in value:
            raise RuntimeError("validator bug")
        return real(value, max_bytes)

    monkeypatch.setattr(scoring, "parse_feedback", flaky)
    _only_e4_is_lost("RuntimeError: validator bug")


def test_late_and_future_are_scored_but_not_windowed() -> None:
    now = datetime.now(UTC)
    events = [
        example_event(event_id="new", event_time=now.isoformat()),
        example_event(event_id="old", event_time=(now - timedelta(hours=1)).isoformat()),
        example_event(event_id="soon", event_time=(now + timedelta(hours=1)).isoformat()),
        example_event(event_id="ok", event_time=(now - timedelta(minutes=5)).isoformat()),
    ]
    out = stage(allowed_lateness_seconds=600).process([record(i, e) for i, e in enumerate(events)])
    assert len(out.scored) == 4
    letters = [DeadLetter.model_validate_json(v) for _, v in out.deadletters]
    assert sorted((d.reason.value, d.event_id) for d in letters) == [
        ("future", "soon"),
        ("late", "old"),
    ]
    overall = read_deltas(dict(out.deltas)["overall"]).buckets
    assert sum(c[0] for c in overall.values()) == 2  # "new" and "ok"


PII_COMMENT = (
    "Scrivete a mario.rossi@example.it o chiamate il 347 123 4567; "
    "carta 4111 1111 1111 1111, cliente CUST-123456"
)


def test_comments_leave_the_stage_redacted() -> None:
    from prometheus_client import REGISTRY

    def redacted(kind: str) -> float:
        return REGISTRY.get_sample_value("nps_pipeline_pii_redacted_total", {"kind": kind}) or 0

    before = {kind: redacted(kind) for kind in ("email", "phone", "card", "customer_id")}
    now = datetime.now(UTC) - timedelta(minutes=1)
    event = example_event(event_id="pii", score=2, event_time=now.isoformat(), comment=PII_COMMENT)
    out = stage(redact_patterns={"customer_id": r"CUST-\d{6}"}).process([record(0, event)])
    scored = ScoredEvent.model_validate_json(out.scored[0][1])
    expected = "Scrivete a [EMAIL] o chiamate il [PHONE]; carta [CARD], cliente [CUSTOMER_ID]"
    assert scored.feedback.comment == expected
    assert b"mario.rossi" not in out.scored[0][1] and b"4111" not in out.scored[0][1]
    overall = read_deltas(dict(out.deltas)["overall"])
    assert [c[3] for c in overall.comments] == [expected]  # alert evidence: redacted too
    for kind in before:
        assert redacted(kind) == before[kind] + 1


def test_comment_output_none_keeps_text_out_of_every_output() -> None:
    now = datetime.now(UTC) - timedelta(minutes=1)
    event = example_event(
        event_id="quiet", score=2, event_time=now.isoformat(), comment=PII_COMMENT
    )
    out = stage(comment_output="none").process([record(0, event)])
    scored = ScoredEvent.model_validate_json(out.scored[0][1])
    assert scored.feedback.comment is None
    assert all(read_deltas(doc).comments == [] for _, doc in out.deltas)


def test_a_bad_redaction_pattern_stops_the_start() -> None:
    from pipeline.settings import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_settings(redact_patterns={"order": "ORD-(\\d+"})
    assert "redact_patterns (NPS_REDACT_PATTERNS)" in caught.value.message
    assert "invalid regex" in caught.value.message


@settings(max_examples=150, deadline=None)
@given(
    event_id=st.text(min_size=1, max_size=40).filter(str.strip),
    comment=st.none()
    | st.text(max_size=80)
    | st.sampled_from(  # with themes, sentiment, a language: the insights' JSON too
        ["Charged twice, refund me NOW!", "L'operatore è stato scortese.", "ok", " ", "10/10"]
    ),
    department=st.text(max_size=20),
    topic=st.sampled_from(["feedback.raw", 'raw-"quoted"\\topic', "rå-ü"]),
    partition=st.integers(0, 1000),
    offset=st.integers(0, 2**62),
    updates=st.integers(0, 2),
)
def test_scored_json_equals_the_model_dump(
    event_id: str,
    comment: str | None,
    department: str,
    topic: str,
    partition: int,
    offset: int,
    updates: int,
) -> None:
    """The spliced scored record is the ScoredEvent the model would write: it validates,
    and dumping the validated model again gives the same document (revisions too)."""
    event = example_event(
        event_id=event_id,
        comment=comment,
        department=department,
        event_time=(datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
    )
    scoring_stage = stage()
    for score in range(updates):  # earlier versions with other scores
        scoring_stage.process([record(0, {**event, "score": score})])
    raw = RawRecord(topic, partition, offset, None, orjson.dumps(event))
    out = scoring_stage.process([raw])
    if out.deadletters:  # e.g. a blank value the schema refuses: not this test's subject
        return
    ((key, value),) = out.scored
    model = ScoredEvent.model_validate_json(value)
    assert model.revision == updates
    assert orjson.loads(value) == orjson.loads(model.model_dump_json())
    assert key == model.event_id.encode()
    assert (model.source.topic, model.source.partition, model.source.offset) == (
        topic,
        partition,
        offset,
    )
