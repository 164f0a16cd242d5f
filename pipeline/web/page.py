"""The live page itself: plain HTML, CSS and JavaScript from ``pipeline/web/static``.

No build step: the files are served as they are (``/live``, ``/live/live.css``,
``/live/live.js``), and ``/live/config.json`` tells the script the configured
dimensions and windows. The script polls the worker's JSON API (see
:mod:`pipeline.web.live_api` and :mod:`pipeline.api`), so every number on the page is
one the HTTP API returns.
"""

from __future__ import annotations

from importlib import resources

import faust
from faust.web import Request, Response, View

from pipeline.segments import OVERALL
from pipeline.settings import Settings
from pipeline.windows import window_label

PAGE_PATH = "/live"
#: file name -> content type; nothing else under /live/ is served
STATIC_FILES = {
    "index.html": "text/html",
    "live.css": "text/css",
    "live.js": "text/javascript",
}
POLL_MILLISECONDS = 2000


def page_url(settings: Settings) -> str:
    """Where a person opens the page (printed by ``nps-pipeline run``)."""
    return f"http://{settings.web_host}:{settings.web_port}{PAGE_PATH}"


def static_file(name: str) -> bytes:
    """A packaged static file of the page (``KeyError`` for names not in STATIC_FILES)."""
    if name not in STATIC_FILES:
        raise KeyError(name)
    return resources.files("pipeline.web").joinpath("static", name).read_bytes()


def page_config(settings: Settings) -> dict[str, object]:
    """What the script offers to choose from, and how often it polls."""
    windows = sorted(settings.windows_seconds)
    default_window = 3600 if 3600 in windows else windows[0]
    dimensions = [*settings.dimensions, *(",".join(c) for c in settings.combination_fields)]
    return {
        "dimensions": [OVERALL, *dimensions],
        "default_dimension": dimensions[0] if dimensions else OVERALL,
        "windows": [*(window_label(w) for w in windows), "all"],
        "default_window": window_label(default_window),
        "poll_ms": POLL_MILLISECONDS,
        "alerts_enabled": settings.alerts_enabled,
    }


def register(app: faust.App, settings: Settings) -> None:
    """Serve the page and its files."""
    headers = {"Cache-Control": "no-cache"}

    @app.page("/")
    class Index(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(b"", status=302, headers={"Location": PAGE_PATH})

    @app.page(PAGE_PATH)
    class LivePage(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(static_file("index.html"), content_type="text/html", headers=headers)

    @app.page(PAGE_PATH + "/config.json")
    class LiveConfig(View):
        async def get(self, request: Request) -> Response:
            return self.json(page_config(settings), headers=headers)

    @app.page(PAGE_PATH + "/{name}")
    class LiveFile(View):
        async def get(self, request: Request, name: str) -> Response:
            if name not in STATIC_FILES:
                return self.json({"error": f"no such file: {name}"}, status=404)
            return self.bytes(static_file(name), content_type=STATIC_FILES[name], headers=headers)
