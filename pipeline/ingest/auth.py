"""Bearer tokens and webhook signatures, compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from enum import Enum

from pipeline.settings import ConfigError, Settings


class Verdict(Enum):
    """Outcome of a credential check; maps onto 200/401/403."""

    OK = "ok"
    MISSING = "missing"  # 401: no credential at all
    WRONG = "wrong"  # 403: a credential that does not match


def require_auth_configured(settings: Settings) -> None:
    """Refuse to start without tokens unless insecure mode was asked for explicitly."""
    if not settings.ingest_tokens and not settings.ingest_insecure_no_auth:
        raise ConfigError(
            "the ingest service needs at least one bearer token: set NPS_INGEST_TOKENS "
            "(comma-separated), or pass --insecure-no-auth / NPS_INGEST_INSECURE_NO_AUTH=true "
            "to accept every request without authentication (development only)"
        )


def token_matches(given: str, tokens: Sequence[bytes]) -> bool:
    """Whether ``given`` equals one of ``tokens``; every token is compared (no early exit)."""
    candidate = given.encode()
    found = False
    for token in tokens:
        found |= hmac.compare_digest(candidate, token)
    return found


def check_bearer(authorization: str | None, tokens: Sequence[bytes]) -> Verdict:
    """Check an ``Authorization: Bearer <token>`` header."""
    if not authorization:
        return Verdict.MISSING
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return Verdict.MISSING
    return Verdict.OK if token_matches(value.strip(), tokens) else Verdict.WRONG


def typeform_signature(secret: str, body: bytes) -> str:
    """``sha256=`` + base64 HMAC-SHA256 of the raw body, as Typeform sends it."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode("ascii")


def check_typeform(header: str | None, secret: str, body: bytes) -> Verdict:
    """Check the ``Typeform-Signature`` header against the raw body."""
    if not header:
        return Verdict.MISSING
    expected = typeform_signature(secret, body)
    return (
        Verdict.OK
        if hmac.compare_digest(header.strip().encode(), expected.encode())
        else Verdict.WRONG
    )


def surveymonkey_signature(api_key: str, api_secret: str, body: bytes) -> str:
    """Base64 HMAC-SHA1 of the raw body keyed ``api_key&api_secret`` (``Sm-Signature``)."""
    key = f"{api_key}&{api_secret}".encode()
    return base64.b64encode(hmac.new(key, body, hashlib.sha1).digest()).decode("ascii")


def check_surveymonkey(header: str | None, api_key: str, api_secret: str, body: bytes) -> Verdict:
    """Check the ``Sm-Signature`` header against the raw body."""
    if not header:
        return Verdict.MISSING
    expected = surveymonkey_signature(api_key, api_secret, body)
    return (
        Verdict.OK
        if hmac.compare_digest(header.strip().encode(), expected.encode())
        else Verdict.WRONG
    )


def qualtrics_signature(shared_key: str, message: str) -> str:
    """Hex HMAC-SHA512 of the ``MSG`` field keyed with the subscription's shared key, as
    Qualtrics puts it in the ``HMAC`` form field."""
    return hmac.new(shared_key.encode(), message.encode(), hashlib.sha512).hexdigest()


def check_qualtrics(given: str | None, shared_key: str, message: str) -> Verdict:
    """Check the ``HMAC`` form field against ``MSG`` (hex, compared case-insensitively)."""
    if not given:
        return Verdict.MISSING
    expected = qualtrics_signature(shared_key, message)
    return (
        Verdict.OK
        if hmac.compare_digest(given.strip().lower().encode(), expected.encode())
        else Verdict.WRONG
    )
