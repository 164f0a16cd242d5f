"""The benchmark's naive baseline: a straightforward Faust agent with Faust's windowed tables.

Not part of the product. Per event it validates with the pydantic model and, for each
of the event's segments (the default configuration's seven), each count it adds
(answers, plus promoter / passive / detractor or the CSAT / CES answer) and each
window length, increments a hopping table (``table[key] += 1``) relative to the
event's own time. A hopping window of length ``L`` steps by
``max(bucket, L / max_hops)`` seconds, so one increment updates at most ``max_hops``
window ranges (a 1-minute step on a 24-hour window would be 1,440 per increment).

Run by ``nps-pipeline bench`` as ``python -m pipeline.bench.naive`` in a process of
its own, configured by environment variables; it appends ``progress <wall time>
<events>`` once per second to the file ``NAIVE_PROGRESS``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import faust

from pipeline.bench.dataset import segment_keys
from schemas import FeedbackEvent

MODULE = "pipeline.bench.naive"


def create_app(
    broker: str, topic: str, app_id: str, windows: list[int], bucket: int, max_hops: int, port: int
) -> faust.App:
    app = faust.App(
        app_id,
        broker=f"kafka://{broker}",
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        web_port=port,
        web_host="127.0.0.1",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=0.6,
        broker_rebalance_timeout=6.0,
        consumer_auto_offset_reset="earliest",
        datadir=os.environ["NAIVE_DATADIR"],
        topic_partitions=int(os.environ.get("NAIVE_PARTITIONS", "6")),
    )
    raw = app.topic(topic, key_type=bytes, value_type=bytes)
    state: dict[str, float] = {"event_time": 0.0, "processed": 0}
    tables = []
    for length in windows:
        step = max(bucket, length // max_hops)
        table = app.Table(f"naive-{length}", default=int, partitions=None).hopping(
            length, step, expires=timedelta(seconds=length + 600)
        )
        tables.append(table.relative_to(lambda _event: state["event_time"]))

    @app.agent(raw)
    async def count(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async for value in stream:
            try:
                event = FeedbackEvent.model_validate_json(value)
            except ValueError:
                state["processed"] += 1
                yield None
                continue
            state["event_time"] = event.event_time.timestamp()
            document = event.model_dump(mode="json")
            names = ["responses"]
            if event.survey_type.value == "nps":
                names.append(
                    "promoters"
                    if event.score >= 9
                    else "passives"
                    if event.score >= 7
                    else "detractors"
                )
            else:
                names = [f"{event.survey_type.value}_responses"]
            for key in segment_keys(document):
                for name in names:
                    for table in tables:
                        table[f"{key}|{name}"] += 1
            state["processed"] += 1
            yield None

    progress_path = os.environ.get("NAIVE_PROGRESS")

    @app.timer(1.0)
    async def progress() -> None:
        # Faust routes print() to its log: progress goes to a file the bench reads
        if progress_path:
            with open(progress_path, "a") as out:
                out.write(f"progress {time.time():.3f} {state['processed']}\n")

    return app


def main() -> None:
    logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)
    env = os.environ
    app = create_app(
        env["NAIVE_BROKER"],
        env["NAIVE_TOPIC"],
        env["NAIVE_APP_ID"],
        [int(w) for w in env["NAIVE_WINDOWS"].split(",")],
        int(env["NAIVE_BUCKET"]),
        int(env["NAIVE_MAX_HOPS"]),
        int(env["NAIVE_PORT"]),
    )
    sys.argv = [
        MODULE,
        "worker",
        "--loglevel",
        os.environ.get("NAIVE_LOGLEVEL", "error"),
        "--without-web",
    ]
    app.main()


if __name__ == "__main__":
    main()
