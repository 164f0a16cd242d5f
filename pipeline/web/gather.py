"""Ask every other worker the same question: the fan-out behind the page's endpoints.

A worker holds only the segments (and alerts, and counters) of the partitions it owns.
An endpoint that answers for the whole pipeline asks itself (``scope=local``) and every
other worker that owns partitions of the given topics, as ``/api/v1/segments`` does.
Unlike that listing, an unreachable worker does not fail the answer: the page keeps
showing what it has and says how many workers did not answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
import faust
from yarl import URL

log = logging.getLogger(__name__)

#: query parameter that makes an endpoint answer for this worker only
LOCAL_SCOPE = ("scope", "local")


def url_ident(url: Any) -> tuple[str, int]:
    """(host, port) of a worker URL, to tell this worker from the others."""
    parsed = URL(str(url))
    return (parsed.host or "", parsed.port or 80)


def other_workers(app: faust.App, topics: Iterable[str]) -> list[str]:
    """Base URLs of the other workers that own partitions of any of ``topics``."""
    wanted = set(topics)
    me = url_ident(app.conf.canonical_url)
    return sorted(
        str(host)
        for host, assigned in app.router.external_topics_metadata().items()
        if any(assigned.get(t) for t in wanted) and url_ident(host) != me
    )


def is_local(query: Mapping[str, str]) -> bool:
    return query.get(LOCAL_SCOPE[0]) == LOCAL_SCOPE[1]


async def gather_remote(
    app: faust.App,
    topics: Iterable[str],
    path: str,
    query: Mapping[str, str] | Iterable[tuple[str, str]],
    timeout: float = 5.0,
) -> tuple[list[Any], int]:
    """JSON answers of ``path`` with ``scope=local`` from every other worker, and the
    number of workers that did not answer (timeout, refused, not 200)."""
    hosts = other_workers(app, topics)
    if not hosts:
        return [], 0
    items = list(query.items()) if isinstance(query, Mapping) else list(query)
    params = [(k, v) for k, v in items if k != LOCAL_SCOPE[0]] + [LOCAL_SCOPE]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def fetch(host: str) -> Any:
            url = f"{host.rstrip('/')}{path}"
            async with session.get(url, params=params) as resp:
                resp.raise_for_status()
                return await resp.json()

        results = await asyncio.gather(*(fetch(h) for h in hosts), return_exceptions=True)
    answers, failed = [], 0
    for host, result in zip(hosts, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("worker %s did not answer %s: %s", host, path, result)
            failed += 1
        else:
            answers.append(result)
    return answers, failed
