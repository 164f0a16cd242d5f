"""Create the pipeline's topics (kafka-python admin) with clear errors."""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.progress import progress_topic
from pipeline.settings import Settings

#: Dead letters carry the original bytes (base64), so they may be large.
DEADLETTER_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def topic_specs(settings: Settings) -> list[NewTopic]:
    def spec(name: str, configs: dict[str, str] | None = None) -> NewTopic:
        return NewTopic(
            name,
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication,
            topic_configs=configs or {},
        )

    return [
        spec(settings.topic_raw),
        spec(settings.topic_scored),
        spec(settings.topic_deadletter, {"max.message.bytes": str(DEADLETTER_MAX_MESSAGE_BYTES)}),
        spec(settings.topic_deltas),
        spec(settings.topic_windows),
        spec(settings.topic_alerts),
        spec(settings.ingest_topic_needs_fetch),
        # the scoring stage's batch progress (pipeline.progress): older than the dedupe
        # horizon is never read again
        spec(
            progress_topic(settings.app_id),
            {"retention.ms": str(int(max(settings.dedupe_horizon_seconds, 3600) * 1000))},
        ),
    ]


def ensure_topics(settings: Settings) -> list[str]:
    """Create the missing topics; return the names created."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers, client_id=f"{settings.app_id}-admin"
        )
    except KafkaError as exc:
        raise SystemExit(
            f"cannot reach the broker at {settings.broker_url}: {exc} (check NPS_BROKER_URL)"
        ) from None
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topic_specs(settings) if t.name not in existing]
        created = []
        for topic in missing:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()
