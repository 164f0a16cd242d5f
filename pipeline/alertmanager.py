"""Delivery of the pipeline's alerts to Alertmanager's v2 API, without ever blocking.

The alert engine calls :meth:`AlertmanagerSink.fire` and :meth:`AlertmanagerSink.resolve`
from the stream processing path: both only record the newest state of the alert in a
dict keyed by fingerprint and wake the sender, so they cost O(1) and never wait for the
network. :meth:`AlertmanagerSink.run` is the background sender (an ``app.task`` or
asyncio task, cancelled on shutdown); it talks to every configured Alertmanager on its
own, because an Alertmanager HA cluster expects each client to send to all of its members
and one member being down must not delay the others.

What goes over the wire follows what Prometheus does (``POST /api/v2/alerts``):

* a new or changed alert is posted promptly, every pending alert of a URL in one POST;
* firing alerts are posted again every ``resend_interval`` with ``endsAt`` set to
  ``now + 4 * resend_interval``: Alertmanager resolves an alert on its own once its
  ``endsAt`` passes, so an alert the pipeline stops re-sending (worker gone) resolves by
  itself, while a live one never does between two re-sends;
* a resolved alert is posted with its ``endsAt`` until each Alertmanager has accepted it,
  then forgotten.

Failures (connection refused, timeouts, HTTP 4xx/5xx) are retried per URL with
exponential backoff and jitter (:func:`backoff_delay`) up to ``max_backoff``; a warning
is logged when a URL's state changes (reachable → failing, a different failure,
failing → reachable), never once per attempt. Nothing queues up during an outage: only the
newest state of each alert is kept. Alertmanager answers ``400`` for an alert that can
never be accepted (no labels, an invalid label name, ``endsAt`` before ``startsAt``);
because it still stores the valid alerts of such a batch, the batch is re-posted one alert
at a time to find the bad one, which is logged with Alertmanager's message and dropped.

Labels identify an alert in Alertmanager, so they should be stable per fingerprint (rule,
segment, severity) and the evidence belongs in annotations. If the labels of a firing
fingerprint do change, the old label set is resolved in Alertmanager so that it does not
linger as a second firing alert.

The sink is not thread-safe: call it from the event loop's thread (Faust agents do).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import aiohttp
import orjson
from prometheus_client import Counter, Gauge
from yarl import URL

from pipeline.metrics import PREFIX

log = logging.getLogger(__name__)

POSTS = Counter(
    f"{PREFIX}_alertmanager_posts_total",
    "POST /api/v2/alerts requests to Alertmanager by outcome: success (2xx), error "
    "(unreachable, timeout or an HTTP error worth retrying) or rejected (400: dropped).",
    ["outcome"],
)
PENDING = Gauge(
    f"{PREFIX}_alertmanager_pending_alerts",
    "Alerts whose newest state (new, changed or resolved) some Alertmanager has not accepted yet.",
)
for _outcome in ("success", "error", "rejected"):
    POSTS.labels(_outcome)

#: ``endsAt`` of a firing alert is this many resend intervals ahead (as in Prometheus).
ENDS_AT_RESENDS = 4
#: How much of an error response body goes into the log.
MAX_LOGGED_BODY = 1000

Outcome = Literal["success", "error", "rejected"]


def backoff_delay(
    failures: int,
    min_backoff: float,
    max_backoff: float,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after ``failures`` consecutive failed attempts ("equal jitter").

    The ceiling doubles with each failure, from ``min_backoff`` up to ``max_backoff``, and
    the delay is drawn uniformly from the upper half of the ceiling. Each ceiling's lower
    half starts where the previous one ended, so delays never shrink while an outage goes
    on, and several workers retrying the same Alertmanager drift apart instead of
    arriving in lockstep.
    """
    ceiling = min(max_backoff, min_backoff * 2.0 ** min(max(failures - 1, 0), 62))
    return ceiling * (0.5 + 0.5 * rng())


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _require_aware(name: str, moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")


@dataclass(slots=True)
class _Alert:
    """The newest state of one alert; ``version`` grows with every change."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    version: int

    @property
    def firing(self) -> bool:
        return self.ends_at is None


@dataclass(slots=True)
class _Target:
    """One Alertmanager: what it has accepted and how its connection is doing."""

    base_url: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: Key -> version of the alert this Alertmanager accepted last.
    acked: dict[str, int] = field(default_factory=dict)
    #: Monotonic time of the next re-send of every firing alert (0: at first contact).
    resend_at: float = 0.0
    failures: int = 0
    retry_at: float = 0.0
    #: What is failing right now (``None`` while reachable), for logging changes only.
    outage: str | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/api/v2/alerts"


@dataclass(slots=True)
class _Batch:
    """Alerts snapshotted for one POST: keys, the versions sent, the JSON bodies."""

    keys: list[str] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    full: bool = False


class AlertmanagerSink:
    """Keeps the newest state of every alert and delivers it to one or more Alertmanagers.

    ``urls`` are Alertmanager base URLs (``http://host:9093``, a path prefix such as
    ``http://proxy/alertmanager`` is kept). ``timeout`` bounds one POST, ``min_backoff`` and
    ``max_backoff`` the retry delays after failures, ``generator_url`` is sent as every
    alert's ``generatorURL`` (the link "Source" in Alertmanager's UI).

    After a worker restart the engine should call :meth:`fire` again for each alert it
    restores as firing: the sink keeps no state of its own across restarts, and the alert
    stays active in Alertmanager meanwhile (its ``endsAt`` is several re-sends ahead).
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        resend_interval: float = 60.0,
        timeout: float = 5.0,
        max_backoff: float = 60.0,
        min_backoff: float = 0.5,
        generator_url: str | None = None,
    ) -> None:
        if isinstance(urls, str) or not urls:
            raise ValueError("urls must be a non-empty sequence of Alertmanager base URLs")
        if resend_interval <= 0 or timeout <= 0 or min_backoff <= 0:
            raise ValueError("resend_interval, timeout and min_backoff must be positive")
        if max_backoff < min_backoff:
            raise ValueError("max_backoff must be at least min_backoff")
        bases = []
        for raw in urls:
            url = URL(raw)
            if url.scheme not in ("http", "https") or not url.host:
                raise ValueError(f"not an http(s) Alertmanager URL: {raw!r}")
            bases.append(str(url).rstrip("/"))
        if len(set(bases)) != len(bases):
            raise ValueError(f"duplicate Alertmanager URL in {list(urls)!r}")
        self.resend_interval = resend_interval
        self.timeout = timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.generator_url = generator_url
        self._targets = [_Target(base) for base in bases]
        self._alerts: dict[str, _Alert] = {}
        self._version = 0

    # -- called by the alert engine: O(1), never blocks, never touches the network ------

    def fire(
        self,
        fingerprint: str,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        starts_at: datetime,
    ) -> None:
        """Record that ``fingerprint`` is firing, or update its labels and annotations.

        A fingerprint that is already firing keeps its first ``starts_at``; one that was
        resolved fires anew with this ``starts_at``. Raises ``ValueError`` only for a naive
        ``starts_at`` (a programming error), never because of delivery.
        """
        _require_aware("starts_at", starts_at)
        labels, annotations = dict(labels), dict(annotations)
        current = self._alerts.get(fingerprint)
        if current is not None:
            if current.firing and current.labels == labels and current.annotations == annotations:
                return  # nothing new to tell Alertmanager
            if current.labels != labels:
                self._retire(fingerprint, current)
            if current.firing:
                starts_at = current.starts_at
        # The same label set may have been retired earlier: it fires again, so the stale
        # resolution must not be sent after (or alongside) this alert.
        self._alerts.pop(self._retired_key(fingerprint, labels), None)
        self._alerts[fingerprint] = _Alert(labels, annotations, starts_at, None, self._next())
        self._wake()

    def resolve(self, fingerprint: str, ends_at: datetime) -> None:
        """Record that ``fingerprint`` resolved at ``ends_at``; unknown ones are ignored."""
        _require_aware("ends_at", ends_at)
        current = self._alerts.get(fingerprint)
        if current is None or not current.firing:
            log.debug("resolve of %s ignored: not firing here", fingerprint)
            return
        # Alertmanager rejects endsAt before startsAt (event time can run ahead of us).
        current.ends_at = max(ends_at, current.starts_at)
        current.version = self._next()
        self._wake()

    # -- observation -------------------------------------------------------------------

    def held_count(self) -> int:
        """Alerts held: firing ones, and resolutions not yet accepted by every URL."""
        return len(self._alerts)

    def pending_count(self) -> int:
        """Alerts whose newest state at least one Alertmanager has not accepted yet."""
        return sum(
            1
            for key, alert in self._alerts.items()
            if any(t.acked.get(key) != alert.version for t in self._targets)
        )

    def status(self) -> list[dict[str, Any]]:
        """Per Alertmanager URL: reachable or not, consecutive failures, the failure."""
        return [
            {
                "url": t.base_url,
                "reachable": t.outage is None,
                "consecutive_failures": t.failures,
                "failure": t.outage,
            }
            for t in self._targets
        ]

    # -- the sender ----------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver alerts until cancelled: one independent sender loop per URL."""
        for target in self._targets:  # events of this loop; set: look at the state first
            target.wake = asyncio.Event()
            target.wake.set()
        ref = weakref.ref(self)
        PENDING.set_function(lambda: sink.pending_count() if (sink := ref()) else 0)
        async with (
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout), raise_for_status=False
            ) as session,
            asyncio.TaskGroup() as group,
        ):
            for target in self._targets:
                group.create_task(self._serve(target, session))

    async def flush(self, timeout: float) -> None:
        """Try once more, within ``timeout`` seconds, to deliver every undelivered state.

        For worker stop, after :meth:`run` was cancelled: backoff is ignored, firing
        alerts already accepted are not re-sent, and whatever is still undelivered when
        ``timeout`` runs out is logged and given up.
        """
        if not self.pending_count():
            return
        try:
            async with (
                asyncio.timeout(timeout),
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=min(self.timeout, timeout))
                ) as session,
            ):
                await asyncio.gather(
                    *(
                        self._deliver(t, session, self._batch_for(t, full=False))
                        for t in self._targets
                    )
                )
        except TimeoutError:
            pass
        if left := self.pending_count():
            log.warning("Alertmanager flush: %d alert state(s) not delivered at stop", left)

    async def _serve(self, target: _Target, session: aiohttp.ClientSession) -> None:
        while True:
            try:
                delay = target.retry_at - time.monotonic()
                if delay > 0:  # back off: new alerts wait too, the URL is failing
                    await asyncio.sleep(delay)
                target.wake.clear()  # before snapshotting, so no fire() is missed
                batch = self._batch_for(target, full=time.monotonic() >= target.resend_at)
                if batch.bodies:
                    await self._deliver(target, session, batch)
                else:
                    await self._idle(target)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end alert delivery for good
                log.exception("Alertmanager sender for %s failed; retrying", target.base_url)
                self._failed(target, "internal error", "see the traceback above")

    async def _idle(self, target: _Target) -> None:
        """Wait for fire()/resolve(), or for the next re-send if anything is firing."""
        wait: float | None = None
        if any(alert.firing for alert in self._alerts.values()):
            wait = max(target.resend_at - time.monotonic(), 0.0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await target.wake.wait()

    def _batch_for(self, target: _Target, *, full: bool) -> _Batch:
        """Snapshot what ``target`` has not accepted, plus every firing alert if ``full``."""
        now = datetime.now(UTC)
        valid_for = timedelta(seconds=ENDS_AT_RESENDS * self.resend_interval)
        batch = _Batch(full=full)
        for key, alert in self._alerts.items():
            if not (full and alert.firing) and target.acked.get(key) == alert.version:
                continue
            ends_at = alert.ends_at or max(now, alert.starts_at) + valid_for
            body: dict[str, Any] = {
                "labels": alert.labels,
                "annotations": alert.annotations,
                "startsAt": _rfc3339(alert.starts_at),
                "endsAt": _rfc3339(ends_at),
            }
            if self.generator_url:
                body["generatorURL"] = self.generator_url
            batch.keys.append(key)
            batch.versions.append(alert.version)
            batch.bodies.append(body)
        return batch

    async def _deliver(
        self, target: _Target, session: aiohttp.ClientSession, batch: _Batch
    ) -> None:
        """POST ``batch``; on a 400 re-post its alerts one by one to drop only the bad."""
        if not batch.bodies:
            return
        started = time.monotonic()
        outcome = await self._post(target, session, batch.bodies)
        if outcome == "success":
            self._accepted(target, batch.keys, batch.versions)
            if batch.full:
                target.resend_at = started + self.resend_interval
        elif outcome == "rejected" and len(batch.bodies) == 1:
            self._drop(batch.keys[0], batch.versions[0])
        elif outcome == "rejected":
            for key, version, body in zip(batch.keys, batch.versions, batch.bodies, strict=True):
                single = await self._post(target, session, [body])
                if single == "error":
                    return  # back off; the rest stays pending
                if single == "success":
                    self._accepted(target, [key], [version])
                else:
                    self._drop(key, version)
            if batch.full:
                target.resend_at = started + self.resend_interval

    async def _post(
        self, target: _Target, session: aiohttp.ClientSession, bodies: list[dict[str, Any]]
    ) -> Outcome:
        """One POST; records the outcome in metrics, backoff state and (on change) the log."""
        try:
            async with session.post(
                target.endpoint,
                data=orjson.dumps(bodies),
                headers={"Content-Type": "application/json"},
            ) as resp:
                status = resp.status
                text = "" if status < 300 else (await resp.text(errors="replace"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._failed(target, type(exc).__name__, str(exc) or type(exc).__name__)
            POSTS.labels("error").inc()
            return "error"
        if 200 <= status < 300:
            self._reachable(target)
            POSTS.labels("success").inc()
            return "success"
        if status == 400:
            self._reachable(target)
            POSTS.labels("rejected").inc()
            log.warning(
                "Alertmanager %s rejected %d alert(s), dropped if alone in the batch: %s; "
                "labels %s",
                target.base_url,
                len(bodies),
                text.strip()[:MAX_LOGGED_BODY],
                [body["labels"] for body in bodies][:5],
            )
            return "rejected"
        self._failed(target, f"HTTP {status}", text.strip()[:MAX_LOGGED_BODY])
        POSTS.labels("error").inc()
        return "error"

    # -- state changes -------------------------------------------------------------------

    def _accepted(self, target: _Target, keys: list[str], versions: list[int]) -> None:
        """Mark what ``target`` accepted; forget resolutions every target has accepted."""
        for key, version in zip(keys, versions, strict=True):
            alert = self._alerts.get(key)
            if alert is None:
                continue
            target.acked[key] = version
            if (
                not alert.firing
                and alert.version == version
                and all(t.acked.get(key) == version for t in self._targets)
            ):
                self._forget(key)

    def _drop(self, key: str, version: int) -> None:
        alert = self._alerts.get(key)
        if alert is not None and alert.version == version:  # unchanged since it was sent
            self._forget(key)

    def _forget(self, key: str) -> None:
        self._alerts.pop(key, None)
        for target in self._targets:
            target.acked.pop(key, None)

    def _failed(self, target: _Target, kind: str, detail: str) -> None:
        target.failures += 1
        delay = backoff_delay(target.failures, self.min_backoff, self.max_backoff)
        target.retry_at = time.monotonic() + delay
        if target.outage != kind:
            log.warning(
                "Alertmanager %s failing (%s: %s); %d alert(s) pending, retrying with "
                "backoff up to %gs",
                target.base_url,
                kind,
                detail,
                self.pending_count(),
                self.max_backoff,
            )
            target.outage = kind

    def _reachable(self, target: _Target) -> None:
        if target.outage is not None:
            log.warning(
                "Alertmanager %s accepting alerts again after %d failed attempt(s)",
                target.base_url,
                target.failures,
            )
        target.outage, target.failures, target.retry_at = None, 0, 0.0

    def _retire(self, fingerprint: str, current: _Alert) -> None:
        """Resolve ``current``'s label set in Alertmanager: its labels are being replaced.

        The resolution is kept under its own key until every Alertmanager accepted it (one
        that never saw the old labels merely stores a resolved alert, which is harmless).
        """
        key = self._retired_key(fingerprint, current.labels)
        ends_at = current.ends_at or max(datetime.now(UTC), current.starts_at)
        self._alerts[key] = _Alert(
            current.labels, current.annotations, current.starts_at, ends_at, self._next()
        )

    @staticmethod
    def _retired_key(fingerprint: str, labels: Mapping[str, str]) -> str:
        digest = hashlib.blake2b(orjson.dumps(labels, option=orjson.OPT_SORT_KEYS), digest_size=8)
        return f"{fingerprint}\x00retired:{digest.hexdigest()}"

    def _next(self) -> int:
        self._version += 1
        return self._version

    def _wake(self) -> None:
        for target in self._targets:
            target.wake.set()
