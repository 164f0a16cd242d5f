"""Settings: environment variables ``NPS_*`` and an optional YAML file.

Precedence (highest first): command-line flags, ``NPS_*`` environment variables, the
YAML file named by ``NPS_CONFIG_FILE`` (or ``--config``), the defaults below. Every
value is validated at start; a bad one stops the process with a message naming the
setting and what to fix (see :func:`format_errors`).
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    NonNegativeInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from schemas.feedback import SEGMENT_FIELDS

#: Dimensions derived by the pipeline rather than read from the event: ``theme`` (the
#: themes of the comment, with NPS_TEXT_ANALYTICS; see pipeline.text.stage_analytics).
DERIVED_DIMENSIONS: tuple[str, ...] = ("theme",)

_HOSTPORT = re.compile(r"^[A-Za-z0-9._\-\[\]:]+:\d{1,5}$")


class Compression(StrEnum):
    """Kafka record-batch codecs (``NPS_COMPRESSION``, ``bench --compression``)."""

    NONE = "none"
    GZIP = "gzip"
    SNAPPY = "snappy"
    LZ4 = "lz4"
    ZSTD = "zstd"

    @property
    def kafka_codec(self) -> str | None:
        """The ``compression_type`` of a Kafka producer (aiokafka's, Faust's)."""
        return None if self is Compression.NONE else self.value


#: ``NPS_COMPRESSION``'s default (and the benchmarks'): snappy halves the embedded broker's
#: CPU per event for ~1% of a worker's event loop (README, "Broker bytes").
DEFAULT_COMPRESSION = Compression.SNAPPY


class Settings(BaseSettings):
    """Configuration of every nps-pipeline process."""

    model_config = SettingsConfigDict(
        env_prefix="NPS_", extra="forbid", validate_default=True, frozen=True
    )

    config_file: Path | None = Field(
        default=None, description="YAML file with any of these settings (NPS_CONFIG_FILE)."
    )
    broker_url: str | None = Field(
        default=None,
        description="Kafka bootstrap servers, 'host:port[,host:port]' or 'kafka://host:port'. "
        "Unset: `run` starts the embedded broker.",
    )
    app_id: str = Field(default="nps-pipeline", min_length=1, description="Faust app id / group.")
    topic_raw: str = Field(default="feedback.raw", min_length=1)
    topic_scored: str = Field(default="feedback.scored", min_length=1)
    topic_deadletter: str = Field(default="feedback.deadletter", min_length=1)
    topic_deltas: str = Field(
        default="nps.segment-deltas",
        min_length=1,
        description="Internal repartition topic: per-batch bucket deltas keyed by segment.",
    )
    topic_windows: str = Field(default="nps.windows", min_length=1)
    topic_alerts: str = Field(default="nps.alerts", min_length=1)
    topic_partitions: int = Field(default=4, ge=1, le=1024)
    topic_replication: int = Field(default=1, ge=1, le=16)
    create_topics: bool = Field(default=True, description="Create missing topics at start.")
    compression: Compression = Field(
        default=DEFAULT_COMPRESSION,
        description="Compression of the record batches nps-pipeline produces: the workers' "
        "(scored events, dead letters, deltas, progress, changelog, snapshots, alerts) and "
        "the raw records of simulate, replay and the HTTP ingest service. snappy (the "
        "default) makes them 3-5x smaller and halves the embedded broker's CPU per event "
        "for ~1% of the worker's event loop; zstd makes them 5-10x smaller but costs the "
        "event loop ~6% (small batches), worth it only where the brokers' network, disk "
        "and replication are the limit; none for consumers without snappy "
        "(README, 'Broker bytes').",
    )
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        default="at_least_once",
        description="Faust's processing_guarantee (Kafka transactions for Faust's own "
        "consumer commits and sends). Window counts are exact without it (README, "
        "'Processing guarantees'); exactly_once needs a real Kafka cluster.",
    )

    max_event_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Raw records larger than this are dead-lettered."
    )
    deadletter_max_original_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Original bytes kept in a dead letter; longer ones are truncated (flagged).",
    )
    dedupe_horizon_seconds: float = Field(
        default=24 * 3600, ge=0, description="How long an event id is remembered for dedupe."
    )
    dedupe_max_ids: int = Field(
        default=500_000,
        ge=0,
        description="Memory cap of the dedupe (~190 bytes per id: ~95 MB at the default; "
        "up to 1/64 more ids between two passes that forget the least recently seen).",
    )

    dimensions: Annotated[list[str], NoDecode] = Field(
        default=["department", "agent", "product", "channel", "region", "theme"],
        description="Segment fields with windows of their own (comma-separated in env); "
        "'theme' is derived: one segment per theme of the comment (NPS_TEXT_ANALYTICS).",
    )
    combinations: Annotated[list[str], NoDecode] = Field(
        default=["department,channel"],
        description="Combinations of dimensions with windows of their own, e.g. "
        "'department,channel'; several separated by ';' in env. 'theme' may be one of "
        "them: 'department,theme' gives an answer one segment per theme of its comment.",
    )
    windows_seconds: Annotated[list[int], NoDecode] = Field(
        default=[300, 3600, 86400], description="Rolling window lengths (multiples of the bucket)."
    )
    bucket_seconds: int = Field(default=60, ge=1, le=3600, description="Time bucket width.")
    allowed_lateness_seconds: float = Field(
        default=600, ge=0, description="Events older than partition watermark minus this: late."
    )
    future_tolerance_seconds: float = Field(
        default=300, ge=0, description="Events further in the future than this: future."
    )
    catchup_interval_seconds: float = Field(
        default=1.0,
        ge=0,
        description="While the windows' clock is over NPS_CATCHUP_BEHIND_SECONDS behind the "
        "wall clock (a backlog, a replay), alert rounds and window snapshots run at most this "
        "often (wall seconds) and judge the newest boundary; 0 = every boundary always.",
    )
    catchup_behind_seconds: float = Field(
        default=120.0, ge=0, description="How far behind the wall clock counts as catching up."
    )
    gc_thresholds: Annotated[list[NonNegativeInt], NoDecode] = Field(
        default=[50_000, 10, 1000],
        min_length=3,
        max_length=3,
        description="The worker's cyclic garbage collector thresholds (gc.set_threshold), "
        "e.g. '50000,10,1000'. Python's default last value, 10, makes full collections "
        "scan every window bucket so often that they took half of the windows stage's time "
        "at 100,000 segments (tests/bench/bench_windows.py); its first, 700, collects the "
        "young generation hundreds of times per batch, each scan (and the promotions it "
        "makes) covering the batch's live temporaries: 3.9% of the worker's main thread at "
        "full load against 0.2% with 50000 (py-spy --native). The window state is rebuilt "
        "into the permanent generation (gc.freeze) after a recovery as well.",
    )
    malloc_trim_seconds: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="How often the worker hands the C heap's free pages back to the OS "
        "(glibc's malloc_trim; 0 = never): ~20 MiB less RSS at 100,000 segments (medians "
        "of six runs), "
        "~1 ms per call (pipeline/malloc_tuning.py).",
    )
    snapshot_interval_seconds: int = Field(
        default=60,
        ge=1,
        description="Event-time cadence of window snapshots on the windows topic.",
    )

    metrics_dimensions: Annotated[list[str], NoDecode] = Field(
        default=["department", "product", "channel", "region", "theme"],
        description="Dimensions with per-segment business counters on /metrics (keep them "
        "low-cardinality; add 'agent' only for a few hundred agents). Subset of dimensions.",
    )
    metrics_max_segments: int = Field(
        default=500,
        ge=0,
        description="Most segments per worker with rolling-window gauges on /metrics; the "
        "rest are counted in nps_pipeline_window_segments_dropped.",
    )

    comment_output: Literal["redacted", "none"] = Field(
        default="redacted",
        description="Comments in every output (scored events, alert evidence): 'redacted' "
        "(PII replaced by [EMAIL], [PHONE], [CARD], [IBAN], ...) or 'none' (no text at all).",
    )
    redact_patterns: dict[str, str] = Field(
        default={},
        description="Extra redaction patterns, name -> regular expression (JSON in env, "
        'e.g. {"customer_id": "CUST-\\d{6}"}); matches become [NAME].',
    )

    text_analytics: bool = Field(
        default=True,
        description="Comment analytics in the scoring stage: language, sentiment, themes and "
        "score disagreement on each scored event, theme segments, emerging topics in alerts.",
    )
    text_sentiment: bool = Field(
        default=True,
        description="With text analytics: also the sentiment and the score disagreement "
        "(false: language and themes only, about a third of the cost).",
    )
    text_process: bool = Field(
        default=True,
        description="With text analytics: analyse each batch's comments in a separate "
        "process, in parallel with the rest of the scoring stage (uses a second CPU core; "
        "false: in the worker's own thread). See pipeline/text/offload.py.",
    )
    text_taxonomy_file: Path | None = Field(
        default=None,
        description="YAML theme taxonomy (see pipeline/text/data/themes.yaml); unset: that "
        "built-in one. Checked at start.",
    )

    alerts_enabled: bool = Field(default=True, description="Evaluate the alert rules.")
    alert_rules_file: Path | None = Field(
        default=None,
        description="YAML alert rules (see deploy/pipeline/alert-rules.yaml); unset: built-in "
        "defaults, the same rules as that file.",
    )
    alertmanager_urls: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Alertmanager base URLs (comma-separated) to post alerts to; empty: none.",
    )
    alertmanager_resend_seconds: float = Field(
        default=60.0, gt=0, description="Re-send firing alerts to Alertmanager this often."
    )

    followups_enabled: bool = Field(
        default=False,
        description="Publish a follow-up task for every answer a follow-up rule selects and "
        "track their status updates (README: Closing the loop).",
    )
    followup_rules_file: Path | None = Field(
        default=None,
        description="YAML follow-up rules (see deploy/pipeline/followup-rules.yaml); unset: "
        "built-in defaults, the same rules as that file.",
    )
    topic_followups: str = Field(
        default="feedback.followups", min_length=1, description="Follow-up tasks, by task id."
    )
    topic_followup_events: str = Field(
        default="feedback.followup-events",
        min_length=1,
        description="Status updates of follow-up tasks from the ticketing side, by task id.",
    )
    followup_windows_seconds: Annotated[list[int], NoDecode] = Field(
        default=[86400, 604800, 2592000],
        description="Follow-up windows (tasks created in the last ...); the longest is also "
        "how long the tracker keeps a task.",
    )
    followup_analyze_comments: bool = Field(
        default=True,
        description="Language, sentiment and themes of a task's comment (pipeline.text).",
    )
    followup_unknown_grace_seconds: float = Field(
        default=600,
        ge=0,
        description="Event time an update for an unknown task waits for it before it is "
        "dead-lettered (unknown_task).",
    )
    followup_ack_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="How long POST /api/v1/followups/{task_id}/events waits for the broker.",
    )

    batch_size: int = Field(
        default=2000,
        ge=1,
        le=100_000,
        description="Most raw records the scoring stage takes per poll. A full batch of "
        "2,000 holds the event loop ~0.1 s (estimated); against 1,000, the medians of "
        "same-day A/B runs were +3% events/s with one worker and +10% with two (per-batch "
        "costs: broker requests, acknowledgements, deltas records, the analysis child's "
        "messages; README, Performance).",
    )
    batch_within_seconds: float = Field(
        default=0.05,
        gt=0,
        le=60,
        description="Longest wait to fill a batch. The windows agent waits this long for "
        "its 16 deltas records after each batch (stage 1 sends a few per batch of its "
        "own); 0.2 s added up to 0.2 s to every window update and alert, and measured ~4% "
        "fewer events/s with two workers than 0.05 s (README, Performance).",
    )
    broker_session_timeout_seconds: float = Field(default=10.0, ge=1, le=300)

    web_host: str = Field(
        default="127.0.0.1",
        description="The address other workers and printed URLs use for this worker.",
    )
    web_bind: str = Field(
        default="127.0.0.1",
        description="The interface the HTTP server listens on ('0.0.0.0' in containers).",
    )
    web_port: int = Field(default=6066, ge=0, le=65535)
    status_interval_seconds: float = Field(default=5.0, ge=0)

    ingest_bind: str = Field(
        default="127.0.0.1",
        description="Interface the HTTP ingest service (`nps-pipeline ingest`) listens on.",
    )
    ingest_port: int = Field(
        default=8080, ge=0, le=65535, description="Port of the ingest service."
    )
    ingest_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default=[],
        description="Bearer tokens accepted by the ingest service (comma-separated). Empty: the "
        "service refuses to start unless ingest_insecure_no_auth is set.",
    )
    ingest_insecure_no_auth: bool = Field(
        default=False,
        description="Run the ingest service without bearer tokens (development only).",
    )
    ingest_max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body the ingest service reads; larger ones get 413.",
    )
    ingest_max_batch_items: int = Field(
        default=1000, ge=1, le=100_000, description="Most events in one batch request (else 413)."
    )
    ingest_ack_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="How long a request waits for the broker to acknowledge (acks=all) its "
        "events before answering 503.",
    )
    ingest_typeform_secret: SecretStr | None = Field(
        default=None,
        description="Typeform webhook secret (HMAC-SHA256 signature); unset: /webhooks/typeform "
        "is disabled.",
    )
    ingest_typeform_survey_type: Literal["nps", "csat", "ces"] = Field(
        default="nps", description="Survey type of the Typeform score question."
    )
    ingest_typeform_score_ref: str = Field(
        default="nps",
        min_length=1,
        description="Typeform field ref of the score question (opinion scale / NPS).",
    )
    ingest_typeform_comment_ref: str = Field(
        default="comment", min_length=1, description="Typeform field ref of the comment question."
    )
    ingest_surveymonkey_api_key: SecretStr | None = Field(
        default=None,
        description="SurveyMonkey API key (first half of the Sm-Signature HMAC-SHA1 key); with "
        "ingest_surveymonkey_secret enables /webhooks/surveymonkey.",
    )
    ingest_surveymonkey_secret: SecretStr | None = Field(
        default=None, description="SurveyMonkey API secret (second half of the signature key)."
    )
    ingest_topic_needs_fetch: str = Field(
        default="feedback.needs-fetch",
        min_length=1,
        description="Envelopes of tools that send ids only (SurveyMonkey, Qualtrics): the "
        "answers must be fetched from the tool's API.",
    )
    ingest_asknicely_survey_type: Literal["nps", "csat", "ces"] = Field(
        default="nps", description="Survey type of AskNicely answers."
    )
    ingest_qualtrics_secret: SecretStr | None = Field(
        default=None,
        description="Shared key of the Qualtrics event subscription: the HMAC field (hex "
        "HMAC-SHA512 of MSG) is then required and checked. Unset: /webhooks/qualtrics needs a "
        "bearer token (header or ?token=) instead.",
    )
    ingest_webhook_mappings_file: Path | None = Field(
        default=None,
        description="YAML file of custom webhook mappings: per name, JSON paths of the event "
        "fields and an optional signature check; each is served at /webhooks/custom/{name}.",
    )
    log_level: Literal["debug", "info", "warn", "error", "crit"] = "warn"

    @field_validator("broker_url")
    @classmethod
    def _check_broker(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        for server in value.removeprefix("kafka://").split(","):
            if not _HOSTPORT.match(server.strip().removeprefix("kafka://")):
                raise ValueError(
                    f"{server!r} is not host:port (example: NPS_BROKER_URL=localhost:9092)"
                )
        return value.strip()

    @field_validator("dimensions", "metrics_dimensions", mode="before")
    @classmethod
    def _split_dimensions(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("redact_patterns")
    @classmethod
    def _compile_patterns(cls, value: dict[str, str]) -> dict[str, str]:
        from pipeline.redact import Redactor  # fail at start on a bad pattern

        Redactor(value)
        return value

    @field_validator("text_taxonomy_file")
    @classmethod
    def _load_taxonomy(cls, value: Path | None) -> Path | None:
        if value is not None:  # fail at start on a missing or invalid taxonomy
            from pipeline.text.taxonomy import Taxonomy

            Taxonomy.load(value)
        return value

    @field_validator("alertmanager_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("ingest_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("alertmanager_urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.match(r"^https?://[^/\s]+", url):
                raise ValueError(f"{url!r} is not an http(s) URL such as http://localhost:9093")
        return [url.rstrip("/") for url in value]

    @field_validator("combinations", mode="before")
    @classmethod
    def _split_combinations(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(";") if v.strip()]
        return value

    @field_validator("windows_seconds", "followup_windows_seconds", "gc_thresholds", mode="before")
    @classmethod
    def _split_windows(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip().startswith("["):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("dimensions")
    @classmethod
    def _known_dimensions(cls, value: list[str]) -> list[str]:
        known = (*SEGMENT_FIELDS, *DERIVED_DIMENSIONS)
        unknown = [d for d in value if d not in known]
        if unknown:
            raise ValueError(f"unknown dimension(s) {unknown}; choose from {list(known)}")
        return value

    @field_validator("combinations")
    @classmethod
    def _known_combinations(cls, value: list[str]) -> list[str]:
        known = (*SEGMENT_FIELDS, *DERIVED_DIMENSIONS)
        for combo in value:
            parts = [p.strip() for p in combo.split(",")]
            unknown = [p for p in parts if p not in known]
            if len(parts) < 2 or unknown or len(set(parts)) < len(parts):
                raise ValueError(
                    f"combination {combo!r} must list two or more different names of "
                    f"{list(known)} separated by commas, e.g. 'department,channel' or "
                    "'department,theme'"
                )
        return value

    @property
    def combination_fields(self) -> list[tuple[str, ...]]:
        return [tuple(p.strip() for p in combo.split(",")) for combo in self.combinations]

    @model_validator(mode="after")
    def _derived_combinations_need_analytics(self) -> Settings:
        derived = [",".join(c) for c in self.combination_fields if set(DERIVED_DIMENSIONS) & set(c)]
        if derived and not self.text_analytics:
            raise ValueError(
                f"combinations {derived} name 'theme', which comes from the comment "
                "analysis: set NPS_TEXT_ANALYTICS=true or take them out of NPS_COMBINATIONS"
            )
        return self

    @model_validator(mode="after")
    def _windows_fit_buckets(self) -> Settings:
        bad = [w for w in self.windows_seconds if w <= 0 or w % self.bucket_seconds]
        if bad or not self.windows_seconds:
            raise ValueError(
                f"windows_seconds {self.windows_seconds} must be positive multiples of "
                f"bucket_seconds ({self.bucket_seconds}) (NPS_WINDOWS_SECONDS, NPS_BUCKET_SECONDS)"
            )
        return self

    @field_validator("followup_windows_seconds")
    @classmethod
    def _positive_followup_windows(cls, value: list[int]) -> list[int]:
        if not value or any(w <= 0 for w in value):
            raise ValueError(
                f"must be one or more positive numbers of seconds, e.g. 86400,604800 (got {value})"
            )
        return sorted(set(value))

    @model_validator(mode="after")
    def _exactly_once_needs_kafka(self) -> Settings:
        if self.processing_guarantee == "exactly_once" and self.broker_url is None:
            raise ValueError(
                "processing_guarantee exactly_once needs a Kafka cluster (set NPS_BROKER_URL): "
                "the embedded broker refuses the transactional producer it uses; window "
                "counts are exact without it (NPS_PROCESSING_GUARANTEE=at_least_once)"
            )
        return self

    @model_validator(mode="after")
    def _metrics_dimensions_windowed(self) -> Settings:
        missing = [d for d in self.metrics_dimensions if d not in self.dimensions]
        if missing:
            raise ValueError(
                f"metrics_dimensions {missing} are not in dimensions {self.dimensions}: "
                "add them to NPS_DIMENSIONS or remove them from NPS_METRICS_DIMENSIONS"
            )
        return self

    @model_validator(mode="after")
    def _distinct_topics(self) -> Settings:
        names = [
            self.topic_raw,
            self.topic_scored,
            self.topic_deadletter,
            self.topic_deltas,
            self.topic_windows,
            self.topic_alerts,
            self.ingest_topic_needs_fetch,
            self.topic_followups,
            self.topic_followup_events,
        ]
        if len(set(names)) != len(names):
            raise ValueError(f"topic names must be distinct, got {names}")
        return self

    @property
    def bootstrap_servers(self) -> list[str]:
        """Broker addresses for kafka-python and aiokafka."""
        if not self.broker_url:
            raise ValueError("no broker configured (set NPS_BROKER_URL)")
        return [s.strip().removeprefix("kafka://") for s in self.broker_url.split(",")]

    @property
    def faust_broker(self) -> str:
        return ";".join(f"kafka://{s}" for s in self.bootstrap_servers)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = init_settings().get("config_file") or env_settings().get("config_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise ConfigError(f"config file {path} does not exist (NPS_CONFIG_FILE / --config)")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


class ConfigError(SystemExit):
    """A configuration problem; its text says what to fix. Exits the process with code 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def format_errors(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "(settings)"
        env = f"NPS_{name.upper()}" if err["loc"] else ""
        where = f"{name} ({env})" if env else name
        got = f" (got {err['input']!r})" if err["type"] != "missing" and "input" in err else ""
        if err["type"] == "extra_forbidden":
            lines.append(f"  - {where}: unknown setting; check the spelling{got}")
        else:
            lines.append(f"  - {where}: {err['msg']}{got}")
    return "\n".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Settings from flags, environment and file; raises :class:`ConfigError` if invalid."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from None
