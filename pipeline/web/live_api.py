"""The endpoints the live page reads besides ``/api/v1/segments``.

* ``GET /api/v1/alerts?limit=50`` — alerts firing now and the latest fired/resolved
  changes, each with its evidence (:class:`AlertsView`);
* ``GET /api/v1/health`` — events/s, totals, dead letters by reason, consumer lag
  (:class:`~pipeline.web.health.PipelineHealth`);
* ``GET /api/v1/series?dimension=agent&window=1h&points=12&segment=agent=a1&segment=...``
  — per segment, recent NPS in ``points`` consecutive stretches of the window (a
  sparkline) and the CSAT/CES 95% intervals (:class:`~pipeline.web.trends.TrendList`).

Each gathers the answers of every worker (``scope=local`` asks one worker only), like
the segment listing, so the page works against any worker of a group.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import faust
from faust.web import Request, Response, View
from pydantic import BaseModel, ConfigDict, Field

from pipeline import metrics
from pipeline.aggregate import WindowState
from pipeline.api import ApiError, as_of, parse_list_query
from pipeline.settings import Settings
from pipeline.web.alert_feed import AlertFeed, merge_firing, merge_recent
from pipeline.web.gather import gather_remote, is_local
from pipeline.web.health import PipelineHealth, RateMeter, WorkerHealth, combine, worker_health
from pipeline.web.trends import DEFAULT_POINTS, MAX_POINTS, TrendList, segment_trend, step_for
from pipeline.windows import parse_window_label
from schemas.alert import Alert

MAX_ALERTS = 200
DEFAULT_ALERTS = 50


class AlertsView(BaseModel):
    """Answer of ``GET /api/v1/alerts``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(description="Whether the workers evaluate alert rules.")
    firing: list[Alert] = Field(description="Firing now, most recently fired first.")
    recent: list[Alert] = Field(
        description="Latest changes (fired and resolved) since the workers started, newest "
        "first; a resolve and its fire share an alert_id."
    )
    unanswered_workers: int = 0


def _int_param(query: Any, name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(query.get(name, default))
    except ValueError:
        raise ApiError(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ApiError(f"{name} must be {low}..{high}")
    return value


def register(app: faust.App, settings: Settings, feed: AlertFeed) -> None:
    """Add the alerts, health and series endpoints to ``app``."""
    state: WindowState = app.window_state  # type: ignore[attr-defined]
    segment_topics = [settings.topic_deltas]
    worker_topics = [settings.topic_raw, settings.topic_deltas]
    meter = RateMeter()

    @app.timer(1.0)
    async def sample_rate() -> None:
        meter.sample(app.scoring_stage.totals.consumed)  # type: ignore[attr-defined]

    def error(view: View, message: str) -> Response:
        return view.json({"error": message}, status=400)

    @app.page("/api/v1/alerts")
    class AlertsEndpoint(View):
        async def get(self, request: Request) -> Response:
            try:
                limit = _int_param(request.query, "limit", DEFAULT_ALERTS, 1, MAX_ALERTS)
            except ApiError as exc:
                return error(self, str(exc))
            engine = app.alert_engine  # type: ignore[attr-defined]
            local = AlertsView(
                enabled=engine is not None,
                firing=engine.firing() if engine is not None else [],
                recent=feed.recent()[:limit],
            )
            if is_local(request.query):
                return self.json(local.model_dump(mode="json"))
            answers, failed = await gather_remote(app, segment_topics, request.path, request.query)
            views = [local, *(AlertsView.model_validate(a) for a in answers)]
            body = AlertsView(
                enabled=any(v.enabled for v in views),
                firing=merge_firing(v.firing for v in views),
                recent=merge_recent((v.recent for v in views), limit),
                unanswered_workers=failed,
            )
            return self.json(body.model_dump(mode="json"))

    @app.page("/api/v1/health")
    class HealthEndpoint(View):
        async def get(self, request: Request) -> Response:
            source = metrics.CONSUMER_LAG.source
            try:
                lags = list(source()) if source is not None else []
            except Exception:  # rebalancing: no lag this time, as on /metrics
                lags = []
            local = worker_health(
                str(app.conf.canonical_url),
                app.scoring_stage.totals,  # type: ignore[attr-defined]
                meter.rate(),
                lags,
                state.clock,
                worker_topics,
            )
            if is_local(request.query):
                return self.json(local.model_dump(mode="json"))
            answers, failed = await gather_remote(app, worker_topics, request.path, {})
            workers = [local, *(WorkerHealth.model_validate(a) for a in answers)]
            body: PipelineHealth = combine(workers, failed)
            return self.json(body.model_dump(mode="json"))

    @app.page("/api/v1/series")
    class SeriesEndpoint(View):
        async def get(self, request: Request) -> Response:
            query = request.query
            try:
                dimension, window, _, _, limit, _ = parse_list_query(query, settings)
                points = _int_param(query, "points", DEFAULT_POINTS, 2, MAX_POINTS)
            except ApiError as exc:
                return error(self, str(exc))
            wanted = set(query.getall("segment", []))
            seconds = parse_window_label(window)
            keys = state.keys(dimension)
            if wanted:
                keys = [(partition, segment) for partition, segment in keys if segment in wanted]
            else:  # no list given: a bounded answer, the first segments by name
                keys = sorted(keys, key=itemgetter(1))[:limit]
            series = {}
            clock = state.clock
            for partition, segment in keys:
                windows = state.advanced(partition, segment, clock)
                if windows is not None:
                    series[segment] = segment_trend(segment, windows, seconds, points)
            failed = 0
            if not is_local(query):
                answers, failed = await gather_remote(app, segment_topics, request.path, query)
                for answer in answers:
                    series.update(TrendList.model_validate(answer).series)
            span = seconds if seconds is not None else max(settings.windows_seconds)
            body = TrendList(
                dimension=dimension,
                window=window,
                step_seconds=step_for(span, settings.bucket_seconds, points),
                as_of=as_of(state),
                series=dict(sorted(series.items())),
                unanswered_workers=failed,
            )
            return self.json(body.model_dump(mode="json"))
