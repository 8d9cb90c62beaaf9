"""Anomaly schema v1: what detectors emit on ``agentwatch.anomalies.v1`` and store.

Contract: ``schemas/anomaly.v1.json`` (JSON Schema 2020-12), kept in step by a test.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Literal, get_args

import msgspec
from msgspec import Meta

Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[str, ...] = get_args(Severity)

Score = Annotated[float, Meta(ge=0, le=100)]


def severity_for(score: float) -> Severity:
    """Severity band of a 0–100 score."""
    if score >= 90:
        return "critical"
    if score >= 75:
        return "high"
    if score >= 50:
        return "medium"
    if score >= 25:
        return "low"
    return "info"


class Contribution(msgspec.Struct, frozen=True):
    """One feature that made the anomaly: what it was, what is typical, how unusual."""

    feature: str
    value: float | str
    typical: float | str
    unusual: str


class Anomaly(msgspec.Struct, frozen=True, omit_defaults=True):
    schema_version: Literal["1"]
    anomaly_id: str
    agent_id: str
    ts: Annotated[datetime, Meta(tz=True)]
    detected_at: Annotated[datetime, Meta(tz=True)]
    detector: str
    score: Score
    severity: Severity
    title: str
    explanation: str
    detectors: list[str] = msgspec.field(default_factory=list)
    contributions: list[Contribution] = msgspec.field(default_factory=list)
    event_ids: list[str] = msgspec.field(default_factory=list)
    session_id: str | None = None
    agent_type: str | None = None
    labels: dict[str, str] = msgspec.field(default_factory=dict)


def anomaly_id_for(detector: str, agent_id: str, *parts: str) -> str:
    """A deterministic id: the same trigger yields the same id on redelivery."""
    digest = hashlib.blake2b(
        "\x1f".join((detector, agent_id, *parts)).encode(), digest_size=16
    ).hexdigest()
    return digest


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Anomaly)


def encode_anomaly(anomaly: Anomaly) -> bytes:
    return _encoder.encode(anomaly)


def decode_anomaly(raw: bytes) -> Anomaly:
    return _decoder.decode(raw)
