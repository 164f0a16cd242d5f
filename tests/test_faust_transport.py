"""The worker's Faust consumer (windows agent, changelogs) waits FETCH_MAX_WAIT_MS per fetch,
not Faust's fixed 1,500 ms (on the embedded broker the windows trailed by that much)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from pipeline.app import create_app
from pipeline.faust_transport import FETCH_MAX_WAIT_MS
from pipeline.settings import load_settings


def test_the_apps_consumer_is_built_with_the_short_fetch_wait() -> None:
    async def main() -> tuple[int, int]:
        app = create_app(load_settings(broker_url="127.0.0.1:1"))
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:  # built, not started: no broker needed
            return consumer._fetch_max_wait_ms, consumer._max_poll_records
        finally:
            await consumer.stop()

    wait, max_poll_records = asyncio.run(main())
    assert wait == FETCH_MAX_WAIT_MS <= 50
    assert max_poll_records == 64  # the rest of Faust's settings are untouched


def test_faust_keeps_its_empty_data_directory_out_of_the_working_directory() -> None:
    app = create_app(load_settings(broker_url="127.0.0.1:1", app_id="datadir-check"))
    datadir = app.conf.datadir
    assert datadir.parent == Path(tempfile.gettempdir()) / "nps-pipeline"
    assert datadir.name == "datadir-check-data"
