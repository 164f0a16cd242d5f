"""The stage-1 speed-ups give exactly what the code they replace gave.

* :class:`pipeline.segments.SegmentKeyCache` against :func:`pipeline.segments.segment_keys`;
* :func:`pipeline.murmur2.murmur2` against aiokafka's (Kafka's) murmur2;
* :func:`pipeline.metrics.observe_all` against ``Histogram.observe`` one by one;
* the scoring stage's canonical JSON of an event (:func:`pipeline.scoring._to_json`,
  orjson) against pydantic's ``model_dump_json``, byte for byte: it is the dedupe
  digest, which must not change with the code that computes it;
* the dedupe's :func:`~pipeline.dedupe.content_digest`,
  :func:`~pipeline.dedupe.pack_entry` and ``DuplicateFilter.lookup`` (expiry inline)
  against copies of the code they replaced;
* :mod:`pipeline.sparseadd` (the scoring stage's adds of an answer's counts) against
  ``Counts.add``, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from aiokafka.partitioner import murmur2 as kafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from pipeline.batchio import BatchProducer
from pipeline.dedupe import DuplicateFilter, Seen, content_digest, pack_entry, unpack_entry
from pipeline.metrics import observe_all
from pipeline.murmur2 import murmur2, partition_of
from pipeline.scoring import _EVENT_ADDERS, _to_json
from pipeline.segments import SegmentKeyCache, segment_keys
from pipeline.sparseadd import adder, adder_for
from pipeline.windows import Counts
from schemas.feedback import SCALES, SEGMENT_FIELDS, FeedbackEvent, example_event

# values with the characters that matter: blanks, escapes, padding
_VALUES = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "support", " support ", "a|b", "x=y", "50%", "sales"]),
    st.text(alphabet=" ab|=%\t", max_size=4),
)
_NAMES = st.sampled_from([*SEGMENT_FIELDS, "theme", "unknown"])


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.tuples(*[_VALUES for _ in SEGMENT_FIELDS]), min_size=1, max_size=12),
    dimensions=st.lists(_NAMES, max_size=7),
    combinations=st.lists(st.lists(_NAMES, max_size=3), max_size=4),
    max_entries=st.sampled_from([1, 3, 1000]),
)
def test_key_cache_equals_segment_keys(rows, dimensions, combinations, max_entries):
    cache = SegmentKeyCache(SEGMENT_FIELDS, dimensions, combinations, max_entries=max_entries)
    for values in rows + rows:  # the second time from the cache (unless it started over)
        interned, keys = cache.lookup(values)
        expected = segment_keys(
            dict(zip(SEGMENT_FIELDS, values, strict=True)), dimensions, combinations
        )
        assert keys == expected
        assert interned == values
        assert len(cache) <= max(max_entries, len(SEGMENT_FIELDS) + len(combinations))


def test_key_cache_default_config_and_interning():
    cache = SegmentKeyCache(SEGMENT_FIELDS)
    values = ("support", "agent-7", None, "chat", " emea ")
    interned, keys = cache.lookup(values)
    assert keys == [
        "overall",
        "department=support",
        "agent=agent-7",
        "channel=chat",
        "region=emea",
        "department=support|channel=chat",
    ]
    again, _ = cache.lookup(tuple("".join(v) if v else v for v in values))  # equal, not same
    assert all(a is b for a, b in zip(interned, again, strict=True) if a is not None)
    with pytest.raises(ValueError, match="expected 5 segment values"):
        cache.lookup(("support",))


def test_key_cache_starts_over_when_full():
    cache = SegmentKeyCache(SEGMENT_FIELDS, max_entries=10)
    for i in range(100):
        _, keys = cache.lookup(("support", f"agent-{i}", None, None, None))
        assert keys == ["overall", "department=support", f"agent=agent-{i}"]
        assert len(cache) <= 10


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=70))
def test_murmur2_equals_kafkas(data):
    assert murmur2(data) == kafka_murmur2(data)


#: Kafka's own test vectors (UtilsTest.testMurmur2: Utils.murmur2, signed 32 bits)
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_murmur2_known_partitions():
    for key, signed in JAVA_MURMUR2.items():
        assert murmur2(key) == signed & 0xFFFFFFFF, key
    assert [partition_of(f"sim-7-{i}".encode(), 4) for i in range(8)] == [
        (kafka_murmur2(f"sim-7-{i}".encode()) & 0x7FFFFFFF) % 4 for i in range(8)
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=30), st.sampled_from([1, 3, 4, 12]))
def test_segment_partitions_are_kafkas_whatever_was_cached(keys, partitions):
    producer = BatchProducer("unused:9092", max_request_size=1 << 20, client_id="test")
    for count in (4, partitions, 4):  # the cache starts over when the count changes
        for key in keys + keys:
            assert producer.segment_partition(key, count) == (
                (kafka_murmur2(key.encode()) & 0x7FFFFFFF) % count
            ), key


def _histogram() -> tuple[Histogram, CollectorRegistry]:
    registry = CollectorRegistry()
    return Histogram("lag", "lag", buckets=(0.1, 0.5, 1, 5), registry=registry), registry


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([-3.0, 0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 4.5, 5.0, 7.0, 1e9])))
def test_observe_all_equals_observe_one_by_one(amounts):
    one, one_registry = _histogram()
    many, many_registry = _histogram()
    for amount in amounts:
        one.observe(amount)
    observe_all(many, amounts)
    assert generate_latest(many_registry) == generate_latest(one_registry)


def test_observe_all_on_a_labeled_histogram_raises_like_observe():
    registry = CollectorRegistry()
    labeled = Histogram("h", "h", ["kind"], registry=registry)
    with pytest.raises(ValueError):
        labeled.observe(1.0)
    with pytest.raises(ValueError):
        observe_all(labeled, [1.0])
    observe_all(labeled.labels("a"), [0.2, 3.0])
    assert labeled.labels("a")._sum.get() == pytest.approx(3.2)


_TEXT = st.text(min_size=1, max_size=30).filter(str.strip) | st.sampled_from(
    [" padded ", "\u2028x\u2029", '😀 è \x00\x1f"\\', "a" * 200]
)
_ATTRIBUTE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),  # over 64 bits orjson refuses: pydantic's path
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
)


@st.composite
def _event_json(draw: st.DrawFn) -> bytes:
    survey = draw(st.sampled_from(["nps", "csat", "ces"]))
    low, high = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}[survey]
    moment = draw(st.datetimes(datetime(1971, 1, 1), datetime(2100, 1, 1)))
    offset = draw(st.sampled_from([0, 60, -330, 345, 14 * 60]) | st.integers(-1439, 1439))
    stamp = moment.replace(tzinfo=timezone(timedelta(minutes=offset))).isoformat()
    if offset == 0 and draw(st.booleans()):
        stamp = stamp.replace("+00:00", "Z")
    event = example_event(
        event_id=draw(_TEXT),
        event_time=stamp,
        survey_type=survey,
        score=draw(st.integers(low, high)),
        comment=draw(st.none() | st.text(max_size=40)),
        customer_id=draw(_TEXT),
        attributes=draw(st.dictionaries(st.text(max_size=8), _ATTRIBUTE, max_size=4)),
    )
    for name in SEGMENT_FIELDS:
        value = draw(st.none() | st.text(min_size=1, max_size=20).filter(str.strip))
        if value is None:
            del event[name]
        else:
            event[name] = value
    value = draw(
        st.none() | st.floats(min_value=0, allow_nan=False, allow_infinity=False) | st.integers(0)
    )
    if value is not None:
        event["account_value"] = value
    if draw(st.booleans()):
        del event["source"]
    return json.dumps(event, ensure_ascii=draw(st.booleans())).encode()  # ints over 64 bits


@settings(max_examples=800, deadline=None)
@given(_event_json())
def test_canonical_json_equals_pydantics(value):
    event = FeedbackEvent.model_validate_json(value)
    assert _to_json(event) == event.model_dump_json().encode()
    redacted = event.model_copy(update={"comment": "[EMAIL] wrote"})  # as the stage copies
    assert _to_json(redacted) == redacted.model_dump_json().encode()


def test_canonical_json_of_what_orjson_cannot_encode():
    big = FeedbackEvent.model_validate_json(
        orjson.dumps(example_event(attributes={"n": 1}))
    ).model_copy(update={"attributes": {"n": 2**80}})
    assert _to_json(big) == big.model_dump_json().encode()


# --- the dedupe's digest and packing, against the code they replaced ----------------


def _content_digest_before(content: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(content, digest_size=8).digest(), "big")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_content_digest_equals_the_one_it_replaced(content):
    assert content_digest(content) == _content_digest_before(content)


def _pack_entry_before(entry):
    digest, seen_at = entry[0], entry[1]
    if type(digest) is not int or not 0 <= digest < 1 << 64 or type(seen_at) is not float:
        return entry
    rest = entry[2:]
    try:
        tail = orjson.dumps(rest)
    except TypeError:
        return entry
    if b"null" in tail and tail.count(b"null") != rest.count(None):
        return entry
    return struct.Struct("<Qd").pack(digest, seen_at) + tail


_ENTRY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),  # NaN and infinities too: orjson writes null
    st.sampled_from(["nps", "null", "a null b", "", "agent-7"]),
    st.text(max_size=6),
)


@settings(max_examples=500, deadline=None)
@given(
    digest=st.integers(-5, 2**64 + 5) | st.integers(2**64 - 3, 2**64 + 3) | st.booleans(),
    seen_at=st.floats() | st.integers(0, 10),
    rest=st.lists(_ENTRY_VALUE, min_size=1, max_size=12),
)
def test_pack_entry_equals_the_one_it_replaced(digest, seen_at, rest):
    entry = (digest, seen_at, *rest)
    before, now = _pack_entry_before(entry), pack_entry(entry)
    assert type(now) is type(before)
    if isinstance(before, bytes):
        assert now == before
        assert repr(unpack_entry(now)) == repr(entry)
    else:
        assert now is entry


# --- sparse adds of an answer's counts, against Counts.add ------------------------------

_ANSWER = st.tuples(
    st.sampled_from(["nps", "csat", "ces"]),
    st.integers(0, 10),
    st.none() | st.sampled_from([0.0, -0.0, 0.1, 0.2, 0.3, 1e-17, 1e300, 7.0]) | st.floats(0, 1e6),
    st.booleans(),  # True: an update's removal of that answer (Counts.add, as the stage does)
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_ANSWER, min_size=1, max_size=40))
def test_sparse_adds_equal_counts_add(answers):
    plain: Counts | None = None
    sparse: Counts | None = None
    for survey, score, value, removal in answers:
        score = min(max(score, SCALES[survey][0]), SCALES[survey][1])
        counts = Counts.of_event(survey, score, value)
        if removal:
            counts, added = Counts(), counts
            counts.subtract(added)
        if plain is None or sparse is None:
            plain, sparse = counts.copy(), counts.copy()
            continue
        plain.add(counts)
        if removal:
            sparse.add(counts)
        else:  # as the stage looks it up: by survey, score and whether there is a value
            _EVENT_ADDERS[(survey, score, value is not None)](sparse, counts)
    assert plain is not None and sparse is not None
    assert repr(sparse.to_list()) == repr(plain.to_list())  # bit for bit, -0.0 included


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-3, 3) | st.floats(-5, 5), min_size=14, max_size=14), st.data())
def test_adder_for_adds_the_nonzero_fields(values, data):
    counts = Counts(*values)
    total = Counts(*data.draw(st.lists(st.integers(-9, 9), min_size=14, max_size=14)))
    expected = total.copy()
    expected.add(counts)
    adder_for(counts)(total, counts)
    assert total.to_list() == expected.to_list()
    with pytest.raises(ValueError, match="not fields of Counts"):
        adder(["responses", "nope"])


_STEP = st.tuples(
    st.sampled_from(["lookup", "remember"]),
    st.integers(0, 79).map(lambda i: f"id-{i}"),
    st.integers(0, 3),  # digest
    st.integers(0, 50).map(float),  # times: not monotonic (restored journals), ties
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(_STEP, max_size=300),
    st.sampled_from([1, 3, 64, 100]),
    st.sampled_from([0, 5, 30]),
)
def test_dedupe_remembers_the_recent_ids_within_the_horizon(steps, max_ids, horizon):
    """Against a brute-force model: every remembered version in order of recency.

    A lookup must find the last version of an id when it is among the ``max_ids`` ids
    remembered last and was seen within the horizon of every ``now`` so far, the lookups'
    and the times of the versions remembered (a pass at a later ``now`` may have dropped
    it: remembering past the cap drops the expired ids first); it must not find an id
    never remembered, or last seen before the horizon of this ``now``. In between (ids
    past the cap, up to its 1/64 of slack) either answer is allowed. The memory never
    holds more than the cap and its slack; with fewer than 64 ids it is exact: an id
    past the cap is forgotten.
    """
    dedupe = DuplicateFilter(horizon, max_ids)
    recency: list[str] = []  # most recent last
    last: dict[str, tuple] = {}
    latest_now = -1.0
    for action, event_id, digest, at in steps:
        if action == "remember":
            latest_now = max(latest_now, at)
            entry = (digest, at, 0, 60, "nps", 9, None)
            dedupe.remember(event_id, entry)
            if horizon > 0:
                if event_id in last:
                    recency.remove(event_id)
                recency.append(event_id)
                last[event_id] = entry
            assert len(dedupe) <= max_ids + max_ids // 64
            continue
        latest_now = max(latest_now, at)
        seen, known = dedupe.lookup(event_id, digest, at)
        entry = last.get(event_id)
        if entry is None or entry[1] < at - horizon:
            assert (seen, known) == (Seen.NEW, None)
            continue
        rank = len(recency) - 1 - recency.index(event_id)  # 0: the last remembered
        if rank < max_ids and entry[1] >= latest_now - horizon:
            assert known == entry
            assert seen is (Seen.DUPLICATE if digest == entry[0] else Seen.UPDATE)
        elif rank >= max_ids and max_ids < 64 and entry[1] >= latest_now - horizon:
            assert seen is Seen.NEW  # the exact cap: forgotten
        else:
            assert seen is Seen.NEW or known == entry


def test_dedupe_forgets_in_bulk_at_its_cap_and_counts_it() -> None:
    dedupe = DuplicateFilter(horizon_seconds=3600, max_ids=6400)
    for i in range(6400 + 100):
        dedupe.remember(f"id-{i}", (i, 1000.0, 0))
        assert len(dedupe) <= 6400 + 100
    # the cap's slack is 100 ids: the 6,501st id made it forget the 101 least recent
    assert len(dedupe) == 6400 + 100 and dedupe.evicted_early == 0
    dedupe.remember("id-6500", (1, 1000.0, 0))
    assert len(dedupe) == 6400 and dedupe.evicted_early == 101
    assert dedupe.lookup("id-100", 100, 1000.0)[0] is Seen.NEW
    assert dedupe.lookup("id-101", 101, 1000.0)[0] is Seen.DUPLICATE
    # an id seen again became the most recent: the next bulk pass keeps it
    dedupe.remember("id-101", (101, 1000.0, 1))
    for i in range(7000, 7101):
        dedupe.remember(f"id-{i}", (i, 1000.0, 0))
    assert dedupe.lookup("id-101", 101, 1000.0)[0] is Seen.DUPLICATE
    assert dedupe.lookup("id-102", 102, 1000.0)[0] is Seen.NEW
    # expired ids at the front are dropped first, not counted as evicted early
    late = DuplicateFilter(horizon_seconds=10, max_ids=64)
    for i in range(65):
        late.remember(f"old-{i}", (i, 0.0, 0))
    late.remember("new", (1, 100.0, 0))  # over cap + slack: the old ones are expired
    assert len(late) == 1 and late.evicted_early == 0


def _small_table(step: int) -> DuplicateFilter:
    """A filter whose packing table is rebuilt after a few strings, ``step`` entries
    moved to the new table per entry remembered."""
    cls = type("SmallTable", (DuplicateFilter,), {"TABLE_MIN": 4, "REPACK_STEP": step})
    return cls(horizon_seconds=1e12, max_ids=1000)


_STRING = (
    st.none() | st.sampled_from(["", "null", "agent-1", "é", "billing|price"]) | st.text(max_size=5)
)
_USUAL = st.tuples(
    st.integers(0, 2**64 - 1),  # digest
    st.floats(0, 2e9),  # seen_at
    st.integers(0, 3) | st.just(65_535),  # revision
    st.integers(0, 2**32 - 1).map(lambda s: s // 60 * 60),  # bucket start
    st.sampled_from(["nps", "csat", "ces"]),
    st.integers(0, 10),
    st.none() | st.floats(0, 1e9),  # account value
    st.lists(_STRING, min_size=1, max_size=7),
).map(lambda t: (*t[:7], *t[7]))
# out of the packed ranges or types: kept as pack_entry keeps them
_UNUSUAL = st.tuples(
    st.integers(0, 2**64 - 1),
    st.floats(0, 2e9),
    st.integers(65_536, 70_000) | st.just(-1),
    st.integers(-(2**40), 2**40) | st.sampled_from([True, 60.0]),
    st.sampled_from(["nps", 3]),
    st.integers(-300, 300) | st.just(False),
    st.sampled_from([None, 5, float("nan"), float("inf"), "x"]),
    st.lists(_STRING | st.integers(0, 3), min_size=0, max_size=3),
).map(lambda t: (*t[:7], *t[7]))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), _USUAL | _UNUSUAL), max_size=120),
    st.sampled_from([1, 3, 1000]),
)
def test_dedupe_entries_come_back_identical_across_table_rebuilds(steps, step):
    dedupe = _small_table(step)
    last: dict[str, tuple] = {}
    for i, entry in steps:
        dedupe.remember(f"id-{i}", entry)
        last[f"id-{i}"] = entry
        for event_id, want in last.items():  # from either table during a rebuild
            assert repr(dedupe.get(event_id)) == repr(want)  # types too: 1 is not 1.0


def test_dedupe_table_rebuild_leaves_the_strings_no_longer_used():
    dedupe = _small_table(8)
    for agent in ("agent-0", "agent-1", "agent-2"):  # one id, its agent changed twice
        dedupe.remember("id-0", (0, 1.0, 0, 60, "nps", 9, None, agent))
    assert dedupe._previous is not None  # 4 strings and "": the table outgrew 4
    assert {"agent-0", "agent-1"} <= set(dedupe._previous.names)
    dedupe.remember("id-1", (1, 1.0, 0, 60, "nps", 9, None, "agent-2"))  # moves id-0
    assert dedupe._previous is None
    assert set(dedupe._packer.names) == {"", "agent-2", "nps"}
    assert dedupe.get("id-0") == (0, 1.0, 0, 60, "nps", 9, None, "agent-2")


def test_dedupe_table_rebuild_moves_entries_a_few_at_a_time():
    dedupe = _small_table(2)
    n = 0
    while dedupe._previous is None:  # new agents until the table outgrows its limit
        dedupe.remember(f"id-{n}", (n, 1.0, 0, 60, "nps", 9, None, f"agent-{n}"))
        n += 1
    old, new = dedupe._previous.marker, dedupe._packer.marker
    assert old != new and n > 2
    assert [dedupe._seen[f"id-{k}"][16] for k in range(n)] == [old] * n  # none moved yet
    dedupe.remember(f"id-{n}", (n, 1.0, 0, 60, "nps", 9, None, "agent-0"))
    markers = [dedupe._seen[f"id-{k}"][16] for k in range(n + 1)]
    assert markers == [old] * (n - 2) + [new] * 3  # two moved, the newest packed anew
    while dedupe._previous is not None:
        n += 1
        dedupe.remember(f"id-{n}", (n, 1.0, 0, 60, "nps", 9, None, "agent-0"))
    assert {dedupe._seen[f"id-{k}"][16] for k in range(n + 1)} == {new}
    assert dedupe.get("id-1") == (1, 1.0, 0, 60, "nps", 9, None, "agent-1")


def test_dedupe_entries_of_the_usual_shape_take_96_bytes():
    dedupe = DuplicateFilter(horizon_seconds=3600, max_ids=10)
    entry = (2**63 + 5, 1795772940.25, 0, 1795772940, "nps", 10, None,
             "onboarding", "agent-000041", "mobile-app", "in-app", "apac", None)  # fmt: skip
    dedupe.remember("bench-000000000", entry)
    packed = dedupe._seen["bench-000000000"]
    assert isinstance(packed, bytes) and sys.getsizeof(packed) <= 96
    assert sys.getsizeof(pack_entry(entry)) > 128  # the JSON tail of the same entry
    assert dedupe.get("bench-000000000") == entry
