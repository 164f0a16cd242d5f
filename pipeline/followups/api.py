"""HTTP API of the follow-ups on every worker's web server.

* ``GET /api/v1/followups/summary?dimension=agent&window=7d`` — per segment of the
  dimension: open and overdue tasks, median/p90 time to first contact and to
  resolution, share contacted within due time, revenue at risk (``FollowupSummary``).
  Tasks are spread over the workers by task id, so the answer merges the raw figures
  (counts and durations) of every worker that owns follow-up partitions.
* ``GET /api/v1/followups/{task_id}`` — one task and its tracking (``FollowupTaskView``),
  forwarded to the worker that owns the task's partition.
* ``POST /api/v1/followups/{task_id}/events`` — a status update (``FollowupUpdate``; the
  body's ``task_id`` may be left out), written to the status-update topic keyed by task
  id; answers 202 only once the broker acknowledged it (acks=all), 503 if it did not
  within ``NPS_FOLLOWUP_ACK_TIMEOUT_SECONDS``, 400 for an invalid update.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aiohttp
import faust
import orjson
from faust.web import Request, Response, View
from kafka.partitioner.default import murmur2
from pydantic import ValidationError
from yarl import URL

from pipeline.followups.tracker import FollowupTracker, Part, followup_window_label
from pipeline.segments import OVERALL, parse_segment_key
from pipeline.settings import Settings
from schemas.followup import FollowupSegment, FollowupSummary, FollowupUpdate


class ApiError(ValueError):
    pass


def parse_summary_query(query: Any, settings: Settings) -> tuple[str, int, int]:
    """(dimension, window seconds, limit) of a summary request; ApiError if invalid."""
    dimension = str(query.get("dimension", OVERALL)).replace(" ", "")
    known = {OVERALL, *settings.dimensions, *(",".join(c) for c in settings.combination_fields)}
    if dimension not in known:
        raise ApiError(f"unknown dimension {dimension!r}; configured: {sorted(known)}")
    labels = {followup_window_label(w): w for w in settings.followup_windows_seconds}
    window = query.get("window", followup_window_label(max(settings.followup_windows_seconds)))
    if window not in labels:
        raise ApiError(f"unknown window {window!r}; configured: {list(labels)}")
    try:
        limit = int(query.get("limit", 100))
    except ValueError:
        raise ApiError("limit must be an integer") from None
    if not 1 <= limit <= 10_000:
        raise ApiError("limit must be 1..10000")
    return dimension, labels[window], limit


def summary(
    dimension: str,
    window_seconds: int,
    parts: dict[str, Part],
    clock: float | None,
    limit: int,
) -> FollowupSummary:
    """The answer: segments most overdue first, then most open, then by key."""
    ordered = sorted(parts.items(), key=lambda kv: (-kv[1].overdue, -kv[1].open, kv[0]))
    return FollowupSummary(
        dimension=dimension,
        window=followup_window_label(window_seconds),
        as_of=None if clock is None else datetime.fromtimestamp(clock, UTC),
        segments=[
            FollowupSegment(segment=key, fields=parse_segment_key(key), stats=part.stats())
            for key, part in ordered[:limit]
        ],
    )


def register(
    app: faust.App,
    settings: Settings,
    tracker: FollowupTracker,
    events_topic: faust.TopicT,
) -> None:
    """Add the follow-up views to ``app`` (the summary before the task route)."""

    def error(view: View, status: int, message: str) -> Response:
        return view.json({"error": message}, status=status)

    @app.page("/api/v1/followups/summary")
    class SummaryView(View):
        async def get(self, request: Request) -> Response:
            try:
                dimension, window, limit = parse_summary_query(request.query, settings)
            except ApiError as exc:
                return error(self, 400, str(exc))
            parts = tracker.parts(dimension, window)
            clock = tracker.clock
            if request.query.get("scope") == "local":
                body = {"clock": clock, "parts": {k: p.to_json() for k, p in parts.items()}}
                return self.bytes(orjson.dumps(body), content_type="application/json")
            for remote_clock, remote in await _remote_parts(app, settings, request):
                if remote_clock is not None and (clock is None or remote_clock > clock):
                    clock = remote_clock
                for key, part in remote.items():
                    parts.setdefault(key, Part()).merge(part)
            body = summary(dimension, window, parts, clock, limit)
            return self.json(body.model_dump(mode="json"))

    @app.page("/api/v1/followups/{task_id}")
    class TaskView(View):
        async def get(self, request: Request, task_id: str) -> Response:
            view = tracker.view(task_id)
            if view is None and request.query.get("routed") != "1":
                owner = _owner(app, settings.topic_followups, task_id)
                if owner is not None and _urlident(owner) != _urlident(app.conf.canonical_url):
                    query = {**request.query, "routed": "1"}
                    url = URL(owner).with_path(request.path).with_query(query)
                    async with aiohttp.ClientSession() as session, session.get(str(url)) as r:
                        return self.bytes(
                            await r.read(), status=r.status, content_type="application/json"
                        )
            if view is None:
                return error(self, 404, f"no follow-up task {task_id!r}")
            return self.json(view.model_dump(mode="json"))

    @app.page("/api/v1/followups/{task_id}/events")
    class EventsView(View):
        async def post(self, request: Request, task_id: str) -> Response:
            body = await request.read()
            try:
                document = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                return error(self, 400, f"not JSON: {exc}")
            if not isinstance(document, dict):
                return error(self, 400, "expected a JSON object (a FollowupUpdate)")
            if document.setdefault("task_id", task_id) != task_id:
                return error(self, 400, f"task_id {document['task_id']!r} is not {task_id!r}")
            try:
                update = FollowupUpdate.model_validate(document)
            except ValidationError as exc:
                return error(self, 400, _errors(exc))
            value = update.model_dump_json(exclude_none=True).encode()
            try:
                pending = await events_topic.send(key=task_id.encode(), value=value)
                meta = await asyncio.wait_for(
                    asyncio.shield(pending), settings.followup_ack_timeout_seconds
                )
            except TimeoutError:
                return error(self, 503, "the broker did not acknowledge the update in time")
            except Exception as exc:  # delivery failed: the caller must retry
                return error(self, 503, f"the update could not be written: {exc}")
            return self.json(
                {
                    "task_id": task_id,
                    "status": update.status.value,
                    "topic": settings.topic_followup_events,
                    "partition": meta.partition,
                    "offset": meta.offset,
                },
                status=202,
            )


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(update)'}: {e['msg']}"
        for e in exc.errors(include_url=False)[:10]
    )


async def _remote_parts(
    app: faust.App, settings: Settings, request: Request
) -> list[tuple[float | None, dict[str, Part]]]:
    me = _urlident(app.conf.canonical_url)
    hosts = {
        str(host)
        for host, topics in app.router.external_topics_metadata().items()
        if topics.get(settings.topic_followups) and _urlident(host) != me
    }
    if not hosts:
        return []
    query = {**request.query, "scope": "local"}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def fetch(host: str) -> tuple[float | None, dict[str, Part]]:
            url = f"{host.rstrip('/')}/api/v1/followups/summary"
            async with session.get(url, params=query) as resp:
                resp.raise_for_status()
                body = await resp.json()
                parts = {k: Part.from_json(v) for k, v in body["parts"].items()}
                return body["clock"], parts

        return list(await asyncio.gather(*(fetch(h) for h in hosts)))


def _owner(app: faust.App, topic: str, task_id: str) -> str | None:
    """The web URL of the worker that owns ``task_id``'s partition (Kafka's default
    murmur2 partitioner, as every producer of the follow-up topics uses), or None.

    Computed from the group's assignment, not the producer's metadata: this worker's
    Faust producer may never have written to the task topic."""
    owners = {
        partition: str(host)
        for host, topics in app.router.external_topics_metadata().items()
        for partition in topics.get(topic, ())
    }
    if not owners:
        return None
    return owners.get((murmur2(task_id.encode()) & 0x7FFFFFFF) % len(owners))


def _urlident(url: Any) -> tuple[str, int]:
    parsed = URL(str(url))
    return (parsed.host or "", parsed.port or 80)
