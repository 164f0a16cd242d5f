"""Combinations with the derived dimension ``theme`` (``NPS_COMBINATIONS=department,theme``):
an answer counts in ``department=<its department>|theme=<name>`` once per theme of its
comment.

* :class:`pipeline.segments.ThemeCombinationKeys` against a brute-force reference
  (:func:`pipeline.segments.segment_keys` of the answer's fields plus each theme);
* the scoring stage's deltas, a comment update moving the answer between themes;
* the settings: what a combination may list;
* a real worker on the embedded broker: every ``department,theme`` segment's all-time
  counts equal those computed here from the scored events' departments and themes.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer

from pipeline.scoring import ScoringStage
from pipeline.segments import ThemeCombinationKeys, segment_keys
from pipeline.settings import ConfigError, load_settings
from pipeline.simulator import FeedbackSimulator, SimulatorConfig
from pipeline.validate import RawRecord
from pipeline.windows import Counts
from schemas.feedback import SEGMENT_FIELDS, example_event
from tests.deltas import read_deltas
from tests.soak.soak import read_topic, wait_for_drain

MINUTE = 60
_VALUES = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "support", " support ", "a|b", "x=y", "50%", "sales"]),
)
_NAMES = st.sampled_from([*SEGMENT_FIELDS, "theme", "unknown"])
_THEMES = st.lists(st.sampled_from(["billing", "price", "wait_time", "staff"]), min_size=1)


def reference(values, themes: list[str], combinations) -> list[str]:
    """Brute force: per combination naming theme once (and fields only otherwise), per
    theme, the key segment_keys gives the fields with the theme added."""
    keys: list[str] = []
    fields = dict(zip(SEGMENT_FIELDS, values, strict=True))
    for combination in combinations:
        names = list(combination)
        if names.count("theme") != 1 or not all(n in SEGMENT_FIELDS or n == "theme" for n in names):
            continue
        for theme in themes:
            found = segment_keys({**fields, "theme": theme}, (), [names])[1:]
            keys.extend(k for k in found if k not in keys)
    return keys


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.tuples(*[_VALUES for _ in SEGMENT_FIELDS]), _THEMES), min_size=1, max_size=8
    ),
    combinations=st.lists(st.lists(_NAMES, max_size=3), max_size=4),
    max_entries=st.sampled_from([1, 1000]),
)
def test_theme_combination_keys_equal_the_reference(rows, combinations, max_entries) -> None:
    keys = ThemeCombinationKeys(SEGMENT_FIELDS, combinations, "theme", max_entries=max_entries)
    for values, themes in rows + rows:  # the second time from the cache
        unique = list(dict.fromkeys(themes))
        assert keys.keys(values, "|".join(unique)) == reference(values, unique, combinations)


def record(offset: int, event: dict) -> RawRecord:
    return RawRecord("feedback.raw", 0, offset, event["event_id"].encode(), orjson.dumps(event))


def test_a_comment_update_moves_the_answer_between_department_theme_segments() -> None:
    t = datetime.now(UTC).replace(second=10, microsecond=0) - timedelta(minutes=3)
    bucket = int(t.timestamp()) // MINUTE * MINUTE
    first = example_event(event_id="c-1", score=2, event_time=t.isoformat())
    first["comment"] = "I was double charged on my last invoice."
    first["department"] = "billing"
    stage = ScoringStage(load_settings(combinations="department,channel;department,theme"))
    out = stage.process([record(0, first)])
    deltas = {key: read_deltas(v).buckets for key, v in out.deltas}
    detractor = Counts(responses=1, detractors=1).to_list()
    assert deltas["department=billing|theme=billing"] == {bucket: detractor}
    assert deltas["theme=billing"] == {bucket: detractor}  # the dimension, as before
    assert deltas[f"department=billing|channel={first['channel']}"] == {bucket: detractor}

    # the comment edited: no longer about billing, now about the wait
    edited = {**first, "comment": "I waited on hold for an hour before anyone answered."}
    out = stage.process([record(1, edited)])
    deltas = {key: read_deltas(v).buckets for key, v in out.deltas}
    removed = Counts(responses=-1, detractors=-1).to_list()
    assert deltas["department=billing|theme=billing"] == {bucket: removed}
    assert deltas["department=billing|theme=wait_time"] == {bucket: detractor}

    # without a department: no department,theme segment, the theme segment still
    lone = example_event(event_id="c-2", score=9, event_time=t.isoformat())
    lone["comment"] = "The price went up again, far too expensive."
    lone.pop("department", None)
    out = stage.process([record(2, lone)])
    keys = {key for key, _ in out.deltas}
    assert "theme=price" in keys
    assert not any(k.startswith("department=") for k in keys)


def test_theme_combinations_without_the_theme_dimension() -> None:
    """``theme`` out of NPS_DIMENSIONS: no theme=<name> segments, the combination's still."""
    t = datetime.now(UTC) - timedelta(minutes=2)
    event = example_event(event_id="c-3", score=3, event_time=t.isoformat())
    event["comment"] = "I was double charged on my last invoice."
    event["department"] = "support"
    stage = ScoringStage(
        load_settings(
            dimensions="department,agent",
            metrics_dimensions="department",
            combinations="department,theme",
        )
    )
    keys = {key for key, _ in stage.process([record(0, event)]).deltas}
    assert "department=support|theme=billing" in keys
    assert not any(k.startswith("theme=") for k in keys)


@pytest.mark.parametrize(
    ("combinations", "ok"),
    [
        ("department,theme", True),
        ("theme,region;department,channel", True),
        ("theme,theme", False),
        ("department,topic", False),
        ("theme", False),
    ],
)
def test_what_a_combination_may_list(combinations: str, ok: bool) -> None:
    if ok:
        assert load_settings(combinations=combinations).combinations == combinations.split(";")
        return
    with pytest.raises(ConfigError) as info:
        load_settings(combinations=combinations)
    assert "two or more different names of" in info.value.message
    assert "'department,theme'" in info.value.message


def test_a_theme_combination_without_comment_analysis_fails_fast() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(combinations="department,theme", text_analytics=False)
    assert "set NPS_TEXT_ANALYTICS=true or take them out of NPS_COMBINATIONS" in info.value.message
    assert load_settings(text_analytics=False).combinations == ["department,channel"]


@pytest.mark.integration
def test_a_worker_counts_department_theme_segments(broker, start_worker, worker_env) -> None:
    worker = start_worker(NPS_COMBINATIONS="department,channel;department,theme")
    sim = FeedbackSimulator(SimulatorConfig(seed=12, comment_probability=0.8))
    now = datetime.now(UTC)
    events = [sim.next_event(now) for _ in range(1500)]
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    for event in events:
        producer.send(
            worker_env["NPS_TOPIC_RAW"],
            key=event["event_id"].encode(),
            value=orjson.dumps(event),
        )
    producer.close()
    wait_for_drain(worker, len({e["event_id"] for e in events}), timeout=120)

    # expected: from the scored events (the latest of each answer), counted here
    latest = {
        r.key: orjson.loads(r.value)
        for r in read_topic(broker.bootstrap, worker_env["NPS_TOPIC_SCORED"])
    }
    expected: dict[str, Counter[str]] = {}
    for scored in latest.values():
        feedback, text = scored["feedback"], scored["text"]
        department = (feedback.get("department") or "").strip()
        if not department or not text or not text["themes"]:
            continue
        for theme in text["themes"]:
            row = expected.setdefault(f"department={department}|theme={theme}", Counter())
            field = {"nps": "responses", "csat": "csat_responses", "ces": "ces_responses"}
            row[field[feedback["survey_type"]]] += 1
            if feedback["survey_type"] == "nps":
                row[scored["category"] + "s"] += 1
    assert len(expected) >= 10  # the simulator's comments reach many themes

    query = urllib.parse.urlencode(
        {"dimension": "department,theme", "window": "all", "limit": 10000, "min_responses": 0}
    )
    with urllib.request.urlopen(f"{worker.url}/api/v1/segments?{query}", timeout=10) as resp:
        rows = json.load(resp)["segments"]
    got = {
        row["segment"]: {
            name: int(row["stats"].get(name, 0))
            for name in ("responses", "promoters", "passives", "detractors",
                         "csat_responses", "ces_responses")
        }
        for row in rows
    }  # fmt: skip
    want = {
        key: {
            name: row[name]
            for name in ("responses", "promoters", "passives", "detractors",
                         "csat_responses", "ces_responses")
        }
        for key, row in expected.items()
    }  # fmt: skip
    assert got == want
