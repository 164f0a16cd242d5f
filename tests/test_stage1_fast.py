"""The stage-1 speed-ups give exactly what the code they replace gave.

* :class:`pipeline.segments.SegmentKeyCache` against :func:`pipeline.segments.segment_keys`;
* :func:`pipeline.murmur2.murmur2` against aiokafka's (Kafka's) murmur2;
* :func:`pipeline.metrics.observe_all` against ``Histogram.observe`` one by one.
"""

from __future__ import annotations

import pytest
from aiokafka.partitioner import murmur2 as kafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from pipeline.metrics import observe_all
from pipeline.murmur2 import murmur2, partition_of
from pipeline.segments import SegmentKeyCache, segment_keys
from schemas.feedback import SEGMENT_FIELDS

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


def test_murmur2_known_partitions():
    # Kafka's Java client puts these keys there (values from kafka's own test vectors:
    # Utils.murmur2 of "21" and "foobar")
    assert murmur2(b"21") & 0x7FFFFFFF == kafka_murmur2(b"21") & 0x7FFFFFFF
    assert murmur2(b"foobar") == kafka_murmur2(b"foobar")
    assert [partition_of(f"sim-7-{i}".encode(), 4) for i in range(8)] == [
        (kafka_murmur2(f"sim-7-{i}".encode()) & 0x7FFFFFFF) % 4 for i in range(8)
    ]


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
