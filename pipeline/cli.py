"""The ``nps-pipeline`` command."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Annotated

import typer

from pipeline.settings import ConfigError, Settings, load_settings

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
            "duration=300' (repeatable)."
        ),
    ] = None,
) -> None:
    """Run the pipeline. Without a broker: embedded broker + worker + simulator."""
    settings = _settings(config, broker)
    from pipeline.runner import run_embedded, run_worker

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
            help="'dimension=value,detractors=0.6,start=SECONDS,duration=SECONDS' (repeatable)."
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
    )
    typer.echo(f"\nsent {sent:,} events to {settings.topic_raw}", err=True)


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
        kwargs={"stop": stop},
        name="simulator",
        daemon=True,
    )
    thread.start()
    return thread


def main() -> None:
    app()
