"""One frozen settings object.

Every field can be set from the environment as ``AGENTWATCH_<SECTION>__<FIELD>``
(for example ``AGENTWATCH_KAFKA__BOOTSTRAP=kafka:9092``) or from a YAML file named
by ``AGENTWATCH_CONFIG``. Components receive only their own section.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicNames(_Section):
    events: str = "agentwatch.events.v1"
    dlq: str = "agentwatch.events.dlq.v1"
    anomalies: str = "agentwatch.anomalies.v1"
    feedback: str = "agentwatch.feedback.v1"


class KafkaSettings(_Section):
    bootstrap: str | None = Field(
        default=None,
        description="host:port[,host:port]; empty starts the embedded broker",
    )
    partitions: int = Field(default=8, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    retention_ms: int = Field(default=6 * 3600 * 1000, description="topic retention")
    session_timeout_ms: int = Field(default=9000, ge=3000)
    heartbeat_interval_ms: int = Field(default=3000, ge=500)
    topics: TopicNames = TopicNames()


class StorageSettings(_Section):
    dsn: str | None = Field(
        default=None,
        description="chdb:///<dir> (embedded) or http(s)://user:pass@host:8123; "
        "empty means chdb:///<data_dir>/clickhouse",
    )
    database: str = "agentwatch"
    events_ttl_days: int = Field(default=30, ge=1)
    anomalies_ttl_days: int = Field(default=365, ge=1)
    insert_batch_rows: int = Field(default=10_000, ge=1)


class LimitSettings(_Section):
    max_event_bytes: int = Field(default=64 * 1024, ge=256)
    max_message_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_future_s: float = Field(default=24 * 3600, ge=0)
    max_age_s: float = Field(
        default=30 * 24 * 3600,
        ge=0,
        description="events older than this are rejected by the live worker (0 = no limit)",
    )


class WorkerSettings(_Section):
    app_id: str = "agentwatch"
    batch_max_messages: int = Field(default=2000, ge=1)
    batch_within_s: float = Field(default=0.05, gt=0)
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=0, le=65535)
    dedup_window: int = Field(
        default=200_000, ge=0, description="recent event_ids remembered to drop redeliveries"
    )
    snapshot_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="how often the changed agents' models are snapshotted to ClickHouse "
        "(a restart replays at most this much from Kafka)",
    )


class DetectSettings(_Section):
    detectors: list[str] | None = Field(
        default=None, description="detector names to run (default: every registered one)"
    )
    warmup_events: int = Field(
        default=100,
        ge=0,
        description="events of an agent before it is scored on its own baseline "
        "(before: against its peer group)",
    )
    flag_score: float = Field(default=50.0, ge=0, le=100, description="anomaly at or above")
    learn_below_score: float = Field(
        default=25.0,
        ge=0,
        le=100,
        description="events and windows scoring at or above this (p <= 0.1) are not learned "
        "until an analyst accepts them",
    )
    novelty_capacity: int = Field(
        default=4096, ge=16, description="first-seen keys kept per agent and family (LRU)"
    )
    novelty_forget_after_s: float = Field(
        default=30 * 24 * 3600, gt=0, description="a key unused this long is new again"
    )
    novelty_half_life: float = Field(
        default=2000.0, gt=0, description="observations over which the discovery rate decays"
    )
    peer_consensus_agents: int = Field(
        default=3,
        ge=0,
        description="distinct agents of a peer group whose use makes a key normal for the "
        "group (0: never)",
    )
    rules_file: Path | None = Field(default=None, description="flow rules YAML (default: built in)")
    window_s: float = Field(default=60.0, gt=0, description="tumbling window length")
    lateness_s: float = Field(default=10.0, ge=0, description="allowed lateness of events")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AGENTWATCH_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    data_dir: Path = Field(default=Path(".agentwatch"), description="local state (embedded mode)")
    kafka: KafkaSettings = KafkaSettings()
    storage: StorageSettings = StorageSettings()
    limits: LimitSettings = LimitSettings()
    worker: WorkerSettings = WorkerSettings()
    detect: DetectSettings = DetectSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    @property
    def storage_dsn(self) -> str:
        if self.storage.dsn:
            return self.storage.dsn
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by ``AGENTWATCH_CONFIG`` (lowest precedence)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("AGENTWATCH_CONFIG")
        if not path:
            return {}
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: top level must be a mapping")
        return data


def load_settings(**overrides: Any) -> Settings:
    """Settings from defaults < YAML file < environment < explicit overrides."""
    return Settings(**overrides)
