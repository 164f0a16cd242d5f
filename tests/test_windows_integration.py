"""Windows end to end: a fixed dataset through real workers, checked against a reference
computed here, independently of the pipeline's window code."""

from __future__ import annotations

import math
import random
import signal
import time
import urllib.error
from datetime import UTC, datetime

import orjson
import pytest
from kafka import KafkaProducer

from tests.conftest import consume

pytestmark = pytest.mark.integration

WINDOWS = {"5m": 300, "1h": 3600, "24h": 86400}
DEPARTMENTS = ["support", "billing", "sales"]
CHANNELS = ["chat", "phone"]


def dataset(n: int, seed: int, end: float) -> list[dict]:
    """Events spread over the 3 hours before ``end`` (event time), in time order."""
    rng = random.Random(seed)
    times = sorted(end - rng.uniform(0, 3 * 3600) for _ in range(n))
    events = []
    for i, ts in enumerate(times):
        department = rng.choice(DEPARTMENTS)
        survey = rng.choices(["nps", "csat", "ces"], [6, 2, 2])[0]
        bias = {"support": 0.0, "billing": -3.0, "sales": 1.5}[department]
        if survey == "nps":
            score = min(10, max(0, round(rng.gauss(7.5 + bias, 2.5))))
        elif survey == "csat":
            score = rng.randint(1, 5)
        else:
            score = rng.randint(1, 7)
        event = {
            "event_id": f"w-{seed}-{i}",
            "event_time": datetime.fromtimestamp(ts, UTC).isoformat(),
            "survey_type": survey,
            "score": score,
            "customer_id": f"c{rng.randint(1, 50)}",
            "department": department,
            "channel": rng.choice(CHANNELS),
            "agent": f"agent-{rng.randint(1, 5)}",
        }
        if rng.random() < 0.5:
            event["account_value"] = float(rng.choice([100, 1000, 5000]))
        events.append(event)
    return events


def reference(events: list[dict], clock: float, segment: dict[str, str]) -> dict:
    """Brute-force KPIs per window for the events matching ``segment`` (empty = overall)."""

    def ts(e: dict) -> float:
        return datetime.fromisoformat(e["event_time"]).timestamp()

    current = math.floor(clock / 60) * 60
    matching = [e for e in events if all(e.get(k) == v for k, v in segment.items())]
    out = {}
    for label, length in [*WINDOWS.items(), ("all", None)]:
        if length is None:
            chosen = matching
        else:
            low = current - length + 60
            chosen = [e for e in matching if low <= math.floor(ts(e) / 60) * 60 <= current]
        nps_scores = [e["score"] for e in chosen if e["survey_type"] == "nps"]
        n = len(nps_scores)
        p = sum(s >= 9 for s in nps_scores)
        d = sum(s <= 6 for s in nps_scores)
        row = {"responses": n, "promoters": p, "detractors": d, "passives": n - p - d}
        if n:
            row["nps"] = 100 * (p - d) / n
            pa, da, na = (p + 0.75), (d + 0.75), (n + 3)
            var = pa / na + da / na - (pa / na - da / na) ** 2
            half = 1.959963984540054 * 100 * math.sqrt(var / na)
            centre = 100 * (pa - da) / na
            row["nps_low"] = max(-100, centre - half)
            row["nps_high"] = min(100, centre + half)
            rev = [e for e in chosen if e["survey_type"] == "nps" and "account_value" in e]
            weight = sum(e["account_value"] for e in rev)
            if weight:
                row["revenue_weighted_nps"] = (
                    100
                    * (
                        sum(e["account_value"] for e in rev if e["score"] >= 9)
                        - sum(e["account_value"] for e in rev if e["score"] <= 6)
                    )
                    / weight
                )
        csat = [e["score"] for e in chosen if e["survey_type"] == "csat"]
        row["csat_responses"] = len(csat)
        if csat:
            row["csat_mean"] = sum(csat) / len(csat)
            row["csat_satisfied_share"] = sum(s >= 4 for s in csat) / len(csat)
        ces = [e["score"] for e in chosen if e["survey_type"] == "ces"]
        row["ces_responses"] = len(ces)
        if ces:
            row["ces_mean"] = sum(ces) / len(ces)
        out[label] = row
    return out


def assert_matches(api_view: dict, expected: dict) -> None:
    got = {**api_view["windows"], "all": api_view["all_time"]}
    for label, row in expected.items():
        for field, value in row.items():
            actual = got[label][field]
            assert actual == pytest.approx(value, abs=1e-9), (label, field, actual, value)


def send(bootstrap: str, topic: str, events: list[dict]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for event in events:
        producer.send(topic, key=event["event_id"].encode(), value=orjson.dumps(event), partition=0)
    producer.flush()
    producer.close()


def wait_for_responses(worker, segment_path: str, expected_all: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    view: dict = {}
    while time.monotonic() < deadline:
        try:
            view = orjson.loads(worker.get(segment_path))
        except OSError:
            view = {}
        counted = view.get("all_time", {})
        total = sum(counted.get(k, 0) for k in ("responses", "csat_responses", "ces_responses"))
        if total >= expected_all:
            time.sleep(1.0)  # let any further (wrong) update land before comparing
            return orjson.loads(worker.get(segment_path))
        time.sleep(0.3)
    raise AssertionError(f"{segment_path} did not reach {expected_all} answers: {view}")


SEGMENTS = [
    ({}, "/api/v1/segments/overall"),
    ({"department": "billing"}, "/api/v1/segments/department/billing"),
    ({"agent": "agent-3"}, "/api/v1/segments/agent/agent-3"),
    (
        {"department": "support", "channel": "phone"},
        "/api/v1/segments/department,channel/support,phone",
    ),
]


def event_clock(events: list[dict]) -> float:
    return max(datetime.fromisoformat(e["event_time"]).timestamp() for e in events)


def assert_all_segments(worker, events: list[dict], timeout: float = 60) -> list[dict]:
    """Every segment of SEGMENTS answered by ``worker`` equals the brute-force reference."""
    clock = event_clock(events)
    views = []
    for segment, path in SEGMENTS:
        expected = reference(events, clock, segment)
        total = sum(expected["all"][k] for k in ("responses", "csat_responses", "ces_responses"))
        view = wait_for_responses(worker, path, total, timeout)
        assert_matches(view, expected)
        views.append(view)
    return views


def test_windows_match_reference_and_late_events_dead_lettered(
    broker, start_worker, worker_env
) -> None:
    worker = start_worker()
    end = time.time() - 30
    events = dataset(1500, seed=3, end=end)
    clock = event_clock(events)
    # two events far behind the newest (allowed lateness is 600 s) and one from the future
    late = [
        {
            **events[0],
            "event_id": "late-1",
            "event_time": datetime.fromtimestamp(clock - 4000, UTC).isoformat(),
        },
        {
            **events[1],
            "event_id": "late-2",
            "event_time": datetime.fromtimestamp(clock - 700, UTC).isoformat(),
        },
        {
            **events[2],
            "event_id": "future-1",
            "event_time": datetime.fromtimestamp(time.time() + 3600, UTC).isoformat(),
        },
    ]
    # an event late but within the lateness still counts in its bucket
    within = {
        **events[3],
        "event_id": "within-1",
        "event_time": datetime.fromtimestamp(clock - 500, UTC).isoformat(),
    }
    send(broker.bootstrap, worker_env["NPS_TOPIC_RAW"], [*events, *late, within])
    counted = [*events, within]

    for view in assert_all_segments(worker, counted):
        assert datetime.fromisoformat(view["as_of"]).timestamp() == pytest.approx(clock, abs=1e-3)

    dead = consume(broker.bootstrap, worker_env["NPS_TOPIC_DEADLETTER"], 3)
    reasons = sorted(
        (orjson.loads(r.value)["reason"], orjson.loads(r.value)["event_id"]) for r in dead
    )
    assert reasons == [("future", "future-1"), ("late", "late-1"), ("late", "late-2")]
    metrics = worker.get("/metrics").decode()
    assert 'nps_pipeline_deadletters_total{reason="late"} 2.0' in metrics

    listing = orjson.loads(worker.get("/api/v1/segments?dimension=department&window=24h"))
    assert [row["segment"] for row in listing["segments"]] == sorted(
        (f"department={d}" for d in DEPARTMENTS),
        key=lambda s: reference(counted, clock, {"department": s.split("=")[1]})["24h"]["nps"],
    )
    assert listing["total"] == 3
    top = orjson.loads(
        worker.get("/api/v1/segments?dimension=agent&window=1h&sort=responses&limit=2")
    )
    assert len(top["segments"]) == 2 and top["total"] == 5
    sizes = [r["stats"]["responses"] for r in top["segments"]]
    assert sizes == sorted(sizes, reverse=True)

    snapshots = consume(broker.bootstrap, worker_env["NPS_TOPIC_WINDOWS"], 1, timeout=10)
    assert snapshots, "window snapshots are published as the clock crosses boundaries"
    snap = orjson.loads(snapshots[0].value)
    assert snap["snapshot_id"].startswith(snap["segment"] + "@")


def test_restart_resumes_exactly(broker, start_worker, worker_env) -> None:
    end = time.time() - 30
    events = dataset(1200, seed=5, end=end)
    first, second = events[:600], events[600:]
    worker = start_worker()
    send(broker.bootstrap, worker_env["NPS_TOPIC_RAW"], first)
    assert_all_segments(worker, first)
    worker.stop()

    again = start_worker()
    send(broker.bootstrap, worker_env["NPS_TOPIC_RAW"], second)
    assert_all_segments(again, events)


def readiness(worker) -> dict:
    try:
        return orjson.loads(worker.get("/readyz"))
    except urllib.error.HTTPError as exc:  # 503 while rebalancing
        return orjson.loads(exc.read())


def test_two_workers_share_state_and_survive_a_rebalance(broker, start_worker, worker_env) -> None:
    end = time.time() - 30
    events = dataset(1600, seed=9, end=end)
    clock = event_clock(events)
    first, second = events[:800], events[800:]
    worker_a = start_worker()
    send(broker.bootstrap, worker_env["NPS_TOPIC_RAW"], first)
    assert_all_segments(worker_a, first)

    worker_b = start_worker()  # same group: the partitions are split between the two
    sharing(worker_a, worker_b, worker_env["NPS_TOPIC_DELTAS"])
    send(broker.bootstrap, worker_env["NPS_TOPIC_RAW"], second)

    # every segment is answered correctly by either worker (owner or forwarded)
    for worker in (worker_a, worker_b):
        assert_all_segments(worker, events)
    # a listing through either worker gathers every owner's segments
    for worker in (worker_a, worker_b):
        listing = orjson.loads(worker.get("/api/v1/segments?dimension=agent&window=24h&limit=50"))
        assert sorted(r["segment"] for r in listing["segments"]) == [
            f"agent=agent-{i}" for i in range(1, 6)
        ]
        for row in listing["segments"]:
            agent = row["fields"]["agent"]
            assert (
                row["stats"]["responses"]
                == reference(events, clock, {"agent": agent})["24h"]["responses"]
            )

    # the survivor recovers the other worker's windows from the changelog, exactly,
    # when the other is killed (its session must time out first)...
    worker_a.stop(signal.SIGKILL)
    assert_all_segments(worker_b, events, timeout=90)
    # ... and when it stops cleanly, handing its partitions over
    worker_c = start_worker()
    sharing(worker_b, worker_c, worker_env["NPS_TOPIC_DELTAS"])
    worker_b.stop(signal.SIGTERM)
    assert_all_segments(worker_c, events, timeout=90)


def sharing(first, second, deltas_topic: str, timeout: float = 60) -> None:
    """Until both workers are ready and the second owns deltas partitions."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready_a, ready_b = readiness(first), readiness(second)
        owned = [p for p in ready_b["partitions"] if p.startswith(deltas_topic + ":")]
        if ready_a["ready"] and ready_b["ready"] and owned:
            return
        time.sleep(0.5)
    raise AssertionError("the second worker never got partitions")
