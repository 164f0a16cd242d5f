"""The live page of a worker: NPS/CSAT/CES with intervals, worst segments, alerts, health.

``register(app, settings)`` is the one call :func:`pipeline.app.create_app` makes: it
adds the page (:mod:`pipeline.web.page`), the JSON endpoints it reads
(:mod:`pipeline.web.live_api`) and the task that fills the alerts feed from the alerts
topic (:mod:`pipeline.web.alert_feed`).
"""

from __future__ import annotations

import faust

from pipeline.settings import Settings
from pipeline.web import live_api, page
from pipeline.web.alert_feed import AlertFeed, follow_alerts
from pipeline.web.page import page_url


def register(app: faust.App, settings: Settings) -> AlertFeed:
    """Add the live page and its endpoints to ``app`` (after ``pipeline.api.register``:
    it reads ``app.window_state``, ``app.scoring_stage`` and ``app.alert_engine``)."""
    feed = AlertFeed()

    @app.task
    async def follow_alerts_topic() -> None:
        await follow_alerts(
            settings.bootstrap_servers, settings.topic_alerts, feed, f"{settings.app_id}-live"
        )

    live_api.register(app, settings, feed)
    page.register(app, settings)
    return feed


__all__ = ["page_url", "register"]
