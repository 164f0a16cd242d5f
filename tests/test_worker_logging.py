"""The worker's loggers run at NPS_LOG_LEVEL: Faust's start-up spinner set the root
logger to DEBUG, so every debug call of aiokafka, Faust and mode built a LogRecord that
the handlers then dropped (a cost per Kafka request and batch at full load)."""

from __future__ import annotations

import pytest

from tests.conftest import run_python

_CHILD = """
import logging, sys
from pipeline.app import create_app
from pipeline.runner import Worker
from pipeline.settings import load_settings

settings = load_settings(broker_url="127.0.0.1:1")
worker = Worker(create_app(settings), loglevel=settings.log_level, quiet=True)
worker._setup_logging()  # what the worker does first when it starts (stdout redirected)
aiokafka_debug = logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
print("levels", logging.root.level, int(aiokafka_debug), file=sys.__stderr__)
"""


@pytest.mark.parametrize(
    ("level", "root", "debug_on"),
    [(None, 30, 0), ("info", 20, 0), ("debug", 10, 1)],
    ids=["default-warn", "info", "debug"],
)
def test_the_worker_logs_at_the_configured_level(
    level: str | None, root: int, debug_on: int
) -> None:
    done = run_python(_CHILD, **({} if level is None else {"NPS_LOG_LEVEL": level}))
    found = [line.split()[1:] for line in done.stderr.splitlines() if line.startswith("levels ")]
    assert found == [[str(root), str(debug_on)]]
