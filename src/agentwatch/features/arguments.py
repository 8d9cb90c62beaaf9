"""Argument features: the values an event hands to a tool, one per argument slot. Pure code.

A tool call's ``tool_args`` is flattened into ``(slot, value)`` pairs: the slot is
``tool.argument`` (nested objects add ``.key``; list elements share their list's slot) and
the value is canonical — strings trimmed, case-folded, inner whitespace collapsed and cut at
``MAX_VALUE_CHARS``; numbers written without a trailing ``.0``; booleans ``true``/``false``;
``null`` and empty strings skipped. Each pair also carries a stable 32-bit hash of the
value alone and of the pair, so that a bounded memory of values can be kept per agent and
carried through a snapshot. The last event's pairs are remembered (the detectors that read
them score and learn the same event one after the other).

>>> from datetime import UTC, datetime
>>> from agentwatch.schemas.events import Event
>>> e = Event(schema_version="1", event_id="e", ts=datetime(2026, 1, 1, tzinfo=UTC),
...           agent_id="a", type="tool_call", tool_name="send_email",
...           tool_args={"to": ["Ann@Example.com ", "bob@example.com"], "n": 2.0,
...                      "opts": {"cc": None, "urgent": True}})
>>> for a in argument_values(e):
...     print(a.slot, a.value)
send_email.to ann@example.com
send_email.to bob@example.com
send_email.n 2
send_email.opts.urgent true
"""

from __future__ import annotations

import zlib
from typing import Any, NamedTuple

from agentwatch.schemas.events import Event

__all__ = ["MAX_VALUE_CHARS", "Argument", "argument_values", "canonical_value", "value_hash"]

MAX_VALUE_CHARS = 512  # longer values are compared on their first 512 characters
MAX_VALUES = 32  # values taken from one event (the first ones, depth first)
MAX_DEPTH = 3  # nesting of objects followed


class Argument(NamedTuple):
    slot: str  # "tool.argument[.key…]"
    slot_hash: int  # stable 32-bit hash of the slot
    value: str  # canonical value
    raw: str  # the value as sent (cut), for explanations
    value_hash: int  # hash of the value alone: the same value in any slot
    key_hash: int  # hash of (slot, value)
    text: bool  # sent as a string (not a number or a boolean)


def canonical_value(value: Any) -> str | None:
    """A comparable string for a scalar argument value (``None``: nothing to compare).

    >>> canonical_value("  Hello   World "), canonical_value(10.0), canonical_value(False)
    ('hello world', '10', 'false')
    >>> canonical_value(None), canonical_value(""), canonical_value(0.25)
    (None, None, '0.25')
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        number = float(value)
        return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)
    text = " ".join(str(value)[:MAX_VALUE_CHARS].split()).casefold()
    return text or None


def value_hash(value: str) -> int:
    """Stable 32-bit hash of a canonical value.

    >>> value_hash("ann@example.com")
    1918621966
    """
    return zlib.crc32(value.encode())


def _walk(slot: str, value: Any, depth: int, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict):
        if depth < MAX_DEPTH:
            for key, inner in value.items():
                _walk(f"{slot}.{key}", inner, depth + 1, out)
    elif isinstance(value, list | tuple):
        for inner in value:
            if not isinstance(inner, list | tuple):
                _walk(slot, inner, depth, out)
    else:
        out.append((slot, value))


_last: tuple[Event | None, list[Argument]] = (None, [])
_slots: dict[tuple[str, str], tuple[str, int]] = {}  # (tool, argument) → (slot, its hash)
_crc32 = zlib.crc32


def _slot(tool: str, name: str) -> tuple[str, int]:
    found = _slots.get((tool, name))
    if found is None:
        slot = f"{tool}.{name}"
        found = (slot, _crc32(slot.encode()))
        if len(_slots) < 65_536:
            _slots[(tool, name)] = found
    return found


def argument_values(event: Event) -> list[Argument]:
    """The canonical ``(slot, value)`` pairs of a tool call's arguments (at most 32)."""
    global _last
    if _last[0] is event:
        return _last[1]
    args = event.tool_args
    if not args or event.tool_name is None:
        return []
    tool = event.tool_name
    crc32 = _crc32
    out: list[Argument] = []
    seen: set[int] = set()
    for name, raw_value in args.items():
        slot, slot_hash = _slot(tool, name)
        if not isinstance(raw_value, dict | list | tuple):
            pairs: list[tuple[str, Any]] = [(slot, raw_value)]
        else:
            pairs = []
            _walk(slot, raw_value, 1, pairs)
        for path, raw in pairs:
            value = canonical_value(raw)
            if value is None:
                continue
            path_hash = slot_hash if path is slot else crc32(path.encode())
            encoded = value.encode()
            key_hash = crc32(encoded, crc32(b"\x1f", path_hash))
            if key_hash in seen:
                continue
            seen.add(key_hash)
            text = isinstance(raw, str)
            shown = raw[:80] if text else value
            out.append(Argument(path, path_hash, value, shown, crc32(encoded), key_hash, text))
            if len(out) >= MAX_VALUES:
                _last = (event, out)
                return out
    _last = (event, out)
    return out
