"""Topic creation with explicit configs (works on Apache Kafka and on Tansu)."""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from agentwatch.config import KafkaSettings


def topic_specs(kafka: KafkaSettings) -> list[NewTopic]:
    configs = {
        "retention.ms": str(kafka.retention_ms),
        "cleanup.policy": "delete",
    }
    names = (
        kafka.topics.events,
        kafka.topics.dlq,
        kafka.topics.anomalies,
        kafka.topics.feedback,
    )
    return [
        NewTopic(
            name=name,
            num_partitions=kafka.partitions,
            replication_factor=kafka.replication_factor,
            topic_configs=dict(configs),
        )
        for name in names
    ]


def ensure_topics(bootstrap: str, kafka: KafkaSettings) -> list[str]:
    """Create the agentwatch topics that do not exist yet; return the names created."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="agentwatch-admin", request_timeout_ms=15000
    )
    try:
        existing = set(admin.list_topics())
        missing = [spec for spec in topic_specs(kafka) if spec.name not in existing]
        created: list[str] = []
        for spec in missing:
            try:
                admin.create_topics([spec])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()
