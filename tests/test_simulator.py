"""The feedback simulator: valid, deterministic, realistic data; pacing on a real broker."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic
from pydantic import ValidationError

from pipeline import simulator
from pipeline.simulator import (
    BAD_KINDS,
    HOURLY_PROFILE,
    FeedbackSimulator,
    Incident,
    SimulatorConfig,
    bad_record,
    produce,
    rate_factor,
)
from schemas.feedback import FeedbackEvent

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def generate(n: int, step: float = 0.05, **config: object) -> list[dict]:
    sim = FeedbackSimulator(SimulatorConfig(start_time=T0, **config))  # type: ignore[arg-type]
    return [sim.next_event(T0 + timedelta(seconds=i * step)) for i in range(n)]


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return generate(20_000)


def nps(scores: list[int]) -> float:
    return 100 * (sum(s >= 9 for s in scores) - sum(s <= 6 for s in scores)) / len(scores)


def detractor_share(scores: list[int]) -> float:
    return sum(s <= 6 for s in scores) / len(scores)


# --- the generated events -------------------------------------------------------------


def test_events_validate_and_ids_are_unique(events: list[dict]) -> None:
    sample = events[:5000]
    parsed = [FeedbackEvent.model_validate(e) for e in sample]
    assert len({e.event_id for e in parsed}) == 5000
    assert parsed[0].event_id == "sim-7-1"
    assert all(e.source == "simulator" and e.event_time.tzinfo is not None for e in parsed)
    # The JSON bytes the producer sends validate too.
    for e in sample[:500]:
        FeedbackEvent.model_validate_json(orjson.dumps(e))


def test_same_seed_same_events_other_seed_other_events() -> None:
    assert generate(1000, seed=3) == generate(1000, seed=3)
    other = generate(1000, seed=4)
    same = generate(1000, seed=3)
    assert sum(a["score"] != b["score"] for a, b in zip(same, other, strict=True)) > 300
    assert other[0]["event_id"] == "sim-4-1"


def test_fewer_agents_than_departments() -> None:
    events = generate(600, num_agents=3, comment_probability=1.0)
    for e in events:
        FeedbackEvent.model_validate(e)
    assert {e.get("agent") for e in events} == {"agent-001", "agent-002", "agent-003", None}
    assert len(generate(10, num_agents=1500)[0]["agent"]) == len("agent-0001")


def test_survey_mix(events: list[dict]) -> None:
    mix = Counter(e["survey_type"] for e in events)
    assert mix["nps"] / len(events) == pytest.approx(0.70, abs=0.02)
    assert mix["csat"] / len(events) == pytest.approx(0.20, abs=0.02)
    assert mix["ces"] / len(events) == pytest.approx(0.10, abs=0.015)


def test_segments_are_realistic(events: list[dict]) -> None:
    assert len({e["department"] for e in events}) >= 6
    assert len({e["product"] for e in events}) >= 6
    assert {e["channel"] for e in events} == {"email", "chat", "phone", "web", "app", "store"}
    assert {e["region"] for e in events} == {"emea", "na", "latam", "apac"}
    agents = {e["agent"] for e in events}
    assert 250 <= len(agents) <= 300
    assert all(a.startswith("agent-") and len(a) == 9 for a in agents)
    department_of: dict[str, set[str]] = defaultdict(set)
    for e in events:
        department_of[e["agent"]].add(e["department"])
    assert all(len(d) == 1 for d in department_of.values()), "an agent is in one department"
    customers = Counter(e["customer_id"] for e in events)
    assert len(customers) < len(events) * 0.8, "customers answer more than once"
    with_value = [e["account_value"] for e in events if "account_value" in e]
    assert 0.4 < len(with_value) / len(events) < 0.6
    assert all(v > 0 for v in with_value) and max(with_value) > 10 * min(with_value)


def test_segments_differ_in_quality(events: list[dict]) -> None:
    by: dict[tuple[str, str], list[int]] = defaultdict(list)
    csat: dict[str, list[int]] = defaultdict(list)
    for e in events:
        if e["survey_type"] == "nps":
            for dim in ("department", "product", "channel", "agent"):
                by[dim, e[dim]].append(e["score"])
        elif e["survey_type"] == "csat":
            csat[e["department"]].append(e["score"])
    dept = {v: nps(s) for (d, v), s in by.items() if d == "department"}
    best, worst = max(dept, key=dept.__getitem__), min(dept, key=dept.__getitem__)
    assert dept[best] - dept[worst] > 20, dept
    for dim in ("product", "channel"):
        values = [nps(s) for (d, _), s in by.items() if d == dim]
        assert max(values) - min(values) > 15, (dim, values)
    # Some agents are much worse than their colleagues (with enough answers to tell).
    agents = [nps(s) for (d, _), s in by.items() if d == "agent" and len(s) >= 30]
    assert min(agents) < -40 and max(agents) > 30
    # CSAT follows the same quality.
    mean = {d: sum(s) / len(s) for d, s in csat.items()}
    assert mean[best] - mean[worst] > 0.4, mean


def test_comments_in_two_languages_matching_the_score(events: list[dict]) -> None:
    commented = [e for e in events if "comment" in e]
    assert len(commented) / len(events) == pytest.approx(0.6, abs=0.02)
    lang = Counter((e["region"] == "emea", e["attributes"]["language"]) for e in commented)
    emea_it = lang[True, "it"] / (lang[True, "it"] + lang[True, "en"])
    assert 0.3 < emea_it < 0.5
    assert lang[False, "it"] == 0
    assert any(" è " in e["comment"] for e in commented)  # Italian text is there
    nps_comments = [e for e in commented if e["survey_type"] == "nps"]
    detractor = {e["comment"] for e in nps_comments if e["score"] <= 6}
    promoter = {e["comment"] for e in nps_comments if e["score"] >= 9}
    assert len(detractor) > 40 and len(promoter) > 10
    assert not detractor & promoter
    complaints = ("wait", "rude", "charged", "invoice", "late", "expensive", "price", "resolved")
    hits = {k for k in complaints for c in detractor if k in c.lower()}
    assert len(hits) >= 6, hits
    assert not any(k in c.lower() for k in complaints for c in promoter)
    assert not any("{" in e["comment"] for e in commented), "placeholders are filled"


def test_daily_rhythm_is_quiet_at_night() -> None:
    assert sum(HOURLY_PROFILE) / 24 == pytest.approx(1.0)
    night = rate_factor(datetime(2026, 1, 1, 3, 0, tzinfo=UTC))
    day = rate_factor(datetime(2026, 1, 1, 10, 30, tzinfo=UTC))
    assert night < 0.15 and day > 1.5
    assert min(HOURLY_PROFILE) == pytest.approx(night)


# --- incidents ------------------------------------------------------------------------


def test_incident_raises_detractor_share_only_inside_its_interval() -> None:
    incident = Incident.parse("product=mobile-plan,detractors=0.75,start=10m,duration=10m")
    events = generate(36_000, step=0.05, incidents=[incident])  # 30 minutes of event time
    inside: list[int] = []
    outside: list[int] = []
    others_inside: list[int] = []
    for e in events:
        if e["survey_type"] != "nps":
            continue
        offset = (datetime.fromisoformat(e["event_time"]) - T0).total_seconds()
        active = 600 <= offset < 1200
        if e["product"] == "mobile-plan":
            (inside if active else outside).append(e["score"])
        elif active:
            others_inside.append(e["score"])
    assert len(inside) > 1000
    assert detractor_share(inside) == pytest.approx(0.75, abs=0.04)
    assert detractor_share(outside) < 0.45
    assert detractor_share(others_inside) < 0.45


def test_incident_on_one_agent() -> None:
    config = SimulatorConfig(
        start_time=T0, incidents=[Incident.parse("agent=agent-001,detractors=1,duration=600")]
    )
    sim = FeedbackSimulator(config)
    scores: dict[bool, list[int]] = {True: [], False: []}
    for i in range(60_000):
        e = sim.next_event(T0 + timedelta(seconds=i * 0.02))
        if e.get("agent") == "agent-001" and e["survey_type"] == "nps":
            scores[i * 0.02 < 600].append(e["score"])
    assert len(scores[True]) > 20
    assert detractor_share(scores[True]) == 1.0
    assert detractor_share(scores[False]) < 0.7


def test_incident_parse_good_spec() -> None:
    inc = Incident.parse("agent=agent-042,detractors=0.6,start=60,duration=300")
    assert inc == Incident(
        dimension="agent",
        value="agent-042",
        detractor_share=0.6,
        start_after_seconds=60,
        duration_seconds=300,
    )
    assert Incident.parse(" region = emea , share=0 , duration=1h ").duration_seconds == 3600
    assert Incident.parse("region=emea,detractors=1,duration=90s").start_after_seconds == 0
    assert inc.active_at(60) and inc.active_at(359.9)
    assert not inc.active_at(59.9) and not inc.active_at(360)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("team=red,detractors=0.5,duration=60", "unknown key 'team'"),
        ("agent=agent-001,detractors=1.5,duration=60", "between 0 and 1"),
        ("agent=agent-001,detractors=-0.1,duration=60", "between 0 and 1"),
        ("agent=agent-001,detractors=lots,duration=60", "is not a number"),
        ("agent=agent-001,detractors=0.5", "missing duration="),
        ("detractors=0.5,duration=60", "missing a segment"),
        ("agent=agent-001,duration=60", "missing detractors="),
        ("", "missing a segment"),
        ("agent=agent-001,detractors=0.5,duration=0", "greater than 0"),
        ("agent=agent-001,detractors=0.5,start=-5,duration=10", "must not be negative"),
        ("agent=agent-001,region=emea,detractors=0.5,duration=10", "two segments"),
        ("agent-001,detractors=0.5,duration=10", "not key=value"),
    ],
)
def test_incident_parse_rejects_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        Incident.parse(spec)
    assert not isinstance(info.value, ValidationError), "parse gives its own message"


def test_incident_on_unknown_segment_is_rejected() -> None:
    for spec in (
        "agent=agent-999,detractors=0.5,duration=10",
        "product=toaster,detractors=1,duration=9",
    ):
        config = SimulatorConfig(incidents=[Incident.parse(spec)])
        with pytest.raises(ValueError, match="matches nothing simulated"):
            FeedbackSimulator(config)


def test_config_validation() -> None:
    for bad in ({"rate": -1}, {"time_scale": 0}, {"invalid_ratio": 2}, {"count": -1}):
        with pytest.raises(ValidationError):
            SimulatorConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        SimulatorConfig(start_time=datetime(2026, 1, 1))  # naive: no timezone


# --- bad records ----------------------------------------------------------------------


def test_bad_records_are_rejected() -> None:
    rng = random.Random(1)
    for kind in BAD_KINDS:
        for _ in range(50):
            record = bad_record(rng, T0, kind=kind)
            with pytest.raises(ValidationError):
                FeedbackEvent.model_validate_json(record)
    records = [bad_record(rng) for _ in range(300)]
    for record in records:
        with pytest.raises(ValidationError):
            FeedbackEvent.model_validate_json(record)
    with pytest.raises(UnicodeDecodeError):
        bad_record(rng, kind="bad_encoding").decode()
    with pytest.raises(ValueError, match="unknown bad record kind"):
        bad_record(rng, kind="nope")


def test_invalid_ratio_mixes_bad_records() -> None:
    sim = FeedbackSimulator(SimulatorConfig(start_time=T0, invalid_ratio=0.2))
    valid = 0
    for i in range(2000):
        key, value = sim.next_record(T0 + timedelta(seconds=i))
        try:
            event = FeedbackEvent.model_validate_json(value)
        except ValidationError:
            continue
        valid += 1
        assert key == event.event_id.encode()
    assert valid / 2000 == pytest.approx(0.8, abs=0.03)


# --- producing to a real broker -------------------------------------------------------


def create_topic(bootstrap: str, name: str, partitions: int = 2) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-simulator")
    try:
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


def consume_all(bootstrap: str, topic: str, expect: int | None = None) -> list:
    """Every record of ``topic`` (waits 5 s for more, unless ``expect`` records arrived)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    records = []
    try:
        for record in consumer:
            records.append(record)
            if len(records) == expect:
                break
        return records
    finally:
        consumer.close()


@pytest.mark.integration
def test_produce_to_broker(broker, unique: str) -> None:
    topic = f"sim-{unique}"
    create_topic(broker.bootstrap, topic)
    calls: list[int] = []
    sent = produce(
        [broker.bootstrap], topic, SimulatorConfig(count=500, rate=0), None, calls.append
    )
    assert sent == 500
    assert calls[-1] == 500
    records = consume_all(broker.bootstrap, topic)
    assert len(records) == 500
    assert {r.partition for r in records} == {0, 1}
    events = [FeedbackEvent.model_validate_json(r.value) for r in records]
    assert [r.key for r in records] == [e.event_id.encode() for e in events]
    assert {e.event_id for e in events} == {f"sim-7-{n}" for n in range(1, 501)}


@pytest.mark.integration
def test_produce_respects_the_rate(broker, unique: str) -> None:
    topic = f"sim-rate-{unique}"
    create_topic(broker.bootstrap, topic)
    config = SimulatorConfig(count=300, rate=200, daily_cycle=False, seed=11)
    calls: list[int] = []
    started = time.monotonic()
    assert produce([broker.bootstrap], topic, config, progress=calls.append) == 300
    elapsed = time.monotonic() - started
    assert 1.2 < elapsed < 2.5
    assert 3 <= len(calls) <= 1 + 4 * elapsed + 1, calls
    assert calls == sorted(calls) and calls[-1] == 300


@pytest.mark.integration
def test_produce_follows_the_daily_rhythm(broker, unique: str, monkeypatch) -> None:
    """The pacing schedule follows the hour of event time, and produce keeps to it.

    Only lower bounds on wall time are asserted: a loaded machine makes waits longer,
    never shorter, so the test cannot flake on a busy CI runner (an upper bound on the
    day run did), yet fails if the night is not slowed down or the schedule is not used.
    """
    topic = f"sim-rhythm-{unique}"
    create_topic(broker.bootstrap, topic)
    real = simulator.pacing_interval
    used: list[tuple[datetime, float]] = []

    def spy(config: SimulatorConfig, event_time: datetime) -> float:
        interval = real(config, event_time)
        used.append((event_time, interval))
        return interval

    monkeypatch.setattr(simulator, "pacing_interval", spy)

    def run(hour: int) -> tuple[float, list[float]]:
        used.clear()
        start = datetime(2026, 11, 25, hour, tzinfo=UTC)
        config = SimulatorConfig(count=60, rate=1000, start_time=start)
        began = time.monotonic()
        assert produce([broker.bootstrap], topic, config) == 60
        elapsed = time.monotonic() - began
        assert len(used) == 60 and all(t.hour == hour for t, _ in used)
        assert [i for t, i in used] == [real(config, t) for t, _ in used]
        return elapsed, [i for _, i in used]

    night, night_gaps = run(3)  # factor ~0.09: ~11 ms between records
    _, day_gaps = run(10)  # factor ~1.9: ~0.5 ms
    assert sum(night_gaps) / 60 > 3 * sum(day_gaps) / 60
    assert min(night_gaps) > 0.008 and max(day_gaps) < 0.001
    # 59 waits of the schedule precede the last record: produce took at least that long
    assert night >= 0.95 * sum(night_gaps[:-1]) > 0.45


@pytest.mark.integration
def test_produce_stops_on_event_and_duration(broker, unique: str) -> None:
    topic = f"sim-stop-{unique}"
    create_topic(broker.bootstrap, topic)
    stop = threading.Event()
    threading.Timer(1.5, stop.set).start()
    began = time.monotonic()
    sent = produce([broker.bootstrap], topic, SimulatorConfig(rate=100, daily_cycle=False), stop)
    assert time.monotonic() - began < 3.0
    # 150 at the pace over 1.5 s; fewer when connecting to the broker took part of it
    # (over 0.5 s on a loaded machine: a 0.5 s stop once came before the first event)
    assert 1 <= sent <= 180

    create_topic(broker.bootstrap, f"{topic}-d")
    config = SimulatorConfig(rate=100, daily_cycle=False, duration_seconds=0.6, time_scale=60)
    began = time.monotonic()
    sent = produce([broker.bootstrap], f"{topic}-d", config)
    assert 0.55 < time.monotonic() - began < 2.0
    assert 40 <= sent <= 80
    times = [
        FeedbackEvent.model_validate_json(r.value).event_time
        for r in consume_all(broker.bootstrap, f"{topic}-d", expect=sent)
    ]
    assert len(times) == sent
    assert 20 < (max(times) - min(times)).total_seconds() < 45  # 0.6 wall seconds x 60


def test_incident_topic_injects_themed_complaints() -> None:
    inc = Incident.parse("agent=agent-007,detractors=0.9,start=60,duration=600,topic=double_charge")
    assert inc.topic == "double_charge"
    with pytest.raises(ValueError, match="unknown topic 'nope'"):
        Incident.parse("agent=agent-007,detractors=0.9,duration=600,topic=nope")
    config = SimulatorConfig(seed=3, num_agents=30, comment_probability=1.0, incidents=[inc])
    sim = FeedbackSimulator(config)
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    by_phase: dict[str, list[str]] = defaultdict(list)
    for i in range(20_000):
        event = sim.next_event(start + timedelta(seconds=i * 0.05))
        if event.get("agent") == "agent-007" and event["score"] <= 2:  # negative in any survey
            phase = "during" if 60 <= i * 0.05 < 660 else "outside"
            by_phase[phase].append(event["comment"].lower())
    themed = ("double charged", "addebito doppio")
    during = by_phase["during"]
    assert len(during) > 30
    assert all(any(t in c for t in themed) for c in during)
    assert not any(any(t in c for t in themed) for c in by_phase["outside"])
