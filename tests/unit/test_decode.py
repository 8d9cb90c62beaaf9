"""Unit tests of :func:`agentwatch.schemas.decode.decode_message`."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentwatch.schemas.decode import REASONS, DecodeResult, Limits, decode_message
from agentwatch.schemas.events import (
    MAX_ATTR_KEY,
    MAX_ATTR_STRING,
    MAX_DESTINATIONS,
    MAX_ID,
    MAX_INT,
    MAX_MAP_ENTRIES,
    MAX_NAME,
    MAX_VALUE,
    REQUIRED_BY_TYPE,
    REQUIRED_FIELDS,
    Destination,
)

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
KEY = b"agent-1"


def ev(**overrides: Any) -> dict[str, Any]:
    """A minimal valid event; ``None`` values remove the field."""
    doc: dict[str, Any] = {
        "schema_version": "1",
        "event_id": "e1",
        "ts": "2026-11-24T09:59:00Z",
        "agent_id": KEY.decode(),
        "type": "network",
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def enc(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def decode(
    raw: bytes,
    *,
    key: bytes | None = KEY,
    limits: Limits | None = None,
    now: datetime = NOW,
) -> DecodeResult:
    return decode_message(raw, key=key, limits=limits or Limits(), now=now)


def reasons(result: DecodeResult) -> list[str]:
    return [r.reason for r in result.rejects]


def only_reject(raw: bytes, **kwargs: Any) -> str:
    result = decode(raw, **kwargs)
    assert result.events == []
    assert len(result.rejects) == 1, result.rejects
    return result.rejects[0].reason


# --- accepted messages -----------------------------------------------------------------


def test_single_event() -> None:
    raw = enc(
        ev(
            type="tool_call",
            tool_name="search",
            tool_args={"q": "refund", "n": [1, 2]},
            destinations=[{"kind": "host", "value": "api.example.com"}],
            bytes_out=12,
            duration_ms=3,
            attributes={"a": "x", "b": 1, "c": 1.5, "d": True},
        )
    )
    result = decode(raw)
    assert result.rejects == []
    [event] = result.events
    assert event.event_id == "e1"
    assert event.ts == datetime(2026, 11, 24, 9, 59, tzinfo=UTC)
    assert event.ts.tzinfo is not None
    assert event.tool_args == {"q": "refund", "n": [1, 2]}
    assert event.destinations == [Destination(kind="host", value="api.example.com")]
    assert event.status == "ok"
    assert event.duration_ms == 3.0
    assert event.attributes == {"a": "x", "b": 1, "c": 1.5, "d": True}


@pytest.mark.parametrize("key", [None, b""])
def test_no_key_skips_the_key_check(key: bytes | None) -> None:
    result = decode(enc(ev(agent_id="someone-else")), key=key)
    assert reasons(result) == []
    assert len(result.events) == 1


def test_batch() -> None:
    raw = enc([ev(event_id=f"e{i}") for i in range(5)])
    result = decode(raw)
    assert result.rejects == []
    assert [e.event_id for e in result.events] == [f"e{i}" for i in range(5)]


def test_unknown_top_level_fields_are_ignored() -> None:
    result = decode(enc(ev(added_in_v1_7={"nested": [1, 2]}, other="x")))
    assert reasons(result) == []
    assert len(result.events) == 1


def test_null_optional_fields_are_absent() -> None:
    doc = ev()
    doc.update(agent_version=None, tool_args=None, destinations=None, bytes_in=None)
    [event] = decode(enc(doc)).events
    assert event.agent_version is None
    assert event.destinations is None


def test_null_status_is_invalid() -> None:
    doc = ev()
    doc["status"] = None  # status has a default, not a null
    assert only_reject(enc(doc)) == "invalid_field"


@pytest.mark.parametrize("prefix", [b" ", b"\n", b"\r\n\t  ", b" \n" * 100])
def test_whitespace_before_json(prefix: bytes) -> None:
    assert len(decode(prefix + enc(ev()) + b"\n").events) == 1
    assert len(decode(prefix + enc([ev(), ev(event_id="e2")]) + b" ").events) == 2


def test_whitespace_inside_a_batch_is_not_part_of_an_element() -> None:
    good = enc(ev())
    raw = b"[ \n" + good + b" ,\n\t 5 \n]"
    result = decode(raw)
    assert len(result.events) == 1
    assert [(r.reason, r.raw) for r in result.rejects] == [("not_an_event", b"5")]


def test_ts_with_offset_is_normalised_for_comparison() -> None:
    # 24 h ahead, written in +01:00: exactly on the bound, so accepted.
    raw = enc(ev(ts="2026-11-25T11:00:00+01:00"))
    assert reasons(decode(raw)) == []
    raw = enc(ev(ts="2026-11-25T11:00:01+01:00"))
    assert only_reject(raw) == "ts_in_future"


# --- batches with bad parts ------------------------------------------------------------


def test_batch_with_one_bad_element_keeps_the_good_ones() -> None:
    good1 = enc(ev(event_id="g1"))
    bad = enc(ev(event_id=None))
    good2 = enc(ev(event_id="g2"))
    raw = b"[" + good1 + b", " + bad + b",\n" + good2 + b"]"
    result = decode(raw)
    assert [e.event_id for e in result.events] == ["g1", "g2"]
    [reject] = result.rejects
    assert reject.reason == "missing_field"
    assert reject.raw == bad  # the element's own bytes, not the whole message
    assert "event_id" in reject.detail


def test_batch_with_an_element_failing_a_runtime_check() -> None:
    future = enc(ev(event_id="f", ts="2999-01-01T00:00:00Z"))
    other = enc(ev(event_id="o", agent_id="other"))
    raw = b"[" + enc(ev(event_id="g")) + b"," + future + b"," + other + b"]"
    result = decode(raw)
    assert [e.event_id for e in result.events] == ["g"]
    assert [(r.reason, r.raw) for r in result.rejects] == [
        ("ts_in_future", future),
        ("key_mismatch", other),
    ]


def test_batch_elements_that_are_not_objects() -> None:
    raw = b'[5, "x", null, [1], true, ' + enc(ev()) + b"]"
    result = decode(raw)
    assert len(result.events) == 1
    assert [(r.reason, r.raw) for r in result.rejects] == [
        ("not_an_event", b"5"),
        ("not_an_event", b'"x"'),
        ("not_an_event", b"null"),
        ("not_an_event", b"[1]"),
        ("not_an_event", b"true"),
    ]


def test_batch_with_an_oversize_element() -> None:
    limits = Limits(max_event_bytes=1024)
    big = enc(ev(event_id="big", attributes={"pad": "x" * 1000}))
    assert len(big) > 1024
    raw = b"[" + enc(ev(event_id="small")) + b"," + big + b"]"
    result = decode(raw, limits=limits)
    assert [e.event_id for e in result.events] == ["small"]
    assert [(r.reason, r.raw) for r in result.rejects] == [("oversize_event", big)]


def test_batch_larger_than_one_event_limit_is_fine() -> None:
    limits = Limits(max_event_bytes=512)
    raw = enc([ev(event_id=f"e{i}") for i in range(50)])
    assert len(raw) > 512
    result = decode(raw, limits=limits)
    assert result.rejects == []
    assert len(result.events) == 50


@pytest.mark.parametrize("raw", [b"[]", b" [ ] ", b"[\n]"])
def test_empty_batch(raw: bytes) -> None:
    assert only_reject(raw) == "empty_batch"


def test_malformed_batch_is_rejected_whole() -> None:
    raw = b"[" + enc(ev()) + b", {nope}]"
    result = decode(raw)
    assert result.events == []
    assert [(r.reason, r.raw) for r in result.rejects] == [("bad_json", raw)]


# --- every reason code -----------------------------------------------------------------

REASON_CASES: dict[str, tuple[bytes, dict[str, Any]]] = {
    "bad_json": (b'{"schema_version": "1", "event_id": ', {}),
    "not_an_event": (b'"hello"', {}),
    "empty_batch": (b"[]", {}),
    "oversize_message": (enc(ev()), {"limits": Limits(max_message_bytes=16)}),
    "oversize_event": (enc(ev()), {"limits": Limits(max_event_bytes=16)}),
    "missing_field": (enc(ev(ts=None)), {}),
    "invalid_field": (enc(ev(bytes_out=-1)), {}),
    "unknown_type": (enc(ev(type="file_write")), {}),
    "unsupported_schema_version": (enc(ev(schema_version="2")), {}),
    "ts_in_future": (enc(ev(ts="2999-01-01T00:00:00Z")), {}),
    "ts_too_old": (enc(ev(ts="2020-01-01T00:00:00Z")), {"limits": Limits(max_age_s=86400)}),
    "key_mismatch": (enc(ev()), {"key": b"another-agent"}),
}


def test_reason_table_is_complete() -> None:
    assert set(REASON_CASES) == set(REASONS)
    assert all(REASONS.values())


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_each_reason_is_reachable(reason: str) -> None:
    raw, kwargs = REASON_CASES[reason]
    result = decode(raw, **kwargs)
    assert result.events == []
    [reject] = result.rejects
    assert reject.reason == reason
    assert reject.raw == raw
    assert reject.detail


# --- bad JSON and garbage --------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{nope",
        b"",
        b"   ",
        b"\n\t",
        b"[1,",
        b"{",
        b"nul",
        enc(ev()) + b" trailing",
        enc(ev()) + b"}",
        enc([ev()]) + b"]",
        b"\xff\xfe\x00\x01",
        b"\x00" * 10,
        b"\xef\xbb\xbf" + enc(ev()),  # a UTF-8 byte-order mark is not JSON
        b"{'single': 'quotes'}",
        b'{"schema_version": NaN}',
    ],
)
def test_bad_json(raw: bytes) -> None:
    assert only_reject(raw) == "bad_json"


def test_invalid_utf8_inside_a_string() -> None:
    raw = enc(ev(event_id="PLACEHOLDER")).replace(b"PLACEHOLDER", b"\xff\xfe")
    assert only_reject(raw) == "bad_json"
    batch = b"[" + enc(ev(event_id="ok")) + b"," + raw + b"]"
    result = decode(batch)
    assert [e.event_id for e in result.events] == ["ok"]
    assert [(r.reason, r.raw) for r in result.rejects] == [("bad_json", raw)]


@pytest.mark.parametrize("raw", [b'"hello"', b"42", b"-1.5e3", b"null", b"true", b"false"])
def test_not_an_event(raw: bytes) -> None:
    assert only_reject(raw) == "not_an_event"


def test_random_garbage_never_raises() -> None:
    rng = random.Random(20261124)
    valid = enc([ev(event_id=f"e{i}", tool_args={"q": [1, {"x": None}]}) for i in range(3)])
    for _ in range(3000):
        raw = bytearray(valid)
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            pos = rng.randrange(len(raw))
            if op < 0.4:
                raw[pos] = rng.randrange(256)
            elif op < 0.7:
                del raw[pos]
            else:
                raw.insert(pos, rng.choice(b'{}[]",:0\\ \xff'))
        result = decode(bytes(raw))
        assert len(result.events) + len(result.rejects) >= 1
        assert all(r.reason in REASONS for r in result.rejects)
    for _ in range(500):
        noise = bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
        result = decode(noise)
        assert all(r.reason in REASONS for r in result.rejects)


# --- sizes -----------------------------------------------------------------------------


def test_oversize_message_boundary() -> None:
    raw = enc(ev())
    assert reasons(decode(raw, limits=Limits(max_message_bytes=len(raw)))) == []
    assert only_reject(raw, limits=Limits(max_message_bytes=len(raw) - 1)) == "oversize_message"


def test_oversize_message_is_checked_before_parsing() -> None:
    raw = b"x" * 2048
    result = decode(raw, limits=Limits(max_message_bytes=1024))
    assert [(r.reason, r.raw) for r in result.rejects] == [("oversize_message", raw)]


def test_default_message_limit_is_one_mib() -> None:
    pad = "x" * 1000
    batch = [ev(event_id=f"e{i}", attributes={"pad": pad}) for i in range(1100)]
    raw = enc(batch)
    assert len(raw) > 1024 * 1024
    assert only_reject(raw) == "oversize_message"


def test_oversize_event_boundary() -> None:
    raw = enc(ev())
    assert reasons(decode(raw, limits=Limits(max_event_bytes=len(raw)))) == []
    assert only_reject(raw, limits=Limits(max_event_bytes=len(raw) - 1)) == "oversize_event"


def test_default_event_limit_is_64_kib() -> None:
    # Within every field bound, but too big in total.
    attrs = {f"k{i}": "x" * MAX_ATTR_STRING for i in range(MAX_MAP_ENTRIES)}
    raw = enc(ev(attributes=attrs))
    assert len(raw) > 64 * 1024
    assert only_reject(raw) == "oversize_event"


# --- fields ----------------------------------------------------------------------------


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_missing_required_field(field: str) -> None:
    assert only_reject(enc(ev(**{field: None}))) == "missing_field"


@pytest.mark.parametrize(("event_type", "fields"), sorted(REQUIRED_BY_TYPE.items()))
def test_missing_field_required_by_type(event_type: str, fields: tuple[str, ...]) -> None:
    for field in fields:
        result = decode(enc(ev(type=event_type)))
        assert reasons(result) == ["missing_field"]
        assert field in result.rejects[0].detail
        doc = ev(type=event_type)
        doc[field] = None  # explicit null counts as missing
        assert only_reject(enc(doc)) == "missing_field"


def test_missing_field_inside_a_destination() -> None:
    assert only_reject(enc(ev(destinations=[{"kind": "host"}]))) == "missing_field"


@pytest.mark.parametrize(
    "overrides",
    [
        {"event_id": ""},
        {"event_id": "x" * (MAX_ID + 1)},
        {"event_id": 7},
        {"agent_id": "a" * (MAX_ID + 1)},
        {"session_id": ""},
        {"agent_version": "v" * (MAX_NAME + 1)},
        {"agent_type": ""},
        {"ts": "2026-11-24T09:59:00"},
        {"ts": "2026-11-24"},
        {"ts": "yesterday"},
        {"ts": 1764000000},
        {"ts": "2026-13-01T00:00:00Z"},
        {"type": 5},
        {"status": "timeout"},
        {"status": "OK"},
        {"bytes_out": -1},
        {"bytes_in": 1.5},
        {"bytes_in": "12"},
        {"bytes_in": MAX_INT + 1},
        {"bytes_in": 10**30},
        {"tokens_in": -3},
        {"tokens_out": True},
        {"duration_ms": -0.5},
        {"cost_usd": -0.01},
        {"duration_ms": "fast"},
        {"trace_id": "4BF92F3577B34DA6A3CE929D0E0E4736"},
        {"trace_id": "4bf92f3577b34da6"},
        {"span_id": "00f067aa0ba902b"},
        {"tool_args": [1, 2]},
        {"tool_args": "q=1"},
        {"destinations": {"kind": "host", "value": "x"}},
        {"destinations": [{"kind": "domain", "value": "x"}]},
        {"destinations": [{"kind": "host", "value": ""}]},
        {"destinations": [{"kind": "host", "value": "x" * (MAX_VALUE + 1)}]},
        {"destinations": [{"kind": "host", "value": "x", "port": 443}]},
        {"destinations": [{"kind": "host", "value": "x"}] * (MAX_DESTINATIONS + 1)},
        {"type": "metric", "metrics": {}},
        {"type": "metric", "metrics": {"m": "high"}},
        {"type": "metric", "metrics": {"": 1}},
        {"type": "metric", "metrics": {f"m{i}": 1 for i in range(MAX_MAP_ENTRIES + 1)}},
        {"attributes": {"k": "x" * (MAX_ATTR_STRING + 1)}},
        {"attributes": {"k" * (MAX_ATTR_KEY + 1): 1}},
        {"attributes": {"k": {"nested": 1}}},
        {"attributes": {"k": [1]}},
        {"attributes": {"k": None}},
        {"attributes": {f"k{i}": 1 for i in range(MAX_MAP_ENTRIES + 1)}},
        {"type": "tool_call", "tool_name": ""},
        {"type": "secret_access", "secret_name": 42},
    ],
    ids=lambda o: ",".join(o),
)
def test_invalid_field(overrides: dict[str, Any]) -> None:
    raw = enc(ev(**overrides))
    result = decode(raw)
    assert result.events == []
    assert [(r.reason, r.raw) for r in result.rejects] == [("invalid_field", raw)]


@pytest.mark.parametrize(
    "overrides",
    [
        {"event_id": "x" * MAX_ID},
        {"agent_version": "v" * MAX_NAME},
        {"bytes_in": MAX_INT, "bytes_out": 0, "tokens_in": MAX_INT},
        {"duration_ms": 0, "cost_usd": 0.0},
        {
            "destinations": [{"kind": "url", "value": "x" * MAX_VALUE}]
            + [{"kind": "ip", "value": "10.0.0.1"}] * (MAX_DESTINATIONS - 1)
        },
        {"attributes": {f"k{i}": "x" * MAX_ATTR_STRING for i in range(8)}},
        {"attributes": {"k" * MAX_ATTR_KEY: ""}},
        {"type": "metric", "metrics": {f"m{i}": -1.5 for i in range(MAX_MAP_ENTRIES)}},
        {"ts": "2026-11-24T09:59:00.123456789Z"},
        {"ts": "2026-11-24T05:59:00-04:00"},
        {"tool_args": {"deep": [[[[{"a": [1.5e300, -(10**30), None, True]}]]]]}},
        {"status": "denied"},
        {"status": "error"},
    ],
    ids=lambda o: ",".join(o),
)
def test_values_on_the_bounds_are_accepted(overrides: dict[str, Any]) -> None:
    result = decode(enc(ev(**overrides)))
    assert result.rejects == []
    assert len(result.events) == 1


@pytest.mark.parametrize("value", ["file_write", "TOOL_CALL", "", "tool-call"])
def test_unknown_type(value: str) -> None:
    assert only_reject(enc(ev(type=value))) == "unknown_type"


@pytest.mark.parametrize("value", ["2", "1.0", "", "v1", 1, 1.0, None])
def test_unsupported_schema_version(value: Any) -> None:
    doc = ev()
    doc["schema_version"] = value
    assert only_reject(enc(doc)) == "unsupported_schema_version"


# --- time bounds -----------------------------------------------------------------------


def at(delta: timedelta) -> bytes:
    return enc(ev(ts=(NOW + delta).isoformat()))


def test_ts_in_future_default_bound_is_24_hours() -> None:
    assert reasons(decode(at(timedelta(hours=24)))) == []
    assert only_reject(at(timedelta(hours=24, seconds=1))) == "ts_in_future"


def test_ts_in_future_configured_bound() -> None:
    limits = Limits(max_future_s=60)
    assert reasons(decode(at(timedelta(seconds=60)), limits=limits)) == []
    assert only_reject(at(timedelta(seconds=61)), limits=limits) == "ts_in_future"
    strict = Limits(max_future_s=0)
    assert reasons(decode(at(timedelta(0)), limits=strict)) == []
    assert only_reject(at(timedelta(microseconds=1)), limits=strict) == "ts_in_future"


def test_ts_too_old_only_with_max_age() -> None:
    ancient = enc(ev(ts="1970-01-01T00:00:00Z"))
    assert reasons(decode(ancient, limits=Limits(max_age_s=0))) == []  # replay: any age
    limits = Limits(max_age_s=3600)
    assert reasons(decode(at(-timedelta(seconds=3600)), limits=limits)) == []
    assert only_reject(at(-timedelta(seconds=3601)), limits=limits) == "ts_too_old"
    assert only_reject(ancient, limits=limits) == "ts_too_old"


def test_ts_extremes_do_not_crash() -> None:
    for ts in ("0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00"):
        result = decode(enc(ev(ts=ts)), limits=Limits(max_age_s=1))
        assert len(result.events) + len(result.rejects) == 1


@pytest.mark.parametrize("seconds", [1e12, 1e15, 1e300, float("inf")])
def test_huge_time_limits_mean_no_bound(seconds: float) -> None:
    # Bounds past the range of datetime must not overflow: they simply do not bind.
    limits = Limits(max_future_s=seconds, max_age_s=seconds)
    for ts in ("0001-01-01T00:00:00Z", "2026-11-24T09:59:00Z", "9999-12-31T23:59:59Z"):
        result = decode(enc(ev(ts=ts)), limits=limits)
        assert reasons(result) == [], ts
    assert reasons(decode(enc(ev(ts="9999-12-31T23:59:59Z")), limits=Limits(max_age_s=seconds)))


# --- key -------------------------------------------------------------------------------


def test_key_mismatch() -> None:
    raw = enc(ev(agent_id="agent-2"))
    result = decode(raw, key=b"agent-1")
    assert [(r.reason, r.raw) for r in result.rejects] == [("key_mismatch", raw)]
    assert "agent-2" in result.rejects[0].detail


def test_key_that_is_not_utf8_does_not_crash() -> None:
    assert only_reject(enc(ev()), key=b"\xff\xfe") == "key_mismatch"


def test_key_check_runs_after_field_checks() -> None:
    raw = enc(ev(agent_id="agent-2", bytes_in=-1))
    assert only_reject(raw, key=b"agent-1") == "invalid_field"


# --- hostile shapes --------------------------------------------------------------------

BIG = Limits(max_event_bytes=10**7, max_message_bytes=10**7)


@pytest.mark.parametrize("depth", [10, 100_000])
def test_deeply_nested_tool_args(depth: int) -> None:
    nested = b'{"a":' * depth + b"1" + b"}" * depth
    raw = enc(ev(tool_args={"x": "PLACEHOLDER"})).replace(b'"PLACEHOLDER"', nested)
    result = decode(raw, limits=BIG)
    if depth == 10:
        assert reasons(result) == []
    else:
        assert reasons(result) == ["bad_json"]


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b"[" * 100_000,
        b"{" * 100_000,
        b'{"a":' * 100_000,
        b"[" + b"[" * 100_000 + b"]" * 100_000 + b"," + enc(ev()) + b"]",
    ],
    ids=["arrays", "open-arrays", "open-objects", "open-members", "batch-element"],
)
def test_deep_nesting_is_rejected_not_raised(raw: bytes) -> None:
    for limits in (BIG, Limits(max_event_bytes=64, max_message_bytes=10**7)):
        result = decode(raw, limits=limits)
        assert result.rejects
        assert all(r.reason in REASONS for r in result.rejects)


@pytest.mark.parametrize(
    ("field", "literal"),
    [
        ("bytes_in", b"1" + b"0" * 5000),
        ("bytes_in", b"-" + b"9" * 40),
        ("duration_ms", b"1e400"),
        ("cost_usd", b"-1e400"),
        ("duration_ms", b"1" + b"0" * 5000),
        ("tool_args", b'{"n": 1' + b"0" * 5000 + b"}"),
        ("attributes", b'{"n": 1' + b"0" * 5000 + b"}"),
        ("tool_args", b'{"n": 1e999}'),
    ],
)
def test_huge_numbers_are_invalid_fields(field: str, literal: bytes) -> None:
    raw = enc(ev(**{field: "PLACEHOLDER"})).replace(b'"PLACEHOLDER"', literal)
    assert only_reject(raw) == "invalid_field"


def test_tiny_and_negative_zero_numbers_are_accepted() -> None:
    raw = enc(ev(duration_ms="D", tool_args={"n": "N"}))
    raw = raw.replace(b'"D"', b"-0.0").replace(b'"N"', b"1e-99999")
    [event] = decode(raw).events
    assert event.duration_ms == 0.0
    assert event.tool_args == {"n": 0.0}


def test_many_small_elements_in_a_batch() -> None:
    raw = b"[" + b",".join([b"1"] * 10_000) + b"]"
    result = decode(raw)
    assert result.events == []
    assert reasons(result) == ["not_an_event"] * 10_000
