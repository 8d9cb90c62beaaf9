"""Worker counters, exposed as JSON (``/agentwatch/stats``) and Prometheus text (``/metrics``)."""

from __future__ import annotations

import time
from collections import Counter, deque
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

    def prometheus(self) -> str:
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
        return "\n".join(lines) + "\n"
