"""Run the Faust worker in this process (``nps-pipeline worker`` and ``run``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import faust

from pipeline.app import create_app
from pipeline.broker import EmbeddedBroker
from pipeline.malloc_tuning import tune_malloc
from pipeline.settings import Settings
from pipeline.topics import ensure_topics


class Worker(faust.Worker):
    """Faust's worker without its start-up spinner.

    The spinner turns for every log record, so Faust sets the root logger to DEBUG
    whatever ``loglevel`` says (``faust.Worker._setup_spinner_handler``) and leaves it
    there: every debug call of aiokafka, Faust and mode then builds a LogRecord that the
    handlers drop (per request, response and batch sent: ~1% of the worker's main
    thread at full load, more of its consumer thread; py-spy). Without it the root
    logger stays at ``NPS_LOG_LEVEL``.
    """

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None


def run_worker(settings: Settings, *, status_line: bool = False) -> None:
    """Start a worker and block until it stops (SIGINT/SIGTERM)."""
    tune_malloc()  # see pipeline.malloc_tuning
    if settings.create_topics:
        ensure_topics(settings)
    app = create_app(settings, status_line=status_line)
    worker = Worker(app, loglevel=settings.log_level, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise


def run_embedded(
    settings: Settings,
    start_simulator: Callable[[Settings, threading.Event], threading.Thread] | None,
) -> None:
    """The default job: embedded broker + worker (+ simulator), stopped together on Ctrl-C."""
    with EmbeddedBroker() as broker:
        settings = settings.model_copy(update={"broker_url": broker.bootstrap})
        ensure_topics(settings)
        stop = threading.Event()
        thread = start_simulator(settings, stop) if start_simulator else None
        print(
            f"embedded broker  {broker.bootstrap} (Tansu, memory only)\n"
            f"metrics          http://{settings.web_host}:{settings.web_port}/metrics\n"
            f"health           http://{settings.web_host}:{settings.web_port}/healthz\n"
            f"topics           {settings.topic_raw} -> {settings.topic_scored}, "
            f"{settings.topic_deadletter}\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        try:
            run_worker(settings, status_line=True)
        finally:
            stop.set()
            if thread is not None:
                thread.join(timeout=10)
