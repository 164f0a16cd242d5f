"""/metrics: business counters per segment, window gauges, consumer lag, promtool."""

from __future__ import annotations

import contextlib
import random
import shutil
import subprocess
import time
import urllib.error
import uuid
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest
from kafka import KafkaProducer
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from pipeline.metrics import SegmentCounters, counter_labels, render
from pipeline.windows import Counts


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: run `make tools` (apt-get install prometheus)")
    return path


def test_counter_labels() -> None:
    dims = ["department", "channel"]
    assert counter_labels("overall", dims) == ("overall", "all")
    assert counter_labels("department=billing", dims) == ("department", "billing")
    assert counter_labels("department=a%7Cb", dims) == ("department", "a|b")
    assert counter_labels("agent=a1", dims) is None  # not a metrics dimension
    assert counter_labels("department=billing|channel=chat", dims) is None  # combination


def test_new_series_is_exposed_at_zero_before_its_first_increment() -> None:
    department = f"d-{uuid.uuid4().hex[:8]}"
    counters = SegmentCounters(["department"])
    batch = Counts(responses=5, promoters=2, passives=1, detractors=2, ces_n=1, ces_sum=6)

    def value(name: str) -> float | None:
        labels = {"dimension": "department", "segment": department}
        return REGISTRY.get_sample_value(f"nps_pipeline_{name}", labels)

    counters.add(f"department={department}", [batch])
    assert value("nps_responses_total") == 0.0  # exposed, increment waiting for a scrape
    counters.add(f"department={department}", [batch])
    counters.add("agent=a1", [batch])  # ignored: not a metrics dimension
    body, content_type = render(counters.after_scrape)
    assert content_type.startswith("text/plain")
    assert f'segment="{department}"' in body.decode()
    assert value("nps_responses_total") == 10.0
    assert value("nps_detractors_total") == 4.0
    assert value("ces_score_total") == 12.0
    counters.add(f"department={department}", [batch])  # exposed series: counted at once
    assert value("nps_promoters_total") == 6.0
    assert value("csat_responses_total") == 0.0


def events(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    now = time.time()
    out = []
    for i in range(n):
        survey = rng.choices(["nps", "csat", "ces"], [6, 2, 2])[0]
        high = {"nps": 10, "csat": 5, "ces": 7}[survey]
        out.append(
            {
                "event_id": f"m-{seed}-{i}",
                "event_time": datetime.fromtimestamp(now - rng.uniform(0, 600), UTC).isoformat(),
                "survey_type": survey,
                "score": rng.randint(0 if survey == "nps" else 1, high),
                "customer_id": f"c{i}",
                "department": rng.choice(["support", "billing", "sales"]),
                "channel": rng.choice(["chat", "phone"]),
                "agent": f"agent-{rng.randint(1, 20)}",
            }
        )
    return out


def scrape(worker) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # type: ignore[no-untyped-def]
    samples = {}
    for family in text_string_to_metric_families(worker.get("/metrics").decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


@pytest.mark.integration
def test_metrics_of_a_running_worker(broker, start_worker, worker_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    worker = start_worker(NPS_METRICS_MAX_SEGMENTS="5")
    scrape(worker)  # a scraper is watching before the first answer arrives
    data = events(400, seed=5)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for event in data:
        producer.send(
            worker_env["NPS_TOPIC_RAW"], orjson.dumps(event), key=event["event_id"].encode()
        )
    producer.flush()
    producer.close()

    nps = [e for e in data if e["survey_type"] == "nps"]
    expected = Counter()
    for e in nps:
        kind = "promoters" if e["score"] >= 9 else "passives" if e["score"] >= 7 else "detractors"
        for labels in (("overall", "all"), ("department", e["department"])):
            expected[("responses", labels)] += 1
            expected[(kind, labels)] += 1

    def counter(kind: str, labels: tuple[str, str]) -> float:
        key = (
            f"nps_pipeline_nps_{kind}_total",
            (("dimension", labels[0]), ("segment", labels[1])),
        )
        return samples.get(key, 0.0)

    deadline = time.monotonic() + 60
    while True:
        samples = scrape(worker)  # the first scrape of a series shows 0; the next counts
        if counter("responses", ("overall", "all")) == len(nps) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for (kind, labels), count in expected.items():
        assert counter(kind, labels) == count, (kind, labels)
    csat = [e for e in data if e["survey_type"] == "csat"]
    overall = (("dimension", "overall"), ("segment", "all"))
    assert samples[("nps_pipeline_csat_responses_total", overall)] == len(csat)
    assert samples[("nps_pipeline_csat_score_total", overall)] == sum(e["score"] for e in csat)
    assert not any("agent" in dict(labels).get("dimension", "") for _, labels in samples)
    assert (
        samples[("nps_pipeline_events_consumed_total", (("topic", worker_env["NPS_TOPIC_RAW"]),))]
        == 400
    )

    # window gauges: the pipeline's own 1h NPS, equal to the HTTP API's, 5 segments at most
    deadline = time.monotonic() + 60  # the windows stage runs behind the scoring stage
    while time.monotonic() < deadline:
        with contextlib.suppress(urllib.error.HTTPError):  # 404 until its first deltas
            overall = orjson.loads(worker.get("/api/v1/segments/overall"))
            if overall["windows"]["1h"]["responses"] == len(nps):
                break
        time.sleep(0.5)
    samples = scrape(worker)
    api = orjson.loads(worker.get("/api/v1/segments/department/billing?window=1h"))
    window = api["windows"]["1h"] if "windows" in api else api
    gauge = samples[
        (
            "nps_pipeline_window_nps",
            (("dimension", "department"), ("segment", "billing"), ("window", "1h")),
        )
    ]
    assert gauge == pytest.approx(window["nps"])
    segments = {dict(k[1])["segment"] for k in samples if k[0] == "nps_pipeline_window_responses"}
    assert len(segments) == 5 and "all" in segments
    # overall + 3 departments + 2 channels + up to 20 agents + 6 department|channel pairs
    dropped = samples[("nps_pipeline_window_segments_dropped", ())]
    assert dropped >= 1 + 3 + 2 + 6 - 5

    def raw_lags() -> list[float]:
        return [
            v
            for (name, labels), v in scrape(worker).items()
            if name == "nps_pipeline_consumer_lag_records"
            and dict(labels)["topic"] == worker_env["NPS_TOPIC_RAW"]
        ]

    # every raw partition reported, all read (the highwater comes with the next fetch)
    deadline = time.monotonic() + 15
    while (lags := raw_lags()) != [0.0] * 4 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert lags == [0.0] * 4

    exposition = tmp_path / "metrics.txt"
    exposition.write_bytes(worker.get("/metrics"))
    check = subprocess.run(
        [promtool(), "check", "metrics"],
        stdin=exposition.open("rb"),
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
