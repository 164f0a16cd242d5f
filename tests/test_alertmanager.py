"""The Alertmanager sink against the real Alertmanager binary (Debian ``prometheus-alertmanager``).

Each test starts its own Alertmanager on a free loopback port (clustering off, storage in
``tmp_path``) and reads the alerts back through its v2 API and its own ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from pipeline import alertmanager
from pipeline.alertmanager import AlertmanagerSink, backoff_delay
from pipeline.broker import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def test_id(unique: str) -> str:
    """A label value that only this test's alerts carry (``filter=test="..."``)."""
    return f"t-{unique}"


def posts(outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("nps_pipeline_alertmanager_posts_total", {"outcome": outcome})
        or 0.0
    )


@contextlib.asynccontextmanager
async def running(sink: AlertmanagerSink) -> AsyncIterator[asyncio.Task[None]]:
    """The sink's sender as a task for the block, cancelled after it (as on shutdown)."""
    task = asyncio.create_task(sink.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll the blocking ``check`` (in a thread) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def labels_for(test_id: str, segment: str = "department=support") -> dict[str, str]:
    return {
        "alertname": "NpsDetractorSpike",
        "segment": segment,
        "severity": "page",
        "test": test_id,
    }


# -- backoff arithmetic ----------------------------------------------------------------------


def test_backoff_ceiling_doubles_up_to_the_cap_with_jitter_in_its_upper_half():
    assert [backoff_delay(n, 0.5, 60, rng=lambda: 1.0) for n in range(1, 10)] == [
        0.5,
        1,
        2,
        4,
        8,
        16,
        32,
        60,
        60,
    ]
    assert [backoff_delay(n, 0.5, 60, rng=lambda: 0.0) for n in (1, 2, 8, 10_000)] == [
        0.25,
        0.5,
        30,
        30,
    ]


# -- (1) fire: the alert is active in Alertmanager with our labels and annotations -----------


def test_fire_reaches_every_alertmanager_promptly_in_one_post(start_alertmanager, test_id):
    ams = [start_alertmanager(), start_alertmanager()]
    sink = AlertmanagerSink([am.url for am in ams], generator_url="http://nps.example/alerts")
    starts_at = datetime.now(UTC).replace(microsecond=123000) - timedelta(seconds=90)
    annotations = {
        "summary": "Detractor share 41% in 1h vs 22% baseline (department=support)",
        "detractor_share": "0.41 [0.35, 0.47] n=212",
    }

    async def scenario() -> None:
        # 30 alerts fired before the sender starts: one POST per Alertmanager carries all.
        for i in range(29):
            sink.fire(
                f"spike/agent-{i:03}", labels_for(test_id, f"agent=agent-{i:03}"), {}, starts_at
            )
        sink.fire("spike/support", labels_for(test_id), annotations, starts_at)
        before = posts("success")
        sent = time.monotonic()
        async with running(sink):
            listed = [
                await eventually(
                    lambda am=am: len(got := am.alerts_with(test_id)) == 30 and got,
                    5,
                    f"30 alerts in {am.url}",
                )
                for am in ams
            ]
            assert time.monotonic() - sent < 2.0
            assert posts("success") - before == 2  # one POST per URL
            assert sink.pending_count() == 0

            for got in listed:
                (alert,) = [a for a in got if a["labels"]["segment"] == "department=support"]
                assert alert["labels"] == labels_for(test_id)
                assert alert["annotations"] == annotations
                assert alert["status"]["state"] == "active"
                assert alert["generatorURL"] == "http://nps.example/alerts"
                assert parse_time(alert["startsAt"]) == starts_at
                # endsAt: 4 resend intervals (4 x 60 s) ahead, as Prometheus does.
                ahead = parse_time(alert["endsAt"]) - datetime.now(UTC)
                assert timedelta(seconds=230) < ahead <= timedelta(seconds=240)

            # New evidence: annotations change, startsAt stays the first one.
            newer = {**annotations, "detractor_share": "0.45 [0.39, 0.51] n=260"}
            sink.fire("spike/support", labels_for(test_id), newer, starts_at + timedelta(hours=1))
            for am in ams:
                alert = await eventually(
                    lambda am=am: [
                        a
                        for a in am.alerts_with(test_id)
                        if a["labels"]["segment"] == "department=support"
                        and a["annotations"] == newer
                    ],
                    5,
                    "updated annotations",
                )
                assert parse_time(alert[0]["startsAt"]) == starts_at
            assert sink.held_count() == 30

    asyncio.run(scenario())


def test_label_change_resolves_the_old_label_set(start_alertmanager, test_id):
    am = start_alertmanager()
    sink = AlertmanagerSink([am.url])
    starts_at = datetime.now(UTC) - timedelta(minutes=5)

    async def scenario() -> None:
        async with running(sink):
            sink.fire(
                "nps-floor/emea", {**labels_for(test_id), "severity": "ticket"}, {}, starts_at
            )
            await eventually(lambda: am.alerts_with(test_id), 5, "first label set active")
            sink.fire("nps-floor/emea", labels_for(test_id), {}, starts_at)
            await eventually(
                lambda: [a["labels"]["severity"] for a in am.alerts_with(test_id)] == ["page"],
                5,
                "only the new label set active",
            )
            await eventually(lambda: sink.held_count() == 1, 2, "retired label set forgotten")

    asyncio.run(scenario())


# -- (2) resolve ---------------------------------------------------------------------------------


def test_resolve_sends_ends_at_and_then_forgets_the_alert(start_alertmanager, test_id):
    am = start_alertmanager()
    sink = AlertmanagerSink([am.url])
    starts_at = datetime.now(UTC) - timedelta(minutes=10)

    async def scenario() -> None:
        async with running(sink):
            sink.fire("drop/support", labels_for(test_id), {"summary": "NPS drop"}, starts_at)
            await eventually(lambda: am.alerts_with(test_id, active="true"), 5, "active")
            resolved_before = am.metric(
                "alertmanager_alerts_received_total", status="resolved", version="v2"
            )
            sink.resolve("drop/support", datetime.now(UTC))
            await eventually(
                lambda: not am.alerts_with(test_id, active="true"), 5, "no longer active"
            )
            # Alertmanager 0.25 lists no resolved alert at all, whatever the filters: it
            # skips alerts whose endsAt has passed. Its own counter shows the resolution.
            assert (
                am.alerts_with(
                    test_id, active="true", silenced="true", inhibited="true", unprocessed="true"
                )
                == []
            )
            assert am.alerts_with(test_id, active="false") == []
            assert (
                am.metric("alertmanager_alerts_received_total", status="resolved", version="v2")
                == resolved_before + 1
            )
            await eventually(lambda: sink.held_count() == 0, 2, "resolution forgotten")
            assert sink.pending_count() == 0
            successes = posts("success")
            await asyncio.sleep(0.3)
            assert posts("success") == successes  # nothing left to send

    asyncio.run(scenario())


# -- (3) re-send while firing ----------------------------------------------------------------


def test_firing_alert_is_resent_every_interval_moving_ends_at(start_alertmanager, test_id):
    am = start_alertmanager()
    sink = AlertmanagerSink([am.url], resend_interval=0.5)
    starts_at = datetime.now(UTC) - timedelta(minutes=1)

    async def scenario() -> None:
        async with running(sink):
            before = posts("success")
            sink.fire("silence/chat", labels_for(test_id), {}, starts_at)
            (first,) = await eventually(lambda: am.alerts_with(test_id), 5, "alert active")
            await asyncio.sleep(1.6)
            (later,) = await asyncio.to_thread(am.alerts_with, test_id)
            sent = posts("success") - before

        assert parse_time(later["updatedAt"]) - parse_time(first["updatedAt"]) >= timedelta(
            seconds=1.0
        )
        assert parse_time(later["endsAt"]) - parse_time(first["endsAt"]) >= timedelta(seconds=1.0)
        # endsAt is 4 resend intervals after the (re-)send.
        assert parse_time(later["endsAt"]) - parse_time(later["updatedAt"]) == pytest.approx(
            timedelta(seconds=2), abs=timedelta(seconds=0.1)
        )
        assert parse_time(later["startsAt"]) == starts_at.replace(
            microsecond=starts_at.microsecond // 1000 * 1000
        )
        assert 3 <= sent <= 6  # the first send and one per 0.5 s, not more

    asyncio.run(scenario())


# -- (4) never blocks; backs off while nothing listens; delivers once Alertmanager is up ------


def test_unreachable_alertmanager_backs_off_and_gets_the_alert_once_up(
    start_alertmanager, test_id, caplog, monkeypatch
):
    caplog.set_level(logging.WARNING, logger="pipeline.alertmanager")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sink = AlertmanagerSink([url], min_backoff=0.05, max_backoff=0.4, timeout=1.0)
    starts_at = datetime.now(UTC) - timedelta(minutes=2)
    # Every failed attempt, as the sink records it: when it failed and the delay it chose.
    # (The real backoff_delay runs; this only writes down its answers.)
    failed: list[tuple[int, float, float]] = []

    def recording_backoff(failures: int, low: float, high: float) -> float:
        delay = backoff_delay(failures, low, high)
        failed.append((failures, time.monotonic(), delay))
        return delay

    monkeypatch.setattr(alertmanager, "backoff_delay", recording_backoff)

    async def scenario() -> None:
        async with running(sink):
            attempted = sum(posts(o) for o in ("success", "error", "rejected"))
            for i in range(200):
                sink.fire(f"spike/{i}", labels_for(test_id, f"agent=agent-{i:03}"), {}, starts_at)
            # no I/O in fire(): nothing was posted by the 200 calls, all of them are queued
            # for the sender (timing them instead failed when a busy machine stalled one)
            assert sum(posts(o) for o in ("success", "error", "rejected")) == attempted
            assert sink.pending_count() == 200

            errors = posts("error")
            await asyncio.sleep(2.6)
            assert posts("error") - errors == len(failed)
            # Ceilings 0.05, 0.1, 0.2, 0.4, 0.4, ... s; each delay in the upper half of its
            # ceiling; the next attempt waits at least that long. (A busy machine can only
            # make the waits longer, so no upper bound on them is asserted.)
            assert 6 <= len(failed) <= 16, failed
            assert [n for n, _, _ in failed] == list(range(1, len(failed) + 1))
            for n, _, delay in failed:
                ceiling = min(0.4, 0.05 * 2 ** (n - 1))
                assert ceiling / 2 <= delay <= ceiling, (n, delay)
            for (_, at, delay), (_, next_at, _) in itertools.pairwise(failed):
                assert next_at - at >= delay, failed
            failing = [r for r in caplog.records if "failing" in r.getMessage()]
            assert len(failing) == 1, [r.getMessage() for r in caplog.records]
            assert url in failing[0].getMessage()
            assert "200 alert(s) pending" in failing[0].getMessage()
            assert sink.status()[0]["reachable"] is False
            assert REGISTRY.get_sample_value("nps_pipeline_alertmanager_pending_alerts") == 200
            assert sink.status()[0]["consecutive_failures"] == len(failed)

            am = await asyncio.to_thread(start_alertmanager, port)
            up = time.monotonic()
            await eventually(
                lambda: len(am.alerts_with(test_id)) == 200, 3, "200 alerts after the outage"
            )
            assert time.monotonic() - up < 0.4 + 1.0
            assert sink.status()[0]["reachable"] is True
            assert sink.pending_count() == 0
            assert REGISTRY.get_sample_value("nps_pipeline_alertmanager_pending_alerts") == 0
            assert any("accepting alerts again" in r.getMessage() for r in caplog.records)

    asyncio.run(scenario())


def test_hanging_alertmanager_times_out_without_blocking_fire(caplog, test_id):
    """A listener that never answers: each POST ends at ``timeout`` and counts as an error."""
    caplog.set_level(logging.WARNING, logger="pipeline.alertmanager")
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)  # accepts connections in the kernel, never reads or answers
        url = f"http://127.0.0.1:{hole.getsockname()[1]}"
        sink = AlertmanagerSink([url], timeout=0.3, min_backoff=0.05, max_backoff=0.1)

        async def scenario() -> None:
            errors = posts("error")
            async with running(sink):
                await asyncio.sleep(0.05)  # the first POST is in flight now
                in_flight = posts("error")
                sink.fire("x", labels_for(test_id), {}, datetime.now(UTC))
                # a fire() that waited on the hanging POST would return after its timeout,
                # with the error counted; it returns at once with the alert queued
                assert posts("error") == in_flight
                assert sink.pending_count() == 1
                await asyncio.sleep(0.9)
            assert 2 <= posts("error") - errors <= 3  # 0.3 s each plus a short backoff
            assert "TimeoutError" in caplog.text

            # flush() on stop gives up within its own timeout.
            began = time.monotonic()
            await sink.flush(timeout=0.5)
            assert time.monotonic() - began < 0.8
            assert "not delivered at stop" in caplog.text

        asyncio.run(scenario())


def test_flush_delivers_pending_state_without_the_sender(start_alertmanager, test_id):
    am = start_alertmanager()
    sink = AlertmanagerSink([am.url])
    sink.fire("floor/apac", labels_for(test_id), {"summary": "NPS below 20"}, datetime.now(UTC))
    asyncio.run(sink.flush(timeout=3))
    assert [a["annotations"] for a in am.alerts_with(test_id)] == [{"summary": "NPS below 20"}]
    assert sink.pending_count() == 0


# -- (5) an alert Alertmanager rejects is dropped and counted --------------------------------


def test_rejected_alert_is_dropped_and_the_valid_ones_of_its_batch_delivered(
    start_alertmanager, test_id, caplog
):
    caplog.set_level(logging.WARNING, logger="pipeline.alertmanager")
    am = start_alertmanager()
    sink = AlertmanagerSink([am.url], resend_interval=0.3)
    starts_at = datetime.now(UTC) - timedelta(minutes=1)
    sink.fire("bad", {}, {"summary": "no labels"}, starts_at)
    sink.fire("good", labels_for(test_id), {}, starts_at)

    async def scenario() -> None:
        rejected, success = posts("rejected"), posts("success")
        async with running(sink):
            await eventually(lambda: sink.held_count() == 1, 5, "bad alert dropped")
            # The batch of two is rejected (400), then each alert is posted alone.
            assert posts("rejected") - rejected == 2
            assert posts("success") - success == 1
            assert [a["labels"] for a in await asyncio.to_thread(am.alerts_with, test_id)] == [
                labels_for(test_id)
            ]
            await asyncio.sleep(0.7)  # re-sends carry only the good alert: no new rejection
            assert posts("rejected") - rejected == 2
            assert posts("success") - success >= 3
        assert am.metric("alertmanager_alerts_invalid_total", version="v2") == 2
        assert "at least one label pair required" in caplog.text

    asyncio.run(scenario())


def test_constructor_rejects_bad_configuration():
    with pytest.raises(ValueError, match="non-empty"):
        AlertmanagerSink([])
    with pytest.raises(ValueError, match="non-empty"):
        AlertmanagerSink("http://127.0.0.1:9093")
    with pytest.raises(ValueError, match="http"):
        AlertmanagerSink(["127.0.0.1:9093"])
    with pytest.raises(ValueError, match="duplicate"):
        AlertmanagerSink(["http://a:9093", "http://a:9093/"])
    sink = AlertmanagerSink(["http://a:9093"])
    with pytest.raises(ValueError, match="timezone-aware"):
        sink.fire("x", {"a": "b"}, {}, datetime(2026, 1, 1))
