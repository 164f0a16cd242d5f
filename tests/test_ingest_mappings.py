"""The custom webhook mappings file: validated at start, errors name file, line and field;
signature algorithms against published HMAC test vectors (RFC 2202, RFC 4231)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.broker import free_port
from pipeline.ingest.auth import Verdict, qualtrics_signature
from pipeline.ingest.mappings import SignatureCheck, load_webhook_mappings
from pipeline.settings import ConfigError
from tests.conftest import without_nps_settings

# RFC 2202 / RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
KEY, DATA = b"Jefe", b"what do ya want for nothing?"
SHA1 = "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
SHA256 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
SHA512 = (
    "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
    "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
)

VALID = """\
webhooks:
  medallia:
    columns:
      event_id: record.id
      event_time: record.when
      score: record.ltr
      customer_id: record.customer
    constants: {survey_type: nps}
    signature:
      header: X-Sig
      algorithm: hmac-sha256
      secret_env: TEST_HOOK_SECRET
"""


def load(tmp_path: Path, text: str, **environ: str) -> dict:
    path = tmp_path / "hooks.yaml"
    path.write_text(text)
    return load_webhook_mappings(path, environ)


def errors_of(tmp_path: Path, text: str, **environ: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, **environ)
    head, *lines = info.value.message.splitlines()
    assert head == f"{tmp_path / 'hooks.yaml'}: invalid webhook mappings:"
    return [line.strip() for line in lines]


@pytest.mark.parametrize(
    ("algorithm", "encoding", "expected"),
    [
        ("hmac-sha1", "hex", SHA1),
        ("hmac-sha256", "hex", SHA256),
        ("hmac-sha512", "hex", SHA512),
        ("hmac-sha256", "base64", base64.b64encode(bytes.fromhex(SHA256)).decode()),
    ],
)
def test_signature_algorithms_match_published_vectors(
    algorithm: str, encoding: str, expected: str
) -> None:
    check = SignatureCheck.model_validate(
        {
            "header": "X-Sig",
            "algorithm": algorithm,
            "encoding": encoding,
            "prefix": "v1=",
            "secret_env": "S",
        },
        context={"environ": {"S": "set"}},
    )
    assert check.expected(KEY, DATA) == "v1=" + expected


def test_qualtrics_signature_is_hex_hmac_sha512() -> None:
    assert qualtrics_signature(KEY.decode(), DATA.decode()) == SHA512


def test_valid_file_verifies_headers(tmp_path: Path) -> None:
    routes = load(tmp_path, VALID, TEST_HOOK_SECRET=KEY.decode())
    hook = routes["medallia"]
    assert hook.verify({"X-Sig": SHA256}, DATA) is Verdict.OK
    assert hook.verify({"X-Sig": SHA256.upper()}, DATA) is Verdict.OK  # hex in any case
    assert hook.verify({"X-Sig": SHA256}, DATA + b" ") is Verdict.WRONG
    assert hook.verify({"X-Sig": SHA1}, DATA) is Verdict.WRONG
    assert hook.verify({}, DATA) is Verdict.MISSING


def test_shared_secret_header(tmp_path: Path) -> None:
    text = VALID.replace("algorithm: hmac-sha256", "algorithm: shared-secret")
    hook = load(tmp_path, text, TEST_HOOK_SECRET="s3cret")["medallia"]
    assert hook.verify({"X-Sig": "s3cret"}, b"any body") is Verdict.OK
    assert hook.verify({"X-Sig": "S3CRET"}, b"any body") is Verdict.WRONG  # case matters
    assert hook.verify({"X-Sig": "s3cre"}, b"any body") is Verdict.WRONG


def test_errors_name_line_and_field(tmp_path: Path) -> None:
    text = """\
webhooks:
  medallia:
    columns:
      event_id: record.id
      event_time: record.when
      scor: record.ltr
      customer_id: record.customer
    constants: {survey_type: pnm}
    timezone: Mars/Olympus
    time_format: "YYYY-MM-DD"
    signature:
      header: X-Sig
      algorithm: hmac-md5
      secret_env: TEST_HOOK_SECRET
  Zendesk CSAT:
    columns: {event_id: id}
"""
    assert errors_of(tmp_path, text) == [
        "- line 6: webhooks.medallia.columns.scor: unknown event field 'scor'; fields: "
        "schema_version, event_id, event_time, survey_type, score, comment, customer_id, "
        "department, agent, product, channel, region, attributes, account_value, source "
        "or attributes.NAME",
        "- line 8: webhooks.medallia.constants: survey_type 'pnm' must be one of "
        "['ces', 'csat', 'nps']",
        "- line 9: webhooks.medallia.timezone: unknown timezone 'Mars/Olympus' (an IANA name "
        "such as Europe/Rome)",
        "- line 10: webhooks.medallia.time_format: 'YYYY-MM-DD' is not a strptime format "
        "(e.g. '%Y-%m-%d %H:%M:%S')",
        "- line 13: webhooks.medallia.signature.algorithm: Input should be 'hmac-sha1', "
        "'hmac-sha256', 'hmac-sha512' or 'shared-secret'",
        "- line 14: webhooks.medallia.signature.secret_env: environment variable "
        "TEST_HOOK_SECRET (the secret) is not set or empty",
        "- line 15: webhooks.Zendesk CSAT: route name 'Zendesk CSAT' must be lower-case "
        "letters, digits, '-' or '_' (it becomes /webhooks/custom/NAME)",
        "- line 16: webhooks.Zendesk CSAT: no mapping for required field(s) ['event_time', "
        "'score', 'survey_type', 'customer_id']: add them to columns (a JSON path) or constants",
    ]


def test_required_fields_come_from_the_payload(tmp_path: Path) -> None:
    text = """\
webhooks:
  kiosk:
    columns:
      event_id: id
      score: rating
      customer_id: id
      survey_type: kind
    constants:
      event_time: "2026-11-25T10:00:00Z"
      survey_type: csat
    surprise: 1
"""
    assert errors_of(tmp_path, text) == [
        "- line 11: webhooks.kiosk.surprise: Extra inputs are not permitted",
    ]
    fixed = text.replace("    surprise: 1\n", "")
    assert errors_of(tmp_path, fixed) == [
        "- line 3: webhooks.kiosk: fields both mapped to a JSON path and set constant: "
        "['survey_type']",
    ]
    fixed = fixed.replace("      survey_type: csat\n", "")
    assert errors_of(tmp_path, fixed) == [
        "- line 3: webhooks.kiosk: ['event_time'] must come from the payload (columns), "
        "not constants",
    ]


def test_not_yaml_empty_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(tmp_path, "webhooks: [unclosed")
    assert errors_of(tmp_path, "") == ["- webhooks: Field required"]
    assert errors_of(tmp_path, "webhooks: {}\n") == [
        "- line 1: webhooks: Dictionary should have at least 1 item after validation, not 0"
    ]
    with pytest.raises(ConfigError, match="NPS_INGEST_WEBHOOK_MAPPINGS_FILE"):
        load_webhook_mappings(tmp_path / "absent.yaml", {})


def test_ingest_command_stops_on_a_bad_mappings_file(tmp_path: Path) -> None:
    """Fail fast: exit 2 before serving, naming the file, the line and the field."""
    path = tmp_path / "hooks.yaml"
    path.write_text(VALID.replace("score: record.ltr", "score: record.ltr\n      mood: x"))
    env = without_nps_settings()
    env.update(
        NPS_BROKER_URL=f"127.0.0.1:{free_port()}",  # never contacted
        NPS_INGEST_TOKENS="tok",
        NPS_INGEST_PORT=str(free_port()),
        NPS_INGEST_WEBHOOK_MAPPINGS_FILE=str(path),
        TEST_HOOK_SECRET="x",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "ingest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{path}: invalid webhook mappings:" in proc.stderr
    assert "line 7: webhooks.medallia.columns.mood: unknown event field 'mood'" in proc.stderr


def test_readme_medallia_example_maps_as_documented(tmp_path: Path) -> None:
    """The README's worked example: its YAML loads and its payload gives the stated event."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("### Custom webhooks") :]
    payload_text = section[section.index("```json\n") + 8 :]
    payload_text = payload_text[: payload_text.index("```")]
    yaml_text = section[section.index("```yaml\n") + 8 :]
    yaml_text = yaml_text[: yaml_text.index("```")]
    routes = load(tmp_path, yaml_text, MEDALLIA_WEBHOOK_SECRET="s")
    checked = routes["medallia"].triage([json.loads(payload_text)], max_event_bytes=65536)
    assert checked.errors == []
    [event] = checked.events
    assert event.model_dump(mode="json", exclude_defaults=True) == {
        "event_id": "medallia-48211",
        "event_time": "2026-11-25T10:30:00+01:00",
        "survey_type": "nps",
        "score": 4,
        "comment": "The agent hung up on me.",
        "customer_id": "C-1001",
        "department": "support",
        "agent": "agent-042",
        "channel": "phone",
        "attributes": {"tier": "gold"},
        "account_value": 12000.5,
        "source": "medallia",
    }
