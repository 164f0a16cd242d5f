"""HTTP API of the windows: ``/api/v1/segments`` on every worker.

A worker holds the segments of the partitions it owns. A request for one segment is
routed to its owner (Faust's topic routing, by the segment key of the deltas topic);
a listing gathers each worker's count and first ``limit`` rows (of the segments it owns,
in the requested order) and merges them: the first ``limit`` overall are among those.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, NamedTuple

import aiohttp
import faust
import orjson
from faust.web import Request, Response, View

from pipeline.aggregate import WindowState, dimension_of
from pipeline.owned import owned
from pipeline.segments import OVERALL, parse_segment_key, segment_key
from pipeline.settings import Settings
from pipeline.windows import KPIS, SegmentWindows, parse_window_label, window_label
from schemas.windows import SegmentWindowsView

#: sort field -> the order that puts the worst segments first
SORTS: dict[str, str] = {
    "nps": "asc",
    "detractor_share": "desc",
    "responses": "desc",
    "csat_satisfied_share": "asc",
    "csat_mean": "asc",
    "ces_mean": "asc",
    "revenue_weighted_nps": "asc",
}


class ApiError(ValueError):
    pass


def as_of(state: WindowState) -> datetime | None:
    clock = state.clock
    return None if clock is None else datetime.fromtimestamp(clock, UTC)


def segment_view(state: WindowState, segment: str, windows: SegmentWindows) -> SegmentWindowsView:
    return SegmentWindowsView(
        segment=segment,
        dimension=dimension_of(segment),
        fields=parse_segment_key(segment),
        as_of=as_of(state),
        windows={window_label(length): windows.stats(length) for length in windows.windows},
        all_time=windows.stats(None),
    )


_SortKey = tuple[bool, float, str]


def _order(value: float | None, segment: str, order: str) -> _SortKey:
    """Where a segment goes: by ``value`` in ``order``, segments without one last."""
    if value is None:
        return (True, 0.0, segment)  # no data: always last
    return (False, value if order == "asc" else -value, segment)


class Row(NamedTuple):
    """A segment of a listing: where it sorts, and its :class:`schemas.windows.SegmentRow`
    as JSON (what the answer embeds: no model nor dict per row is kept)."""

    key: _SortKey
    json: bytes


def row_of(data: dict[str, Any], sort: str, order: str) -> Row:
    """A :class:`Row` of a row's fields (``stats``: :func:`pipeline.windows.window_kpis`,
    or the stats as a peer's JSON had them)."""
    return Row(_order(data["stats"][sort], data["segment"], order), _row_json(data))


def _row_json(row: dict[str, Any]) -> bytes:
    # owned: as orjson returns it each value occupies ~4 KiB (see pipeline.owned)
    return owned(orjson.dumps(row, option=orjson.OPT_UTC_Z))


#: segments a listing ranks between two yields of the event loop
LISTING_STEP = 2_000


async def top_rows(
    state: WindowState,
    dimension: str,
    window: str,
    min_responses: int,
    sort: str,
    order: str,
    limit: int,
) -> tuple[int, list[Row]]:
    """How many segments of ``dimension`` have ``min_responses`` answers in ``window``, and
    the first ``limit`` of them by ``sort``.

    Segments are ranked on their window counts (:data:`pipeline.windows.KPIS`, the same
    values as their statistics) and only the first ``limit`` get their statistics:
    building them for every segment made listing 100,000 agents cost 1.6-2.4 s of CPU.
    Each row is kept as its JSON, not as a :class:`~schemas.windows.SegmentRow` model: with
    models the worker's RSS rose 35 MiB during the benchmark's checks at 100,000 agents
    (10,000 rows per listing); with JSON rows a listing peaks at 15 MiB traced in process.
    The event loop runs between steps of ``LISTING_STEP`` segments.
    """
    total = 0
    kpi = KPIS[sort]
    seconds = None if window == "all" else parse_window_label(window)
    clock = state.clock
    best: list[tuple[_SortKey, str, SegmentWindows]] = []
    keys = state.keys(dimension)
    for i in range(0, len(keys), LISTING_STEP):
        if i:
            await asyncio.sleep(0)
        found = []
        for partition, segment in keys[i : i + LISTING_STEP]:
            windows = state.advanced(partition, segment, clock)
            if windows is None:  # its partition was revoked during an earlier step
                continue
            counts = windows.peek(seconds)
            if counts.responses + counts.csat_n + counts.ces_n < min_responses:
                continue
            found.append((_order(kpi(counts), segment, order), segment, windows))
        total += len(found)
        if len(best) == limit:  # only what beats the current last can enter
            last = best[-1][0]
            found = [candidate for candidate in found if candidate[0] < last]
        if found:  # best is sorted: one merge of two runs (a heap of `limit` per step
            # made a listing of 10,000 rows of 100,000 agents cost ~1 s of CPU)
            best = sorted([*best, *found], key=itemgetter(0))[:limit]
    rows = [
        Row(  # the key: the values ranked, as the stats have them
            key,
            _row_json(
                {
                    "segment": segment,
                    "fields": parse_segment_key(segment),
                    "stats": windows.kpis(seconds),
                }
            ),
        )
        for key, segment, windows in best
    ]
    return total, rows


def sort_rows(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=itemgetter(0))


def listing_json(body: dict[str, Any]) -> bytes:
    """A listing (:class:`schemas.windows.SegmentList`'s fields, or a peer's part) as
    JSON, its ``segments`` given as :class:`Row` s: the bytes of the model's
    ``model_dump_json`` (a test checks it)."""
    segments = [orjson.Fragment(row.json) for row in body["segments"]]
    return orjson.dumps({**body, "segments": segments}, option=orjson.OPT_UTC_Z)


def parse_list_query(query: Any, settings: Settings) -> tuple[str, str, str, str, int, int]:
    dimension = query.get("dimension", OVERALL)
    known = {OVERALL, *settings.dimensions, *settings.combinations}
    known |= {",".join(c) for c in settings.combination_fields}
    if dimension not in known:
        raise ApiError(f"unknown dimension {dimension!r}; configured: {sorted(known)}")
    window = query.get("window", window_label(min(settings.windows_seconds)))
    labels = [window_label(w) for w in settings.windows_seconds]
    if window not in [*labels, "all"]:
        raise ApiError(f"unknown window {window!r}; configured: {[*labels, 'all']}")
    sort = query.get("sort", "nps")
    if sort not in SORTS:
        raise ApiError(f"unknown sort {sort!r}; one of {sorted(SORTS)}")
    order = query.get("order", SORTS[sort])
    if order not in ("asc", "desc"):
        raise ApiError("order must be 'asc' or 'desc'")
    try:
        limit = int(query.get("limit", 20))
        min_responses = int(query.get("min_responses", 1))
    except ValueError:
        raise ApiError("limit and min_responses must be integers") from None
    if not 1 <= limit <= 10_000 or min_responses < 0:
        raise ApiError("limit must be 1..10000 and min_responses >= 0")
    return dimension.replace(" ", ""), window, sort, order, limit, min_responses


def register(app: faust.App, settings: Settings, state: WindowState, deltas: faust.TopicT) -> None:
    """Add the API views to ``app``."""

    def error(view: View, status: int, message: str) -> Response:
        return view.json({"error": message}, status=status)

    @app.page("/api/v1/segments")
    class SegmentsView(View):
        async def get(self, request: Request) -> Response:
            try:
                dimension, window, sort, order, limit, min_responses = parse_list_query(
                    request.query, settings
                )
            except ApiError as exc:
                return error(self, 400, str(exc))
            total, rows = await top_rows(
                state, dimension, window, min_responses, sort, order, limit
            )
            if request.query.get("scope") == "local":  # a peer's part: its first `limit`
                body = {"total": total, "segments": rows}
            else:
                peers = await _remote_rows(app, settings, request, sort, order)
                for peer_total, peer_rows in peers:
                    total += peer_total
                    rows.extend(peer_rows)
                body = {  # schemas.windows.SegmentList
                    "dimension": dimension,
                    "window": window,
                    "sort": sort,
                    "order": order,
                    "as_of": as_of(state),
                    "total": total,
                    "segments": sort_rows(rows)[:limit],  # the first of every part
                }
            return self.bytes(listing_json(body), content_type="application/json")

    # "[^/]+": the default pattern refuses values with "{" or "}" (a 404)
    @app.page("/api/v1/segments/{dimension}/{value:[^/]+}")
    class SegmentView(View):
        async def get(self, request: Request, dimension: str, value: str) -> Response:
            if dimension == OVERALL:
                key = OVERALL
            else:
                names, values = dimension.split(","), value.split(",")
                if len(names) != len(values):
                    return error(self, 400, "a combination needs one value per dimension")
                key = segment_key(list(zip(names, values, strict=True)))
            return await _one_segment(self, app, state, deltas, key, request)

    @app.page("/api/v1/segments/overall")
    class OverallView(View):
        async def get(self, request: Request) -> Response:
            return await _one_segment(self, app, state, deltas, OVERALL, request)


async def _one_segment(
    view: View,
    app: faust.App,
    state: WindowState,
    deltas: faust.TopicT,
    key: str,
    request: Request,
) -> Response:
    windows = state.get(key)
    if windows is None and request.query.get("routed") != "1":
        owner = app.router.external_topic_key_store(deltas, key)
        if _urlident(owner) != _urlident(app.conf.canonical_url):
            url = owner.with_path(request.path).with_query({**request.query, "routed": "1"})
            async with aiohttp.ClientSession() as session, session.get(str(url)) as resp:
                return view.bytes(
                    await resp.read(), status=resp.status, content_type="application/json"
                )
    if windows is None:
        return view.json({"error": f"no data for segment {key!r}"}, status=404)
    return view.json(segment_view(state, key, windows).model_dump(mode="json"))


async def _remote_rows(
    app: faust.App, settings: Settings, request: Request, sort: str, order: str
) -> list[tuple[int, list[Row]]]:
    """Each other worker's (total, first rows) of the same query (a peer's rows serialize
    again to the JSON it sent)."""
    me = _urlident(app.conf.canonical_url)
    hosts = {
        str(host)
        for host, topics in app.router.external_topics_metadata().items()
        if topics.get(settings.topic_deltas) and _urlident(host) != me
    }
    if not hosts:
        return []
    query = {**request.query, "scope": "local"}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def fetch(host: str) -> tuple[int, list[Row]]:
            url = f"{host.rstrip('/')}/api/v1/segments"
            async with session.get(url, params=query) as resp:
                resp.raise_for_status()
                part = orjson.loads(await resp.read())
            if isinstance(part, list):  # a worker of an earlier version: all its rows
                return len(part), [row_of(row, sort, order) for row in part]
            return part["total"], [row_of(row, sort, order) for row in part["segments"]]

        return list(await asyncio.gather(*(fetch(h) for h in hosts)))


def _urlident(url: Any) -> tuple[str, int]:
    from yarl import URL

    parsed = URL(str(url))
    return (parsed.host or "", parsed.port or 80)


__all__ = ["SORTS", "register"]
