"""Decode and validate Kafka messages of ``agentwatch.events.v1``.

Pure code: bytes in, events and rejections out. A message is one event object or a JSON
array of events of one agent. Each rejected part keeps its original bytes and a reason
code, so the worker can dead-letter it without losing anything.

>>> from datetime import datetime, timezone
>>> now = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)
>>> raw = (b'{"schema_version":"1","event_id":"e1","ts":"2026-11-24T09:59:00Z",'
...        b'"agent_id":"a","type":"network"}')
>>> result = decode_message(raw, key=b"a", limits=Limits(), now=now)
>>> [e.event_id for e in result.events], result.rejects
(['e1'], [])
>>> decode_message(b"{nope", key=None, limits=Limits(), now=now).rejects[0].reason
'bad_json'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec

from agentwatch.schemas.events import Event, type_requirement_error

# Reason codes written to the dead-letter topic (header ``agentwatch.reason``).
REASONS: dict[str, str] = {
    "bad_json": "the bytes are not valid JSON",
    "not_an_event": "the JSON is neither an event object nor an array of events",
    "empty_batch": "the JSON array holds no event",
    "oversize_message": "the Kafka message is larger than limits.max_message_bytes",
    "oversize_event": "one event is larger than limits.max_event_bytes",
    "missing_field": "a required field is absent",
    "invalid_field": "a field has the wrong type or is out of its bounds",
    "unknown_type": "`type` is not one of the event types of schema v1",
    "unsupported_schema_version": '`schema_version` is not "1"',
    "ts_in_future": "`ts` is further in the future than limits.max_future_s",
    "ts_too_old": "`ts` is older than limits.max_age_s",
    "key_mismatch": "the event's agent_id differs from the Kafka message key",
}


@dataclass(frozen=True, slots=True)
class Limits:
    max_event_bytes: int = 64 * 1024
    max_message_bytes: int = 1024 * 1024
    max_future_s: float = 24 * 3600
    max_age_s: float = 0.0  # 0 = accept any age (replay); the live worker sets one


@dataclass(frozen=True, slots=True)
class Reject:
    reason: str
    detail: str
    raw: bytes


@dataclass(slots=True)
class DecodeResult:
    events: list[Event] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


_event_decoder = msgspec.json.Decoder(Event)
_batch_decoder = msgspec.json.Decoder(list[Event])
_raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_PATH = re.compile(r"at `\$(?:\[\d+\])?\.?([A-Za-z_]*)")
# Not valid JSON for us: malformed, invalid UTF-8 inside a string, or nested deeper than
# the parser's recursion limit.
_UNPARSABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def _classify(error: msgspec.ValidationError) -> str:
    text = str(error)
    match = _PATH.search(text)
    where = match.group(1) if match else ""
    if text.startswith("Object missing required field"):
        return "missing_field"
    if where == "type" and text.startswith(("Invalid enum value", "Invalid enumeration value")):
        return "unknown_type"
    if where == "schema_version":
        return "unsupported_schema_version"
    return "invalid_field"


def _first_char(raw: bytes) -> int:
    for byte in raw:
        if byte not in b" \t\r\n":
            return byte
    return 0


def _shift(now: datetime, seconds: float) -> datetime | None:
    """``now`` moved by ``seconds``; ``None`` (no bound) past the datetime range."""
    try:
        return now + timedelta(seconds=seconds)
    except OverflowError:
        return None


class _Checker:
    __slots__ = ("hi", "key", "limits", "lo")

    def __init__(self, key: str | None, limits: Limits, now: datetime) -> None:
        self.key = key
        self.limits = limits
        self.hi = _shift(now, limits.max_future_s)
        self.lo = _shift(now, -limits.max_age_s) if limits.max_age_s > 0 else None

    def problem(self, event: Event) -> tuple[str, str] | None:
        if self.hi is not None and event.ts > self.hi:
            return "ts_in_future", f"ts {event.ts.isoformat()} is after {self.hi.isoformat()}"
        if self.lo is not None and event.ts < self.lo:
            return "ts_too_old", f"ts {event.ts.isoformat()} is before {self.lo.isoformat()}"
        missing = type_requirement_error(event)
        if missing is not None:
            return "missing_field", missing
        if self.key is not None and event.agent_id != self.key:
            return "key_mismatch", f"agent_id {event.agent_id!r} but key {self.key!r}"
        return None


def decode_message(raw: bytes, *, key: bytes | None, limits: Limits, now: datetime) -> DecodeResult:
    """Decode one Kafka message into valid events and rejected parts."""
    result = DecodeResult()
    if len(raw) > limits.max_message_bytes:
        result.rejects.append(
            Reject("oversize_message", f"{len(raw)} bytes > {limits.max_message_bytes}", raw)
        )
        return result
    checker = _Checker(key.decode("utf-8", "replace") if key else None, limits, now)
    first = _first_char(raw)
    if first == ord("["):
        _decode_batch(raw, checker, result)
    elif first == ord("{"):
        _decode_one(raw, checker, result)
    else:
        try:
            msgspec.json.decode(raw)
        except _UNPARSABLE as exc:
            result.rejects.append(Reject("bad_json", str(exc), raw))
        else:
            result.rejects.append(Reject("not_an_event", "expected an object or array", raw))
    return result


def _accept(event: Event, raw: bytes, checker: _Checker, result: DecodeResult) -> None:
    problem = checker.problem(event)
    if problem is None:
        result.events.append(event)
    else:
        result.rejects.append(Reject(problem[0], problem[1], raw))


def _decode_one(raw: bytes, checker: _Checker, result: DecodeResult) -> None:
    if len(raw) > checker.limits.max_event_bytes:
        result.rejects.append(
            Reject("oversize_event", f"{len(raw)} bytes > {checker.limits.max_event_bytes}", raw)
        )
        return
    try:
        event = _event_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        result.rejects.append(Reject(_classify(exc), str(exc), raw))
        return
    except _UNPARSABLE as exc:
        result.rejects.append(Reject("bad_json", str(exc) or type(exc).__name__, raw))
        return
    _accept(event, raw, checker, result)


def _decode_batch(raw: bytes, checker: _Checker, result: DecodeResult) -> None:
    # Fast path: the whole batch is valid in one pass.
    if len(raw) <= checker.limits.max_event_bytes:
        try:
            events = _batch_decoder.decode(raw)
        except _UNPARSABLE:
            events = None
        if events and all(checker.problem(e) is None for e in events):
            result.events.extend(events)
            return
    # Slow path: element by element, each reject keeps its own original bytes.
    try:
        parts = _raw_list_decoder.decode(raw)
    except _UNPARSABLE as exc:
        result.rejects.append(Reject("bad_json", str(exc), raw))
        return
    if not parts:
        result.rejects.append(Reject("empty_batch", "[]", raw))
        return
    for part in parts:
        element = bytes(part)
        if _first_char(element) != ord("{"):
            result.rejects.append(Reject("not_an_event", "batch element is not an object", element))
            continue
        _decode_one(element, checker, result)
