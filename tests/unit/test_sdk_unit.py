"""The SDK without a broker: batching, ids, the never-block/never-raise contract, track_tool."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from agentwatch.schemas.decode import Limits, decode_message
from agentwatch.schemas.events import Event, encode_event
from agentwatch.sdk import (
    BOOTSTRAP_ENV,
    AgentTelemetry,
    BatchAssembler,
    Destination,
    Emitter,
    as_destination,
    dest,
    new_id,
)
from agentwatch.sdk.emitter import MAX_BATCH_BYTES_LIMIT, Message
from agentwatch.sdk.ids import new_span_id, new_trace_id, ulid_at, ulid_time_ms, utc_from_ms

# Nothing listens on port 1: connecting is refused at once.
UNREACHABLE = "127.0.0.1:1"
NOW = datetime.now(UTC)


class ListSink:
    """Collects events instead of sending them."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> bool:
        self.events.append(event)
        return True


def event(agent: str = "a", **fields: Any) -> Event:
    return Event(
        schema_version="1",
        event_id=new_id(),
        ts=NOW,
        agent_id=agent,
        type=fields.pop("type", "network"),
        **fields,
    )


def decode_ok(value: bytes, key: str) -> list[Event]:
    result = decode_message(value, key=key.encode(), limits=Limits(), now=datetime.now(UTC))
    assert result.rejects == [], result.rejects
    return result.events


def wait_until(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@pytest.fixture
def telemetry() -> tuple[AgentTelemetry, ListSink]:
    sink = ListSink()
    return AgentTelemetry(sink, "agent-1", agent_version="1.0", agent_type="test"), sink


# -- batching -------------------------------------------------------------------------


def test_single_event_messages_are_plain_objects() -> None:
    assembler = BatchAssembler(max_batch=1, max_batch_bytes=1024, linger_s=10)
    part = encode_event(event("a"))
    (message,) = assembler.add("a", part, now=0.0)
    assert message == Message("a", part, 1)
    assert message.value.startswith(b"{")
    assert assembler.open_events == 0
    assert assembler.due(0.0, force=True) == []
    assert len(decode_ok(message.value, "a")) == 1


def test_batches_seal_at_max_batch_per_agent() -> None:
    assembler = BatchAssembler(max_batch=3, max_batch_bytes=512 * 1024, linger_s=10)
    sealed: list[Message] = []
    for i in range(7):
        sealed += assembler.add("a", encode_event(event("a", bytes_out=i)), now=0.0)
        sealed += assembler.add("b", encode_event(event("b", bytes_out=i)), now=0.0)
    assert [(m.key, m.events) for m in sealed] == [("a", 3), ("b", 3), ("a", 3), ("b", 3)]
    assert assembler.open_events == 2
    assert assembler.open_batches == 2
    for message in sealed:
        assert message.value.startswith(b"[")
        events = decode_ok(message.value, message.key)
        assert {e.agent_id for e in events} == {message.key}
    # Order within an agent is kept.
    a_values = [e.bytes_out for m in sealed if m.key == "a" for e in decode_ok(m.value, "a")]
    assert a_values == list(range(6))


def test_batches_split_by_bytes_and_never_exceed_the_limit() -> None:
    limit = 4096
    assembler = BatchAssembler(max_batch=1000, max_batch_bytes=limit, linger_s=10)
    parts = [
        encode_event(event("a", tool_args={"blob": "x" * (i * 37 % 900)}, type="tool_call"))
        for i in range(200)
    ]
    sealed: list[Message] = []
    for part in parts:
        sealed += assembler.add("a", part, now=0.0)
    sealed += assembler.due(0.0, force=True)
    assert len(sealed) > 1
    for message in sealed:
        assert len(message.value) <= limit
        assert message.events == len(json.loads(message.value))
    # Nothing lost, nothing duplicated, order kept.
    rebuilt = [msgspec.json.encode(item) for m in sealed for item in json.loads(m.value)]
    assert [msgspec.json.decode(p) for p in rebuilt] == [msgspec.json.decode(p) for p in parts]
    # Each sealed batch was full: adding the next event would have crossed the limit.
    for message, following in itertools.pairwise(sealed):
        first_next = json.dumps(json.loads(following.value)[0], separators=(",", ":"))
        assert len(message.value) + 1 + len(first_next.encode()) > limit


def test_exact_fit_stays_in_one_batch() -> None:
    part = b'{"k":"' + b"x" * 94 + b'"}'  # 102 bytes
    limit = 2 + 3 * len(part) + 2  # brackets + 3 parts + 2 commas
    assembler = BatchAssembler(max_batch=10, max_batch_bytes=limit, linger_s=10)
    assert assembler.add("a", part, 0.0) == []
    assert assembler.add("a", part, 0.0) == []
    assert assembler.add("a", part, 0.0) == []
    (sealed,) = assembler.add("a", part, 0.0)
    assert sealed.events == 3
    assert len(sealed.value) == limit


def test_linger_seals_batches_in_deadline_order() -> None:
    assembler = BatchAssembler(max_batch=100, max_batch_bytes=512 * 1024, linger_s=0.2)
    assert assembler.next_deadline() is None
    assembler.add("a", encode_event(event("a")), now=10.0)
    assembler.add("b", encode_event(event("b")), now=10.1)
    assembler.add("a", encode_event(event("a")), now=10.15)
    assert assembler.next_deadline() == pytest.approx(10.2)
    assert assembler.due(10.19) == []
    due = assembler.due(10.2)
    assert [(m.key, m.events) for m in due] == [("a", 2)]
    assert assembler.next_deadline() == pytest.approx(10.3)
    assert [(m.key, m.events) for m in assembler.due(10.0, force=True)] == [("b", 1)]
    assert assembler.open_events == 0


def test_assembler_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        BatchAssembler(max_batch=0, max_batch_bytes=1000, linger_s=0)
    with pytest.raises(ValueError, match="linger"):
        BatchAssembler(max_batch=1, max_batch_bytes=1000, linger_s=-1)


# -- ids ------------------------------------------------------------------------------


def test_ids_are_time_ordered_ulids() -> None:
    ms = int(NOW.timestamp() * 1000)
    ulid = ulid_at(ms)
    assert len(ulid) == 26
    assert set(ulid) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    assert ulid_time_ms(ulid) == ms
    assert ulid_at(ms - 1) < ulid_at(ms) < ulid_at(ms + 1)
    assert ulid_at(0).startswith("0000000000")
    assert ulid_at(2**48 - 1).startswith("7ZZZZZZZZZ")
    with pytest.raises(ValueError, match="range"):
        ulid_at(2**48)
    assert len({new_id() for _ in range(10_000)}) == 10_000


def test_timestamps_are_utc_milliseconds() -> None:
    ts = utc_from_ms(1_764_000_000_123)
    assert ts.tzinfo is UTC
    assert ts == datetime(2025, 11, 24, 16, 0, 0, 123_000, tzinfo=UTC)
    assert len(new_trace_id()) == 32
    assert len(new_span_id()) == 16
    assert int(new_trace_id(), 16) >= 0


# -- configuration --------------------------------------------------------------------


def test_bootstrap_comes_from_argument_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BOOTSTRAP_ENV, raising=False)
    with pytest.raises(ValueError, match=BOOTSTRAP_ENV):
        Emitter()
    monkeypatch.setenv(BOOTSTRAP_ENV, UNREACHABLE)
    with Emitter(close_at_exit=False) as emitter:
        assert emitter.bootstrap == UNREACHABLE
        assert emitter.topic == "agentwatch.events.v1"


def test_inconsistent_settings_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="max_batch_bytes"):
        Emitter(UNREACHABLE, max_batch_bytes=MAX_BATCH_BYTES_LIMIT + 1)
    with pytest.raises(ValueError, match="max_batch_bytes"):
        Emitter(UNREACHABLE, max_event_bytes=4096, max_batch_bytes=4097)
    with pytest.raises(ValueError, match="unknown KafkaProducer settings: no_such_setting"):
        Emitter(UNREACHABLE, producer_config={"no_such_setting": 1})
    with pytest.raises(ValueError, match="acks"):
        Emitter(UNREACHABLE, acks=2)


# -- never block, never raise ---------------------------------------------------------


def test_unreachable_broker_buffers_then_drops_and_counts() -> None:
    started = time.perf_counter()
    emitter = Emitter(UNREACHABLE, buffer_size=500, request_timeout_ms=1000, close_at_exit=False)
    agent = emitter.agent("agent-1")
    assert time.perf_counter() - started < 0.5  # no network in the constructor
    took: list[float] = []
    for i in range(2000):
        call_started = time.perf_counter()
        agent.tool_call("search", {"i": i}, destinations=["api.example.com"])
        took.append(time.perf_counter() - call_started)
    took.sort()
    # Blocking on the broker would cost request_timeout_ms (1 s) per call; a scheduler or
    # GC pause on a loaded machine is allowed for a few calls.
    assert took[int(len(took) * 0.99)] < 0.02, f"p99 emit took {took[int(len(took) * 0.99)]:.3f}s"
    assert took[-1] < 0.5, f"an emit took {took[-1]:.3f}s"
    stats = emitter.stats
    assert stats.enqueued == 500
    assert stats.dropped_full == 1500
    assert stats.pending == 500
    assert stats.sent == 0
    assert emitter.flush(timeout=0.2) is False
    assert emitter.close(timeout=0.2) is False  # 500 events could not be delivered
    stats = emitter.stats
    assert stats.pending == 0
    assert stats.dropped_closed == 500
    # After close: still no exception, still counted.
    assert emitter.emit(event("agent-1")) is False
    assert agent.network("example.com") is not None
    assert emitter.stats.dropped_closed == 502
    assert emitter.close(timeout=0.1) is False  # idempotent


def test_oversize_and_unencodable_events_are_dropped_and_counted() -> None:
    emitter = Emitter(UNREACHABLE, request_timeout_ms=1000, close_at_exit=False)
    agent = emitter.agent("agent-1")
    agent.tool_call("upload", {"blob": "x" * (65 * 1024)})
    emitter.emit(event(123))  # type: ignore[arg-type]  # not a string agent_id
    wait_until(lambda: emitter.stats.oversize == 1 and emitter.stats.invalid == 1)
    assert emitter.stats.pending == 0
    # Unknown argument types are sent as strings rather than dropped.
    assert agent.tool_call("t", {"when": object(), "d": timedelta(seconds=1)}) is not None
    wait_until(lambda: emitter.stats.pending == 1)
    assert emitter.stats.invalid == 1
    emitter.close(timeout=0.1)
    assert emitter.stats.dropped_closed == 1


def test_convenience_methods_never_raise(telemetry: tuple[AgentTelemetry, ListSink]) -> None:
    agent, sink = telemetry
    assert agent.metric({"cpu_pct": "high"}) is None  # type: ignore[dict-item]
    assert agent.record("network", no_such_field=1) is None
    assert agent.network(("host",)) is None  # type: ignore[arg-type]
    assert sink.events == []
    with Emitter(UNREACHABLE, close_at_exit=False) as emitter:
        assert emitter.agent("a").metric({"x": "y"}) is None  # type: ignore[dict-item]
        assert emitter.stats.invalid == 1
        assert emitter.stats.enqueued == 0


# -- the convenience API ---------------------------------------------------------------


def test_every_helper_builds_a_valid_schema_v1_event(
    telemetry: tuple[AgentTelemetry, ListSink],
) -> None:
    agent, sink = telemetry
    agent.tool_call("crm.lookup", {"id": 7}, destinations=["https://crm.example.com/c/7"])
    agent.llm_call("gpt-4o", 812, 96, 0.0031, destinations=["api.openai.com"], duration_ms=420)
    agent.network("api.stripe.com", "10.0.0.7", dest("account", "stripe:acct_1"), bytes_out=512)
    agent.secret_access("vault:kv/support/zendesk-token")
    agent.file_access("/var/data/report.csv", bytes_out=2048, attributes={"mode": "w"})
    agent.metric({"cpu_pct": 12.5, "rss_mb": 410})
    agent.record("session_start", session_id="s-1")
    assert [e.type for e in sink.events] == [
        "tool_call",
        "llm_call",
        "network",
        "secret_access",
        "file_access",
        "metric",
        "session_start",
    ]
    for ev in sink.events:
        assert ev.schema_version == "1"
        assert (ev.agent_id, ev.agent_version, ev.agent_type) == ("agent-1", "1.0", "test")
        assert ev.ts.tzinfo is not None
        assert ev.ts.microsecond % 1000 == 0
        assert abs((datetime.now(UTC) - ev.ts).total_seconds()) < 5
        assert ulid_time_ms(ev.event_id) == int(ev.ts.timestamp() * 1000)
        (decoded,) = decode_ok(encode_event(ev), "agent-1")
        assert decoded == ev
    network = sink.events[2]
    assert network.destinations == [
        Destination("host", "api.stripe.com"),
        Destination("ip", "10.0.0.7"),
        Destination("account", "stripe:acct_1"),
    ]
    assert sink.events[4].destinations == [Destination("path", "/var/data/report.csv")]
    assert sink.events[5].metrics == {"cpu_pct": 12.5, "rss_mb": 410.0}
    assert (sink.events[1].model, sink.events[1].cost_usd) == ("gpt-4o", 0.0031)


def test_destination_helpers() -> None:
    assert dest("email", "ap@customer.example") == Destination("email", "ap@customer.example")
    cases = {
        "https://upload.example.com/v1": "url",
        "api.example.com": "host",
        "api.example.com:443": "host",
        "192.168.1.4": "ip",
        "2001:db8::1": "ip",
        "ap@customer.example": "email",
        "/etc/passwd": "path",
        "./out.txt": "path",
        "C:\\Users\\x": "path",
        "1.2.3": "host",
    }
    for text, kind in cases.items():
        assert as_destination(text) == Destination(kind, text), text  # type: ignore[arg-type]
    assert as_destination(("user", "bob")) == Destination("user", "bob")


def test_session_sets_ids_sums_cost_and_restores(
    telemetry: tuple[AgentTelemetry, ListSink],
) -> None:
    agent, sink = telemetry
    assert agent.session_id is None
    with agent.session(trace_id="ab" * 16) as session:
        assert agent.session_id == session.session_id
        agent.llm_call("m", 1, 1, cost_usd=0.25)
        agent.tool_call("pay", cost_usd=1.5)
        with agent.session("inner") as inner:
            agent.network("x.example.com")
            assert inner.session_id == "inner"
        agent.network("y.example.com")
    assert agent.session_id is None
    start, llm, tool, inner_start, inner_net, inner_end, net, end = sink.events
    assert (start.type, end.type) == ("session_start", "session_end")
    outer_id = session.session_id
    assert {e.session_id for e in (start, llm, tool, net, end)} == {outer_id}
    assert {e.session_id for e in (inner_start, inner_net, inner_end)} == {"inner"}
    assert start.trace_id == llm.trace_id == end.trace_id == "ab" * 16
    assert end.cost_usd == pytest.approx(1.75)
    assert end.status == "ok"
    assert end.duration_ms is not None
    assert end.duration_ms >= 0
    assert session.cost_usd == pytest.approx(1.75)


def test_session_records_failure_and_reraises(telemetry: tuple[AgentTelemetry, ListSink]) -> None:
    agent, sink = telemetry
    boom = RuntimeError("boom")
    with pytest.raises(RuntimeError) as raised, agent.session("s"):
        raise boom
    assert raised.value is boom
    end = sink.events[-1]
    assert (end.type, end.status) == ("session_end", "error")
    assert end.attributes == {"error.type": "RuntimeError"}


def test_default_session_id_is_used_outside_sessions() -> None:
    sink = ListSink()
    agent = AgentTelemetry(sink, "a", session_id="run-42")
    agent.network("x.example.com")
    with agent.session("other"):
        agent.network("y.example.com")
    assert [e.session_id for e in sink.events] == ["run-42", "other", "other", "other"]


# -- track_tool -----------------------------------------------------------------------


def test_track_tool_records_duration_destinations_and_bytes(
    telemetry: tuple[AgentTelemetry, ListSink],
) -> None:
    agent, sink = telemetry
    with agent.track_tool("send_invoice", {"customer": "c-42"}, destinations=["a.example"]) as call:
        time.sleep(0.02)
        call.destination("email", "ap@customer.example")
        call.add_bytes(bytes_in=10, bytes_out=300).add_bytes(bytes_out=12)
        call.set_attribute("invoice", "inv-1")
        call.cost_usd = 0.5
    (ev,) = sink.events
    assert ev is call.event
    assert (ev.type, ev.tool_name, ev.status) == ("tool_call", "send_invoice", "ok")
    assert ev.tool_args == {"customer": "c-42"}
    assert ev.duration_ms is not None
    assert 20 <= ev.duration_ms < 2000
    assert ev.destinations == [
        Destination("host", "a.example"),
        Destination("email", "ap@customer.example"),
    ]
    assert (ev.bytes_in, ev.bytes_out, ev.cost_usd) == (10, 312, 0.5)
    assert ev.attributes == {"invoice": "inv-1"}
    decode_ok(encode_event(ev), "agent-1")


def test_track_tool_reraises_the_agents_exception_unchanged(
    telemetry: tuple[AgentTelemetry, ListSink],
) -> None:
    agent, sink = telemetry
    error = ValueError("bad customer")

    def tool() -> None:
        raise error

    with pytest.raises(ValueError, match="bad customer") as raised, agent.track_tool("lookup"):
        tool()
    assert raised.value is error
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None
    assert raised.traceback[-1].name == "tool"  # raised where the agent raised it
    (ev,) = sink.events
    assert ev.status == "error"
    assert ev.attributes == {"error.type": "ValueError"}
    assert ev.duration_ms is not None


def test_track_tool_permission_error_is_denied(telemetry: tuple[AgentTelemetry, ListSink]) -> None:
    agent, sink = telemetry

    def delete_repo() -> None:
        with agent.track_tool("delete_repo") as call:
            call.destination("account", "github:acme")
            raise PermissionError("policy says no")

    with pytest.raises(PermissionError, match="policy says no"):
        delete_repo()
    with agent.track_tool("refund") as call:
        call.status = "denied"  # refused without raising
    with pytest.raises(KeyboardInterrupt), agent.track_tool("long"):
        raise KeyboardInterrupt
    assert [e.status for e in sink.events] == ["denied", "denied", "error"]
    assert sink.events[0].destinations == [Destination("account", "github:acme")]
    assert sink.events[2].attributes == {"error.type": "KeyboardInterrupt"}


def test_async_track_tool_and_session(telemetry: tuple[AgentTelemetry, ListSink]) -> None:
    agent, sink = telemetry

    async def run() -> None:
        async with agent.session("async-s"):
            async with agent.track_tool("fetch") as call:
                await asyncio.sleep(0.01)
                call.add_destinations("https://example.com/x")
            with pytest.raises(TimeoutError):
                async with agent.track_tool("slow"):
                    raise TimeoutError

    asyncio.run(run())
    types = [(e.type, e.tool_name, e.status, e.session_id) for e in sink.events]
    assert types == [
        ("session_start", None, "ok", "async-s"),
        ("tool_call", "fetch", "ok", "async-s"),
        ("tool_call", "slow", "error", "async-s"),
        ("session_end", None, "ok", "async-s"),
    ]


def test_track_tool_never_raises_from_telemetry() -> None:
    class BrokenSink:
        def emit(self, event: Event) -> None:
            raise RuntimeError("sink exploded")

    agent = AgentTelemetry(BrokenSink(), "a")
    with agent.track_tool("t") as call:
        call.add_destinations(object())  # type: ignore[arg-type]
    assert call.event is None
    with agent.session():
        agent.network("x")
