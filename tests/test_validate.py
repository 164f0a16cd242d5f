"""Raw bytes -> event or a precise rejection reason; dead letters keep the original."""

from __future__ import annotations

import base64
import sys

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.dedupe import (
    REVISION,
    DuplicateFilter,
    Entry,
    Seen,
    content_digest,
    contribution_of,
    entry_from_json,
    make_entry,
    pack_entry,
    unpack_entry,
)
from pipeline.validate import RawRecord, Rejection, dead_letter, parse_feedback
from schemas import FeedbackEvent, Reason
from schemas.feedback import example_event

LIMIT = 64 * 1024


def reject(value: bytes | None) -> Rejection:
    result = parse_feedback(value, LIMIT)
    assert isinstance(result, Rejection), result
    return result


def test_valid_event_parses() -> None:
    result = parse_feedback(orjson.dumps(example_event(score=7)), LIMIT)
    assert isinstance(result, FeedbackEvent)
    assert result.score == 7


@pytest.mark.parametrize(
    ("value", "reason", "field", "words"),
    [
        (b"x" * (LIMIT + 1), Reason.OVERSIZE, None, "65,537 bytes"),
        (b'{"event_id": "\xff\xfe"}', Reason.BAD_ENCODING, None, "position 14"),
        (b"\xc3\x28", Reason.BAD_ENCODING, None, "UTF-8"),
        (b"hello", Reason.NOT_JSON, None, "not JSON"),
        (b'{"event_id": "a",', Reason.NOT_JSON, None, "not JSON"),
        (b"", Reason.NOT_JSON, None, "not JSON"),
        (None, Reason.SCHEMA_VIOLATION, None, "empty record"),
        (b"[1, 2]", Reason.SCHEMA_VIOLATION, None, "JSON object, got list"),
        (b"42", Reason.SCHEMA_VIOLATION, None, "JSON object, got int"),
        (
            orjson.dumps(example_event(score=11)),
            Reason.SCORE_OUT_OF_RANGE,
            "score",
            "score 11 is outside the NPS scale 0-10",
        ),
        (
            orjson.dumps(example_event(survey_type="ces", score=8)),
            Reason.SCORE_OUT_OF_RANGE,
            "score",
            "CES scale 1-7",
        ),
        (
            orjson.dumps(example_event(event_time="2026-11-25T09:30:00")),
            Reason.SCHEMA_VIOLATION,
            "event_time",
            "timezone",
        ),
        (
            orjson.dumps(example_event(attributes={"tier": {"nested": 1}})),
            Reason.SCHEMA_VIOLATION,
            "attributes.tier",
            "attributes.tier",
        ),
    ],
)
def test_rejection_reasons(
    value: bytes | None, reason: Reason, field: str | None, words: str
) -> None:
    rejection = reject(value)
    assert rejection.reason is reason
    assert words in rejection.message
    if field:
        assert rejection.field is not None and rejection.field.startswith(field)


def test_schema_violation_names_every_field_and_keeps_event_id() -> None:
    event = example_event(score="high")
    del event["customer_id"]
    rejection = reject(orjson.dumps(event))
    assert rejection.reason is Reason.SCHEMA_VIOLATION
    assert "score" in rejection.message and "customer_id" in rejection.message
    assert rejection.event_id == "resp-000001"


def test_dead_letter_keeps_original_bytes_and_position() -> None:
    value = b"\xff" + bytes(range(256))
    record = RawRecord("feedback.raw", 3, 1234, b"key-1", value)
    letter = dead_letter(record, reject(value), max_original_bytes=1 << 20)
    assert letter.reason is Reason.BAD_ENCODING
    assert letter.original() == value
    assert base64.b64decode(letter.key_base64 or "") == b"key-1"
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "feedback.raw",
        3,
        1234,
    )
    assert letter.original_size == len(value) and not letter.original_truncated


def test_dead_letter_truncates_only_beyond_its_limit() -> None:
    value = b"y" * 5000
    record = RawRecord("t", 0, 0, None, value)
    letter = dead_letter(record, reject(b"y" * (LIMIT + 1)), max_original_bytes=1024)
    assert letter.original() == value[:1024]
    assert letter.original_truncated and letter.original_size == 5000


def _entry(digest: int, now: float, revision: int = 0) -> Entry:
    return make_entry(digest, now, revision, None)


def _seen(dedupe: DuplicateFilter, event_id: str, digest: int, now: float) -> Seen:
    """lookup, then remember the version as the scoring stage does."""
    seen, previous = dedupe.lookup(event_id, digest, now)
    if seen is not Seen.DUPLICATE:
        revision = 0 if previous is None else previous[REVISION] + 1
        dedupe.remember(event_id, _entry(digest, now, revision))
    return seen


def test_duplicate_filter_horizon_updates_and_memory_cap() -> None:
    dedupe = DuplicateFilter(horizon_seconds=10, max_ids=3)
    assert _seen(dedupe, "a", 1, now=0) is Seen.NEW
    assert _seen(dedupe, "a", 1, now=5) is Seen.DUPLICATE
    assert _seen(dedupe, "a", 2, now=6) is Seen.UPDATE
    assert dedupe.get("a") == _entry(2, 6, revision=1)  # the horizon counts from the update
    assert _seen(dedupe, "a", 2, now=15.5) is Seen.DUPLICATE
    assert _seen(dedupe, "a", 2, now=10.5 + 15.5) is Seen.NEW  # forgotten after the horizon
    for i, event_id in enumerate(["b", "c", "d"]):
        assert _seen(dedupe, event_id, 1, now=27 + i) is Seen.NEW
    assert len(dedupe) == 3 and dedupe.evicted_early == 1  # "a" pushed out by the cap
    assert _seen(dedupe, "a", 1, now=30) is Seen.NEW


def test_duplicate_filter_disabled() -> None:
    dedupe = DuplicateFilter(horizon_seconds=0, max_ids=100)
    assert _seen(dedupe, "a", 1, now=0) is Seen.NEW
    assert _seen(dedupe, "a", 1, now=0) is Seen.NEW
    assert len(dedupe) == 0


def test_dedupe_entries_are_plain_json_and_digests_stable() -> None:
    import gc
    import json

    contribution = (1_764_000_000, "nps", 9, 1200.5, "support", None, "app", "chat", None)
    entry = make_entry(content_digest(b'{"event_id":"a"}'), 12.5, 3, contribution)
    assert entry_from_json(json.loads(json.dumps(entry))) == entry
    assert contribution_of(entry) == contribution
    assert entry_from_json(json.loads(json.dumps(_entry(7, 1.0)))) == _entry(7, 1.0)
    assert contribution_of(_entry(7, 1.0)) is None
    # flat tuples of plain values: Python's cyclic GC stops tracking them (cheap collections)
    gc.collect()
    assert not gc.is_tracked(entry)
    # blake2b, not hash(): the same in every process (this value is fixed forever)
    assert content_digest(b"x") == int.from_bytes(bytes.fromhex("4adf4367f96e584f"), "big")


# A realistic entry: 64-bit digest, wall-clock seen_at, the scoring stage's contribution.
REAL = make_entry(
    content_digest(b'{"event_id":"r"}'),
    1_764_130_000.123456,
    0,
    (
        1_764_129_960,
        "nps",
        9,
        12_345.67,
        "support",
        "agent-000123",
        "web-app",
        "chat",
        "emea",
        None,
    ),
)


def test_packed_entries_are_compact_and_come_back_identical() -> None:
    packed = pack_entry(REAL)
    assert isinstance(packed, bytes) and unpack_entry(packed) == REAL
    # the tuple with its digest, seen_at, bucket start and account value objects: ~260 B
    as_tuple = sys.getsizeof(REAL) + sum(sys.getsizeof(v) for v in REAL[:2]) + 32 + 24
    assert sys.getsizeof(packed) < 150 < as_tuple
    assert pack_entry(_entry(7, 1.0)) != _entry(7, 1.0)  # packed
    assert unpack_entry(pack_entry(_entry(7, 1.0))) == _entry(7, 1.0)


def test_entries_that_would_not_round_trip_stay_tuples() -> None:
    for entry in (
        _entry(7, 1),  # seen_at an int: it would come back a float
        _entry(-1, 1.0),  # not a 64-bit unsigned digest
        _entry(1 << 64, 1.0),
        make_entry(7, 1.0, 0, (60, "nps", 9, float("inf"))),  # orjson writes null
        make_entry(7, 1.0, 0, (60, "nps", 9, float("nan"), None)),
        make_entry(7, 1.0, 0, (60, "nps", 9, 1 << 70)),  # beyond JSON's integers here
    ):
        assert pack_entry(entry) is entry
        assert repr(unpack_entry(pack_entry(entry))) == repr(entry)


plain_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 63), (1 << 64) - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["null", "a null b", "agent-000123"]),
)


@given(
    st.one_of(st.integers(-5, (1 << 64) + 5), st.integers(0, (1 << 64) - 1)),
    st.one_of(st.floats(allow_nan=False), st.integers(0, 2_000_000_000)),
    st.integers(0, 1000),
    st.one_of(st.none(), st.lists(plain_value, max_size=12).map(tuple)),
)
def test_any_entry_comes_back_identical(digest, seen_at, revision, contribution) -> None:
    entry = make_entry(digest, seen_at, revision, contribution)
    back = unpack_entry(pack_entry(entry))
    assert repr(back) == repr(entry)  # types too: 1 is not 1.0, nan is nan


def test_duplicate_filter_with_packed_entries() -> None:
    dedupe = DuplicateFilter(horizon_seconds=10.0, max_ids=2)
    first = make_entry(1, 100.25, 0, REAL[3:])
    dedupe.remember("a", first)
    assert isinstance(dedupe._seen["a"], bytes)
    assert dedupe.lookup("a", 1, 105.0) == (Seen.DUPLICATE, first)
    assert dedupe.lookup("a", 2, 105.0) == (Seen.UPDATE, first)
    update = make_entry(2, 105.5, 1, REAL[3:])
    dedupe.remember("a", update)
    assert dedupe.get("a") == update
    assert dedupe.lookup("a", 2, 115.25) == (Seen.DUPLICATE, update)  # horizon from 105.5
    assert dedupe.lookup("a", 2, 115.75)[0] is Seen.NEW  # forgotten
    # dropped by the next pass over expired entries, a second of ``now`` after the last
    assert len(dedupe) == 1 and dedupe.lookup("b", 1, 116.0)[0] is Seen.NEW
    assert len(dedupe) == 1 and dedupe.lookup("b", 1, 116.25)[0] is Seen.NEW
    assert len(dedupe) == 0
    assert dedupe.take_journal() == [("a", first), ("a", update)]  # journaled as tuples
