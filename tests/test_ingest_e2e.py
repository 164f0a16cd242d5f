"""Webhook -> scored, end to end: ``nps-pipeline ingest`` and ``nps-pipeline worker`` as real
processes on the embedded broker.

Real-shaped payloads of every tool (Delighted, Typeform, SurveyMonkey, AskNicely,
Qualtrics, a custom Medallia-style mapping, a custom batch route, the plain API) are
posted over HTTP; the scored events are read back from the worker's scored topic (score,
category, segments, redacted comment) and the ids-only envelopes from the needs-fetch
topic. Rejected deliveries — bad signatures and tokens, an oversize and malformed bodies —
carry event ids of their own, so "nothing reached the topic" is shown by the raw and
scored topics holding exactly the accepted ids and the dead-letter topic staying empty.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pipeline.broker import EmbeddedBroker, free_port
from tests.conftest import WorkerProcess, consume
from tests.test_ingest import (
    ASKNICELY_PAYLOAD,
    MAPPINGS_YAML,
    MEDALLIA_SECRET,
    QUALTRICS_KEY,
    QUALTRICS_MSG,
    SM_API_KEY,
    SM_SECRET,
    SURVEYMONKEY_PAYLOAD,
    TOKEN,
    TYPEFORM_PAYLOAD,
    TYPEFORM_SECRET,
    delighted_payload,
    medallia_payload,
    medallia_signature,
    qualtrics_form,
    sm_signature,
    typeform_signature,
)

pytestmark = pytest.mark.integration

MAX_BODY = 16 * 1024


class IngestProcess:
    """``nps-pipeline ingest`` as a subprocess; :meth:`post` answers (status, JSON body)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {**env, "NPS_INGEST_PORT": str(self.port)}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> IngestProcess:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "ingest"],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                assert self.proc.poll() is None, self.log_path.read_text()
                assert time.monotonic() < deadline, "ingest service did not start"
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self._log.close()
            self.proc = None

    def post(
        self,
        path: str,
        body: bytes | Any,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            headers={"Content-Type": content_type, **(headers or {})},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")


@pytest.fixture
def ingest(
    worker_env: dict[str, str], tmp_path: Path, unique: str
) -> Iterator[Callable[[], IngestProcess]]:
    """Starts the ingest service on the worker's raw topic, every adapter configured."""
    mappings = tmp_path / "webhooks.yaml"
    mappings.write_text(MAPPINGS_YAML)
    env = {
        **worker_env,
        "NPS_INGEST_TOKENS": TOKEN,
        "NPS_INGEST_TYPEFORM_SECRET": TYPEFORM_SECRET,
        "NPS_INGEST_SURVEYMONKEY_API_KEY": SM_API_KEY,
        "NPS_INGEST_SURVEYMONKEY_SECRET": SM_SECRET,
        "NPS_INGEST_QUALTRICS_SECRET": QUALTRICS_KEY,
        "NPS_INGEST_WEBHOOK_MAPPINGS_FILE": str(mappings),
        "NPS_INGEST_TOPIC_NEEDS_FETCH": f"fetch-{unique}",
        "NPS_INGEST_MAX_BODY_BYTES": str(MAX_BODY),
        "MEDALLIA_WEBHOOK_SECRET": MEDALLIA_SECRET,
    }
    started: list[IngestProcess] = []

    def start() -> IngestProcess:
        service = IngestProcess(env, tmp_path / "ingest.log")
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()


def payloads(now: datetime) -> dict[str, Any]:
    """Every tool's documented payload shape, answered a minute ago, with PII in comments."""
    delighted = delighted_payload()
    delighted["event_data"]["created_at"] = int(now.timestamp()) - 60
    delighted["event_data"]["comment"] = "Slow support. Write to jony@example.com please"
    typeform = copy.deepcopy(TYPEFORM_PAYLOAD)
    typeform["form_response"]["submitted_at"] = (now - timedelta(seconds=50)).isoformat()
    typeform["form_response"]["answers"][0]["number"] = 10
    typeform["form_response"]["answers"][1]["text"] = "Great! Call me at 347 123 4567"
    asknicely = copy.deepcopy(ASKNICELY_PAYLOAD)
    asknicely["question"]["responded"] = int(now.timestamp()) - 40
    local = (now - timedelta(seconds=30)).astimezone(ZoneInfo("Europe/Rome"))
    medallia = medallia_payload(
        q_ltr_scale="8",
        e_responsedate=local.strftime("%Y-%m-%d %H:%M:%S"),
        q_ltr_comment="Paid with 4111 1111 1111 1111 twice",
    )
    pulse = [
        {"id": "pulse-1", "answered_at": int(now.timestamp()) - 20, "kind": "csat",
         "rating": 4, "user": {"id": "u-1"}},
        {"id": "pulse-2", "answered_at": int(now.timestamp()) - 10, "kind": "ces",
         "rating": 3, "user": {"id": "u-2"}},
    ]  # fmt: skip
    api = {
        "event_id": "api-1",
        "event_time": (now - timedelta(seconds=5)).isoformat(),
        "survey_type": "nps",
        "score": 0,
        "customer_id": "c-9",
        "department": "billing",
        "comment": "IBAN IT60X0542811101000000123456 charged twice",
    }
    return {
        "delighted": delighted,
        "typeform": typeform,
        "asknicely": asknicely,
        "medallia": medallia,
        "pulse": pulse,
        "api": api,
    }


def test_every_tool_end_to_end(
    broker: EmbeddedBroker,
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    ingest: Callable[[], IngestProcess],
    unique: str,
) -> None:
    start_worker()
    service = ingest()
    sent = payloads(datetime.now(UTC))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    typeform = json.dumps(sent["typeform"]).encode()
    medallia = json.dumps(sent["medallia"]).encode()
    monkey = json.dumps(SURVEYMONKEY_PAYLOAD).encode()
    form = "application/x-www-form-urlencoded"

    accepted = [
        service.post(f"/webhooks/delighted?token={TOKEN}", sent["delighted"]),
        service.post("/webhooks/typeform", typeform, {"Typeform-Signature":
                     typeform_signature(TYPEFORM_SECRET, typeform)}),
        # Typeform retries until it sees a 2xx: the redelivery is the same record
        service.post("/webhooks/typeform", typeform, {"Typeform-Signature":
                     typeform_signature(TYPEFORM_SECRET, typeform)}),
        service.post("/webhooks/asknicely", sent["asknicely"], auth),
        service.post("/webhooks/custom/medallia", medallia,
                     {"X-Medallia-Signature": medallia_signature(medallia)}),
        service.post("/webhooks/custom/pulse", sent["pulse"], auth),
        service.post("/api/v1/feedback", sent["api"], auth),
        service.post("/webhooks/surveymonkey", monkey, {"Sm-Signature": sm_signature(monkey)}),
        service.post("/webhooks/qualtrics", qualtrics_form(), content_type=form),
    ]  # fmt: skip
    assert [status for status, _ in accepted] == [202] * 9, accepted

    # rejected deliveries, each with an event id of its own that must appear nowhere
    forged_tf = typeform.replace(b"a3a12ec67a1365927098a606107fac15", b"forged-token")
    forged_med = medallia.replace(b"48211", b"66666")
    forged_monkey = monkey.replace(b"114171520434", b"999")
    other_delighted = copy.deepcopy(sent["delighted"])
    other_delighted["event_data"]["id"] = "777"
    other_asknicely = copy.deepcopy(sent["asknicely"])
    other_asknicely["question"]["id"] = "777"
    oversize = [{**sent["pulse"][0], "id": f"big-{n}"} for n in range(200)]
    assert len(json.dumps(oversize)) > MAX_BODY
    rejected = [
        (403, service.post("/webhooks/typeform", forged_tf, {"Typeform-Signature":
                           typeform_signature(TYPEFORM_SECRET, typeform)})),
        (401, service.post("/webhooks/typeform", forged_tf)),
        (403, service.post("/webhooks/custom/medallia", forged_med,
                           {"X-Medallia-Signature": medallia_signature(medallia)})),
        (401, service.post("/webhooks/custom/medallia", forged_med, auth)),
        (403, service.post("/webhooks/surveymonkey", forged_monkey,
                           {"Sm-Signature": sm_signature(monkey)})),
        (403, service.post("/webhooks/qualtrics", qualtrics_form(
            {**QUALTRICS_MSG, "ResponseID": "R_forged"}, signed_msg=json.dumps(QUALTRICS_MSG)
        ), content_type=form)),
        (401, service.post("/webhooks/qualtrics", qualtrics_form(key=None), content_type=form)),
        (403, service.post("/webhooks/delighted?token=not-the-token", other_delighted)),
        (401, service.post("/webhooks/asknicely", other_asknicely)),
        (403, service.post("/api/v1/feedback", {**sent["api"], "event_id": "api-777"},
                           {"Authorization": "Bearer nope"})),
        (413, service.post("/webhooks/custom/pulse", oversize, auth)),
        (400, service.post(f"/webhooks/delighted?token={TOKEN}",
                           json.dumps(other_delighted).encode()[:-9])),
        (400, service.post("/webhooks/custom/pulse", b'[{"id": "pulse-777", ', auth)),
        (400, service.post("/webhooks/qualtrics", qualtrics_form("{\"ResponseID\": \"R_7"),
                           content_type=form)),
    ]  # fmt: skip
    assert [answer[0] for _, answer in rejected] == [code for code, _ in rejected], rejected

    scored_ids = {
        "delighted-85420871",
        "typeform-a3a12ec67a1365927098a606107fac15",
        "asknicely-987654",
        "medallia-48211",
        "pulse-1",
        "pulse-2",
        "api-1",
    }
    bootstrap = broker.bootstrap
    scored = consume(bootstrap, worker_env["NPS_TOPIC_SCORED"], len(scored_ids), timeout=60)
    by_id = {r.key.decode(): json.loads(r.value) for r in scored}
    assert len(scored) == len(by_id) == len(scored_ids), sorted(by_id)  # the retry counted once
    assert set(by_id) == scored_ids
    raw = consume(bootstrap, worker_env["NPS_TOPIC_RAW"], len(scored_ids) + 1, timeout=5)
    # the Typeform redelivery is on the raw topic twice (the worker drops the copy)
    assert sorted(r.key.decode() for r in raw) == sorted(
        [*scored_ids, "typeform-a3a12ec67a1365927098a606107fac15"]
    )
    assert consume(bootstrap, worker_env["NPS_TOPIC_DEADLETTER"], 0, timeout=3) == []

    def summary(event_id: str) -> tuple[Any, ...]:
        record = by_id[event_id]
        feedback = record["feedback"]
        segments = {
            f: feedback[f]
            for f in ("department", "agent", "product", "channel", "region")
            if feedback.get(f) is not None
        }
        return (
            feedback["survey_type"],
            feedback["score"],
            record["category"],
            feedback["source"],
            segments,
            feedback.get("comment"),
        )

    assert summary("delighted-85420871") == (
        "nps", 6, "detractor", "delighted", {"department": "support", "channel": "email"},
        "Slow support. Write to [EMAIL] please",
    )  # fmt: skip
    assert summary("typeform-a3a12ec67a1365927098a606107fac15") == (
        "nps", 10, "promoter", "typeform", {"department": "billing"},
        "Great! Call me at [PHONE]",
    )  # fmt: skip
    assert summary("asknicely-987654") == (
        "nps", 2, "detractor", "asknicely", {"channel": "email"}, "Nobody called back.",
    )  # fmt: skip
    assert summary("medallia-48211") == (
        "nps", 8, "passive", "medallia",
        {"department": "support", "agent": "agent-042", "channel": "phone"},
        "Paid with [CARD] twice",
    )  # fmt: skip
    assert by_id["medallia-48211"]["feedback"]["account_value"] == 12000.5
    assert summary("pulse-1") == ("csat", 4, "satisfied", "pulse", {}, None)
    assert summary("pulse-2") == ("ces", 3, "unsatisfied", "pulse", {}, None)
    assert summary("api-1") == (
        "nps", 0, "detractor", "api", {"department": "billing"}, "IBAN [IBAN] charged twice",
    )  # fmt: skip

    envelopes = consume(bootstrap, f"fetch-{unique}", 2, timeout=30)
    by_key = {r.key.decode(): json.loads(r.value) for r in envelopes}
    assert sorted(by_key) == ["qualtrics-R_1OwQ5GcKlWqfFZB", "surveymonkey-114171520434"]
    assert {e["kind"] for e in by_key.values()} == {"needs_fetch"}
    assert not any("score" in e for e in by_key.values())


def _metric(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == (labels or {}):
                return sample.value
    return 0.0


def test_delighted_retry_and_update_count_once(
    broker: EmbeddedBroker,
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    ingest: Callable[[], IngestProcess],
) -> None:
    """Delighted posts a response (score 3, no comment), retries the delivery, then sends
    ``survey_response.updated`` with the comment and a changed score (9), and retries that
    too: the windows hold one answer, a promoter; the scored topic has revisions 0 and 1,
    the last with the comment."""
    worker = start_worker()
    service = ingest()
    now = datetime.now(UTC)
    created = delighted_payload()
    created["event_data"].update(created_at=int(now.timestamp()) - 60, score=3, comment="")
    updated = delighted_payload("survey_response.updated")
    updated["event_data"].update(
        created_at=int(now.timestamp()) - 60, score=9, comment="They called back and fixed it"
    )
    path = f"/webhooks/delighted?token={TOKEN}"
    answers = [service.post(path, created), service.post(path, created)]  # delivery + retry
    scored = consume(broker.bootstrap, worker_env["NPS_TOPIC_SCORED"], 1, timeout=60)
    answers += [service.post(path, updated), service.post(path, updated)]  # update + retry
    assert [status for status, _ in answers] == [202] * 4, answers

    scored = consume(broker.bootstrap, worker_env["NPS_TOPIC_SCORED"], 2, timeout=60)
    records = [json.loads(r.value) for r in scored]
    assert {r.key for r in scored} == {b"delighted-85420871"}
    assert [(r["revision"], r["feedback"]["score"], r["category"]) for r in records] == [
        (0, 3, "detractor"),
        (1, 9, "promoter"),
    ]
    assert records[0]["feedback"].get("comment") is None
    assert records[1]["feedback"]["comment"] == "They called back and fixed it"
    assert consume(broker.bootstrap, worker_env["NPS_TOPIC_DEADLETTER"], 0, timeout=2) == []

    deadline = time.monotonic() + 60
    while True:  # the deltas reach the windows agent shortly after the scored records
        view = json.loads(worker.get("/api/v1/segments/department/support"))
        counts = {
            label: (s["responses"], s["promoters"], s["detractors"])
            for label, s in {**view["windows"], "all": view["all_time"]}.items()
        }
        if counts == {label: (1, 1, 0) for label in ("5m", "1h", "24h", "all")}:
            break
        assert time.monotonic() < deadline, counts
        time.sleep(0.3)
    overall = json.loads(worker.get("/api/v1/segments/overall"))
    assert (overall["all_time"]["responses"], overall["all_time"]["nps"]) == (1, 100.0)

    worker.get("/metrics")  # a new business series is first exposed at 0 (see SegmentCounters)
    text = worker.get("/metrics").decode()
    assert _metric(text, "nps_pipeline_duplicates_dropped_total") == 2
    assert _metric(text, "nps_pipeline_revisions_total", {"change": "scoring"}) == 1
    overall_labels = {"dimension": "overall", "segment": "all"}
    # business counters count the answer once, as received (they cannot decrease)
    assert _metric(text, "nps_pipeline_nps_responses_total", overall_labels) == 1
