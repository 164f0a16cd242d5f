"""The aiohttp application of ``nps-pipeline ingest``.

Routes: ``POST /api/v1/feedback`` (one event or a JSON array), ``POST /webhooks/{tool}``
(``delighted``, ``typeform``, ``surveymonkey`` (+ ``HEAD``), ``asknicely``, ``qualtrics``),
``POST /webhooks/custom/{name}`` (the routes of ``NPS_INGEST_WEBHOOK_MAPPINGS_FILE``),
``GET /healthz``, ``GET /openapi.json``.

Status codes: 202 every item accepted *and acknowledged by the broker*; 422 some or all
items invalid (the valid ones are still written; the body lists both); 400 the body is
not JSON (or not an object/array); 401 no bearer token / signature; 403 a wrong one;
404 unknown or unconfigured webhook; 413 body or batch too large; 503 the broker did not
acknowledge within ``NPS_INGEST_ACK_TIMEOUT_SECONDS`` (never 202 then).
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

from pipeline.ingest import adapters
from pipeline.ingest.auth import (
    Verdict,
    check_bearer,
    check_qualtrics,
    check_surveymonkey,
    check_typeform,
    require_auth_configured,
)
from pipeline.ingest.items import Triage, triage
from pipeline.ingest.mappings import ConfiguredWebhook, load_webhook_mappings
from pipeline.ingest.models import (
    AcceptedItem,
    ErrorBody,
    IgnoredBody,
    IngestResult,
    ItemError,
    NeedsFetch,
)
from pipeline.ingest.openapi import openapi_document
from pipeline.ingest.producer import BrokerUnavailable, BrokerWriter
from pipeline.settings import Settings

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
WRITER = web.AppKey("writer", BrokerWriter)
TOKENS = web.AppKey("tokens", list)
CUSTOM = web.AppKey("custom", dict)

WEBHOOK_TOOLS = ("delighted", "typeform", "surveymonkey", "asknicely", "qualtrics")


def _json(model: BaseModel, status: int, **headers: str) -> web.Response:
    return web.Response(
        body=model.model_dump_json().encode(),
        status=status,
        content_type="application/json",
        headers=headers or None,
    )


def _error(status: int, message: str, retry: bool = False, **headers: str) -> web.Response:
    return _json(ErrorBody(error=message, retry=retry), status, **headers)


def _auth_failure(verdict: Verdict, what: str) -> web.Response | None:
    if verdict is Verdict.MISSING:
        return _error(401, f"{what} required", **{"WWW-Authenticate": 'Bearer realm="nps-ingest"'})
    if verdict is Verdict.WRONG:
        return _error(403, f"{what} not valid")
    return None


def _bearer(request: web.Request, allow_query: bool = False) -> web.Response | None:
    """None if the request may pass; else the 401/403 answer."""
    settings = request.app[SETTINGS]
    if settings.ingest_insecure_no_auth and not settings.ingest_tokens:
        return None
    header = request.headers.get("Authorization")
    if not header and allow_query and request.query.get("token"):
        header = f"Bearer {request.query['token']}"
    return _auth_failure(check_bearer(header, request.app[TOKENS]), "bearer token")


async def _body(request: web.Request) -> bytes | web.Response:
    """The raw body, or the 413 answer when it is over the limit."""
    limit = request.app[SETTINGS].ingest_max_body_bytes
    too_large = _error(
        413, f"request body over the limit of {limit:,} bytes (NPS_INGEST_MAX_BODY_BYTES)"
    )
    if request.content_length is not None and request.content_length > limit:
        return too_large
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return too_large


def _parse(body: bytes) -> Any | web.Response:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _error(400, f"body is not JSON: {exc}")


async def _authorized_json(request: web.Request, allow_query: bool = False) -> Any:
    """The JSON body of a request that needs a bearer token (see :func:`_bearer`), or
    the 401/403, 413 or 400 answer (a ``web.Response``)."""
    if (denied := _bearer(request, allow_query)) is not None:
        return denied
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    return _parse(body)


async def _produce(request: web.Request, checked: Triage) -> web.Response:
    """Write the accepted events; 202 if all items were valid, 422 if not, 503 on timeout."""
    writer = request.app[WRITER]
    try:
        await writer.write(checked.events)
    except BrokerUnavailable as exc:
        log.warning("ingest: %s", exc)
        return _error(
            503,
            f"{exc}; nothing is confirmed written: send the request again (event ids make a "
            "repeated delivery harmless)",
            retry=True,
            **{"Retry-After": "5"},
        )
    return _json(checked.result(writer.topic), 422 if checked.errors else 202)


async def post_feedback(request: web.Request) -> web.Response:
    """``POST /api/v1/feedback``: one FeedbackEvent or a JSON array of them."""
    document = await _authorized_json(request)
    if isinstance(document, web.Response):
        return document
    items = _items(document, request.app[SETTINGS])
    if isinstance(items, web.Response):
        return items
    return await _produce(request, triage(items, request.app[SETTINGS].max_event_bytes))


def _items(document: object, settings: Settings) -> list[object] | web.Response:
    """One object -> one item; a non-empty array up to the batch limit; else 400/413."""
    if isinstance(document, dict):
        return [document]
    if not isinstance(document, list):
        return _error(400, f"expected an object or an array, got {type(document).__name__}")
    if not document:
        return _error(400, "empty batch: send one object or a non-empty array")
    if len(document) > settings.ingest_max_batch_items:
        return _error(
            413,
            f"batch of {len(document):,} events over the limit of "
            f"{settings.ingest_max_batch_items:,} (NPS_INGEST_MAX_BATCH_ITEMS)",
        )
    return list(document)


async def _webhook_events(
    request: web.Request,
    payload: object,
    convert: Callable[[object], list[dict[str, Any]] | adapters.Ignored],
) -> web.Response:
    try:
        converted = convert(payload)
    except adapters.AdapterError as exc:
        return _unsupported(exc, request.app[WRITER].topic)
    if isinstance(converted, adapters.Ignored):
        return _json(IgnoredBody(ignored=converted.reason), 200)
    return await _produce(request, triage(list(converted), request.app[SETTINGS].max_event_bytes))


async def _unsigned_webhook(
    request: web.Request,
    convert: Callable[[object], list[dict[str, Any]] | adapters.Ignored],
) -> web.Response:
    """Tools that do not sign their webhooks: a bearer token (header or ``?token=``)."""
    payload = await _authorized_json(request, allow_query=True)
    if isinstance(payload, web.Response):
        return payload
    return await _webhook_events(request, payload, convert)


async def webhook_delighted(request: web.Request) -> web.Response:
    """Delighted does not sign its webhooks: a bearer token (header or ``?token=``) is required."""
    return await _unsigned_webhook(request, adapters.from_delighted)


async def webhook_typeform(request: web.Request) -> web.Response:
    """Typeform signs every delivery; the signature is checked on the raw body before parsing."""
    settings = request.app[SETTINGS]
    if settings.ingest_typeform_secret is None:
        return _error(404, "the Typeform adapter is not configured (NPS_INGEST_TYPEFORM_SECRET)")
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    verdict = check_typeform(
        request.headers.get("Typeform-Signature"),
        settings.ingest_typeform_secret.get_secret_value(),
        body,
    )
    if (denied := _auth_failure(verdict, "Typeform-Signature")) is not None:
        return denied
    payload = _parse(body)
    if isinstance(payload, web.Response):
        return payload

    def convert(document: object) -> list[dict[str, Any]] | adapters.Ignored:
        return adapters.from_typeform(
            document,
            score_ref=settings.ingest_typeform_score_ref,
            comment_ref=settings.ingest_typeform_comment_ref,
            survey_type=settings.ingest_typeform_survey_type,
        )

    return await _webhook_events(request, payload, convert)


async def webhook_asknicely(request: web.Request) -> web.Response:
    """AskNicely does not sign its webhooks: a bearer token (header or ``?token=``)."""
    survey_type = request.app[SETTINGS].ingest_asknicely_survey_type
    return await _unsigned_webhook(
        request, lambda document: adapters.from_asknicely(document, survey_type)
    )


def _surveymonkey_keys(settings: Settings) -> tuple[str, str] | None:
    key, secret = settings.ingest_surveymonkey_api_key, settings.ingest_surveymonkey_secret
    if key is None or secret is None:
        return None
    return key.get_secret_value(), secret.get_secret_value()


async def webhook_surveymonkey_head(request: web.Request) -> web.Response:
    """SurveyMonkey checks the URL with HEAD when the webhook is created: 200 if enabled."""
    return web.Response(status=200 if _surveymonkey_keys(request.app[SETTINGS]) else 404)


async def webhook_surveymonkey(request: web.Request) -> web.Response:
    """SurveyMonkey signs (``Sm-Signature``) and sends ids only: the envelope goes to the
    needs-fetch topic (202 once acknowledged), nothing to the raw topic."""
    settings = request.app[SETTINGS]
    keys = _surveymonkey_keys(settings)
    if keys is None:
        return _error(
            404,
            "the SurveyMonkey adapter is not configured (NPS_INGEST_SURVEYMONKEY_API_KEY and "
            "NPS_INGEST_SURVEYMONKEY_SECRET)",
        )
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    verdict = check_surveymonkey(request.headers.get("Sm-Signature"), *keys, body)
    if (denied := _auth_failure(verdict, "Sm-Signature")) is not None:
        return denied
    payload = _parse(body)
    if isinstance(payload, web.Response):
        return payload
    try:
        envelope = adapters.from_surveymonkey(payload, datetime.now(UTC))
    except adapters.AdapterError as exc:
        return _unsupported(exc, settings.ingest_topic_needs_fetch)
    return await _needs_fetch(request, envelope)


async def _needs_fetch(
    request: web.Request, envelope: NeedsFetch | adapters.Ignored
) -> web.Response:
    """Write an ids-only envelope to the needs-fetch topic keyed by its event id (202 once
    acknowledged); nothing goes to the raw topic. An ignored delivery is answered 200."""
    if isinstance(envelope, adapters.Ignored):
        return _json(IgnoredBody(ignored=envelope.reason), 200)
    topic = request.app[SETTINGS].ingest_topic_needs_fetch
    try:
        await request.app[WRITER].write_records(
            [(topic, envelope.event_id.encode(), envelope.model_dump_json().encode())]
        )
    except BrokerUnavailable as exc:
        return _error(503, f"{exc}; send again", retry=True, **{"Retry-After": "5"})
    return _json(
        IngestResult(
            topic=topic,
            accepted_count=1,
            rejected_count=0,
            accepted=[AcceptedItem(index=0, event_id=envelope.event_id)],
            rejected=[],
        ),
        202,
    )


def _unsupported(exc: adapters.AdapterError, topic: str) -> web.Response:
    checked = Triage(
        errors=[ItemError(index=0, reason="unsupported", field=exc.field, message=exc.message)]
    )
    return _json(checked.result(topic), 422)


def _form(body: bytes) -> dict[str, str] | web.Response:
    """An ``application/x-www-form-urlencoded`` body -> its fields (first value of each)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _error(400, "body is not UTF-8")
    fields = urllib.parse.parse_qs(text, keep_blank_values=True, max_num_fields=100)
    return {name: values[0] for name, values in fields.items()}


async def webhook_qualtrics(request: web.Request) -> web.Response:
    """A Qualtrics event subscription (form fields ``Topic``, ``MSG``, ``HMAC``): ids only,
    so a needs-fetch envelope. With NPS_INGEST_QUALTRICS_SECRET the ``HMAC`` field (hex
    HMAC-SHA512 of ``MSG``) is required; without it, a bearer token (header or ``?token=``)."""
    secret = request.app[SETTINGS].ingest_qualtrics_secret
    if secret is None and (denied := _bearer(request, allow_query=True)) is not None:
        return denied
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    form = _form(body)
    if isinstance(form, web.Response):
        return form
    message, topic = form.get("MSG"), form.get("Topic")
    if message is None or topic is None:
        return _error(
            400,
            "expected the form fields Topic and MSG of a Qualtrics event subscription "
            f"(application/x-www-form-urlencoded); got {sorted(form)[:10]}",
        )
    if secret is not None:
        given = form.get("HMAC")
        if not given:
            return _error(401, "HMAC form field required (NPS_INGEST_QUALTRICS_SECRET is set)")
        verdict = check_qualtrics(given, secret.get_secret_value(), message)
        if (denied := _auth_failure(verdict, "HMAC form field")) is not None:
            return denied
    payload = _parse(message.encode())
    if isinstance(payload, web.Response):
        return _error(400, "MSG is not JSON")
    try:
        envelope = adapters.from_qualtrics(topic, payload, datetime.now(UTC))
    except adapters.AdapterError as exc:
        return _unsupported(exc, request.app[SETTINGS].ingest_topic_needs_fetch)
    return await _needs_fetch(request, envelope)


async def webhook_custom(request: web.Request) -> web.Response:
    """A route of the mappings file: its signature header (or a bearer token), then each
    JSON object of the body mapped to an event and written like ``/api/v1/feedback``."""
    routes: dict[str, ConfiguredWebhook] = request.app[CUSTOM]
    hook = routes.get(request.match_info["name"])
    if hook is None:
        configured = sorted(routes) or "none (NPS_INGEST_WEBHOOK_MAPPINGS_FILE is not set)"
        return _error(
            404,
            f"no custom webhook {request.match_info['name']!r}; configured: {configured}",
        )
    if hook.secret is None and (denied := _bearer(request, allow_query=True)) is not None:
        return denied
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    if hook.secret is not None:
        header = hook.spec.signature.header if hook.spec.signature else "signature"
        if (denied := _auth_failure(hook.verify(request.headers, body), header)) is not None:
            return denied
    document = _parse(body)
    if isinstance(document, web.Response):
        return document
    items = _items(document, request.app[SETTINGS])
    if isinstance(items, web.Response):
        return items
    return await _produce(request, hook.triage(items, request.app[SETTINGS].max_event_bytes))


async def webhook_unknown(request: web.Request) -> web.Response:
    return _error(
        404,
        f"no webhook adapter {request.match_info['tool']!r}; available: {list(WEBHOOK_TOOLS)} "
        "and custom/{name} (NPS_INGEST_WEBHOOK_MAPPINGS_FILE)",
    )


async def healthz(request: web.Request) -> web.Response:
    """200 while the service answers; says whether the producer is connected."""
    writer = request.app[WRITER]
    return web.json_response(
        {"status": "ok", "broker_connected": writer.connected, "topic": writer.topic}
    )


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def create_app(settings: Settings, writer: BrokerWriter | None = None) -> web.Application:
    """The ingest application; raises :class:`ConfigError` without tokens (unless insecure)
    or with an invalid webhook mappings file (before anything connects)."""
    require_auth_configured(settings)
    custom = (
        load_webhook_mappings(settings.ingest_webhook_mappings_file)
        if settings.ingest_webhook_mappings_file is not None
        else {}
    )
    if writer is None:
        writer = BrokerWriter(
            settings.bootstrap_servers,
            settings.topic_raw,
            settings.ingest_ack_timeout_seconds,
            max_request_bytes=max(1024 * 1024, settings.max_event_bytes + 64 * 1024),
            compression=settings.compression,
        )
    app = web.Application(client_max_size=settings.ingest_max_body_bytes)
    app[SETTINGS] = settings
    app[WRITER] = writer
    app[TOKENS] = [t.get_secret_value().encode() for t in settings.ingest_tokens]
    app[CUSTOM] = custom
    app.router.add_post("/api/v1/feedback", post_feedback)
    app.router.add_post("/webhooks/delighted", webhook_delighted)
    app.router.add_post("/webhooks/typeform", webhook_typeform)
    app.router.add_post("/webhooks/asknicely", webhook_asknicely)
    app.router.add_post("/webhooks/surveymonkey", webhook_surveymonkey)
    app.router.add_route("HEAD", "/webhooks/surveymonkey", webhook_surveymonkey_head)
    app.router.add_post("/webhooks/qualtrics", webhook_qualtrics)
    app.router.add_post("/webhooks/custom/{name}", webhook_custom)
    app.router.add_post("/webhooks/{tool}", webhook_unknown)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/openapi.json", openapi)

    async def close_writer(_app: web.Application) -> None:
        await writer.close()

    app.on_cleanup.append(close_writer)
    return app


def serve(settings: Settings, print_fn: Callable[[str], None] | None = None) -> None:
    """Run the service until Ctrl-C / SIGTERM (``nps-pipeline ingest``)."""
    app = create_app(settings)
    if settings.ingest_insecure_no_auth and not settings.ingest_tokens:
        log.warning("ingest: NO AUTHENTICATION (--insecure-no-auth): every request is accepted")
    web.run_app(
        app,
        host=settings.ingest_bind,
        port=settings.ingest_port,
        print=print_fn or (lambda text: None),
        access_log=None,
    )
