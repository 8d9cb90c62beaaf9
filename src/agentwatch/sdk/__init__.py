"""The agentwatch SDK: what an agent team adds to its agent.

>>> from agentwatch.sdk import Emitter
>>> callable(Emitter.agent)
True

An :class:`Emitter` sends schema-v1 events to Kafka (``agentwatch.events.v1``) from a
background thread, batched per agent; :meth:`Emitter.agent` gives an
:class:`AgentTelemetry` bound to one agent with one method per event type and the
context managers ``session()`` and ``track_tool()``. Nothing in the agent's code path
blocks on the network or raises because of telemetry. See ``docs/sdk.md``.
"""

from agentwatch.schemas.events import Destination, Event
from agentwatch.sdk.emitter import (
    BOOTSTRAP_ENV,
    DEFAULT_TOPIC,
    AgentTelemetry,
    BatchAssembler,
    DestinationLike,
    Emitter,
    EmitterStats,
    EventSink,
    Session,
    ToolCall,
    as_destination,
    dest,
)
from agentwatch.sdk.ids import new_id, new_span_id, new_trace_id

__all__ = [
    "BOOTSTRAP_ENV",
    "DEFAULT_TOPIC",
    "AgentTelemetry",
    "BatchAssembler",
    "Destination",
    "DestinationLike",
    "Emitter",
    "EmitterStats",
    "Event",
    "EventSink",
    "Session",
    "ToolCall",
    "as_destination",
    "dest",
    "new_id",
    "new_span_id",
    "new_trace_id",
]
