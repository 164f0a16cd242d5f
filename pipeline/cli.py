"""The ``nps-pipeline`` command."""

from __future__ import annotations

import random
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from pipeline.settings import (
    DEFAULT_COMPRESSION,
    Compression,
    ConfigError,
    Settings,
    load_settings,
)

app = typer.Typer(
    help="Real-time NPS / CSAT / CES stream processor on Kafka (Faust).\n\n"
    "Settings come from NPS_* environment variables or a YAML file (--config); "
    "see the README for the list.",
    no_args_is_help=True,
    add_completion=False,
)
schemas_app = typer.Typer(help="Event contracts (JSON Schema).", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML settings file (NPS_CONFIG_FILE).")
]
BrokerOpt = Annotated[
    str | None,
    typer.Option("--broker", "-b", help="Kafka bootstrap servers host:port (NPS_BROKER_URL)."),
]


def _settings(config: Path | None, broker: str | None = None, **extra: object) -> Settings:
    try:
        return load_settings(config_file=config, broker_url=broker, **extra)
    except ConfigError as exc:
        typer.secho(exc.message, fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@app.command()
def run(
    config: ConfigOpt = None,
    broker: BrokerOpt = None,
    rate: Annotated[
        float, typer.Option(help="Simulated events per second, daily average (busier by day).")
    ] = 200.0,
    simulate: Annotated[
        bool, typer.Option(help="Run the feedback simulator (embedded broker only).")
    ] = True,
    incident: Annotated[
        list[str] | None,
        typer.Option(
            help="Inject an incident, e.g. 'agent=agent-042,detractors=0.6,start=60,"
            "duration=300' (repeatable); add ',topic=double_charge' for themed complaints."
        ),
    ] = None,
) -> None:
    """Run the pipeline. Without a broker: embedded broker + worker + simulator."""
    settings = _settings(config, broker)
    from pipeline.runner import run_embedded, run_worker
    from pipeline.web import page_url

    typer.echo(f"live page        {page_url(settings)}")
    if settings.broker_url:
        run_worker(settings, status_line=True)
        return
    starter = None
    if simulate:
        sim_config = _simulator_config(rate=rate, incidents=incident or [])

        def starter(s: Settings, stop: threading.Event) -> threading.Thread:
            return _start_simulator_thread(s, sim_config, stop)

    run_embedded(settings, starter)


@app.command()
def worker(config: ConfigOpt = None, broker: BrokerOpt = None) -> None:
    """Run one worker against a Kafka cluster (NPS_BROKER_URL or --broker is required)."""
    settings = _settings(config, broker)
    if not settings.broker_url:
        typer.secho(
            "no broker configured: set NPS_BROKER_URL or pass --broker host:port "
            "(or use `nps-pipeline run` for the embedded broker)",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    from pipeline.runner import run_worker

    run_worker(settings)


@app.command("simulate")
def simulate_cmd(
    config: ConfigOpt = None,
    broker: BrokerOpt = None,
    rate: Annotated[
        float,
        typer.Option(
            help="Events per second, daily average (busier by day); 0 = as fast as possible."
        ),
    ] = 200,
    count: Annotated[int | None, typer.Option(help="Stop after this many events.")] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    incident: Annotated[
        list[str] | None,
        typer.Option(
            help="'dimension=value,detractors=0.6,start=SECONDS,duration=SECONDS[,topic=NAME]' "
            "(repeatable)."
        ),
    ] = None,
    invalid_ratio: Annotated[
        float, typer.Option(help="Share of deliberately invalid records (0-1).")
    ] = 0.0,
    time_scale: Annotated[
        float, typer.Option(help="Event-time seconds per wall-clock second.")
    ] = 1.0,
    seed: Annotated[
        int | None,
        typer.Option(help="Random seed (same seed, same events and ids); default: a new one."),
    ] = None,
) -> None:
    """Produce realistic feedback to the raw topic (kafka-python)."""
    settings = _settings(config, broker)
    if not settings.broker_url:
        typer.secho("no broker: set NPS_BROKER_URL or --broker", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    from pipeline.simulator import produce

    if seed is None:
        seed = random.SystemRandom().randrange(1, 2**31)
        typer.echo(f"seed {seed} (pass --seed {seed} to repeat this run)", err=True)
    sim_config = _simulator_config(
        rate=rate,
        count=count,
        duration_seconds=duration,
        incidents=incident or [],
        invalid_ratio=invalid_ratio,
        time_scale=time_scale,
        seed=seed,
    )
    sent = produce(
        settings.bootstrap_servers,
        settings.topic_raw,
        sim_config,
        progress=lambda n: typer.echo(f"\rsent {n:,}", nl=False, err=True),
        compression=settings.compression,
    )
    typer.echo(f"\nsent {sent:,} events to {settings.topic_raw}", err=True)


REPLAY_HELP = """Replay a CSV or JSONL survey export into the raw topic.

Mapping: each row becomes a FeedbackEvent. Columns named like an event field map by name; others are mapped with --map FIELD=COLUMN (attributes.NAME for an attribute) or a YAML mapping file (--mapping) with `columns:` (field: column), `constants:` (e.g. survey_type: nps, source: qualtrics-export), `time_format:` (strptime; default ISO 8601), `timezone:` (IANA name for naive timestamps, e.g. Europe/Rome) and `skip_rows:` (rows after the CSV header to skip). Flags override the file. Event times come from the file, so a replayed year fills the windows as it happened.

Invalid rows are reported with their line number and kind (the dead-letter reasons, schema errors by field) and are NOT produced: a replay is an import; fix the file and replay it. Records are keyed by event id (acks=all); a repeat of an id identical to its last version is produced once; a later row with other content is produced as an update (the worker counts each answer once, as its last version; with --sort-by-time only the last version is produced). --event-id-prefix (or `event_id_prefix:` in the file) goes before each id: use the webhook's (qualtrics-, delighted-) so that an answer received by webhook and by replay counts once.

--dry-run validates every row and produces nothing. --rate N produces N events/s; 0 (default) = as fast as possible. A progress bar with rate and ETA on a terminal, a progress line every --progress-interval seconds otherwise; a summary at the end.

Exit codes: 0 = every row valid (and, without --dry-run, acknowledged by the broker); 1 = some rows invalid (the valid ones were produced unless --dry-run); 2 = bad options, mapping or file, or the broker or topic unreachable (nothing produced); 3 = some records not acknowledged by the broker.
"""  # noqa: E501


@app.command("replay", help=REPLAY_HELP)
def replay_cmd(
    file: Annotated[Path, typer.Argument(help="CSV (with a header row) or JSONL export.")],
    config: ConfigOpt = None,
    broker: BrokerOpt = None,
    mapping_file: Annotated[
        Path | None, typer.Option("--mapping", "-m", help="YAML mapping file.")
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", help="FIELD=COLUMN, e.g. score='Likelihood to recommend' (rep.)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="FIELD=VALUE constant, e.g. survey_type=nps (repeatable)."),
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: by extension).")
    ] = None,
    time_format: Annotated[
        str | None, typer.Option(help="strptime format of event times (default ISO 8601).")
    ] = None,
    timezone: Annotated[
        str | None, typer.Option(help="IANA timezone of naive event times, e.g. Europe/Rome.")
    ] = None,
    skip_rows: Annotated[
        int | None, typer.Option(help="Rows after the CSV header to skip (Qualtrics: 2).")
    ] = None,
    event_id_prefix: Annotated[
        str | None,
        typer.Option(help="Put before each event id, e.g. qualtrics- (as the webhook does)."),
    ] = None,
    topic: Annotated[str | None, typer.Option(help="Target topic (default NPS_TOPIC_RAW).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate only; produce nothing.")
    ] = False,
    rate: Annotated[float, typer.Option(help="Events per second; 0 = as fast as possible.")] = 0.0,
    sort_by_time: Annotated[
        bool,
        typer.Option(
            "--sort-by-time", help="Produce in event-time order (holds valid rows in memory)."
        ),
    ] = False,
    examples: Annotated[int, typer.Option(help="Example line numbers shown per error kind.")] = 5,
    errors_file: Annotated[
        Path | None, typer.Option(help="Write every invalid row (JSON lines) to this file.")
    ] = None,
    connect_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the broker and the topic.")
    ] = 15.0,
    progress_interval: Annotated[
        float, typer.Option(help="Seconds between progress lines when not on a terminal.")
    ] = 5.0,
) -> None:
    settings = _settings(config, broker)
    from pipeline.replay import (
        BrokerUnavailable,
        Mapping,
        MappingError,
        PlainProgress,
        RichProgress,
        count_rows,
        detect_format,
        replay,
    )

    def fail(message: str) -> typer.Exit:
        typer.secho(message, fg=typer.colors.RED, err=True)
        return typer.Exit(2)

    if not dry_run and not settings.broker_url:
        raise fail("no broker: set NPS_BROKER_URL or --broker (or use --dry-run)")
    if not file.is_file():
        raise fail(f"no such file: {file}")
    try:
        mapping = Mapping.build(
            mapping_file, map_, set_, time_format, timezone, skip_rows, event_id_prefix
        )
        file_format = detect_format(file, fmt or mapping.format)
        total = count_rows(file, file_format, mapping.skip_rows)
    except MappingError as exc:
        raise fail(str(exc)) from None
    target = topic or settings.topic_raw
    verb = "validating" if dry_run else f"replaying to {target}"
    display = (
        RichProgress(total, verb)
        if sys.stderr.isatty()
        else PlainProgress(total, interval=progress_interval)
    )
    errors_out = errors_file.open("w", encoding="utf-8") if errors_file else None
    try:
        with display:
            report = replay(
                file,
                mapping,
                bootstrap_servers=None if dry_run else settings.bootstrap_servers,
                topic=target,
                fmt=file_format,
                dry_run=dry_run,
                rate=rate,
                max_event_bytes=settings.max_event_bytes,
                allowed_lateness_seconds=settings.allowed_lateness_seconds,
                sort_by_time=sort_by_time,
                connect_timeout=connect_timeout,
                progress=display,
                errors_out=errors_out,
                compression=settings.compression,
            )
    except (MappingError, BrokerUnavailable) as exc:
        raise fail(str(exc)) from None
    finally:
        if errors_out is not None:
            errors_out.close()
    typer.echo(report.summary(examples))
    raise typer.Exit(report.exit_code)


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1; 0 = a free one.")] = 9092,
) -> None:
    """Run the embedded broker alone (Tansu, memory only) until Ctrl-C."""
    from pipeline.broker import EmbeddedBroker

    with EmbeddedBroker(port=port or None) as running:
        typer.echo(f"broker listening on {running.bootstrap}  (NPS_BROKER_URL={running.bootstrap})")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            typer.echo("stopping broker")


@app.command()
def topics(config: ConfigOpt = None, broker: BrokerOpt = None) -> None:
    """Create the pipeline's topics on the configured broker."""
    settings = _settings(config, broker)
    from pipeline.topics import ensure_topics

    created = ensure_topics(settings)
    typer.echo(f"created: {', '.join(created)}" if created else "all topics exist")


INGEST_HELP = """Run the HTTP ingest service (writes to the raw topic, keyed by event id).

Routes:

POST /api/v1/feedback: one FeedbackEvent or a JSON array of them.

POST /webhooks/delighted: Delighted survey_response.created / .updated (an update is counted once, as the next revision).

POST /webhooks/typeform: Typeform form_response.

POST /webhooks/surveymonkey (and HEAD, the URL check): SurveyMonkey response events, ids only: an envelope to NPS_INGEST_TOPIC_NEEDS_FETCH.

POST /webhooks/asknicely: an AskNicely response.

POST /webhooks/qualtrics: Qualtrics event subscription completedResponse (form-encoded), ids only: an envelope to NPS_INGEST_TOPIC_NEEDS_FETCH.

POST /webhooks/custom/{name}: the routes of NPS_INGEST_WEBHOOK_MAPPINGS_FILE (JSON paths mapped to event fields, e.g. Medallia).

GET /healthz, GET /openapi.json.

Auth: a bearer token from NPS_INGEST_TOKENS (Authorization: Bearer TOKEN; webhooks without a signature may pass ?token=TOKEN); Typeform, SurveyMonkey, Qualtrics (with NPS_INGEST_QUALTRICS_SECRET) and custom routes with a `signature` are verified by their signatures instead (NPS_INGEST_TYPEFORM_SECRET, NPS_INGEST_SURVEYMONKEY_*). Without tokens the service refuses to start unless --insecure-no-auth is given.

Status codes: 202 all accepted and acknowledged by the broker (acks=all); 422 some items invalid (the valid ones are written; the body lists both); 200 a webhook that carries no answer (ignored); 400 not JSON; 401 no token/signature; 403 a wrong one; 404 an unknown or unconfigured webhook; 413 too large; 503 the broker did not acknowledge in time (send again).
"""  # noqa: E501


@app.command(help=INGEST_HELP)
def ingest(
    config: ConfigOpt = None,
    broker: BrokerOpt = None,
    host: Annotated[str | None, typer.Option(help="Listen address (NPS_INGEST_BIND).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (NPS_INGEST_PORT).")] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Accept requests without a bearer token (development only).",
        ),
    ] = False,
) -> None:
    settings = _settings(
        config,
        broker,
        ingest_bind=host,
        ingest_port=port,
        ingest_insecure_no_auth=insecure_no_auth or None,
    )
    if not settings.broker_url:
        typer.secho("no broker: set NPS_BROKER_URL or --broker", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    from pipeline.ingest import serve

    try:
        serve(settings, print_fn=lambda text: typer.echo(text, err=True))
    except ConfigError as exc:
        typer.secho(exc.message, fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@schemas_app.command("export")
def schemas_export() -> None:
    """Write schemas/json/*.json from the pydantic models."""
    from schemas.export import export

    for path in export():
        typer.echo(str(path))


def _simulator_config(incidents: list[str], **fields: object) -> object:
    from pipeline.simulator import Incident, SimulatorConfig

    try:
        parsed = [Incident.parse(spec) for spec in incidents]
        return SimulatorConfig(incidents=parsed, **fields)  # type: ignore[arg-type]
    except ValueError as exc:
        typer.secho(f"invalid simulator option: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def _start_simulator_thread(
    settings: Settings, sim_config: object, stop: threading.Event
) -> threading.Thread:
    from pipeline.simulator import produce

    thread = threading.Thread(
        target=produce,
        args=(settings.bootstrap_servers, settings.topic_raw, sim_config),
        kwargs={"stop": stop, "compression": settings.compression},
        name="simulator",
        daemon=True,
    )
    thread.start()
    return thread


def main() -> None:
    app()


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise typer.BadParameter("worker counts must be positive integers, e.g. 1 or 1,2")
    if len(set(values)) < len(values):
        raise typer.BadParameter(
            f"{text!r} repeats a worker count: give each once (--rounds repeats the runs)"
        )
    return values


@app.command(
    help="End-to-end benchmark on a real broker, in one run: the ceiling (aiokafka + orjson, no "
    "processing), the naive baseline (a Faust agent updating Faust hopping tables per event) and "
    "the pipeline itself (worker processes, full default workload: validation, scoring, every "
    "default segment and window, alerts, every output), on the same reproducible dataset. Prints "
    "events/s, the ratios, latency event -> scored event and decision -> alert at half the "
    "measured throughput, resident memory and memory per 10,000 segments; verifies every "
    "segment's counts against the dataset's ground truth and exits 1 if they differ. "
    "Uses the embedded broker unless --broker is given. See README 'Performance'."
)
def bench(
    events: Annotated[int, typer.Option(min=1000, help="Records in the dataset.")] = 200_000,
    segments: Annotated[
        int, typer.Option(min=1, help="Agents (segments of that dimension).")
    ] = 10_000,
    comment_share: Annotated[float, typer.Option(min=0, max=1, help="Share with a comment.")] = 0.4,
    late_share: Annotated[
        float, typer.Option(min=0, max=1, help="Share delayed by up to 5 min (within lateness).")
    ] = 0.02,
    invalid_share: Annotated[
        float, typer.Option(min=0, max=1, help="Share of invalid records (dead letters).")
    ] = 0.01,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions per topic.")] = 4,
    workers: Annotated[
        str, typer.Option(help="Worker process counts to measure, e.g. 1 or 1,2 (scaling).")
    ] = "1",
    rounds: Annotated[
        int,
        typer.Option(
            min=1,
            help="Repeat the pipeline runs this many times, interleaved over --workers "
            "(1,2,1,2,...); prints each run, the median per worker count and the median of "
            "the rounds' scaling ratios (steadier on a machine whose speed drifts).",
        ),
    ] = 1,
    naive_seconds: Annotated[
        float, typer.Option(min=0, help="How long to run the naive baseline (0 = skip).")
    ] = 30.0,
    latency_seconds: Annotated[
        float, typer.Option(min=0, help="Length of the half-load latency phase (0 = skip).")
    ] = 75.0,
    span_seconds: Annotated[
        float,
        typer.Option(
            min=1,
            help="Event-time span of the dataset. The default two hours, ending a minute "
            "before the run, are a backlog the workers catch up (alert rounds and snapshots "
            "at most once a second, NPS_CATCHUP_*); 60 s or less is a live spike: each "
            "pipeline run's records end as it produces them, every minute boundary is "
            "judged as it passes.",
        ),
    ] = 7200.0,
    seed: Annotated[int, typer.Option(help="Dataset seed.")] = 1,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures to this JSON file.")
    ] = None,
    broker: BrokerOpt = None,
    text_analytics: Annotated[
        bool, typer.Option(help="Comment analytics in the workers (NPS_TEXT_ANALYTICS).")
    ] = True,
    compression: Annotated[
        Compression,
        typer.Option(help="Codec of the record batches the workers produce (NPS_COMPRESSION)."),
    ] = DEFAULT_COMPRESSION,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--setting",
            "-s",
            help="A further setting of the workers, NAME=VALUE (NPS_BATCH_SIZE=2000 or "
            "batch_size=2000); repeatable. The workers get no NPS_* variable of this shell: "
            "this is how to measure a setting against its default.",
        ),
    ] = None,
) -> None:
    from pipeline.bench.run import BenchConfig, main, worker_settings

    try:
        workers_settings = worker_settings(setting or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--setting") from None
    cfg = BenchConfig(
        events=events,
        segments=segments,
        comment_share=comment_share,
        late_share=late_share,
        invalid_share=invalid_share,
        partitions=partitions,
        workers=_int_list(workers),
        rounds=rounds,
        naive_seconds=naive_seconds,
        latency_seconds=latency_seconds,
        seed=seed,
        span_seconds=span_seconds,
        broker=broker,
        json_path=json_path,
        text_analytics=text_analytics,
        compression=compression,
        settings=workers_settings,
    )
    raise typer.Exit(main(cfg))
