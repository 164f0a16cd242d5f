"""Custom webhooks: a YAML file maps any tool's JSON payload onto the feedback event.

For tools without an adapter of their own (a Medallia webhook template, an in-house
survey app), ``NPS_INGEST_WEBHOOK_MAPPINGS_FILE`` names, per route
``/webhooks/custom/{name}``, where each event field is in the payload and how the
delivery is authenticated::

    webhooks:
      medallia:
        columns:                      # event field -> dotted JSON path in the payload
          event_id: record.a_surveyid
          event_time: record.e_responsedate
          score: record.q_ltr_scale
        constants: {survey_type: nps, source: medallia}
        time_format: "%Y-%m-%d %H:%M:%S"
        timezone: Europe/Rome
        signature: {header: X-Medallia-Signature, algorithm: hmac-sha256,
                    secret_env: MEDALLIA_WEBHOOK_SECRET}

``columns`` / ``constants`` / ``time_format`` / ``timezone`` mean exactly what they mean
in a replay mapping file: the rows are mapped by :func:`pipeline.replay.to_event` (one way
to turn a record into an event: integer strings become scores, naive times are read in the
timezone, ``attributes.NAME`` fills a free attribute), so the block for a tool's JSONL
export and for its webhook is the same. The file is validated at start; an error stops
the service naming the file, the line and the field.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
from collections.abc import Mapping as AnyMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipeline import yamlconfig
from pipeline.ingest.auth import Verdict
from pipeline.ingest.items import Triage
from pipeline.replay import EVENT_FIELDS, Mapping, to_event
from pipeline.settings import ConfigError
from pipeline.validate import Rejection
from schemas import Reason
from schemas.feedback import SCALES, SEGMENT_FIELDS

#: Fields every mapping must fill: from the payload (a column) ...
REQUIRED_COLUMNS = ("event_id", "event_time", "score")
#: ... or from the payload or a constant.
REQUIRED_FIELDS = ("survey_type", "customer_id")
#: Identifier-like fields: a JSON number there (``"id": 48211``) is taken as its text.
_TEXT_FIELDS = ("event_id", "customer_id", "source", *SEGMENT_FIELDS)
#: The payload is looked up under this key, so that a payload's own top-level keys never
#: map "by name" (replay maps columns named like an event field by name; a webhook body's
#: ``attributes`` or ``source`` must not).
_ROOT = "$"

Scalar = str | int | float | bool


def _route_name(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", value):
        raise ValueError(
            f"route name {value!r} must be lower-case letters, digits, '-' or '_' "
            "(it becomes /webhooks/custom/NAME)"
        )
    return value


def _event_field(value: str) -> str:
    if value not in EVENT_FIELDS and not (value.startswith("attributes.") and value[11:]):
        raise ValueError(
            f"unknown event field {value!r}; fields: {', '.join(EVENT_FIELDS)} or attributes.NAME"
        )
    return value


RouteName = Annotated[str, AfterValidator(_route_name)]
EventField = Annotated[str, AfterValidator(_event_field)]


class SignatureCheck(BaseModel):
    """How a delivery proves it comes from the tool: a header checked against the raw body.

    ``hmac-sha1`` / ``hmac-sha256`` / ``hmac-sha512``: the header is ``prefix`` + the HMAC
    of the raw body keyed with the secret, ``hex`` or ``base64``. ``shared-secret``: the
    header is ``prefix`` + the secret itself. The secret comes from the environment
    variable ``secret_env`` (never from this file), which must be set at start.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    header: str = Field(min_length=1, pattern=r"^[A-Za-z0-9-]+$")
    algorithm: Literal["hmac-sha1", "hmac-sha256", "hmac-sha512", "shared-secret"]
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = Field(default="", description="Text before the digest, e.g. 'sha256='.")
    secret_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @field_validator("secret_env")
    @classmethod
    def _secret_set(cls, value: str, info: ValidationInfo) -> str:
        environ = (info.context or {}).get("environ", os.environ)
        if not environ.get(value, "").strip():
            raise ValueError(f"environment variable {value} (the secret) is not set or empty")
        return value

    def expected(self, secret: bytes, body: bytes) -> str:
        """The header value a genuine delivery of ``body`` carries."""
        if self.algorithm == "shared-secret":
            return self.prefix + secret.decode()
        digest = hmac.new(secret, body, self.algorithm.removeprefix("hmac-")).digest()
        text = digest.hex() if self.encoding == "hex" else base64.b64encode(digest).decode()
        return self.prefix + text


class CustomWebhook(BaseModel):
    """One route ``/webhooks/custom/{name}``: where the event fields are in its payload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: dict[EventField, Annotated[str, StringConstraints(min_length=1)]] = Field(
        description="Event field (or attributes.NAME) -> dotted JSON path in the payload."
    )
    constants: dict[EventField, Scalar] = Field(
        default_factory=dict, description="Event fields the payload lacks, e.g. survey_type."
    )
    time_format: str | None = Field(
        default=None, description="strptime format of event_time; default ISO 8601 / Unix seconds."
    )
    timezone: str | None = Field(default=None, description="IANA zone of naive event times.")
    event_id_prefix: str = Field(
        default="", description="Put before the payload's id, e.g. 'medallia-' (unique per tool)."
    )
    signature: SignatureCheck | None = Field(
        default=None, description="Unset: a bearer token (header or ?token=) is required."
    )

    @field_validator("constants")
    @classmethod
    def _constant_survey_type(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        kind = value.get("survey_type")
        if kind is not None and kind not in SCALES:
            raise ValueError(f"survey_type {kind!r} must be one of {sorted(SCALES)}")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown timezone {value!r} (an IANA name such as Europe/Rome)"
                ) from None
        return value

    @field_validator("time_format")
    @classmethod
    def _format(cls, value: str | None) -> str | None:
        if value is not None and not re.search(r"%[a-zA-Z]", value):
            raise ValueError(f"{value!r} is not a strptime format (e.g. '%Y-%m-%d %H:%M:%S')")
        return value

    @model_validator(mode="after")
    def _complete(self) -> CustomWebhook:
        both = sorted(set(self.columns) & set(self.constants))
        if both:
            raise ValueError(f"fields both mapped to a JSON path and set constant: {both}")
        fixed = [n for n in REQUIRED_COLUMNS if n in self.constants]
        if fixed:
            raise ValueError(f"{fixed} must come from the payload (columns), not constants")
        missing = [n for n in REQUIRED_COLUMNS if n not in self.columns] + [
            n for n in REQUIRED_FIELDS if n not in self.columns and n not in self.constants
        ]
        if missing:
            raise ValueError(
                f"no mapping for required field(s) {missing}: add them to columns "
                "(a JSON path)" + (" or constants" if set(missing) & set(REQUIRED_FIELDS) else "")
            )
        return self


class WebhookMappingsFile(BaseModel):
    """The whole file: ``webhooks: {name: CustomWebhook}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhooks: dict[RouteName, CustomWebhook] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class ConfiguredWebhook:
    """A validated route with its secret read from the environment."""

    name: str
    spec: CustomWebhook
    mapping: Mapping
    secret: bytes | None

    def verify(self, headers: AnyMapping[str, str], body: bytes) -> Verdict:
        """Check the signature header against the raw body (constant time)."""
        check = self.spec.signature
        assert check is not None and self.secret is not None
        given = headers.get(check.header)
        if not given:
            return Verdict.MISSING
        expected = check.expected(self.secret, body)
        if check.encoding == "hex" and check.algorithm != "shared-secret":
            given = given.strip().lower()
        matches = hmac.compare_digest(given.strip().encode(), expected.encode())
        return Verdict.OK if matches else Verdict.WRONG

    def triage(self, items: list[object], max_event_bytes: int) -> Triage:
        """Map and validate each payload object; the errors name the event field."""
        out = Triage()
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                out.reject(index, Rejection(
                    Reason.SCHEMA_VIOLATION, f"expected a JSON object, got {type(item).__name__}"
                ))  # fmt: skip
                continue
            event = to_event({_ROOT: item}, self.mapping)
            if isinstance(event, Rejection):
                out.reject(index, event)
                continue
            for name in _TEXT_FIELDS:
                value = event.get(name)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    event[name] = str(value)
            if self.spec.event_id_prefix and isinstance(event.get("event_id"), str):
                event["event_id"] = self.spec.event_id_prefix + event["event_id"]
            out.add(index, event, max_event_bytes)
        return out


def load_webhook_mappings(
    path: Path, environ: AnyMapping[str, str] | None = None
) -> dict[str, ConfiguredWebhook]:
    """The routes of ``path``; :class:`ConfigError` naming file, line and field if invalid."""
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"webhook mappings file {path} (NPS_INGEST_WEBHOOK_MAPPINGS_FILE): {exc.strerror}"
        ) from None
    root, data = yamlconfig.parse(path, text)
    try:
        parsed = WebhookMappingsFile.model_validate(data or {}, context={"environ": environ})
    except ValidationError as exc:
        lines = yamlconfig.error_lines(exc, root)
        raise ConfigError("\n".join([f"{path}: invalid webhook mappings:", *lines])) from None
    routes = {}
    for name, spec in parsed.webhooks.items():
        secret = None
        if spec.signature is not None:
            secret = environ[spec.signature.secret_env].strip().encode()
        mapping = Mapping(
            columns={field: f"{_ROOT}.{column}" for field, column in spec.columns.items()},
            constants=dict(spec.constants),
            time_format=spec.time_format,
            timezone=spec.timezone,
            zone=ZoneInfo(spec.timezone) if spec.timezone else None,
        )
        routes[name] = ConfiguredWebhook(name=name, spec=spec, mapping=mapping, secret=secret)
    return routes
