"""Event schema v1: the Python types of the wire contract.

The language-neutral contract is ``schemas/agent_event.v1.json`` (JSON Schema 2020-12) at
the repository root, shipped in the package as ``agentwatch/schemas/json/agent_event.v1.json``;
``tests/unit/test_schema_contract.py`` keeps the two in step field by field.

A Kafka message on ``agentwatch.events.v1`` is one event object or a JSON array of events
(a batch). Unknown top-level fields are ignored (forward compatible); wrong types, missing
required fields and out-of-range values are rejected with a reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import Meta

SCHEMA_VERSION = "1"

EventType = Literal[
    "tool_call",
    "llm_call",
    "network",
    "secret_access",
    "file_access",
    "session_start",
    "session_end",
    "metric",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

DestinationKind = Literal["host", "ip", "url", "email", "account", "user", "path"]
DESTINATION_KINDS: tuple[str, ...] = get_args(DestinationKind)

Status = Literal["ok", "error", "denied"]
STATUSES: tuple[str, ...] = get_args(Status)

# Bounds (part of the contract, mirrored in the JSON Schema).
MAX_ID = 256
MAX_NAME = 256
MAX_VALUE = 2048
MAX_DESTINATIONS = 64
MAX_MAP_ENTRIES = 64
MAX_ATTR_KEY = 128
MAX_ATTR_STRING = 1024
MAX_INT = 2**63 - 1  # counters fit a signed 64-bit column

Id = Annotated[str, Meta(min_length=1, max_length=MAX_ID)]
Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME)]
NonNegInt = Annotated[int, Meta(ge=0, le=MAX_INT)]
NonNegFloat = Annotated[float, Meta(ge=0)]
AttrKey = Annotated[str, Meta(min_length=1, max_length=MAX_ATTR_KEY)]
AttrValue = Annotated[str, Meta(max_length=MAX_ATTR_STRING)] | bool | int | float


class Destination(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where data or money goes (≙ ``server.address`` for hosts)."""

    kind: DestinationKind
    value: Annotated[str, Meta(min_length=1, max_length=MAX_VALUE)]


class Event(msgspec.Struct, frozen=True, omit_defaults=True):
    """One telemetry event of one agent (schema v1)."""

    schema_version: Literal["1"]
    event_id: Id
    ts: Annotated[datetime, Meta(tz=True)]
    agent_id: Id
    type: EventType
    agent_version: Name | None = None
    agent_type: Name | None = None
    session_id: Id | None = None
    trace_id: Annotated[str, Meta(pattern="^[0-9a-f]{32}$")] | None = None
    span_id: Annotated[str, Meta(pattern="^[0-9a-f]{16}$")] | None = None
    tool_name: Name | None = None
    tool_args: dict[str, Any] | None = None
    destinations: Annotated[list[Destination], Meta(max_length=MAX_DESTINATIONS)] | None = None
    status: Status = "ok"
    duration_ms: NonNegFloat | None = None
    bytes_in: NonNegInt | None = None
    bytes_out: NonNegInt | None = None
    model: Name | None = None
    tokens_in: NonNegInt | None = None
    tokens_out: NonNegInt | None = None
    cost_usd: NonNegFloat | None = None
    secret_name: Name | None = None
    metrics: (
        Annotated[dict[AttrKey, float], Meta(min_length=1, max_length=MAX_MAP_ENTRIES)] | None
    ) = None
    attributes: Annotated[dict[AttrKey, AttrValue], Meta(max_length=MAX_MAP_ENTRIES)] | None = None


# Fields a given event type must carry (beyond the always-required ones).
REQUIRED_BY_TYPE: dict[str, tuple[str, ...]] = {
    "tool_call": ("tool_name",),
    "secret_access": ("secret_name",),
    "metric": ("metrics",),
}

REQUIRED_FIELDS: tuple[str, ...] = ("schema_version", "event_id", "ts", "agent_id", "type")


def type_requirement_error(event: Event) -> str | None:
    """The reason ``event`` misses a field its type requires, or ``None``."""
    for field in REQUIRED_BY_TYPE.get(event.type, ()):
        if getattr(event, field) is None:
            return f"missing_field: `{field}` is required for type {event.type!r}"
    return None


_encoder = msgspec.json.Encoder()


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def encode_events(events: list[Event]) -> bytes:
    return _encoder.encode(events)
