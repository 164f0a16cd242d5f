"""Follow-ups end to end on the embedded broker: scripted detractors through a real
worker; status updates through Kafka and the HTTP endpoint, some on time, some late,
some never; the API, /metrics, the dead-letter and alerts topics report exactly the
hand-computed figures."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import WorkerProcess, consume

pytestmark = pytest.mark.integration

H = 3600.0
#: a fixed point four days back (event times must not be in the future)
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=4)


def at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def answer(name: str, hours: float, score: int, agent: str, department: str, **extra: Any) -> dict:
    return {
        "event_id": name,
        "event_time": at(hours),
        "survey_type": "nps",
        "score": score,
        "customer_id": f"cust-{name}",
        "agent": agent,
        "department": department,
        "channel": "email",
        **extra,
    }


ANSWERS = [
    answer("p1", 0, 8, "a3", "billing", account_value=50000.0),  # high-value passive: 7 days
    answer("d2", 1, 5, "a1", "support", account_value=1000.0),  # detractor: 48 h
    answer("d3", 2, 6, "a2", "billing"),
    answer("d4", 3, 0, "a2", "billing", account_value=5000.0),  # 0-3 but not high value: 48 h
    answer("d5", 4, 4, "a3", "billing", account_value=2000.0),
    answer(  # 0-3, negative comment, high value: urgent, 4 h
        "d1",
        5,
        2,
        "a1",
        "support",
        account_value=20000.0,
        comment="Terrible. Charged twice and nobody helps, mail me at bob@example.com",
    ),
    answer("pr", 5, 10, "a1", "support", account_value=90000.0),  # promoter: no task
    {**answer("cs", 5, 1, "a1", "support"), "survey_type": "csat"},  # not a default rule
]


def update(task: str, status: str, hours: float, **extra: Any) -> dict:
    return {"task_id": f"fu-{task}", "status": status, "event_time": at(hours), **extra}


def post(worker: WorkerProcess, task_id: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{worker.url}/api/v1/followups/{task_id}/events",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def get_json(worker: WorkerProcess, path: str) -> Any:
    return json.loads(worker.get(path))


def wait_for(check: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except urllib.error.HTTPError as err:
            last = err
        else:
            if last:
                return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def metric_samples(worker: WorkerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = worker.get("/metrics").decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_followups_end_to_end(start_worker: Any, broker: Any, unique: str) -> None:
    topics = {
        "NPS_TOPIC_FOLLOWUPS": f"followups-{unique}",
        "NPS_TOPIC_FOLLOWUP_EVENTS": f"followup-events-{unique}",
        "NPS_TOPIC_ALERTS": f"alerts-{unique}",
    }
    worker = start_worker(NPS_FOLLOWUPS_ENABLED="true", NPS_ALERTS_ENABLED="false", **topics)
    env = worker.env
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    for event in ANSWERS:
        producer.send(
            env["NPS_TOPIC_RAW"], key=event["event_id"].encode(), value=orjson.dumps(event)
        )
    producer.flush()

    # one task per selected answer, keyed by task id, with rule, priority, due and risk
    records = consume(broker.bootstrap, topics["NPS_TOPIC_FOLLOWUPS"], expected=6)
    tasks = {r.key.decode(): json.loads(r.value) for r in records}
    assert sorted(tasks) == ["fu-d1", "fu-d2", "fu-d3", "fu-d4", "fu-d5", "fu-p1"]
    assert {k: (t["rule"], t["priority"]) for k, t in tasks.items()} == {
        "fu-d1": ("urgent-high-value", "urgent"),
        "fu-d2": ("detractor", "high"),
        "fu-d3": ("detractor", "high"),
        "fu-d4": ("detractor", "high"),
        "fu-d5": ("detractor", "high"),
        "fu-p1": ("high-value-passive", "low"),
    }
    d1 = tasks["fu-d1"]
    assert datetime.fromisoformat(d1["due_at"]) == T0 + timedelta(hours=9)
    assert d1["comment"].endswith("mail me at [EMAIL]")  # redacted before it leaves
    assert d1["sentiment"]["label"] == "negative" and "billing" in d1["themes"]
    assert d1["revenue_at_risk"] == 6000.0 and d1["revenue_horizon"] == "short_term"
    assert tasks["fu-p1"]["revenue_at_risk"] == 5000.0
    assert tasks["fu-p1"]["revenue_horizon"] == "long_term"
    assert d1["owner"] == {"agent": "a1", "department": "support", "channel": "email"}

    # bad requests are refused before anything is written
    assert post(worker, "fu-d1", {"status": "called"})[0] == 400
    assert post(worker, "fu-d1", update("d2", "contacted", 7))[0] == 400
    # phase 1 (event time <= 9 h): d1 contacted 2 h after its answer, twice; d2 acknowledged
    status, body = post(worker, "fu-d1", {"status": "contacted", "event_time": at(7)})
    assert status == 202 and body["task_id"] == "fu-d1" and body["offset"] >= 0
    events_topic = topics["NPS_TOPIC_FOLLOWUP_EVENTS"]

    def send(*updates: dict) -> None:
        for u in updates:
            producer.send(events_topic, key=u["task_id"].encode(), value=orjson.dumps(u))
        producer.flush()

    send(update("d1", "contacted", 7))  # the same update again: changes nothing
    assert post(worker, "fu-d2", update("d2", "acknowledged", 8))[0] == 202

    def task(task_id: str) -> dict:
        return get_json(worker, f"/api/v1/followups/{task_id}")

    wait_for(lambda: task("fu-d2")["state"] == "acknowledged", "phase 1")
    assert task("fu-d1")["state"] == "contacted"
    # phase 2 (<= 50 h): resolutions, d2's contact, and an update for a task that never was
    send(
        update("d1", "resolved", 11, outcome="recovered"),
        update("d2", "contacted", 30),
        update("d2", "resolved", 50, outcome="not_recovered", note="wants a refund"),
        update("nope", "contacted", 20),
    )
    wait_for(lambda: task("fu-d2")["state"] == "resolved", "phase 2")
    # phase 3: d3 contacted 58 h after its answer (10 h late); the clock reaches 60 h and
    # d4 (due 51 h) and d5 (due 52 h) go overdue; p1 (due 168 h) is open but not due
    send(update("d3", "contacted", 60))
    wait_for(lambda: task("fu-d3")["state"] == "contacted", "phase 3")

    def overall() -> dict:
        found = get_json(worker, "/api/v1/followups/summary?window=7d")
        rows = found["segments"]
        return rows[0] if rows and rows[0]["stats"]["overdue"] == 2 else {}

    row = wait_for(overall, "overdue tasks in the summary")
    assert row["segment"] == "overall"
    assert row["stats"] == {
        "tasks": 6,
        "open": 4,  # d3, d4, d5, p1
        "overdue": 2,  # d4, d5
        "contacted": 3,  # d1 2 h, d2 29 h, d3 58 h
        "resolved": 2,  # d1 6 h, d2 49 h
        "contacted_within_due": 2,  # d1, d2 of d1, d2, d3, d4, d5 (p1 not yet due)
        "contacted_within_due_share": 0.4,
        "median_seconds_to_first_contact": 29 * H,
        "p90_seconds_to_first_contact": pytest.approx(52.2 * H),  # 29 + 0.8 x 29
        "median_seconds_to_resolution": 27.5 * H,
        "p90_seconds_to_resolution": pytest.approx(44.7 * H),  # 6 + 0.9 x 43
        "revenue_at_risk_short_term": 8400.0,  # 0.3 x (20,000 + 1,000 + 5,000 + 2,000)
        "revenue_at_risk_long_term": 5000.0,  # 0.1 x 50,000
        "revenue_at_risk_open": 7100.0,  # d4 1,500 + d5 600 + p1 5,000
    }
    summary = get_json(worker, "/api/v1/followups/summary?dimension=agent&window=30d")
    assert datetime.fromisoformat(summary["as_of"]) == T0 + timedelta(hours=60)
    agents = {r["segment"]: r["stats"] for r in summary["segments"]}
    assert [r["segment"] for r in summary["segments"]] == ["agent=a2", "agent=a3", "agent=a1"]
    a1, a2, a3 = agents["agent=a1"], agents["agent=a2"], agents["agent=a3"]
    assert (a1["tasks"], a1["open"], a1["overdue"], a1["contacted_within_due_share"]) == (
        2,
        0,
        0,
        1.0,
    )
    assert a1["median_seconds_to_first_contact"] == 15.5 * H
    assert a1["p90_seconds_to_first_contact"] == pytest.approx(26.3 * H)  # 2 + 0.9 x 27
    assert (a2["open"], a2["overdue"], a2["contacted"], a2["contacted_within_due_share"]) == (
        2,
        1,
        1,
        0.0,
    )
    assert a2["median_seconds_to_first_contact"] == 58 * H
    assert (a3["open"], a3["overdue"], a3["revenue_at_risk_open"]) == (2, 1, 5600.0)
    # the 24 h window ends at the clock (60 h): no task was created after 36 h
    assert get_json(worker, "/api/v1/followups/summary?window=24h")["segments"] == []

    views = {t: task(f"fu-{t}") for t in ("d1", "d2", "d3", "d4", "d5", "p1")}
    assert {t: (v["state"], v["overdue"], v["contacted_within_due"]) for t, v in views.items()} == {
        "d1": ("resolved", False, True),
        "d2": ("resolved", False, True),
        "d3": ("contacted", False, False),
        "d4": ("open", True, False),
        "d5": ("open", True, False),
        "p1": ("open", False, None),
    }
    assert views["d2"]["acknowledged_at"] is not None and views["d2"]["outcome"] == "not_recovered"
    assert views["d1"]["seconds_to_resolution"] == 6 * H
    with pytest.raises(urllib.error.HTTPError) as bad:
        worker.get("/api/v1/followups/summary?dimension=nope")
    assert bad.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as missing:
        worker.get("/api/v1/followups/fu-nope")
    assert missing.value.code == 404

    # the unknown task's update is dead-lettered with its reason
    letters = consume(broker.bootstrap, env["NPS_TOPIC_DEADLETTER"], expected=1)
    assert [(json.loads(r.value)["reason"], json.loads(r.value)["event_id"]) for r in letters] == [
        ("unknown_task", "fu-nope")
    ]
    # one overdue alert per overdue task, with its owning segment
    alerts = consume(broker.bootstrap, topics["NPS_TOPIC_ALERTS"], expected=2)
    fired = sorted(
        (a["segment"], a["status"], a["kind"], a["evidence"]["effect"])
        for a in (json.loads(r.value) for r in alerts)
    )
    assert fired == [
        ("agent=a2", "firing", "followup_overdue", 9 * H),  # due 51 h, judged at 60 h
        ("agent=a3", "firing", "followup_overdue", 8 * H),
    ]

    samples = metric_samples(worker)
    billing = {"dimension": "department", "segment": "billing", "window": "7d"}
    assert sample(samples, "nps_pipeline_followup_tasks", **billing) == 4
    assert sample(samples, "nps_pipeline_followup_open_tasks", **billing) == 4
    assert sample(samples, "nps_pipeline_followup_overdue_tasks", **billing) == 2
    total = {"dimension": "overall", "segment": "all", "window": "30d"}
    assert sample(samples, "nps_pipeline_followup_overdue_tasks", **total) == 2
    assert sample(samples, "nps_pipeline_followup_first_contact_median_seconds", **total) == 29 * H
    assert sample(samples, "nps_pipeline_followup_contacted_within_due_ratio", **total) == 0.4
    assert sample(
        samples, "nps_pipeline_followup_revenue_at_risk", horizon="open", **total
    ) == pytest.approx(7100.0)
    histogram = "nps_pipeline_followup_time_to_first_contact_seconds"
    assert sample(samples, f"{histogram}_count", priority="urgent") == 1
    assert sample(samples, f"{histogram}_sum", priority="urgent") == 2 * H
    assert sample(samples, f"{histogram}_count", priority="high") == 2
    assert sample(samples, f"{histogram}_sum", priority="high") == (29 + 58) * H
    resolution = "nps_pipeline_followup_time_to_resolution_seconds"
    assert sample(samples, f"{resolution}_sum", priority="high") == 49 * H
    assert sample(samples, "nps_pipeline_followup_updates_total", result="applied") == 6
    assert sample(samples, "nps_pipeline_followup_updates_total", result="unchanged") == 1
    assert sample(samples, "nps_pipeline_deadletters_total", reason="unknown_task") == 1
    assert sample(samples, "nps_pipeline_followup_tasks_created_total", priority="high") == 4

    # durable: a restarted worker rebuilds the same state from the table's changelog,
    # neither repeats an alert nor double-applies a repeated update
    before = get_json(worker, "/api/v1/followups/summary?dimension=agent&window=30d")
    time.sleep(3)  # let Faust commit its offsets (a replay would be harmless, but slower)
    worker.stop()
    worker = start_worker(NPS_FOLLOWUPS_ENABLED="true", NPS_ALERTS_ENABLED="false", **topics)
    after = wait_for(
        lambda: get_json(worker, "/api/v1/followups/summary?dimension=agent&window=30d") == before,
        "the same summary after the restart",
    )
    assert after
    send(update("d3", "contacted", 60))  # a repeat: no change
    send(update("d4", "contacted", 61))  # d4 contacted 9 h late: its alert resolves
    wait_for(lambda: task("fu-d4")["state"] == "contacted", "d4 contacted")
    alerts = consume(broker.bootstrap, topics["NPS_TOPIC_ALERTS"], expected=3)
    changes = sorted(
        (json.loads(r.value)["segment"], json.loads(r.value)["status"]) for r in alerts
    )
    assert changes == [("agent=a2", "firing"), ("agent=a2", "resolved"), ("agent=a3", "firing")]
    row = get_json(worker, "/api/v1/followups/summary?window=30d")["segments"][0]["stats"]
    assert (row["overdue"], row["contacted"], row["contacted_within_due"]) == (1, 4, 2)
    assert row["median_seconds_to_first_contact"] == (29 + 58) / 2 * H  # 2, 29, 58, 58
    producer.close()


def test_a_revised_answer_replaces_or_withdraws_its_task(
    start_worker: Any, broker: Any, unique: str
) -> None:
    """An answer revised (same event id, other content) publishes its task again: a
    revision still selected by a rule replaces the task and keeps its status (upsert by
    task id), one that no rule selects any more publishes a tombstone that withdraws it
    from the tracker, the API and the figures."""
    topics = {
        "NPS_TOPIC_FOLLOWUPS": f"followups-{unique}",
        "NPS_TOPIC_FOLLOWUP_EVENTS": f"followup-events-{unique}",
        "NPS_TOPIC_ALERTS": f"alerts-{unique}",
    }
    worker = start_worker(NPS_FOLLOWUPS_ENABLED="true", NPS_ALERTS_ENABLED="false", **topics)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)

    def send(*answers: dict) -> None:
        for event in answers:
            producer.send(
                worker.env["NPS_TOPIC_RAW"],
                key=event["event_id"].encode(),
                value=orjson.dumps(event),
            )
        producer.flush()

    def task(task_id: str) -> dict:
        return get_json(worker, f"/api/v1/followups/{task_id}")

    r1 = answer("r1", 1, 5, "a1", "support")
    r2 = answer("r2", 2, 6, "a2", "billing")
    send(r1, r2)
    wait_for(lambda: task("fu-r2")["task"]["priority"] == "high", "both tasks")
    assert task("fu-r1")["task"]["priority"] == "high"
    assert post(worker, "fu-r2", update("r2", "acknowledged", 3))[0] == 202
    wait_for(lambda: task("fu-r2")["state"] == "acknowledged", "the acknowledgement")

    # r1 revised to a promoter: no rule selects it; r2 to a high-value 2 with a comment
    urgent = {
        **r2,
        "score": 2,
        "account_value": 20000.0,
        "comment": "Terrible. Charged twice and nobody helps.",
    }
    send({**r1, "score": 9}, urgent)
    wait_for(lambda: task("fu-r2")["task"]["priority"] == "urgent", "the replaced task")
    view = task("fu-r2")
    assert view["state"] == "acknowledged"  # the status so far is kept
    assert view["task"]["rule"] == "urgent-high-value"
    assert datetime.fromisoformat(view["task"]["due_at"]) == T0 + timedelta(hours=6)
    assert view["task"]["comment"] == "Terrible. Charged twice and nobody helps."

    def withdrawn() -> bool:
        try:
            task("fu-r1")
        except urllib.error.HTTPError as err:
            return err.code == 404
        return False

    wait_for(withdrawn, "the withdrawal of fu-r1")

    records = consume(broker.bootstrap, topics["NPS_TOPIC_FOLLOWUPS"], expected=4)
    assert [(r.key.decode(), r.value is None) for r in records if r.key == b"fu-r1"] == [
        ("fu-r1", False),
        ("fu-r1", True),  # the tombstone
    ]
    summary = get_json(worker, "/api/v1/followups/summary?window=30d")
    assert summary["segments"][0]["segment"] == "overall"
    assert summary["segments"][0]["stats"]["tasks"] == 1
    samples = metric_samples(worker)
    revised = "nps_pipeline_followup_tasks_revised_total"
    assert sample(samples, revised, change="replaced") == 1
    assert sample(samples, revised, change="withdrawn") == 1
    assert sample(samples, "nps_pipeline_followup_tasks_created_total", priority="high") == 2
    assert sample(samples, "nps_pipeline_followup_tasks_created_total", priority="urgent") is None
