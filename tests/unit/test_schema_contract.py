"""The JSON Schemas in ``schemas/`` and the Python types describe the same contract.

Field by field: names, required sets, enums, bounds and type-conditional requirements are
compared with the msgspec Structs; every golden example is checked against both the JSON
Schema and the decoder; the package copies must equal the root copies byte for byte.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]
from referencing import Registry, Resource

from agentwatch.schemas.anomaly import SEVERITIES, Anomaly, decode_anomaly, encode_anomaly
from agentwatch.schemas.decode import REASONS, Limits, decode_message
from agentwatch.schemas.events import (
    DESTINATION_KINDS,
    EVENT_TYPES,
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
    STATUSES,
    Destination,
    Event,
    encode_event,
)
from agentwatch.schemas.resources import SCHEMA_NAMES, schema_json, schema_text

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "schemas"
PACKAGE_SCHEMA_DIR = ROOT / "src" / "agentwatch" / "schemas" / "json"
EXAMPLES = SCHEMA_DIR / "examples"
INVALID = EXAMPLES / "invalid"

# Every example event belongs to this agent; it is the Kafka key used to decode them.
EXAMPLE_KEY = b"support-bot-7"
# Clock and limits for the invalid examples (the valid ones decode at their own ts).
INVALID_NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
INVALID_LIMITS = Limits(max_age_s=30 * 24 * 3600)
# Reasons that depend on the clock, the Kafka key or byte sizes: the JSON Schema cannot
# see them, so their examples are schema-valid and only the decoder rejects them.
RUNTIME_ONLY = frozenset(
    {"ts_in_future", "ts_too_old", "key_mismatch", "oversize_event", "oversize_message"}
)
# Reasons without a golden file (they need megabytes); covered in test_decode.py.
SIZE_REASONS = frozenset({"oversize_event", "oversize_message"})

VALID_EVENT_FILES = sorted(p for p in EXAMPLES.glob("*.json") if p.stem in EVENT_TYPES)
INVALID_FILES = sorted(p for p in INVALID.iterdir() if p.is_file())


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


EVENT_SCHEMA: dict[str, Any] = _load(SCHEMA_DIR / "agent_event.v1.json")
ANOMALY_SCHEMA: dict[str, Any] = _load(SCHEMA_DIR / "anomaly.v1.json")


def _validator(schema: dict[str, Any]) -> Any:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _batch_validator() -> Any:
    registry: Registry[Any] = Registry().with_resource(
        EVENT_SCHEMA["$id"], Resource.from_contents(EVENT_SCHEMA)
    )
    return Draft202012Validator(
        {"$ref": EVENT_SCHEMA["$id"] + "#/$defs/batch"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def message_schema_errors(doc: Any) -> list[str]:
    """Schema errors of a Kafka message: one event, or a batch per ``$defs/batch``."""
    validator = _batch_validator() if isinstance(doc, list) else _validator(EVENT_SCHEMA)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


# --- canonical forms: msgspec types and JSON Schema nodes reduced to the same shape -----

_KEYWORDS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "string": ("minLength", "maxLength", "pattern", "format"),
    "integer": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"),
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"),
    "array": ("items", "minItems", "maxItems"),
    "object": (
        "properties",
        "required",
        "additionalProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
    ),
    "boolean": (),
    "null": (),
}
_ANNOTATIONS = frozenset({"description", "default", "title", "$comment", "examples"})
_STRUCTURAL = frozenset({"type", "enum", "const", "anyOf"})
_KNOWN = _ANNOTATIONS | _STRUCTURAL | {k for ks in _KEYWORDS_BY_TYPE.values() for k in ks}

Canon = list[dict[str, Any]]


def _sorted_alternatives(alternatives: Canon) -> Canon:
    kinds = {json.dumps(a, sort_keys=True) for a in alternatives}
    # A plain integer next to a plain number adds nothing (JSON has one number type).
    if '{"type": "number"}' in kinds:
        kinds.discard('{"type": "integer"}')
    return [json.loads(k) for k in sorted(kinds)]


def canon_schema(node: dict[str, Any]) -> Canon:
    """A JSON Schema node as a sorted list of alternatives, annotations dropped."""
    unknown = set(node) - _KNOWN
    assert not unknown, f"keywords the contract test does not compare: {unknown}"
    if "anyOf" in node:
        return _sorted_alternatives([a for sub in node["anyOf"] for a in canon_schema(sub)])
    if "const" in node:
        return [{"enum": [node["const"]]}]
    if "enum" in node:
        return [{"enum": sorted(node["enum"])}]
    types = node["type"] if isinstance(node["type"], list) else [node["type"]]
    alternatives: Canon = []
    for kind in types:
        alt: dict[str, Any] = {"type": kind}
        for keyword in _KEYWORDS_BY_TYPE[kind]:
            if keyword not in node:
                continue
            value = node[keyword]
            if keyword == "items":
                value = canon_schema(value)
            elif keyword == "properties":
                value = {name: canon_schema(sub) for name, sub in value.items()}
            elif keyword == "required":
                value = sorted(value)
            elif keyword == "propertyNames":
                value = canon_schema({"type": "string", **value})
            elif keyword == "additionalProperties":
                if value is True:
                    continue  # the default
                if value is not False:
                    value = canon_schema(value)
            alt[keyword] = value
        if alt.get("format") == "date-time":
            alt.pop("pattern", None)  # the zone pattern is checked on its own
        alternatives.append(alt)
    return _sorted_alternatives(alternatives)


def _bounds(t: mi.IntType | mi.FloatType) -> dict[str, Any]:
    names = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}
    out = {keyword: getattr(t, attr) for attr, keyword in names.items()}
    return {k: v for k, v in out.items() if v is not None}


def canon_msgspec(t: mi.Type) -> Canon:
    """A msgspec type as the same sorted list of alternatives as :func:`canon_schema`."""
    alt: dict[str, Any]
    if isinstance(t, mi.UnionType):
        return _sorted_alternatives([a for sub in t.types for a in canon_msgspec(sub)])
    if isinstance(t, mi.NoneType):
        return [{"type": "null"}]
    if isinstance(t, mi.BoolType):
        return [{"type": "boolean"}]
    if isinstance(t, mi.LiteralType):
        return [{"enum": sorted(t.values)}]
    if isinstance(t, mi.DateTimeType):
        assert t.tz is True, "timestamps of the contract must carry a zone"
        return [{"type": "string", "format": "date-time"}]
    if isinstance(t, mi.StrType):
        alt = {"type": "string"}
        for attr, keyword in (("min_length", "minLength"), ("max_length", "maxLength")):
            if getattr(t, attr) is not None:
                alt[keyword] = getattr(t, attr)
        if t.pattern is not None:
            alt["pattern"] = t.pattern
        return [alt]
    if isinstance(t, mi.IntType):
        return [{"type": "integer", **_bounds(t)}]
    if isinstance(t, mi.FloatType):
        return [{"type": "number", **_bounds(t)}]
    if isinstance(t, mi.ListType):
        alt = {"type": "array", "items": canon_msgspec(t.item_type)}
        if t.min_length is not None:
            alt["minItems"] = t.min_length
        if t.max_length is not None:
            alt["maxItems"] = t.max_length
        return [alt]
    if isinstance(t, mi.DictType):
        alt = {"type": "object"}
        keys = canon_msgspec(t.key_type)
        if keys != [{"type": "string"}]:
            alt["propertyNames"] = keys
        if not isinstance(t.value_type, mi.AnyType):
            alt["additionalProperties"] = canon_msgspec(t.value_type)
        if t.min_length is not None:
            alt["minProperties"] = t.min_length
        if t.max_length is not None:
            alt["maxProperties"] = t.max_length
        return [alt]
    if isinstance(t, mi.StructType):
        alt = {
            "type": "object",
            "properties": {f.encode_name: canon_msgspec(f.type) for f in t.fields},
            "required": sorted(f.encode_name for f in t.fields if f.required),
        }
        if t.forbid_unknown_fields:
            alt["additionalProperties"] = False
        return [alt]
    raise AssertionError(f"no JSON Schema mapping for {t!r}")


SCHEMA_STRUCTS = [(EVENT_SCHEMA, Event), (ANOMALY_SCHEMA, Anomaly)]


def _struct_info(struct: type) -> mi.StructType:
    info = mi.type_info(struct)
    assert isinstance(info, mi.StructType)
    return info


# --- the schemas themselves ------------------------------------------------------------


@pytest.mark.parametrize("schema", [EVENT_SCHEMA, ANOMALY_SCHEMA], ids=["event", "anomaly"])
def test_schema_is_valid_draft_2020_12(schema: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("https://agentwatch.dev/schemas/")
    assert schema["title"]
    assert schema["description"]
    assert schema["additionalProperties"] is True  # forward compatible


def test_event_schema_id() -> None:
    assert EVENT_SCHEMA["$id"] == "https://agentwatch.dev/schemas/agent_event.v1.json"
    assert ANOMALY_SCHEMA["$id"] == "https://agentwatch.dev/schemas/anomaly.v1.json"


@pytest.mark.parametrize(("schema", "struct"), SCHEMA_STRUCTS, ids=["event", "anomaly"])
def test_property_names_are_struct_fields(schema: dict[str, Any], struct: type) -> None:
    fields = [f.encode_name for f in msgspec.structs.fields(struct)]
    assert list(schema["properties"]) == fields


@pytest.mark.parametrize(("schema", "struct"), SCHEMA_STRUCTS, ids=["event", "anomaly"])
def test_required_sets_match(schema: dict[str, Any], struct: type) -> None:
    required = {f.encode_name for f in msgspec.structs.fields(struct) if f.required}
    assert set(schema["required"]) == required
    assert len(schema["required"]) == len(set(schema["required"]))


def test_event_required_fields_constant() -> None:
    assert list(EVENT_SCHEMA["required"]) == list(REQUIRED_FIELDS)


def test_every_property_is_described() -> None:
    def walk(node: dict[str, Any], where: str) -> None:
        for name, sub in node.get("properties", {}).items():
            assert len(sub.get("description", "")) > 10, f"{where}.{name} has no description"
            walk(sub, f"{where}.{name}")
            if isinstance(sub.get("items"), dict):
                walk(sub["items"], f"{where}.{name}[]")

    walk(EVENT_SCHEMA, "event")
    walk(ANOMALY_SCHEMA, "anomaly")


def test_event_descriptions_name_their_otel_equivalent() -> None:
    for name, sub in EVENT_SCHEMA["properties"].items():
        assert "OTel" in sub["description"], f"{name}: say which OTel attribute it matches"


@pytest.mark.parametrize("field", msgspec.structs.fields(Event), ids=lambda f: f.name)
def test_event_field_types_and_bounds_match(field: msgspec.structs.FieldInfo) -> None:
    info = {f.name: f for f in _struct_info(Event).fields}[field.name]
    assert canon_schema(EVENT_SCHEMA["properties"][field.encode_name]) == canon_msgspec(info.type)


@pytest.mark.parametrize("field", msgspec.structs.fields(Anomaly), ids=lambda f: f.name)
def test_anomaly_field_types_and_bounds_match(field: msgspec.structs.FieldInfo) -> None:
    info = {f.name: f for f in _struct_info(Anomaly).fields}[field.name]
    assert canon_schema(ANOMALY_SCHEMA["properties"][field.encode_name]) == canon_msgspec(info.type)


@pytest.mark.parametrize(("schema", "struct"), SCHEMA_STRUCTS, ids=["event", "anomaly"])
def test_defaults_match(schema: dict[str, Any], struct: type) -> None:
    for field in msgspec.structs.fields(struct):
        prop = schema["properties"][field.encode_name]
        if field.default is not msgspec.NODEFAULT and field.default is not None:
            assert prop["default"] == field.default, field.name
        if field.default_factory is not msgspec.NODEFAULT:
            assert prop["default"] == field.default_factory(), field.name


def test_enums_match_python_constants() -> None:
    props = EVENT_SCHEMA["properties"]
    assert props["type"]["enum"] == list(EVENT_TYPES)
    assert props["status"]["enum"] == list(STATUSES)
    assert props["destinations"]["items"]["properties"]["kind"]["enum"] == list(DESTINATION_KINDS)
    assert props["schema_version"]["const"] == "1"
    assert ANOMALY_SCHEMA["properties"]["severity"]["enum"] == list(SEVERITIES)


def test_bounds_match_python_constants() -> None:
    props = EVENT_SCHEMA["properties"]
    for name in ("event_id", "agent_id", "session_id"):
        assert props[name]["maxLength"] == MAX_ID, name
    for name in ("agent_version", "agent_type", "tool_name", "model", "secret_name"):
        assert props[name]["maxLength"] == MAX_NAME, name
    for name in ("bytes_in", "bytes_out", "tokens_in", "tokens_out"):
        assert (props[name]["minimum"], props[name]["maximum"]) == (0, MAX_INT), name
    for name in ("duration_ms", "cost_usd"):
        assert props[name]["minimum"] == 0, name
    assert props["destinations"]["maxItems"] == MAX_DESTINATIONS
    assert props["destinations"]["items"]["properties"]["value"]["maxLength"] == MAX_VALUE
    for name in ("metrics", "attributes"):
        assert props[name]["maxProperties"] == MAX_MAP_ENTRIES, name
        assert props[name]["propertyNames"]["maxLength"] == MAX_ATTR_KEY, name
    values = props["attributes"]["additionalProperties"]["anyOf"]
    strings = [a for a in values if a["type"] == "string"]
    assert strings == [{"type": "string", "maxLength": MAX_ATTR_STRING}]
    assert props["destinations"]["items"]["additionalProperties"] is False
    assert _struct_info(Destination).forbid_unknown_fields


def _conditional_requirements() -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    for rule in EVENT_SCHEMA["allOf"]:
        assert rule["if"]["required"] == ["type"]
        event_type = rule["if"]["properties"]["type"]["const"]
        fields = tuple(rule["then"]["required"])
        for name in fields:  # present *and* not null, as the decoder demands
            assert rule["then"]["properties"][name]["type"] != "null"
            assert "null" not in rule["then"]["properties"][name]["type"]
        assert event_type not in found
        found[event_type] = fields
    return found


def test_type_conditional_requirements_match() -> None:
    assert _conditional_requirements() == REQUIRED_BY_TYPE


@pytest.mark.parametrize(("event_type", "fields"), sorted(REQUIRED_BY_TYPE.items()))
def test_type_conditional_requirement_enforced_by_both(
    event_type: str, fields: tuple[str, ...]
) -> None:
    base = _load(EXAMPLES / f"{event_type}.json")
    for name in fields:
        for broken in ({k: v for k, v in base.items() if k != name}, {**base, name: None}):
            assert message_schema_errors(broken), f"schema accepts {event_type} without {name}"
            result = decode_message(
                json.dumps(broken).encode(),
                key=EXAMPLE_KEY,
                limits=Limits(),
                now=datetime.fromisoformat(base["ts"]),
            )
            assert [r.reason for r in result.rejects] == ["missing_field"]


@pytest.mark.parametrize(
    ("ts", "ok"),
    [
        ("2026-11-24T09:58:00Z", True),
        ("2026-11-24T09:58:00.5Z", True),
        ("2026-11-24T09:58:00.123456+05:30", True),
        ("2026-11-24T09:58:00-00:00", True),
        ("2026-11-24t09:58:00z", True),
        ("2026-11-24T09:58:00", False),
        ("2026-11-24", False),
        ("2026-11-24T09:58Z", False),
        ("2026-11-24T09:58:00+0100", False),
        ("1732442280", False),
    ],
)
def test_ts_pattern_requires_a_zone(ts: str, ok: bool) -> None:
    for schema in (EVENT_SCHEMA, ANOMALY_SCHEMA):
        doc = {"ts": ts}
        sub = {"properties": {"ts": schema["properties"]["ts"]}}
        assert (not list(_validator(sub).iter_errors(doc))) is ok, schema["$id"]
    if ok:  # whatever the schema accepts, the decoder accepts too
        raw = json.dumps({**_load(EXAMPLES / "network.json"), "ts": ts}).encode()
        limits = Limits(max_future_s=1e9)
        result = decode_message(raw, key=EXAMPLE_KEY, limits=limits, now=INVALID_NOW)
        assert result.rejects == []


def test_batch_definition() -> None:
    batch = EVENT_SCHEMA["$defs"]["batch"]
    assert batch["type"] == "array"
    assert batch["minItems"] == 1
    assert batch["items"] == {"$ref": "#"}


# --- golden examples -------------------------------------------------------------------


def test_every_event_type_has_an_example() -> None:
    assert sorted(p.stem for p in VALID_EVENT_FILES) == sorted(EVENT_TYPES)


def test_examples_use_every_event_field() -> None:
    docs = [_load(p) for p in VALID_EVENT_FILES] + list(_load(EXAMPLES / "batch.json"))
    used = {key for doc in docs for key in doc}
    assert used == {f.encode_name for f in msgspec.structs.fields(Event)}
    statuses = {doc.get("status", "ok") for doc in docs}
    assert statuses == set(STATUSES)
    kinds = {d["kind"] for doc in docs for d in doc.get("destinations", [])}
    assert kinds == set(DESTINATION_KINDS)


def _ts_of(doc: Any) -> datetime:
    stamps = [datetime.fromisoformat(d["ts"]) for d in (doc if isinstance(doc, list) else [doc])]
    return max(stamps)


@pytest.mark.parametrize(
    "path", [*VALID_EVENT_FILES, EXAMPLES / "batch.json"], ids=lambda p: p.name
)
def test_valid_example(path: Path) -> None:
    raw = path.read_bytes()
    doc = json.loads(raw)
    assert message_schema_errors(doc) == []
    result = decode_message(raw, key=EXAMPLE_KEY, limits=Limits(max_age_s=0), now=_ts_of(doc))
    assert result.rejects == []
    docs = doc if isinstance(doc, list) else [doc]
    assert [e.event_id for e in result.events] == [d["event_id"] for d in docs]
    for event in result.events:  # what we encode is valid too
        assert message_schema_errors(json.loads(encode_event(event))) == []


def test_batch_example_is_one_agent() -> None:
    batch = _load(EXAMPLES / "batch.json")
    assert len(batch) > 1
    assert {e["agent_id"] for e in batch} == {EXAMPLE_KEY.decode()}


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.name)
def test_invalid_example(path: Path) -> None:
    reason = path.name.split(".")[0]
    assert reason in REASONS, f"{path.name} must be named after a reason code"
    raw = path.read_bytes()
    result = decode_message(raw, key=EXAMPLE_KEY, limits=INVALID_LIMITS, now=INVALID_NOW)
    assert result.events == []
    assert [r.reason for r in result.rejects] == [reason], [r.detail for r in result.rejects]
    assert result.rejects[0].raw == raw
    try:
        doc = json.loads(raw)
    except ValueError:
        assert reason == "bad_json"
        return
    errors = message_schema_errors(doc)
    if reason in RUNTIME_ONLY:
        assert errors == [], "runtime-only reasons are invisible to the schema"
    else:
        assert errors, f"the schema accepts {path.name}"


def test_every_reachable_reason_has_an_invalid_example() -> None:
    reasons = {p.name.split(".")[0] for p in INVALID_FILES}
    assert reasons == set(REASONS) - SIZE_REASONS


def test_anomaly_example() -> None:
    raw = (EXAMPLES / "anomaly.json").read_bytes()
    doc = json.loads(raw)
    assert list(_validator(ANOMALY_SCHEMA).iter_errors(doc)) == []
    anomaly = decode_anomaly(raw)
    assert anomaly.event_ids
    assert list(_validator(ANOMALY_SCHEMA).iter_errors(json.loads(encode_anomaly(anomaly)))) == []
    assert set(doc) == {f.encode_name for f in msgspec.structs.fields(Anomaly)}


def test_anomaly_schema_rejects_out_of_range_score() -> None:
    doc = _load(EXAMPLES / "anomaly.json")
    assert list(_validator(ANOMALY_SCHEMA).iter_errors({**doc, "score": 101}))
    assert list(_validator(ANOMALY_SCHEMA).iter_errors({**doc, "severity": "severe"}))
    with pytest.raises(msgspec.ValidationError):
        decode_anomaly(json.dumps({**doc, "score": 101}).encode())


# --- package copies --------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_package_copy_is_identical(name: str) -> None:
    root = (SCHEMA_DIR / f"{name}.json").read_bytes()
    assert (PACKAGE_SCHEMA_DIR / f"{name}.json").read_bytes() == root
    assert schema_text(name).encode("utf-8") == root
    assert schema_json(name) == json.loads(root)


def test_package_holds_no_other_schema() -> None:
    assert sorted(p.stem for p in PACKAGE_SCHEMA_DIR.glob("*.json")) == sorted(SCHEMA_NAMES)
    assert sorted(p.stem for p in SCHEMA_DIR.glob("*.json")) == sorted(SCHEMA_NAMES)


def test_unknown_schema_name() -> None:
    with pytest.raises(ValueError, match="known schemas"):
        schema_text("agent_event.v2")


# --- the human documentation -----------------------------------------------------------

DOC = ROOT / "docs" / "event-schema.md"


def test_documentation_covers_the_contract() -> None:
    text = DOC.read_text(encoding="utf-8")
    for field in msgspec.structs.fields(Event):
        assert f"| `{field.encode_name}` |" in text, f"field {field.name} not in the table"
    for field in msgspec.structs.fields(Anomaly):
        assert f"| `{field.encode_name}` |" in text, f"anomaly field {field.name} not documented"
    for reason in REASONS:
        assert f"| `{reason}` |" in text, f"reason {reason} not documented"
    for event_type in EVENT_TYPES:
        assert f"| `{event_type}` |" in text, f"type {event_type} not documented"
    for kind in DESTINATION_KINDS:
        assert f"| `{kind}` |" in text, f"destination kind {kind} not documented"
    for setting in ("MAX_EVENT_BYTES", "MAX_MESSAGE_BYTES", "MAX_FUTURE_S", "MAX_AGE_S"):
        assert f"`AGENTWATCH_LIMITS__{setting}`" in text
