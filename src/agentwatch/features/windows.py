"""Per-agent window and session features in event time (the data detectors score).

:class:`WindowFeatures` is one closed tumbling window (``kind="window"``) or one finished
session (``kind="session"``) of one agent: a flat mapping of named numeric features.
The aggregator that produces them lives in :mod:`agentwatch.features.aggregate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class WindowFeatures:
    agent_id: str
    peer_group: str
    kind: str  # "window" or "session"
    key: str  # window start (ISO 8601) or session id
    start: datetime
    end: datetime
    values: dict[str, float]
    events: int
    event_ids: tuple[str, ...] = ()  # a bounded sample, for explanations
    agent_version: str | None = None

    @property
    def cohort(self) -> str:
        """The peer group's windows with the same bounds (or session key): the agents a
        window is compared with at the moment it closes."""
        return f"{self.key}\x1f{self.peer_group}"
