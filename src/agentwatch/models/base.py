"""The detector interface and the detector registry.

A detector sees each valid event of the agents of its partition in event-time order and
returns the anomalies that event raises. It scores *before* it learns, and never learns
from what it flagged (a flagged destination stays new until an analyst marks it benign),
so an attacker cannot make itself normal by repetition.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from agentwatch.config import DetectSettings
from agentwatch.schemas.anomaly import Anomaly
from agentwatch.schemas.events import Event


class EventDetector(Protocol):
    """Event-level detector: per-agent state in memory, pure computation."""

    name: str

    def process(self, event: Event, *, detected_at: datetime) -> list[Anomaly]:
        """Score ``event`` against the agent's baseline, then learn from it."""
        ...

    def agent_count(self) -> int:
        """Agents with state in this detector."""
        ...


DetectorFactory = Callable[[DetectSettings], EventDetector]

REGISTRY: dict[str, DetectorFactory] = {}


def register(name: str) -> Callable[[DetectorFactory], DetectorFactory]:
    """Class decorator adding a detector factory to :data:`REGISTRY` under ``name``."""

    def wrap(factory: DetectorFactory) -> DetectorFactory:
        if name in REGISTRY:
            raise ValueError(f"detector {name!r} registered twice")
        REGISTRY[name] = factory
        return factory

    return wrap


def build_detectors(
    settings: DetectSettings, names: list[str] | None = None
) -> list[EventDetector]:
    """Instantiate the named detectors (all registered ones by default)."""
    from agentwatch.models import catalog  # noqa: F401  (registers the built-in detectors)

    chosen = names if names is not None else sorted(REGISTRY)
    unknown = [n for n in chosen if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown detector(s) {unknown}; known: {sorted(REGISTRY)}")
    return [REGISTRY[n](settings) for n in chosen]
