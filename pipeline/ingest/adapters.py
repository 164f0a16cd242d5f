"""Survey-tool webhook payloads -> FeedbackEvent-shaped dicts.

Field names follow /work/shared/notes/survey-webhooks.md (the tools' own docs). Each
adapter gives a *deterministic* event id built from the tool's response id, so a
redelivered webhook is the same record and the worker's dedupe drops it. The dicts
are then validated by the same code as ``POST /api/v1/feedback`` items.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.ingest.models import NeedsFetch
from schemas.feedback import SEGMENT_FIELDS

#: Delighted survey types with a scale the pipeline scores (5star is a 1-5 CSAT scale).
DELIGHTED_SURVEY_TYPES = {
    "nps": "nps",
    "enps": "nps",
    "csat": "csat",
    "ces": "ces",
    "5star": "csat",
}


class AdapterError(ValueError):
    """The payload is not something this adapter can map (answered 422)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class Ignored:
    """A valid webhook that carries no answer (answered 200, nothing produced)."""

    reason: str


def _scalar(value: object) -> str | int | float | bool | None:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _split_properties(
    properties: dict[str, Any], event: dict[str, Any], attributes: dict[str, Any]
) -> None:
    """Segment fields (matched case-insensitively, spaces as underscores) go to the event,
    everything else to its attributes."""
    for name, value in properties.items():
        key = str(name).strip().lower().replace(" ", "_")
        if key in SEGMENT_FIELDS and isinstance(value, str | int) and str(value).strip():
            event[key] = str(value)
        elif key == "customer_id" and isinstance(value, str | int) and str(value).strip():
            event["customer_id"] = str(value)
        else:
            attributes[str(name)] = _scalar(value)


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AdapterError(f"expected a JSON object at {where}", where)
    return value


def from_delighted(payload: object) -> list[dict[str, Any]] | Ignored:
    """A Delighted ``survey_response.created`` / ``.updated`` webhook.

    Event id ``delighted-<event_data.id>``; event time ``event_data.created_at`` (Unix
    seconds); customer ``person.id``; ``person_properties`` give the segment fields
    (``Department`` -> department, ...) and the attributes; ``tags`` are kept as one
    comma-separated attribute. Name and e-mail are deliberately not copied.
    """
    body = _object(payload, "(body)")
    event_type = body.get("event_type")
    if event_type not in ("survey_response.created", "survey_response.updated"):
        return Ignored(f"Delighted event_type {event_type!r} carries no survey answer")
    data = _object(body.get("event_data"), "event_data")
    response_id = data.get("id")
    if response_id is None or str(response_id).strip() == "":
        raise AdapterError("Delighted response without event_data.id", "event_data.id")
    tool_type = str(data.get("survey_type") or "nps").lower()
    if tool_type not in DELIGHTED_SURVEY_TYPES:
        raise AdapterError(
            f"Delighted survey_type {tool_type!r} has no NPS/CSAT/CES scale "
            f"(supported: {sorted(DELIGHTED_SURVEY_TYPES)})",
            "event_data.survey_type",
        )
    created = data.get("created_at")
    event_time: object = created
    if isinstance(created, int | float) and not isinstance(created, bool):
        event_time = datetime.fromtimestamp(created, UTC).isoformat()
    person = data.get("person") if isinstance(data.get("person"), dict) else {}
    person_id = person.get("id")
    event: dict[str, Any] = {
        "event_id": f"delighted-{response_id}",
        "event_time": event_time,
        "survey_type": DELIGHTED_SURVEY_TYPES[tool_type],
        "score": data.get("score"),
        "comment": data.get("comment") or None,
        "customer_id": None if person_id is None else str(person_id),
        "source": "delighted",
    }
    attributes: dict[str, Any] = {}
    properties = data.get("person_properties")
    if isinstance(properties, dict):
        _split_properties(properties, event, attributes)
    tags = data.get("tags")
    if isinstance(tags, list) and tags:
        attributes["delighted_tags"] = ",".join(str(t) for t in tags)
    if tool_type != DELIGHTED_SURVEY_TYPES[tool_type]:
        attributes["delighted_survey_type"] = tool_type
    if attributes:
        event["attributes"] = attributes
    return [event]


def from_typeform(
    payload: object, *, score_ref: str, comment_ref: str, survey_type: str
) -> list[dict[str, Any]] | Ignored:
    """A Typeform ``form_response`` webhook (signature already verified).

    Event id ``typeform-<form_response.token>`` (the response token, stable across
    redeliveries); event time ``submitted_at``; score = the ``number`` of the answer whose
    ``field.ref`` is ``score_ref`` (an opinion-scale or NPS question); comment = the
    ``text`` of the answer whose ref is ``comment_ref``; hidden fields give the customer
    id (``customer_id``; else the response token), segment fields and attributes.
    """
    body = _object(payload, "(body)")
    if body.get("event_type") != "form_response":
        return Ignored(f"Typeform event_type {body.get('event_type')!r} carries no response")
    response = _object(body.get("form_response"), "form_response")
    token = response.get("token")
    if not isinstance(token, str) or not token.strip():
        raise AdapterError("Typeform response without form_response.token", "form_response.token")
    answers = response.get("answers")
    answers = answers if isinstance(answers, list) else []
    score: object = None
    comment: object = None
    refs: list[str] = []
    for answer in answers:
        if not isinstance(answer, dict):
            continue
        ref = (answer.get("field") or {}).get("ref")
        refs.append(str(ref))
        if ref == score_ref:
            score = answer.get("number")
        elif ref == comment_ref:
            comment = answer.get("text")
    if score is None:
        raise AdapterError(
            f"no number answer with field ref {score_ref!r} (NPS_INGEST_TYPEFORM_SCORE_REF); "
            f"the refs answered are {refs}",
            "form_response.answers",
        )
    event: dict[str, Any] = {
        "event_id": f"typeform-{token.strip()}",
        "event_time": response.get("submitted_at"),
        "survey_type": survey_type,
        "score": score,
        "comment": comment or None,
        "customer_id": f"typeform-{token.strip()}",
        "source": "typeform",
    }
    attributes: dict[str, Any] = {}
    hidden = response.get("hidden")
    if isinstance(hidden, dict):
        _split_properties(hidden, event, attributes)
    if response.get("form_id"):
        attributes["typeform_form_id"] = str(response["form_id"])
    calculated = response.get("calculated")
    if isinstance(calculated, dict) and isinstance(calculated.get("score"), int | float):
        attributes["typeform_calculated_score"] = calculated["score"]
    if attributes:
        event["attributes"] = attributes
    return [event]


#: SurveyMonkey event types that announce an answer to fetch.
SURVEYMONKEY_ANSWER_EVENTS = ("response_completed", "response_updated")


def from_surveymonkey(payload: object, received_at: datetime) -> NeedsFetch | Ignored:
    """A SurveyMonkey webhook: ids only, so a :class:`NeedsFetch` envelope, not an event.

    Event id ``surveymonkey-<object_id>`` (the response id), which the fetched answer must
    carry so that a redelivered envelope and the answer count once.
    """
    body = _object(payload, "(body)")
    event_type = body.get("event_type")
    if event_type not in SURVEYMONKEY_ANSWER_EVENTS:
        return Ignored(f"SurveyMonkey event_type {event_type!r} carries no new answer")
    object_id = body.get("object_id")
    if object_id is None or str(object_id).strip() == "":
        raise AdapterError("SurveyMonkey webhook without object_id", "object_id")
    resources = body.get("resources") if isinstance(body.get("resources"), dict) else {}
    return NeedsFetch(
        tool="surveymonkey",
        event_id=f"surveymonkey-{object_id}",
        tool_event_id=None if body.get("event_id") is None else str(body["event_id"]),
        tool_event_type=str(event_type),
        object_type=str(body.get("object_type") or "response"),
        object_id=str(object_id),
        event_time=None if body.get("event_datetime") is None else str(body["event_datetime"]),
        resources={
            str(k): v if v is None or isinstance(v, int) else str(v) for k, v in resources.items()
        },
        received_at=received_at.isoformat(),
        message="SurveyMonkey webhooks carry ids only: fetch response "
        f"{object_id} of survey {resources.get('survey_id')} from the SurveyMonkey API",
    )


def _time(value: object) -> object:
    """Unix seconds -> ISO 8601 UTC; anything else unchanged (validated later)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).isoformat()
    if isinstance(value, str) and value.strip().isdigit():
        return datetime.fromtimestamp(int(value), UTC).isoformat()
    return value


def from_asknicely(payload: object, survey_type: str) -> list[dict[str, Any]] | Ignored:
    """An AskNicely response webhook (``{count, person{...}, question{...}}``).

    Event id ``asknicely-<question.id>``; event time ``question.responded`` (Unix seconds or
    ISO 8601); ``person.id`` the customer; ``question.deliverymethod`` the channel;
    ``question.segment`` / ``person.segment`` kept as attributes. ``count`` (which rises
    with each update of the same response) is deliberately not copied, so a redelivery
    is the same record.
    """
    body = _object(payload, "(body)")
    question = _object(body.get("question"), "question")
    person = body.get("person") if isinstance(body.get("person"), dict) else {}
    answer_id = question.get("id")
    if answer_id is None or str(answer_id).strip() == "":
        raise AdapterError("AskNicely webhook without question.id", "question.id")
    score = question.get("score")
    if isinstance(score, str) and score.strip().lstrip("-").isdigit():
        score = int(score)
    channel = question.get("deliverymethod")
    event: dict[str, Any] = {
        "event_id": f"asknicely-{answer_id}",
        "event_time": _time(question.get("responded")),
        "survey_type": survey_type,
        "score": score,
        "comment": question.get("comment") or None,
        "customer_id": None if person.get("id") is None else str(person["id"]),
        "source": "asknicely",
    }
    if isinstance(channel, str) and channel.strip():
        event["channel"] = channel.strip()
    attributes = {
        f"asknicely_{where}_segment": str(seg)
        for where, seg in (("question", question.get("segment")), ("person", person.get("segment")))
        if seg not in (None, "")
    }
    if attributes:
        event["attributes"] = attributes
    return [event]


#: The Qualtrics event-subscription topic that announces a new answer.
QUALTRICS_ANSWER_EVENT = "completedResponse"


def from_qualtrics(topic: str, message: object, received_at: datetime) -> NeedsFetch | Ignored:
    """A Qualtrics event-subscription delivery (``Topic`` and the parsed ``MSG``, signature
    already verified): ids only, so a :class:`NeedsFetch` envelope, not an event.

    ``Topic`` is ``{BrandID}.surveyengine.completedResponse.{SurveyID}``; other topics
    (``controlpanel.activateSurvey``, ...) carry no answer and are ignored. Event id
    ``qualtrics-<ResponseID>``: the fetched answer must carry it so that a redelivered
    envelope and the answer count once.
    """
    parts = topic.split(".")
    event_type = parts[2] if len(parts) >= 3 and parts[1] == "surveyengine" else topic
    if event_type != QUALTRICS_ANSWER_EVENT:
        return Ignored(f"Qualtrics topic {topic!r} carries no completed response")
    body = _object(message, "MSG")
    response_id, survey_id = body.get("ResponseID"), body.get("SurveyID")
    for name, value in (("ResponseID", response_id), ("SurveyID", survey_id)):
        if not isinstance(value, str) or not value.strip():
            raise AdapterError(f"Qualtrics completedResponse without MSG.{name}", f"MSG.{name}")
    assert isinstance(response_id, str) and isinstance(survey_id, str)
    completed = body.get("CompletedDate")
    return NeedsFetch(
        tool="qualtrics",
        event_id=f"qualtrics-{response_id.strip()}",
        tool_event_id=None,  # Qualtrics deliveries have no id of their own
        tool_event_type=event_type,
        object_type="response",
        object_id=response_id.strip(),
        event_time=None if completed is None else str(completed),
        resources={
            "survey_id": survey_id.strip(),
            "brand_id": None if body.get("BrandID") is None else str(body["BrandID"]),
            "status": None if body.get("Status") is None else str(body["Status"]),
            "topic": topic,
        },
        received_at=received_at.isoformat(),
        message="Qualtrics event subscriptions carry ids only: fetch response "
        f"{response_id.strip()} of survey {survey_id.strip()} from the Qualtrics API "
        f"(GET /API/v3/surveys/{survey_id.strip()}/responses/{response_id.strip()})",
    )
