"""The OpenAPI 3.1 document served at ``GET /openapi.json``.

The schemas come from the pydantic models (``FeedbackEvent`` and the response models),
so the document cannot drift from what the service validates and answers; the paths
are assembled here by hand.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from pipeline.ingest.models import ErrorBody, IgnoredBody, IngestResult, NeedsFetch
from schemas import FeedbackEvent

REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _answer(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "The body is not JSON, or not an event object / non-empty array.",
        401: "No credential (bearer token or signature).",
        403: "A credential that does not match.",
        404: "Webhook adapter unknown or not configured.",
        413: "Body over NPS_INGEST_MAX_BODY_BYTES or batch over NPS_INGEST_MAX_BATCH_ITEMS; "
        "nothing written.",
        503: "The broker did not acknowledge within NPS_INGEST_ACK_TIMEOUT_SECONDS; nothing "
        "is confirmed: send again.",
    }
    return {str(code): _answer(text[code], "ErrorBody") for code in codes}


def _written(what: str) -> dict[str, Any]:
    return {
        "202": _answer(
            f"Every {what} accepted and acknowledged by the broker (acks=all).", "IngestResult"
        ),
        "422": _answer(
            "Some or all items invalid: the valid ones were written and acknowledged; "
            "`rejected` gives index, event_id, reason, field and message per invalid item.",
            "IngestResult",
        ),
    }


def _webhook(
    tool: str,
    description: str,
    security: list[dict[str, list[str]]],
    content: dict[str, Any] | None = None,
    operation_id: str | None = None,
) -> dict[str, Any]:
    responses = {
        **_written("answer"),
        "200": _answer("A valid delivery that carries no answer; nothing written.", "IgnoredBody"),
        **_errors(400, 401, 403, 404, 413, 503),
    }
    return {
        "post": {
            "summary": f"{tool} webhook",
            "description": description,
            "operationId": operation_id or f"webhook_{tool.lower()}",
            "security": security,
            "requestBody": {
                "required": True,
                "content": content or {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": responses,
        }
    }


@cache
def openapi_document() -> dict[str, Any]:
    """The whole document (computed once)."""
    _, top = models_json_schema(
        [
            (FeedbackEvent, "validation"),
            (IngestResult, "serialization"),
            (ErrorBody, "serialization"),
            (IgnoredBody, "serialization"),
            (NeedsFetch, "serialization"),
        ],
        ref_template=REF,
    )
    schemas = top["$defs"]
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "nps-pipeline ingest",
            "version": "1",
            "description": "Survey answers into the pipeline's raw topic. A 202 means the "
            "broker acknowledged every accepted event (acks=all).",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "bearerQuery": {"type": "apiKey", "in": "query", "name": "token"},
                "surveymonkeySignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Sm-Signature",
                    "description": "base64 HMAC-SHA1 of the raw body keyed 'api_key&api_secret' "
                    "(NPS_INGEST_SURVEYMONKEY_API_KEY, NPS_INGEST_SURVEYMONKEY_SECRET).",
                },
                "customSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "(per route)",
                    "description": "The header, algorithm and secret named by the route's "
                    "`signature` in NPS_INGEST_WEBHOOK_MAPPINGS_FILE.",
                },
                "typeformSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Typeform-Signature",
                    "description": "sha256= + base64 HMAC-SHA256 of the raw body with the "
                    "webhook secret (NPS_INGEST_TYPEFORM_SECRET).",
                },
            },
        },
        "paths": {
            "/api/v1/feedback": {
                "post": {
                    "summary": "Send one feedback event or a batch",
                    "operationId": "post_feedback",
                    "security": bearer,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        _ref("FeedbackEvent"),
                                        {
                                            "type": "array",
                                            "items": _ref("FeedbackEvent"),
                                            "minItems": 1,
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {**_written("item"), **_errors(400, 401, 403, 413, 503)},
                }
            },
            "/webhooks/delighted": _webhook(
                "Delighted",
                "survey_response.created/.updated -> one event `delighted-<event_data.id>`; "
                "other event types are answered 200 and ignored. Delighted does not sign: "
                "put the token in the URL (`?token=`) or an Authorization header.",
                [{"bearer": []}, {"bearerQuery": []}],
            ),
            "/webhooks/typeform": _webhook(
                "Typeform",
                "form_response -> one event `typeform-<form_response.token>`, score from the "
                "answer with ref NPS_INGEST_TYPEFORM_SCORE_REF, comment from "
                "NPS_INGEST_TYPEFORM_COMMENT_REF. Verified by its signature.",
                [{"typeformSignature": []}],
            ),
            "/webhooks/asknicely": _webhook(
                "AskNicely",
                "A response -> one event `asknicely-<question.id>`. AskNicely does not sign: "
                "put the token in the URL (`?token=`) or an Authorization header.",
                [{"bearer": []}, {"bearerQuery": []}],
            ),
            "/webhooks/surveymonkey": {
                **_webhook(
                    "SurveyMonkey",
                    "response_completed/response_updated carry ids only: a NeedsFetch "
                    "envelope `surveymonkey-<object_id>` is written to "
                    "NPS_INGEST_TOPIC_NEEDS_FETCH (never a made-up score). Verified by "
                    "Sm-Signature.",
                    [{"surveymonkeySignature": []}],
                ),
                "head": {
                    "summary": "SurveyMonkey's URL check",
                    "operationId": "webhook_surveymonkey_head",
                    "security": [],
                    "responses": {
                        "200": {"description": "The adapter is configured."},
                        "404": {"description": "The adapter is not configured."},
                    },
                },
            },
            "/webhooks/qualtrics": _webhook(
                "Qualtrics",
                "A Qualtrics event subscription (surveyengine.completedResponse) carries ids "
                "only: a NeedsFetch envelope `qualtrics-<ResponseID>` is written to "
                "NPS_INGEST_TOPIC_NEEDS_FETCH (never a made-up score); other topics are "
                "answered 200 and ignored. With NPS_INGEST_QUALTRICS_SECRET the HMAC field "
                "(hex HMAC-SHA512 of MSG with the shared key) is required; without it, a "
                "bearer token (header or ?token=).",
                # {}: the HMAC form field in the body (OpenAPI has no scheme for it)
                [{}, {"bearer": []}, {"bearerQuery": []}],
                content={
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["Topic", "MSG"],
                            "properties": {
                                "Topic": {
                                    "type": "string",
                                    "description": "{BrandID}.surveyengine.completedResponse."
                                    "{SurveyID}",
                                },
                                "MSG": {
                                    "type": "string",
                                    "description": "JSON: Status, SurveyID, ResponseID, "
                                    "CompletedDate, BrandID.",
                                },
                                "HMAC": {
                                    "type": "string",
                                    "description": "Hex HMAC-SHA512 of MSG with the shared "
                                    "key (NPS_INGEST_QUALTRICS_SECRET); required when it is set.",
                                },
                            },
                        }
                    }
                },
            ),
            "/webhooks/custom/{name}": {
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "A route of NPS_INGEST_WEBHOOK_MAPPINGS_FILE.",
                    }
                ],
                **_webhook(
                    "Custom",
                    "Any tool's JSON (one object or an array of them), mapped to events by "
                    "the route's JSON paths in NPS_INGEST_WEBHOOK_MAPPINGS_FILE. Verified "
                    "by the route's signature header if it has one, else a bearer token "
                    "(header or ?token=). Unknown route: 404.",
                    [{"customSignature": []}, {"bearer": []}, {"bearerQuery": []}],
                    content={
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {"type": "object"},
                                    {"type": "array", "items": {"type": "object"}, "minItems": 1},
                                ]
                            }
                        }
                    },
                    operation_id="webhook_custom",
                ),
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "operationId": "healthz",
                    "security": [],
                    "responses": {"200": {"description": "The service answers."}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1 document."}},
                }
            },
        },
    }
