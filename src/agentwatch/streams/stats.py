"""Worker counters, exposed as JSON (``/agentwatch/stats``) and Prometheus text (``/metrics``).

The model state's counters (snapshots, restores, feedback: ``ModelState.summary()``) are
served under ``models`` in the JSON and as ``agentwatch_model_*`` metrics.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentwatch.schemas.anomaly import Anomaly


@dataclass
class WorkerStats:
    started_at: float = field(default_factory=time.time)
    messages: int = 0
    events_valid: int = 0
    events_stored: int = 0
    duplicates_dropped: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    anomalies: int = 0
    storage_retries: int = 0
    kafka_retries: int = 0
    batches: int = 0
    last_batch_ms: float = 0.0
    agents: int = 0
    recent_anomalies: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))

    def record_anomalies(self, anomalies: list[Anomaly]) -> None:
        self.anomalies += len(anomalies)
        for anomaly in anomalies:
            self.recent_anomalies.append(
                {
                    "anomaly_id": anomaly.anomaly_id,
                    "ts": anomaly.ts.isoformat(),
                    "agent_id": anomaly.agent_id,
                    "detector": anomaly.detector,
                    "score": anomaly.score,
                    "severity": anomaly.severity,
                    "explanation": anomaly.explanation,
                }
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "uptime_s": round(time.time() - self.started_at, 1),
            "messages": self.messages,
            "events_valid": self.events_valid,
            "events_stored": self.events_stored,
            "duplicates_dropped": self.duplicates_dropped,
            "dead_letters": sum(self.dead_letters.values()),
            "dead_letters_by_reason": dict(self.dead_letters),
            "anomalies": self.anomalies,
            "storage_retries": self.storage_retries,
            "kafka_retries": self.kafka_retries,
            "batches": self.batches,
            "last_batch_ms": round(self.last_batch_ms, 2),
            "agents": self.agents,
            "recent_anomalies": list(self.recent_anomalies),
        }

    def prometheus(self, models: Mapping[str, Any] | None = None) -> str:
        """The counters as Prometheus text; ``models``: ``ModelState.summary()``."""
        lines = []
        for name, help_text, value in (
            ("messages_total", "Kafka messages consumed", self.messages),
            ("events_valid_total", "valid events decoded", self.events_valid),
            ("events_stored_total", "events written to ClickHouse", self.events_stored),
            ("duplicates_dropped_total", "redelivered event ids dropped", self.duplicates_dropped),
            ("anomalies_total", "anomalies raised", self.anomalies),
            ("storage_retries_total", "ClickHouse write retries", self.storage_retries),
            ("agents", "agents with detector state in this worker", self.agents),
        ):
            kind = "gauge" if name == "agents" else "counter"
            lines += [
                f"# HELP agentwatch_{name} {help_text}",
                f"# TYPE agentwatch_{name} {kind}",
                f"agentwatch_{name} {value}",
            ]
        lines += [
            "# HELP agentwatch_dead_letters_total invalid inputs sent to the dead-letter topic",
            "# TYPE agentwatch_dead_letters_total counter",
        ]
        lines += [
            f'agentwatch_dead_letters_total{{reason="{reason}"}} {count}'
            for reason, count in sorted(self.dead_letters.items())
        ]
        if models is not None:
            lines += model_metrics(models)
        return "\n".join(lines) + "\n"


# (summary key, metric name, help, type) of the model state's figures.
MODEL_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("agents", "model_agents", "agents with a model in this worker", "gauge"),
    ("dirty", "model_dirty_agents", "agents changed since their last snapshot", "gauge"),
    ("snapshots_written", "model_snapshots_total", "model snapshots written", "counter"),
    ("snapshot_bytes", "model_snapshot_bytes_total", "bytes of model snapshots", "counter"),
    ("snapshot_errors", "model_snapshot_errors_total", "snapshot rounds that failed", "counter"),
    ("last_snapshot_ms", "model_last_snapshot_ms", "duration of the last snapshot", "gauge"),
    ("agents_restored", "model_agents_restored_total", "agents restored", "counter"),
    ("restore_errors", "model_restore_errors_total", "restore attempts that failed", "counter"),
    ("last_restore_ms", "model_last_restore_ms", "duration of the last restore", "gauge"),
    (
        "caught_up_events",
        "model_caught_up_events_total",
        "events replayed after restores",
        "counter",
    ),
    (
        "redelivered_skipped",
        "model_redelivered_skipped_total",
        "redelivered messages a restored model held already",
        "counter",
    ),
    ("feedback_applied", "model_feedback_applied_total", "control messages applied", "counter"),
    ("feedback_rejected", "model_feedback_rejected_total", "control messages rejected", "counter"),
    ("baseline_changes", "model_baseline_changes_total", "baseline changes recorded", "counter"),
)


def model_metrics(models: Mapping[str, Any]) -> list[str]:
    """Prometheus lines of a ``ModelState.summary()``."""
    lines: list[str] = []
    for key, name, help_text, kind in MODEL_METRICS:
        value = models.get(key)
        if value is None:
            continue
        lines += [
            f"# HELP agentwatch_{name} {help_text}",
            f"# TYPE agentwatch_{name} {kind}",
            f"agentwatch_{name} {value}",
        ]
    lines += [
        "# HELP agentwatch_model_ready 1 when no restore is pending",
        "# TYPE agentwatch_model_ready gauge",
        f"agentwatch_model_ready {int(bool(models.get('ready', True)))}",
    ]
    return lines
