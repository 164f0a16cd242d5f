"""Retries and updates of an answer count once: the scoring stage's update logic.

A repeat with the same content is dropped; a repeat with different content (Delighted
sends the comment later, or a changed score) is published as the next ``revision`` and
its deltas take the earlier version out of the windows and put the new one in.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from pipeline import metrics
from pipeline.aggregate import WindowState
from pipeline.scoring import ScoringStage
from pipeline.segments import segment_keys
from pipeline.settings import load_settings
from pipeline.validate import RawRecord
from pipeline.windows import Counts
from schemas import DeadLetter, ScoredEvent
from schemas.feedback import example_event
from tests.deltas import every_segment, read_deltas, records_of

MINUTE = 60


def record(offset: int, event: dict, partition: int = 0) -> RawRecord:
    return RawRecord(
        "feedback.raw", partition, offset, event["event_id"].encode(), orjson.dumps(event)
    )


def overall(out) -> dict[int, list[int | float]]:
    """The overall segment's bucket deltas of one batch output."""
    found = dict(out.deltas).get("overall")
    return {} if found is None else read_deltas(found).buckets


def revisions(change: str) -> float:
    return REGISTRY.get_sample_value("nps_pipeline_revisions_total", {"change": change}) or 0.0


def test_retry_then_comment_then_score_change_counts_once() -> None:
    t = datetime.now(UTC).replace(second=10, microsecond=0) - timedelta(minutes=3)
    bucket = int(t.timestamp()) // MINUTE * MINUTE
    first = example_event(event_id="d-1", score=3, comment=None, event_time=t.isoformat())
    commented = {**first, "comment": "Nobody called back."}
    rescored = {**commented, "score": 9, "comment": "Sorted out in the end, thanks!"}
    stage = ScoringStage(load_settings(text_analytics=False))
    content, scoring = revisions("content"), revisions("scoring")

    out = stage.process([record(0, first), record(1, first)])  # a delivery and its retry
    assert out.duplicates == 1 and len(out.scored) == 1
    assert overall(out) == {bucket: Counts(responses=1, detractors=1).to_list()}

    out = stage.process([record(2, commented)])  # comment only: no net change
    [(key, value)] = out.scored
    scored = ScoredEvent.model_validate_json(value)
    assert key == b"d-1" and scored.revision == 1
    assert scored.feedback.comment == "Nobody called back."
    assert out.deltas == [] and not out.deadletters
    assert revisions("content") == content + 1

    out = stage.process([record(3, rescored), record(4, rescored)])  # the update, retried
    assert out.duplicates == 1
    [(_, value)] = out.scored
    assert ScoredEvent.model_validate_json(value).revision == 2
    expected = Counts(promoters=1)
    expected.detractors = -1  # the detractor taken out, the promoter put in: still 1 answer
    assert overall(out) == {bucket: expected.to_list()}
    assert revisions("scoring") == scoring + 1


def test_update_moves_the_answer_between_segments_and_buckets() -> None:
    t = datetime.now(UTC).replace(second=50, microsecond=0) - timedelta(minutes=5)
    b0 = int(t.timestamp()) // MINUTE * MINUTE
    first = example_event(event_id="m-1", score=6, agent="agent-1", event_time=t.isoformat())
    later = t + timedelta(seconds=20)  # the next minute
    moved = {**first, "agent": "agent-2", "score": 8, "event_time": later.isoformat()}
    stage = ScoringStage(load_settings(text_analytics=False))
    stage.process([record(0, first)])
    out = stage.process([record(1, moved)])
    deltas = {k: read_deltas(v).buckets for k, v in out.deltas}
    gone = Counts(responses=-1, detractors=-1).to_list()
    assert deltas["agent=agent-1"] == {b0: gone}
    assert deltas["agent=agent-2"] == {b0 + MINUTE: Counts(responses=1, passives=1).to_list()}
    assert deltas["overall"] == {b0: gone, b0 + MINUTE: Counts(responses=1, passives=1).to_list()}


def test_revenue_sums_return_to_exactly_zero_when_an_update_removes_them() -> None:
    t = datetime.now(UTC) - timedelta(minutes=2)
    first = example_event(event_id="r-1", score=2, account_value=0.1, event_time=t.isoformat())
    stage = ScoringStage(load_settings(text_analytics=False))
    state = WindowState(load_settings())
    for batch in ([first], [{**first, "account_value": None}]):
        out = stage.process([record(0, event) for event in batch])
        state.apply_packed(records_of(out))
    total = state.get("overall").total()
    assert total == Counts(responses=1, detractors=1)  # rev_weight exactly 0.0, not 1e-17


def test_a_late_update_is_dead_lettered_and_the_counted_version_stays() -> None:
    now = datetime.now(UTC)
    old = now - timedelta(hours=1)
    first = example_event(event_id="l-1", score=2, event_time=old.isoformat())
    newer = example_event(event_id="other", score=9, event_time=now.isoformat())
    stage = ScoringStage(load_settings(allowed_lateness_seconds=7200, text_analytics=False))
    stage.process([record(0, first), record(1, newer)])
    stage.watermarks.allowed_lateness = 600  # the original was in time; its update is not
    out = stage.process([record(2, {**first, "score": 10})])
    assert ScoredEvent.model_validate_json(out.scored[0][1]).revision == 1
    [(_, letter)] = out.deadletters
    dead = DeadLetter.model_validate_json(letter)
    assert dead.reason.value == "late" and dead.event_id == "l-1"
    assert "revision 1 of this answer is not counted" in dead.message
    assert out.deltas == []
    # a comment-only update of the counted version changes nothing in the windows: no
    # lateness applies to it, it is only republished
    out = stage.process([record(3, {**first, "comment": "later"})])
    assert out.deadletters == [] and out.deltas == []
    assert ScoredEvent.model_validate_json(out.scored[0][1]).revision == 2


def test_business_counters_count_answers_received_not_revisions() -> None:
    t = datetime.now(UTC) - timedelta(minutes=1)
    counters = metrics.SegmentCounters(["department"])
    stage = ScoringStage(load_settings(text_analytics=False), counters)
    first = example_event(
        event_id="c-1", score=1, department="upd-counters", event_time=t.isoformat()
    )
    stage.process([record(0, first)])
    stage.process([record(1, {**first, "score": 10})])
    stage.process([record(2, {**first, "score": 5, "department": "upd-counters-2"})])
    pending = counters.pending[("department", "upd-counters")]
    assert (pending.responses, pending.detractors, pending.promoters) == (1, 1, 0)
    assert counters.pending[("department", "upd-counters-2")].responses == 0


# ----------------------------------------------------------------- the property


_VERSION = st.fixed_dictionaries(
    {
        "score": st.integers(0, 10),
        "minute": st.integers(0, 4),
        "agent": st.sampled_from(["a1", "a2", None]),
        "department": st.sampled_from(["billing", "support"]),
        "account_value": st.sampled_from([None, 100.0, 2500.5]),
        "comment": st.sampled_from([None, "ok", "slow"]),
    }
)


@settings(max_examples=100, deadline=None)
@given(
    versions=st.lists(st.lists(_VERSION, min_size=1, max_size=4), min_size=1, max_size=5),
    deliveries=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), max_size=25),
    cuts=st.lists(st.integers(0, 25), max_size=4),
)
def test_window_totals_count_each_answer_once_as_its_last_version(
    versions: list[list[dict]], deliveries: list[tuple[int, int]], cuts: list[int]
) -> None:
    """Any sequence of deliveries (retries, updates, going back to an earlier version),
    in any batching, gives windows equal to counting each answer's last delivered version
    once; no bucket of any segment goes negative on the way."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)

    def event(answer: int, version: dict) -> dict:
        return example_event(
            event_id=f"ans-{answer}",
            score=version["score"],
            event_time=(start + timedelta(minutes=version["minute"], seconds=7)).isoformat(),
            agent=version["agent"],
            department=version["department"],
            account_value=version["account_value"],
            comment=version["comment"],
        )

    sent = [
        event(a % len(versions), versions[a % len(versions)][v % len(versions[a % len(versions)])])
        for a, v in deliveries
    ]
    the_settings = load_settings(allowed_lateness_seconds=3600, text_analytics=False)
    stage = ScoringStage(the_settings)
    state = WindowState(the_settings)
    bounds = sorted({0, len(sent), *(c for c in cuts if c <= len(sent))})
    published: dict[str, list[int]] = {}
    for lo, hi in itertools.pairwise(bounds):
        out = stage.process([record(i, sent[i]) for i in range(lo, hi)])
        assert out.deadletters == []
        for key, value in out.scored:
            published.setdefault(key.decode(), []).append(
                ScoredEvent.model_validate_json(value).revision
            )
        state.apply_packed(records_of(out))
        for _, windows in every_segment(state):
            for _, bucket in windows.buckets():
                assert min(bucket.to_list()) >= 0

    last: dict[str, dict] = {}
    for e in sent:
        last[e["event_id"]] = e
    reference: dict[str, Counts] = {}
    for e in last.values():
        for key in segment_keys(e):
            reference.setdefault(key, Counts()).add_event("nps", e["score"], e["account_value"])
    for key, expected in reference.items():
        got = state.get(key)
        assert got is not None, key
        total = got.total()
        assert total.to_list()[:10] == expected.to_list()[:10]  # the integer counts
        assert abs(total.rev_weight - expected.rev_weight) < 1e-6
        assert got.window(86400).to_list()[:10] == total.to_list()[:10]  # all in 24 h
    for key in {s for s, _ in every_segment(state)} - set(reference):
        assert state.get(key).total().is_empty()  # segments only earlier versions had
    for event_id, revs in published.items():  # 0, 1, 2, ...: one per distinct change
        assert revs == list(range(len(revs))), event_id


def test_an_updated_answer_republishes_its_follow_up_task_under_the_same_id() -> None:
    def created() -> float:
        return sum(
            REGISTRY.get_sample_value("nps_pipeline_followup_tasks_created_total", {"priority": p})
            or 0.0
            for p in ("urgent", "high", "normal", "low")
        )

    t = datetime.now(UTC) - timedelta(minutes=1)
    first = example_event(event_id="f-1", score=2, comment=None, event_time=t.isoformat())
    stage = ScoringStage(load_settings(followups_enabled=True, text_analytics=False))
    before = created()
    out = stage.process([record(0, first)])
    out2 = stage.process([record(1, {**first, "comment": "Still waiting for a refund"})])
    [(key, task)] = out.followups
    [(key2, task2)] = out2.followups
    assert key == key2 == b"fu-f-1"
    assert orjson.loads(task)["comment"] is None
    assert orjson.loads(task2)["comment"] == "Still waiting for a refund"
    assert created() == before + 1  # one task, published twice


def test_a_comment_update_moves_the_answer_into_its_theme_segments() -> None:
    """With comment analytics on, a comment added later brings the answer's themes: the
    answer now counts in theme=<name> once, and nowhere twice."""
    t = datetime.now(UTC).replace(second=10, microsecond=0) - timedelta(minutes=3)
    bucket = int(t.timestamp()) // MINUTE * MINUTE
    first = example_event(event_id="t-1", score=2, comment=None, event_time=t.isoformat())
    commented = {**first, "comment": "I was double charged on my last invoice."}
    stage = ScoringStage(load_settings())
    stage.process([record(0, first)])
    out = stage.process([record(1, commented)])
    deltas = {key: read_deltas(v).buckets for key, v in out.deltas}
    assert deltas["theme=billing"] == {bucket: Counts(responses=1, detractors=1).to_list()}
    assert "overall" not in deltas or deltas["overall"] == {}  # counted once already
    [(_, value)] = out.scored
    scored = ScoredEvent.model_validate_json(value)
    assert scored.revision == 1 and scored.text is not None and "billing" in scored.text.themes
