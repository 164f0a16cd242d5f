"""The HTTP ingest service against the real embedded broker (Tansu).

Each test runs the aiohttp app in-process (aiohttp's TestServer on a free port) with a
raw topic of its own and reads the topic back with a real consumer. "Nothing reached
the topic" is shown by sending a rejected request, then one valid marker event, and
finding exactly the marker on the topic.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.broker import EmbeddedBroker, free_port
from pipeline.ingest import create_app
from pipeline.settings import ConfigError, Settings, load_settings
from schemas import FeedbackEvent
from schemas.feedback import example_event
from tests.conftest import consume, without_nps_settings

pytestmark = pytest.mark.integration

T = TypeVar("T")
TOKEN = "tok-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TYPEFORM_SECRET = "typeform-shared-secret"
SM_API_KEY = "sm-api-key-123"
SM_SECRET = "sm-api-secret-456"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("NPS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def settings(broker: EmbeddedBroker, unique: str) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "broker_url": broker.bootstrap,
            "topic_raw": f"ingest-raw-{unique}",
            "ingest_tokens": f"other-token,{TOKEN}",
            "ingest_typeform_secret": TYPEFORM_SECRET,
            "ingest_surveymonkey_api_key": SM_API_KEY,
            "ingest_surveymonkey_secret": SM_SECRET,
            "ingest_topic_needs_fetch": f"ingest-fetch-{unique}",
            "ingest_ack_timeout_seconds": 10,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


def run(settings: Settings, scenario: Callable[[TestClient], Awaitable[T]]) -> T:
    """Start the app on a free port, run ``scenario`` against it, stop it."""

    async def go() -> T:
        async with TestClient(TestServer(create_app(settings))) as client:
            return await scenario(client)

    return asyncio.run(go())


async def post(
    client: TestClient, path: str, body: bytes | Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = await client.post(
        path, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    return resp.status, await resp.json()


def on_topic(settings: Settings, expected: int) -> dict[str, dict[str, Any]]:
    """Records of the raw topic by key (asserting keys are unique)."""
    records = consume(settings.broker_url or "", settings.topic_raw, expected, timeout=30)
    by_key = {r.key.decode(): json.loads(r.value) for r in records}
    assert len(by_key) == len(records), [r.key for r in records]
    return by_key


def event(n: int, **overrides: Any) -> dict[str, Any]:
    return example_event(event_id=f"ev-{n:04d}", customer_id=f"cust-{n}", **overrides)


MARKER = event(9999, comment="marker")


def test_valid_batch_is_acknowledged_and_on_the_topic(settings: Callable[..., Settings]) -> None:
    s = settings()
    batch = [event(1, score=10), event(2, score=3), event(3, survey_type="csat", score=4)]

    status, body = run(s, lambda c: post(c, "/api/v1/feedback", batch, AUTH))

    assert status == 202, body
    assert body["accepted_count"] == 3 and body["rejected_count"] == 0
    assert [a["index"] for a in body["accepted"]] == [0, 1, 2]
    records = on_topic(s, 3)
    assert sorted(records) == ["ev-0001", "ev-0002", "ev-0003"]
    for item in batch:
        written = FeedbackEvent.model_validate(records[item["event_id"]])
        assert written == FeedbackEvent.model_validate(item)


def test_single_event_object(settings: Callable[..., Settings]) -> None:
    s = settings()
    status, body = run(s, lambda c: post(c, "/api/v1/feedback", event(7), AUTH))
    assert (status, body["accepted"]) == (202, [{"index": 0, "event_id": "ev-0007"}])
    assert list(on_topic(s, 1)) == ["ev-0007"]


def test_mixed_batch_422_with_per_item_errors_and_only_valid_ones_written(
    settings: Callable[..., Settings],
) -> None:
    s = settings()
    missing_customer = event(4)
    del missing_customer["customer_id"]
    batch = [
        event(1),
        event(2, score=11),  # NPS scale is 0-10
        "not an event",
        missing_customer,
        event(5, event_time="2026-11-25T09:30:00"),  # no timezone offset
        event(6),
    ]

    async def scenario(client: TestClient) -> tuple[int, dict[str, Any], dict[str, Any]]:
        status, body = await post(client, "/api/v1/feedback", batch, AUTH)
        spec = await (await client.get("/openapi.json")).json()
        return status, body, spec

    status, body, spec = run(s, scenario)

    assert status == 422
    assert (body["accepted_count"], body["rejected_count"]) == (2, 4)
    assert body["accepted"] == [
        {"index": 0, "event_id": "ev-0001"},
        {"index": 5, "event_id": "ev-0006"},
    ]
    errors = {e["index"]: e for e in body["rejected"]}
    assert sorted(errors) == [1, 2, 3, 4]
    assert errors[1]["reason"] == "score_out_of_range"
    assert (errors[1]["field"], errors[1]["event_id"]) == ("score", "ev-0002")
    assert "11" in errors[1]["message"] and "0-10" in errors[1]["message"]
    assert errors[2]["reason"] == "schema_violation" and errors[2]["event_id"] is None
    assert "expected a JSON object" in errors[2]["message"]
    assert (errors[3]["reason"], errors[3]["field"]) == ("schema_violation", "customer_id")
    assert errors[3]["event_id"] == "ev-0004"
    assert (errors[4]["field"], errors[4]["event_id"]) == ("event_time", "ev-0005")
    # the answer matches the IngestResult schema the service documents
    jsonschema.validate(body, {**spec, "$ref": "#/components/schemas/IngestResult"})
    assert sorted(on_topic(s, 2)) == ["ev-0001", "ev-0006"]


def test_oversize_body_and_batch_413_nothing_written(settings: Callable[..., Settings]) -> None:
    s = settings(ingest_max_body_bytes=4096, ingest_max_batch_items=5)
    big = [event(n) for n in range(20)]  # ~7 kB of JSON
    assert len(json.dumps(big)) > 4096

    async def scenario(client: TestClient) -> list[tuple[int, dict[str, Any]]]:
        return [
            await post(client, "/api/v1/feedback", big, AUTH),
            await post(client, "/api/v1/feedback", [event(n) for n in range(6)], AUTH),
            await post(client, "/api/v1/feedback", MARKER, AUTH),
        ]

    (s1, b1), (s2, b2), (s3, _) = run(s, scenario)

    assert s1 == 413 and "4,096" in b1["error"] and "NPS_INGEST_MAX_BODY_BYTES" in b1["error"]
    assert s2 == 413 and "6 events" in b2["error"] and "NPS_INGEST_MAX_BATCH_ITEMS" in b2["error"]
    assert s3 == 202
    assert list(on_topic(s, 1)) == [MARKER["event_id"]]


def test_auth_and_malformed_bodies_nothing_written(settings: Callable[..., Settings]) -> None:
    s = settings()

    async def scenario(client: TestClient) -> list[tuple[int, dict[str, Any], str | None]]:
        out = []
        for body, headers in [
            ([event(1)], {}),  # no token
            ([event(2)], {"Authorization": "Basic dXNlcjpwYXNz"}),  # not a bearer token
            ([event(3)], {"Authorization": "Bearer wrong-token"}),
            ([event(4)], {"Authorization": f"Bearer {TOKEN}x"}),  # a prefix must not pass
            (b'[{"event_id": "ev-0005", ', AUTH),  # truncated JSON
            (b"\xff\xfe not utf-8", AUTH),
            ([], AUTH),  # empty batch
            (b"42", AUTH),
            (MARKER, {"Authorization": f"bearer {TOKEN}"}),  # scheme is case-insensitive
        ]:
            resp = await client.post(
                "/api/v1/feedback",
                data=body if isinstance(body, bytes) else json.dumps(body).encode(),
                headers=headers,
            )
            out.append((resp.status, await resp.json(), resp.headers.get("WWW-Authenticate")))
        return out

    answers = run(s, scenario)

    assert [a[0] for a in answers] == [401, 401, 403, 403, 400, 400, 400, 400, 202]
    assert answers[0][2] == 'Bearer realm="nps-ingest"'
    assert "not JSON" in answers[4][1]["error"]
    assert "empty batch" in answers[6][1]["error"]
    assert list(on_topic(s, 1)) == [MARKER["event_id"]]


def test_refuses_to_start_without_tokens_unless_insecure(
    settings: Callable[..., Settings],
) -> None:
    with pytest.raises(ConfigError) as info:
        create_app(settings(ingest_tokens=""))
    assert "NPS_INGEST_TOKENS" in info.value.message
    assert "--insecure-no-auth" in info.value.message

    s = settings(ingest_tokens="", ingest_insecure_no_auth=True)
    status, _ = run(s, lambda c: post(c, "/api/v1/feedback", MARKER))
    assert status == 202
    assert list(on_topic(s, 1)) == [MARKER["event_id"]]


@contextlib.contextmanager
def silent_listener() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a hung broker)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("broker_kind", ["closed port", "silent listener"])
def test_broker_unreachable_503_within_the_timeout(
    settings: Callable[..., Settings], broker_kind: str
) -> None:
    with contextlib.ExitStack() as stack:
        if broker_kind == "closed port":
            address = f"127.0.0.1:{free_port()}"
        else:
            address = stack.enter_context(silent_listener())
        s = settings(broker_url=address, ingest_ack_timeout_seconds=1.5)

        async def scenario(client: TestClient) -> tuple[int, dict[str, Any], str | None, float]:
            started = time.monotonic()
            resp = await client.post("/api/v1/feedback", json=[event(1), event(2)], headers=AUTH)
            took = time.monotonic() - started
            return resp.status, await resp.json(), resp.headers.get("Retry-After"), took

        status, body, retry_after, took = run(s, scenario)

    assert status == 503, body
    assert body["retry"] is True and retry_after == "5"
    assert address in body["error"]
    assert took < 1.5 + 1.0
    if broker_kind == "silent listener":  # connected but never acknowledged: the timeout
        assert took >= 1.4 and "within 1.5s" in body["error"]


# --- webhooks ----------------------------------------------------------------------------

TYPEFORM_PAYLOAD: dict[str, Any] = {
    "event_id": "01JD8X3K2M4N5P6Q7R8S9T0V1W",
    "event_type": "form_response",
    "form_response": {
        "form_id": "lT4Z3j",
        "token": "a3a12ec67a1365927098a606107fac15",
        "landed_at": "2026-11-25T09:28:41Z",
        "submitted_at": "2026-11-25T09:30:00Z",
        "hidden": {"customer_id": "cust-77", "department": "billing", "plan": "gold"},
        "calculated": {"score": 0},
        "definition": {
            "id": "lT4Z3j",
            "title": "How did we do?",
            "fields": [
                {"id": "Q1aB", "title": "How likely ...?", "type": "nps", "ref": "nps"},
                {"id": "Q2cD", "title": "Why?", "type": "long_text", "ref": "comment"},
            ],
        },
        "answers": [
            {"type": "number", "number": 3, "field": {"id": "Q1aB", "type": "nps", "ref": "nps"}},
            {
                "type": "text",
                "text": "Refund took three weeks.",
                "field": {"id": "Q2cD", "type": "long_text", "ref": "comment"},
            },
        ],
    },
}


def typeform_signature(secret: str, body: bytes) -> str:
    return (
        "sha256="
        + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    )


def test_typeform_signature_checked_and_answer_mapped(settings: Callable[..., Settings]) -> None:
    s = settings()
    body = json.dumps(TYPEFORM_PAYLOAD).encode()
    good = typeform_signature(TYPEFORM_SECRET, body)
    tampered = body.replace(b'"number": 3', b'"number": 9')
    assert tampered != body

    async def scenario(client: TestClient) -> list[tuple[int, dict[str, Any]]]:
        path = "/webhooks/typeform"
        return [
            await post(client, path, body),  # no signature
            await post(client, path, body, {"Typeform-Signature": "sha256=AAAA"}),
            await post(client, path, body, {"Typeform-Signature": typeform_signature("x", body)}),
            await post(client, path, tampered, {"Typeform-Signature": good}),
            await post(client, path, body, {"Typeform-Signature": good}),
        ]

    answers = run(s, scenario)

    assert [a[0] for a in answers] == [401, 403, 403, 403, 202], answers
    assert answers[4][1]["accepted"] == [
        {"index": 0, "event_id": "typeform-a3a12ec67a1365927098a606107fac15"}
    ]
    records = on_topic(s, 1)
    assert list(records) == ["typeform-a3a12ec67a1365927098a606107fac15"]
    written = FeedbackEvent.model_validate(records["typeform-a3a12ec67a1365927098a606107fac15"])
    assert (written.survey_type.value, written.score) == ("nps", 3)
    assert written.comment == "Refund took three weeks."
    assert (written.customer_id, written.department, written.source) == (
        "cust-77",
        "billing",
        "typeform",
    )
    assert written.event_time.isoformat() == "2026-11-25T09:30:00+00:00"
    assert written.attributes == {
        "plan": "gold",
        "typeform_form_id": "lT4Z3j",
        "typeform_calculated_score": 0,
    }


def test_typeform_wrong_score_ref_is_422_and_unconfigured_is_404(
    settings: Callable[..., Settings],
) -> None:
    s = settings(ingest_typeform_score_ref="how_likely")
    body = json.dumps(TYPEFORM_PAYLOAD).encode()
    headers = {"Typeform-Signature": typeform_signature(TYPEFORM_SECRET, body)}
    status, answer = run(s, lambda c: post(c, "/webhooks/typeform", body, headers))
    assert status == 422
    [error] = answer["rejected"]
    assert error["reason"] == "unsupported" and "'how_likely'" in error["message"]
    assert "['nps', 'comment']" in error["message"]

    unconfigured = settings(ingest_typeform_secret=None)
    status, answer = run(unconfigured, lambda c: post(c, "/webhooks/typeform", body, headers))
    assert status == 404 and "NPS_INGEST_TYPEFORM_SECRET" in answer["error"]
    status, answer = run(s, lambda c: post(c, "/webhooks/qualtrix", body, AUTH))
    assert status == 404 and "typeform" in answer["error"]


def delighted_payload(event_type: str = "survey_response.created") -> dict[str, Any]:
    return {
        "event_type": event_type,
        "event_id": "c1fc1e9e-2f0c-4c68-9d6a-0d4f0f6c0b11",
        "event_data": {
            "id": "85420871",
            "person": {
                "id": "178294633",
                "email": "jony@example.com",
                "name": "Jony Appleseed",
                "created_at": 1795600000,
            },
            "survey_type": "nps",
            "score": 6,
            "comment": "Support was slow to answer.",
            "permalink": "https://delighted.com/r/abcdef",
            "created_at": 1795610400,
            "updated_at": 1795610460,
            "person_properties": {"Department": "support", "Channel": "email", "Plan": "pro"},
            "notes": [],
            "tags": ["slow", "support"],
            "additional_answers": [],
        },
    }


def test_delighted_response_mapped(settings: Callable[..., Settings]) -> None:
    s = settings()

    async def scenario(client: TestClient) -> list[tuple[int, dict[str, Any]]]:
        path = "/webhooks/delighted"
        return [
            await post(client, path, delighted_payload()),  # no token: 401
            await post(client, f"{path}?token=nope", delighted_payload()),  # 403
            await post(client, f"{path}?token={TOKEN}", delighted_payload("unsubscribe.created")),
            await post(client, f"{path}?token={TOKEN}", delighted_payload()),
        ]

    answers = run(s, scenario)

    assert [a[0] for a in answers] == [401, 403, 200, 202], answers
    assert "unsubscribe.created" in answers[2][1]["ignored"]
    records = on_topic(s, 1)
    assert list(records) == ["delighted-85420871"]
    written = FeedbackEvent.model_validate(records["delighted-85420871"])
    assert (written.survey_type.value, written.score, written.customer_id) == (
        "nps",
        6,
        "178294633",
    )
    assert written.comment == "Support was slow to answer."
    assert (written.department, written.channel, written.source) == (
        "support",
        "email",
        "delighted",
    )
    assert written.event_time.isoformat() == "2026-11-25T12:40:00+00:00"
    assert written.attributes == {"Plan": "pro", "delighted_tags": "slow,support"}
    assert "jony" not in json.dumps(records["delighted-85420871"]).lower()  # no name/e-mail


def test_delighted_unscored_survey_type_is_422(settings: Callable[..., Settings]) -> None:
    s = settings()
    payload = delighted_payload()
    payload["event_data"]["survey_type"] = "pmf"
    status, body = run(s, lambda c: post(c, "/webhooks/delighted", payload, AUTH))
    assert status == 422
    assert body["rejected"][0]["field"] == "event_data.survey_type"


SURVEYMONKEY_PAYLOAD: dict[str, Any] = {
    "name": "nps responses",
    "filter_type": "survey",
    "filter_id": "405386117",
    "event_type": "response_completed",
    "event_id": "10001234567",
    "object_type": "response",
    "object_id": "114171520434",
    "event_datetime": "2026-11-25T09:30:02.561237+00:00",
    "resources": {
        "respondent_id": "114171520434",
        "recipient_id": "0",
        "collector_id": "415462189",
        "survey_id": "405386117",
        "user_id": "152351423",
    },
}


def sm_signature(body: bytes, key: str = SM_API_KEY, secret: str = SM_SECRET) -> str:
    digest = hmac.new(f"{key}&{secret}".encode(), body, hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def test_surveymonkey_head_signature_and_needs_fetch_envelope(
    settings: Callable[..., Settings],
) -> None:
    s = settings()
    body = json.dumps(SURVEYMONKEY_PAYLOAD).encode()
    deleted = json.dumps({**SURVEYMONKEY_PAYLOAD, "event_type": "response_deleted"}).encode()
    path = "/webhooks/surveymonkey"

    async def scenario(client: TestClient) -> tuple[int, list[tuple[int, dict[str, Any]]]]:
        head = await client.head(path)
        return head.status, [
            await post(client, path, body),  # unsigned
            await post(client, path, body, {"Sm-Signature": sm_signature(body, secret="x")}),
            await post(client, path, deleted, {"Sm-Signature": sm_signature(body)}),  # replayed
            await post(client, path, deleted, {"Sm-Signature": sm_signature(deleted)}),
            await post(client, path, body, {"Sm-Signature": sm_signature(body)}),
        ]

    head, answers = run(s, scenario)

    assert head == 200
    assert [a[0] for a in answers] == [401, 403, 403, 200, 202], answers
    assert answers[4][1]["topic"] == s.ingest_topic_needs_fetch
    # ids only: nothing on the raw topic, one envelope on the needs-fetch topic
    assert consume(s.broker_url or "", s.topic_raw, 0, timeout=2) == []
    [record] = consume(s.broker_url or "", s.ingest_topic_needs_fetch, 1, timeout=30)
    assert record.key == b"surveymonkey-114171520434"
    envelope = json.loads(record.value)
    assert envelope["kind"] == "needs_fetch" and "score" not in envelope
    assert (envelope["tool"], envelope["tool_event_type"]) == ("surveymonkey", "response_completed")
    assert envelope["resources"]["survey_id"] == "405386117"
    assert "fetch response 114171520434 of survey 405386117" in envelope["message"]

    unconfigured = settings(ingest_surveymonkey_secret=None)
    head, answers = run(
        unconfigured,
        lambda c: asyncio.gather(c.head(path), post(c, path, body, {"Sm-Signature": "x"})),
    )
    assert (head.status, answers[0]) == (404, 404)


ASKNICELY_PAYLOAD: dict[str, Any] = {
    "count": 1,
    "person": {
        "id": "cust-3141",
        "name": "Ana Lima",
        "email": "ana@example.com",
        "created": 1795500000,
        "segment": "enterprise",
    },
    "question": {
        "id": "987654",
        "score": "2",
        "comment": "Nobody called back.",
        "sent": 1795600000,
        "opened": 1795600300,
        "responded": 1795600360,
        "segment": "q4-campaign",
        "deliverymethod": "email",
    },
}


def test_asknicely_response_mapped(settings: Callable[..., Settings]) -> None:
    s = settings()
    path = "/webhooks/asknicely"

    async def scenario(client: TestClient) -> list[tuple[int, dict[str, Any]]]:
        return [
            await post(client, path, ASKNICELY_PAYLOAD),
            await post(client, f"{path}?token={TOKEN}", ASKNICELY_PAYLOAD),
        ]

    answers = run(s, scenario)

    assert [a[0] for a in answers] == [401, 202], answers
    records = on_topic(s, 1)
    written = FeedbackEvent.model_validate(records["asknicely-987654"])
    assert (written.survey_type.value, written.score, written.customer_id) == (
        "nps",
        2,
        "cust-3141",
    )
    assert (written.comment, written.channel, written.source) == (
        "Nobody called back.",
        "email",
        "asknicely",
    )
    assert written.event_time.isoformat() == "2026-11-25T09:52:40+00:00"
    assert written.attributes == {
        "asknicely_question_segment": "q4-campaign",
        "asknicely_person_segment": "enterprise",
    }


QUALTRICS_KEY = "qualtrics-shared-key"
QUALTRICS_TOPIC = "acmecorp.surveyengine.completedResponse.SV_3KaXa2Ne8vX2Kfc"
QUALTRICS_MSG: dict[str, Any] = {
    "Status": "Complete",
    "SurveyID": "SV_3KaXa2Ne8vX2Kfc",
    "ResponseID": "R_1OwQ5GcKlWqfFZB",
    "CompletedDate": "2026-11-25 09:30:05",
    "BrandID": "acmecorp",
}


def qualtrics_form(
    msg: dict[str, Any] | str = QUALTRICS_MSG,
    topic: str = QUALTRICS_TOPIC,
    key: str | None = QUALTRICS_KEY,
    signed_msg: str | None = None,
) -> bytes:
    """A form-encoded Qualtrics delivery; HMAC = hex HMAC-SHA512 of MSG (or of signed_msg)."""
    text = msg if isinstance(msg, str) else json.dumps(msg)
    fields = {"Topic": topic, "MSG": text}
    if key is not None:
        signed = (signed_msg if signed_msg is not None else text).encode()
        fields["HMAC"] = hmac.new(key.encode(), signed, hashlib.sha512).hexdigest()
    return urllib.parse.urlencode(fields).encode()


async def post_form(client: TestClient, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    resp = await client.post(
        path, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    return resp.status, await resp.json()


def test_qualtrics_hmac_checked_and_needs_fetch_envelope(
    settings: Callable[..., Settings],
) -> None:
    s = settings(ingest_qualtrics_secret=QUALTRICS_KEY)
    path = "/webhooks/qualtrics"
    tampered = {**QUALTRICS_MSG, "ResponseID": "R_forged"}

    async def scenario(client: TestClient) -> list[tuple[int, dict[str, Any]]]:
        return [
            await post_form(client, path, qualtrics_form(key=None)),  # unsigned
            await post_form(client, path, qualtrics_form(key="another-key")),
            # a valid HMAC of the genuine MSG, sent with a changed MSG
            await post_form(
                client, path, qualtrics_form(tampered, signed_msg=json.dumps(QUALTRICS_MSG))
            ),
            await post_form(client, path, json.dumps(QUALTRICS_MSG).encode()),  # JSON, no form
            await post_form(client, path, qualtrics_form("{not json")),
            await post_form(
                client,
                path,
                qualtrics_form({k: v for k, v in QUALTRICS_MSG.items() if k != "ResponseID"}),
            ),
            await post_form(
                client, path, qualtrics_form(topic="acmecorp.controlpanel.activateSurvey")
            ),
            await post_form(client, path, qualtrics_form()),
        ]

    answers = run(s, scenario)

    assert [a[0] for a in answers] == [401, 403, 403, 400, 400, 422, 200, 202], answers
    assert "NPS_INGEST_QUALTRICS_SECRET" in answers[0][1]["error"]
    assert "Topic and MSG" in answers[3][1]["error"]
    assert answers[4][1]["error"] == "MSG is not JSON"
    assert answers[5][1]["rejected"][0]["field"] == "MSG.ResponseID"
    assert "activateSurvey" in answers[6][1]["ignored"]
    assert answers[7][1]["accepted"] == [{"index": 0, "event_id": "qualtrics-R_1OwQ5GcKlWqfFZB"}]
    assert answers[7][1]["topic"] == s.ingest_topic_needs_fetch
    # ids only: nothing on the raw topic, exactly one envelope on the needs-fetch topic
    assert consume(s.broker_url or "", s.topic_raw, 0, timeout=2) == []
    [record] = consume(s.broker_url or "", s.ingest_topic_needs_fetch, 1, timeout=30)
    assert record.key == b"qualtrics-R_1OwQ5GcKlWqfFZB"
    envelope = json.loads(record.value)
    assert envelope["kind"] == "needs_fetch" and "score" not in envelope
    assert (envelope["tool"], envelope["tool_event_type"], envelope["object_id"]) == (
        "qualtrics",
        "completedResponse",
        "R_1OwQ5GcKlWqfFZB",
    )
    assert envelope["event_time"] == "2026-11-25 09:30:05"
    assert envelope["resources"] == {
        "survey_id": "SV_3KaXa2Ne8vX2Kfc",
        "brand_id": "acmecorp",
        "status": "Complete",
        "topic": QUALTRICS_TOPIC,
    }
    assert "/API/v3/surveys/SV_3KaXa2Ne8vX2Kfc/responses/R_1OwQ5GcKlWqfFZB" in envelope["message"]


def test_qualtrics_without_shared_key_needs_a_bearer_token(
    settings: Callable[..., Settings],
) -> None:
    s = settings()  # no NPS_INGEST_QUALTRICS_SECRET: the HMAC field is not looked at
    path = "/webhooks/qualtrics"

    async def scenario(client: TestClient) -> list[tuple[int, dict[str, Any]]]:
        return [
            await post_form(client, path, qualtrics_form()),
            await post_form(client, f"{path}?token=wrong", qualtrics_form()),
            await post_form(client, f"{path}?token={TOKEN}", qualtrics_form(key=None)),
        ]

    answers = run(s, scenario)

    assert [a[0] for a in answers] == [401, 403, 202], answers
    [record] = consume(s.broker_url or "", s.ingest_topic_needs_fetch, 1, timeout=30)
    assert record.key == b"qualtrics-R_1OwQ5GcKlWqfFZB"


MEDALLIA_SECRET = "medallia-webhook-secret"
MAPPINGS_YAML = """\
webhooks:
  medallia:                       # POST /webhooks/custom/medallia
    columns:
      event_id: record.a_surveyid
      event_time: record.e_responsedate
      score: record.q_ltr_scale
      comment: record.q_ltr_comment
      customer_id: record.a_customer_id
      department: record.e_unit_department
      agent: record.e_employee_id
      channel: record.e_channel
      account_value: record.e_account_arr
      attributes.tier: record.e_tier
    constants:
      survey_type: nps
      source: medallia
    time_format: "%Y-%m-%d %H:%M:%S"
    timezone: Europe/Rome
    event_id_prefix: medallia-
    signature:
      header: X-Medallia-Signature
      algorithm: hmac-sha256
      prefix: "sha256="
      secret_env: MEDALLIA_WEBHOOK_SECRET
  pulse:                          # no signature: a bearer token
    columns:
      event_id: id
      event_time: answered_at
      survey_type: kind
      score: rating
      customer_id: user.id
    constants:
      source: pulse
"""


def medallia_payload(**record: Any) -> dict[str, Any]:
    """A Medallia-style webhook template body; the top-level ``source`` and ``attributes``
    must not be taken for event fields."""
    return {
        "event": "survey.completed",
        "source": {"system": "medallia", "version": 7},
        "attributes": {"nested": {"not": "scalar"}},
        "record": {
            "a_surveyid": 48211,
            "e_responsedate": "2026-11-25 10:30:00",
            "q_ltr_scale": "4",
            "q_ltr_comment": "The agent hung up on me.",
            "a_customer_id": "C-1001",
            "e_unit_department": "support",
            "e_employee_id": "agent-042",
            "e_channel": "phone",
            "e_account_arr": "12000.50",
            "e_tier": "gold",
            **record,
        },
    }


@pytest.fixture
def mappings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDALLIA_WEBHOOK_SECRET", MEDALLIA_SECRET)
    path = tmp_path / "webhooks.yaml"
    path.write_text(MAPPINGS_YAML)
    return path


def medallia_signature(body: bytes, secret: str = MEDALLIA_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_custom_mapping_signature_and_fields(
    settings: Callable[..., Settings], mappings_file: Path
) -> None:
    s = settings(ingest_webhook_mappings_file=mappings_file)
    body = json.dumps(medallia_payload()).encode()
    tampered = body.replace(b'"4"', b'"10"')
    assert tampered != body
    path = "/webhooks/custom/medallia"

    async def scenario(client: TestClient) -> list[tuple[int, dict[str, Any]]]:
        sig = {"X-Medallia-Signature": medallia_signature(body)}
        return [
            await post(client, path, body, AUTH),  # a bearer token is not the signature
            await post(client, path, body, {"X-Medallia-Signature": medallia_signature(body, "x")}),
            await post(client, path, tampered, sig),
            await post(
                client, path, b"{oops", {"X-Medallia-Signature": medallia_signature(b"{oops")}
            ),
            await post(client, "/webhooks/custom/zendesk", body, sig),
            await post(
                client,
                path,
                body,
                {
                    "X-Medallia-Signature": medallia_signature(body)
                    .upper()
                    .replace("SHA256=", "sha256=")
                },
            ),
        ]

    answers = run(s, scenario)

    assert [a[0] for a in answers] == [401, 403, 403, 400, 404, 202], answers
    assert "X-Medallia-Signature" in answers[0][1]["error"]
    assert "['medallia', 'pulse']" in answers[4][1]["error"]
    assert answers[5][1]["accepted"] == [{"index": 0, "event_id": "medallia-48211"}]
    records = on_topic(s, 1)
    written = FeedbackEvent.model_validate(records["medallia-48211"])
    assert (written.survey_type.value, written.score, written.customer_id) == ("nps", 4, "C-1001")
    assert written.comment == "The agent hung up on me."
    assert written.segments() == {"department": "support", "agent": "agent-042", "channel": "phone"}
    assert written.account_value == 12000.5
    assert written.attributes == {"tier": "gold"}
    assert written.source == "medallia"
    # naive local time in Europe/Rome (UTC+1 in November)
    assert written.event_time.isoformat() == "2026-11-25T10:30:00+01:00"


def test_custom_mapping_batch_bearer_and_per_item_errors(
    settings: Callable[..., Settings], mappings_file: Path
) -> None:
    s = settings(ingest_webhook_mappings_file=mappings_file)
    path = "/webhooks/custom/pulse"
    batch = [
        {"id": "p-1", "answered_at": 1795600000, "kind": "csat", "rating": 5, "user": {"id": 7}},
        {"id": "p-2", "answered_at": 1795600060, "kind": "csat", "rating": 9, "user": {"id": 8}},
        {"id": "p-3", "answered_at": "yesterday", "kind": "ces", "rating": 6, "user": {"id": 9}},
        {"id": "p-4", "answered_at": 1795600120, "kind": "ces", "rating": 2},
        ["not", "an", "object"],
    ]

    async def scenario(client: TestClient) -> list[tuple[int, dict[str, Any]]]:
        return [
            await post(client, path, batch),
            await post(client, f"{path}?token={TOKEN}", batch),
            await post(client, path, [], AUTH),
        ]

    answers = run(s, scenario)

    assert [a[0] for a in answers] == [401, 422, 400], answers
    body = answers[1][1]
    assert body["accepted"] == [{"index": 0, "event_id": "p-1"}]
    errors = {e["index"]: (e["reason"], e["field"]) for e in body["rejected"]}
    assert errors == {
        1: ("score_out_of_range", "score"),
        2: ("schema_violation", "event_time"),
        3: ("schema_violation", "customer_id"),
        4: ("schema_violation", None),
    }
    written = FeedbackEvent.model_validate(on_topic(s, 1)["p-1"])
    assert (written.survey_type.value, written.score, written.customer_id) == ("csat", 5, "7")
    assert written.event_time.isoformat() == "2026-11-25T09:46:40+00:00"
    assert written.source == "pulse"


# --- documents ---------------------------------------------------------------------------


def test_openapi_document_and_healthz(settings: Callable[..., Settings]) -> None:
    s = settings()

    async def scenario(client: TestClient) -> tuple[int, dict[str, Any], dict[str, Any]]:
        health = await client.get("/healthz")
        spec_resp = await client.get("/openapi.json")
        return health.status, await health.json(), json.loads(await spec_resp.text())

    status, health, spec = run(s, scenario)

    assert status == 200 and health["status"] == "ok" and health["topic"] == s.topic_raw
    assert spec["openapi"] == "3.1.0"
    codes = {
        f"{method.upper()} {path}": sorted(op["responses"])
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method != "parameters"
    }
    assert codes["POST /api/v1/feedback"] == ["202", "400", "401", "403", "413", "422", "503"]
    webhook = ["200", "202", "400", "401", "403", "404", "413", "422", "503"]
    for tool in (
        "delighted",
        "typeform",
        "surveymonkey",
        "asknicely",
        "qualtrics",
        "custom/{name}",
    ):
        assert codes[f"POST /webhooks/{tool}"] == webhook, tool
    assert codes["HEAD /webhooks/surveymonkey"] == ["200", "404"]
    assert {"/healthz", "/openapi.json"} <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    # FeedbackEvent's schema in the document is the pydantic one: it accepts the README's
    # example and rejects an unknown field
    feedback = {**spec, "$ref": "#/components/schemas/FeedbackEvent"}
    jsonschema.validate(example_event(), feedback)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(example_event(sentiment="good"), feedback)
    # every $ref in the document resolves
    refs = {m for m in json.dumps(spec).split('"$ref": "')[1:]}
    for ref in refs:
        name = ref.split('"')[0].removeprefix("#/components/schemas/")
        assert name in schemas, name


# --- the command -------------------------------------------------------------------------


def _cli_env(**values: str) -> dict[str, str]:

    env = without_nps_settings()
    env.update(values)
    return env


def test_cli_refuses_to_start_without_tokens(broker: EmbeddedBroker) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "ingest", "--broker", broker.bootstrap],
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "NPS_INGEST_TOKENS" in proc.stderr and "--insecure-no-auth" in proc.stderr


def test_cli_serves_and_writes(broker: EmbeddedBroker, unique: str, tmp_path: Path) -> None:
    port = free_port()
    topic = f"ingest-cli-{unique}"
    log = (tmp_path / "ingest.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "ingest", "--port", str(port)],
        env=_cli_env(NPS_BROKER_URL=broker.bootstrap, NPS_TOPIC_RAW=topic, NPS_INGEST_TOKENS=TOKEN),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "ingest.log").read_text()
                assert time.monotonic() < deadline, "ingest service did not start"
                time.sleep(0.2)
        request = urllib.request.Request(
            f"{url}/api/v1/feedback",
            data=json.dumps([event(1), event(2)]).encode(),
            headers={**AUTH, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert resp.status == 202
            assert json.load(resp)["accepted_count"] == 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    records = consume(broker.bootstrap, topic, 2, timeout=30)
    assert sorted(r.key.decode() for r in records) == ["ev-0001", "ev-0002"]


def test_ingest_help_lists_every_route(settings: Callable[..., Settings]) -> None:
    """``nps-pipeline ingest --help`` names every route the service serves."""
    from pipeline.cli import INGEST_HELP

    routes = {
        resource.canonical
        for resource in create_app(settings()).router.resources()
        if resource.canonical != "/webhooks/{tool}"  # the 404 of unknown tools
    }
    assert "/webhooks/qualtrics" in routes and "/webhooks/custom/{name}" in routes
    missing = sorted(route for route in routes if route not in INGEST_HELP)
    assert not missing, missing
