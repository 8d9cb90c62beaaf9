"""First-seen destination per agent.

An agent that starts sending data or money to a place it has never used is the clearest
behavioural sign of a hijack (prompt-injected exfiltration, a stolen credential used from
the agent). After a warm-up of ``new_destination_warmup_events`` events, every destination
(canonical host, URL origin, e-mail, account, …) that is not in the agent's bounded
first-seen set raises an anomaly. A flagged destination is *not* learned: it stays new.

>>> from datetime import datetime, timezone
>>> from agentwatch.config import DetectSettings
>>> from agentwatch.schemas.events import Destination, Event
>>> det = NewDestinationDetector(DetectSettings(new_destination_warmup_events=1))
>>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> def ev(i, host):
...     return Event(schema_version="1", event_id=f"e{i}", ts=t, agent_id="a", type="network",
...                  destinations=[Destination(kind="host", value=host)])
>>> det.process(ev(1, "api.example.com"), detected_at=t)
[]
>>> [a.explanation for a in det.process(ev(2, "evil.example.net"), detected_at=t)]
['sent to 1 new destination (host evil.example.net); typical 0 new, 1 known destinations']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from agentwatch.config import DetectSettings
from agentwatch.features.destinations import destination_keys
from agentwatch.features.first_seen import FirstSeenSet
from agentwatch.models.base import register
from agentwatch.schemas.anomaly import Anomaly, Contribution, anomaly_id_for, severity_for
from agentwatch.schemas.events import Event

NAME = "new_destination"


@dataclass(slots=True)
class _AgentState:
    seen: FirstSeenSet
    events: int = 0
    flagged: dict[tuple[str, str], int] = field(default_factory=dict)


@register(NAME)
class NewDestinationDetector:
    name = NAME

    def __init__(self, settings: DetectSettings) -> None:
        self.warmup = settings.new_destination_warmup_events
        self.score = settings.new_destination_score
        self.capacity = settings.max_destinations_per_agent
        self._agents: dict[str, _AgentState] = {}

    def agent_count(self) -> int:
        return len(self._agents)

    def _state(self, agent_id: str) -> _AgentState:
        state = self._agents.get(agent_id)
        if state is None:
            state = self._agents[agent_id] = _AgentState(FirstSeenSet(self.capacity))
        return state

    def process(self, event: Event, *, detected_at: datetime) -> list[Anomaly]:
        state = self._state(event.agent_id)
        keys = destination_keys(event)
        warm = state.events >= self.warmup
        state.events += 1
        new = [key for key in keys if key not in state.seen]
        if not new:
            return []
        if not warm:
            for key in new:
                state.seen.add(key)
            return []
        for key in new:
            state.flagged[key] = state.flagged.get(key, 0) + 1
        return [self._anomaly(event, new, state, detected_at)]

    def _anomaly(
        self,
        event: Event,
        new: list[tuple[str, str]],
        state: _AgentState,
        detected_at: datetime,
    ) -> Anomaly:
        listed = ", ".join(f"{kind} {value}" for kind, value in new[:5])
        more = f" and {len(new) - 5} more" if len(new) > 5 else ""
        plural = "destination" if len(new) == 1 else "destinations"
        explanation = (
            f"sent to {len(new)} new {plural} ({listed}{more}); "
            f"typical 0 new, {len(state.seen)} known destinations"
        )
        contributions = [
            Contribution(
                feature=f"destination.{kind}",
                value=value,
                typical=f"{len(state.seen)} known destinations",
                unusual=f"first seen after {state.events - 1} events"
                + (
                    f"; flagged {state.flagged[(kind, value)]} times"
                    if state.flagged[(kind, value)] > 1
                    else ""
                ),
            )
            for kind, value in new
        ]
        return Anomaly(
            schema_version="1",
            anomaly_id=anomaly_id_for(NAME, event.agent_id, event.event_id),
            agent_id=event.agent_id,
            session_id=event.session_id,
            agent_type=event.agent_type,
            ts=event.ts,
            detected_at=detected_at,
            detector=NAME,
            detectors=[NAME],
            score=self.score,
            severity=severity_for(self.score),
            title=f"{event.agent_id}: new destination {new[0][1]}",
            explanation=explanation,
            contributions=contributions,
            event_ids=[event.event_id],
        )
